"""Step-based training of a `SpanModel` with Hugging Face Accelerate: evaluation, checkpoints, best/final, test.

One process or many (`accelerate launch`, `torchrun`): each process trains on its own shard of every epoch and scores
its shard at evaluation; only the main process writes files and `run.log`. A resumed run restores weights, optimizer,
scheduler, step, RNG states and the position in the data order, so it continues as if it had never stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import get_scheduler

from .args import ConfigError, DataArgs, TrainingArgs, resolved_config
from .atomic_files import write_json_atomic
from .checkpoints import (
    CHECKPOINT_PREFIX,
    EVAL_RESULTS_NAME,
    STATE_NAME,
    TRACKING_DIR,
    TRAINING_STATE_DIR,
    atomic_directory,
    check_output_dir,
    clear_previous_run,
    copy_model_files,
    list_checkpoints,
    read_saved_step,
    recover_interrupted_writes,
    remove_folder,
    resolve_checkpoint,
    rotation_victims,
)
from .collator import InBatchDataCollator, IndexedRecords, gold_spans, model_inputs
from .config import SpanModelConfig
from .context import attach_document_context
from .data import describe_data_source, label_set, load_splits
from .evaluation import (
    DEFAULT_THRESHOLD_GRID,
    collect_record_candidates,
    evaluate_records,
    evaluate_sets,
    search_threshold_over_sets,
)
from .inference import InferenceConfig, save_inference_config
from .launch import check_process_count, needs_cpu_processes
from .logger import setup_logging
from .metrics import format_corpus_metrics, format_metrics
from .mixture import load_mixture
from .model import SpanModel
from .sampling import EpochLengthGroupedSampler
from .sources import merged_type_descriptions, parse_sources

TRAIN_AUDIT_PER_CORPUS = 500  # mixtures: training sentences per corpus checked for unrepresentable gold at start-up


def check_trackers(report_to: list[str]) -> None:
    """Fail, before anything is written, when a tracker named in report_to is not installed.

    Accelerate itself would only warn and train without it.
    """
    from accelerate.tracking import get_available_trackers

    available = {str(tracker) for tracker in get_available_trackers()}
    missing = [name for name in report_to if name not in available]
    if missing:
        raise ConfigError(
            f"'report_to' asks for {', '.join(missing)}, which is not installed: run 'pip install "
            f"{' '.join(missing)}' or remove it from report_to"
        )


def make_accelerator(args: TrainingArgs) -> Accelerator:
    """The run's Accelerator: precision, accumulation, device, trackers and the data sharding of every epoch."""
    check_trackers(args.report_to)
    out = Path(args.output_dir)
    accelerator = Accelerator(
        # Both given explicitly, so the config decides and a launcher's --mixed_precision or
        # --gradient_accumulation_steps (environment variables) cannot silently change them.
        mixed_precision=args.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=args.gradient_accumulation_steps),
        cpu=needs_cpu_processes(args.use_cpu),
        log_with=args.report_to or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / TRACKING_DIR)),
        # Every process draws the same permutation (seed + epoch) and takes its own batches of it.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
        # The encoders' pooler layers never reach the loss; DDP must not wait for their gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    check_process_count(accelerator.num_processes, accelerator.device.type)  # before anything is written
    if args.fp16 and accelerator.device.type == "cpu":
        raise ConfigError("'fp16' needs a GPU (on the CPU Accelerate would quietly train in float32); use 'bf16'")
    return accelerator


def build_train_loader(dataset: Dataset, *, collate_fn, args: TrainingArgs) -> DataLoader:
    """A shuffled loader over `dataset` with its own generator.

    Creating an iterator over a loader without a generator draws from the global RNG, which drives dropout: a
    resumed run, which creates one more iterator than the uninterrupted run, would then drift from it. With
    `group_by_length` the order comes from `EpochLengthGroupedSampler` over `dataset.lengths()` (words per record).
    """
    if args.group_by_length:
        sampler = EpochLengthGroupedSampler(dataset.lengths(), batch_size=args.per_device_train_batch_size,
                                            seed=args.seed)
        return DataLoader(dataset, batch_size=args.per_device_train_batch_size, sampler=sampler,
                          collate_fn=collate_fn, num_workers=args.dataloader_num_workers, drop_last=False)
    return DataLoader(
        dataset, batch_size=args.per_device_train_batch_size, shuffle=True, collate_fn=collate_fn,
        num_workers=args.dataloader_num_workers, generator=torch.Generator().manual_seed(args.seed), drop_last=False,
    )


def freeze_parameters(model: SpanModel, args: TrainingArgs) -> None:
    """Turn off the gradients the run settings exclude (before `build_optimizer`, which skips them)."""
    if args.freeze_type_embeddings:
        model.type_encoder.get_input_embeddings().weight.requires_grad_(False)


def build_optimizer(model: SpanModel, args: TrainingArgs) -> torch.optim.Optimizer:
    """AdamW with encoder and span-head groups (own learning rates); no decay on biases and norm weights.

    The case embedding (`case_features`) is new like the span head and learns at the head's rate.

    `args.optim` picks the fused kernel (the default, as in transformers; about 5x faster on CPU for a
    MiniLM-sized model) or the per-tensor loop.
    """
    head_lr = args.head_learning_rate if args.head_learning_rate is not None else args.learning_rate
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = head_lr if name.startswith(("span_head.", "case_embedding.")) else args.learning_rate
        no_decay = param.ndim < 2 or "norm" in name.lower() or name.endswith("log_temperature")
        groups.setdefault((lr, 0.0 if no_decay else args.weight_decay), []).append(param)
    param_groups = [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]
    return torch.optim.AdamW(param_groups, fused=args.optim == "adamw_torch_fused")


class SpanTrainer:
    """Owns one run: data, model, optimisation loop, evaluation, checkpoints and result files."""

    def __init__(self, model_config: SpanModelConfig, data_args: DataArgs, args: TrainingArgs) -> None:
        self.model_config, self.data_args, self.args = model_config, data_args, args
        self.output_dir = Path(args.output_dir)
        self.accelerator = make_accelerator(args)
        self.is_main = self.accelerator.is_main_process
        self.logger = setup_logging(None, is_main_process=self.is_main)
        self.global_step = 0
        self.epoch, self.batch_in_epoch = 0, 0  # position in the data order: batches of this epoch already used
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.log_history: list[dict] = []
        self.resume_path: Path | None = None
        self.resume_state: dict | None = None
        self.calibrated_threshold: float | None = None
        self._scoring_source: str | None = None

    # ----------------------------------------------------------------- setup
    def _load_data(self) -> None:
        """Read the data: a single corpus (dataset_name or *_file keys) or a mixture (`datasets`).

        Either way the trainer then sees `train_data` (a map-style dataset of (index, record)) and `eval_sets`:
        per split a list of (corpus name, records, label set); a single corpus is one set named "".
        """
        d, a = self.data_args, self.args
        self.mixture = None
        if d.datasets is not None:
            sources = parse_sources(d.datasets)
            with self.accelerator.main_process_first():  # the main process converts, the others read its cache
                self.mixture = load_mixture(
                    sources, temperature=d.sampling_temperature, seed=a.seed, max_eval_examples=d.max_eval_examples,
                    cache_dir=d.data_cache_dir,
                )
            self.train_data = self.mixture.train
            self.eval_sets = {split: self.mixture.eval_sets(split) for split in ("validation", "test")}
            self.all_labels = sorted({label for c in self.mixture.corpora for label in c.labels})
            self._merge_type_descriptions(merged_type_descriptions(sources))
        else:
            splits = load_splits(
                dataset_name=d.dataset_name, train_file=d.train_file, validation_file=d.validation_file,
                test_file=d.test_file,
            )
            if d.context_size:
                splits = {split: attach_document_context(records, max_words=d.context_size)
                          for split, records in splits.items()}
            # Evaluation scores every type of every split, so a type unseen in training is still asked for.
            self.all_labels = sorted({lab for recs in splits.values() for lab in label_set(recs)})
            self.train_data = IndexedRecords(splits["train"]) if splits.get("train") else None
            self.eval_sets = {split: [("", splits[split], self.all_labels)] for split in ("validation", "test")
                              if splits.get(split)}
            self.splits = splits
        key = "datasets" if d.datasets is not None else "dataset_name" if d.dataset_name else None
        needed = {"train": a.do_train, "validation": a.do_train and a.do_eval, "test": a.do_predict}
        for split, wanted in needed.items():
            present = self.train_data is not None if split == "train" else bool(self.eval_sets.get(split))
            if wanted and not present:
                raise ConfigError(
                    f"no {split} data: set '{key or split + '_file'}' or turn off "
                    f"'{'do_predict' if split == 'test' else 'do_eval' if split == 'validation' else 'do_train'}'"
                )
        if a.calibrate_threshold and not self.eval_sets.get("validation"):
            raise ConfigError("'calibrate_threshold' needs validation data")
        if a.metric_for_best_model == "mean_corpus_f1" and d.datasets is None:
            raise ConfigError("'metric_for_best_model' 'mean_corpus_f1' needs a mixture ('datasets')")

    def _merge_type_descriptions(self, descriptions: dict[str, str]) -> None:
        """Add the corpora's type descriptions to the model config (saved with the model); conflicts are errors."""
        current = dict(self.model_config.type_descriptions)
        for label, text in descriptions.items():
            if current.get(label, text) != text:
                raise ConfigError(f"type_descriptions[{label!r}] is {current[label]!r} in the config but {text!r} in "
                                  "a 'datasets' entry")
            current[label] = text
        self.model_config.type_descriptions = current

    def collator_for(self, labels: list[str]) -> InBatchDataCollator:
        """An evaluation collator scoring exactly `labels`."""
        if labels == self.all_labels:
            return self.eval_collator
        return InBatchDataCollator(self.model.token_tokenizer, self.model.type_tokenizer, label_set=labels,
                                   **self.collator_settings)

    def _build_model(self) -> None:
        if self.resume_path is not None:
            self.model = SpanModel.from_pretrained(self.resume_path)
            self.model_config = self.model.config
        else:
            self.model = SpanModel.from_config(self.model_config)
        freeze_parameters(self.model, self.args)
        m, d = self.model, self.data_args
        common = dict(
            annotation_format=d.annotation_format, max_seq_length=d.max_seq_length,
            max_span_length=self.model_config.max_span_length, max_type_length=d.max_type_length,
            type_descriptions=self.model_config.type_descriptions, context_size=d.context_size,
        )
        self.collator_settings = common
        self.train_collator = InBatchDataCollator(
            m.token_tokenizer, m.type_tokenizer, label_sets=d.label_sets, max_types=d.max_types, seed=self.args.seed,
            **common,
        )
        self.eval_collator = InBatchDataCollator(
            m.token_tokenizer, m.type_tokenizer, label_set=self.all_labels, **common
        )

    def _log_setup(self) -> None:
        a, log = self.args, self.logger
        acc = self.accelerator
        log.info(f"Run '{a.run_name}' -> {self.output_dir.resolve()}")
        log.info(f"Device: {acc.device} | processes: {acc.num_processes} | mixed precision: {a.mixed_precision}")
        d = self.data_args
        if self.mixture is None:
            log.info("Data: " + describe_data_source(dataset_name=d.dataset_name, train_file=d.train_file,
                                                     validation_file=d.validation_file, test_file=d.test_file))
            for split, records in self.splits.items():
                n_ent = sum(len(gold_spans(r, self.data_args.annotation_format)) for r in records)
                log.info(f"Dataset {split}: {len(records)} examples, {n_ent} entities, labels {label_set(records)}")
        else:
            log.info(f"Data: a training mixture of {len(self.mixture.corpora)} corpora ('datasets'), "
                     f"{len(self.all_labels)} types, {len(self.train_data or [])} draws per epoch (sampling "
                     f"temperature {d.sampling_temperature}); label sets: {d.label_sets}, at most {d.max_types} "
                     "types per batch")
            for line in self.mixture.summary():
                log.info(line)
        total = sum(p.numel() for p in self.model.parameters())
        trained = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        head = sum(p.numel() for p in self.model.span_head.parameters())
        log.info(
            f"Parameters: {total:,} total ({sum(p.numel() for p in self.model.token_encoder.parameters()):,} token "
            f"encoder, {sum(p.numel() for p in self.model.type_encoder.parameters()):,} type encoder, "
            f"{head:,} span head), {trained:,} trained"
        )
        eff = a.per_device_train_batch_size * acc.num_processes * a.gradient_accumulation_steps
        log.info(
            f"Effective batch size: {eff} ({a.per_device_train_batch_size} per device x {acc.num_processes} "
            f"processes x {a.gradient_accumulation_steps} accumulation steps)"
        )
        for split, name, records, collator in self._audit_sets():
            counts = collator.audit(records)
            lost = {k: v for k, v in counts.items() if k != "entities"}
            if lost:
                where = f"Dataset {split}" + (f" ({name})" if name else "")
                sample = " (a sample)" if split == "train" and self.mixture is not None else ""
                log.warning(
                    f"{where}{sample}: {sum(lost.values())} of {counts['entities']} gold entities cannot be "
                    f"represented ({dict(lost)}); they stay in the gold set and count as misses"
                )

    def _audit_sets(self):
        """(split, corpus, records, collator) to check at start-up; a mixture's training corpora by a sample."""
        # Evaluation runs over overlapping windows, so long sentences lose nothing there; training truncates.
        if self.mixture is None:
            if self.train_data is not None:
                yield "train", "", self.train_data.records, self.train_collator
        else:
            for corpus in self.mixture.corpora:
                if corpus.train is not None and len(corpus.train_rows):
                    rows = corpus.train_rows[:TRAIN_AUDIT_PER_CORPUS].tolist()
                    yield "train", corpus.source.name, corpus.train.select(rows).to_list(), self.train_collator
        for split, sets in self.eval_sets.items():
            for name, records, labels in sets:
                yield split, name, records, self.collator_for(labels).with_windows()

    # ------------------------------------------------------------- main entry
    def run(self) -> dict:
        """Train (if asked), evaluate, test; returns the test results dict (empty without do_predict)."""
        a, acc = self.args, self.accelerator
        check_output_dir(a.output_dir, overwrite=a.overwrite_output_dir, resume=a.resume_from_checkpoint)
        if a.resume_from_checkpoint:
            self.resume_path = resolve_checkpoint(a.output_dir, a.resume_from_checkpoint)
            self.resume_state = json.loads((self.resume_path / STATE_NAME).read_text(encoding="utf-8"))
        set_seed(a.seed)
        self._load_data()  # bad data fails here, before anything is written
        self._build_model()
        acc.wait_for_everyone()  # every process has checked output_dir before the main process changes it
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            if self.resume_path is None and a.overwrite_output_dir:
                clear_previous_run(self.output_dir)
            recover_interrupted_writes(self.output_dir)
        acc.wait_for_everyone()
        self.logger = setup_logging(self.output_dir, is_main_process=self.is_main)
        if self.is_main and self.resume_state is not None:
            self._restore_best()
        self.config_dict = resolved_config(self.model_config, self.data_args, a)
        if self.is_main:
            write_json_atomic(self.output_dir / "config.json", self.config_dict)
        if a.report_to:
            acc.init_trackers(a.run_name, config={k: str(v) for k, v in self.config_dict.items()})
        self._log_setup()
        if a.do_train:
            self.train()
        if a.calibrate_threshold:
            self.calibrate()
        results = self.test() if a.do_predict else {}
        if a.report_to:
            acc.end_training()
        return results

    def _restore_best(self) -> None:
        """Make best/ the model of the resumed checkpoint's best_step again.

        A kill can fall between writing a checkpoint and refreshing best/, and a resume from an older checkpoint
        must not keep a best/ from that checkpoint's future.
        """
        step = self.resume_state["best_step"]
        best = self.output_dir / "best"
        if step is None or read_saved_step(best) == step:
            return
        source = self.resume_path.parent / f"{CHECKPOINT_PREFIX}{step}"
        if not (source / STATE_NAME).is_file():
            self.logger.warning(f"best/ does not hold the best model of step {step} and {source} is gone")
            return
        with atomic_directory(best) as tmp:
            copy_model_files(source, tmp)
        self.logger.warning(f"best/ restored from {source}")

    # ------------------------------------------------------------- training
    def train(self) -> None:
        """The step loop: accumulate, clip, update, log; checkpoint (and evaluate) every eval_steps; save final/."""
        a, acc, log = self.args, self.accelerator, self.logger
        optimizer = build_optimizer(self.model, a)
        scheduler = get_scheduler(
            a.lr_scheduler_type, optimizer, num_warmup_steps=a.warmup_steps, num_training_steps=a.max_steps
        )
        # The scheduler is stepped by hand once per update: Accelerate's wrapper would step it once per process.
        acc.register_for_checkpointing(scheduler)
        loader = build_train_loader(self.train_data, collate_fn=self.train_collator, args=a)
        self.model, optimizer, loader = acc.prepare(self.model, optimizer, loader)
        # Model weights live in the checkpoint's save_pretrained layout; training_state/ holds only the rest.
        acc.register_save_state_pre_hook(lambda models, weights, output_dir: weights.clear())
        acc.register_load_state_pre_hook(lambda models, input_dir: models.clear())
        if self.resume_state is not None:
            acc.load_state(str(self.resume_path / TRAINING_STATE_DIR))  # optimizer, scheduler, RNG of each process
            self._restore_trainer_state(len(loader))
        log.info(f"Starting training for {a.max_steps} steps...")
        start_time, start_step, window_loss, window_n = time.time(), self.global_step, 0.0, 0
        bar = tqdm(
            total=a.max_steps, initial=self.global_step, disable=not self.is_main or a.disable_tqdm,
            dynamic_ncols=True, desc="train",
        )
        self.model.train()
        with logging_redirect_tqdm(loggers=[log]):
            while self.global_step < a.max_steps:
                loader.set_epoch(self.epoch)
                batches = acc.skip_first_batches(loader, self.batch_in_epoch) if self.batch_in_epoch else loader
                for batch in batches:
                    self.batch_in_epoch += 1
                    with acc.accumulate(self.model):
                        out = self.model(**model_inputs(batch))
                        acc.backward(out.loss)
                        if acc.sync_gradients and a.max_grad_norm > 0:
                            acc.clip_grad_norm_(self.model.parameters(), a.max_grad_norm)
                        optimizer.step()
                        optimizer.zero_grad()
                    window_loss += float(out.loss.detach())
                    window_n += 1
                    if not acc.sync_gradients:
                        continue
                    scheduler.step()
                    self.global_step += 1
                    lr = scheduler.get_last_lr()[0]
                    bar.update(1)
                    bar.set_postfix(loss=f"{window_loss / window_n:.4f}", lr=f"{lr:.2e}")
                    if self.global_step % a.logging_steps == 0 or self.global_step == a.max_steps:
                        self._log_train(window_loss / window_n, lr, start_time)
                        window_loss, window_n = 0.0, 0
                    if self.global_step % a.eval_steps == 0 or self.global_step == a.max_steps:
                        self._checkpoint()
                    if self.global_step >= a.max_steps:
                        break
                else:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        bar.close()
        self._save_final()
        log.info(f"Training finished at step {self.global_step}: {self.global_step - start_step} steps in "
                 f"{time.time() - start_time:.1f}s")

    def _restore_trainer_state(self, batches_per_epoch: int) -> None:
        """Step, best, history and data position from the checkpoint's trainer_state.json."""
        state, log = self.resume_state, self.logger
        self.global_step, self.log_history = state["global_step"], state["log_history"]
        self.best_metric, self.best_step = state["best_metric"], state["best_step"]
        epoch, done = state["epoch"], state["batch_in_epoch"]
        batch_size = self.args.per_device_train_batch_size * self.accelerator.num_processes
        if state["train_batch_size"] != batch_size:
            done = done * state["train_batch_size"] // batch_size
            log.warning(
                f"The checkpoint was trained with {state['train_batch_size']} examples per batch over all processes, "
                f"this run uses {batch_size}: the data position is rounded to whole batches and the run is not an "
                "exact continuation"
            )
        if done >= batches_per_epoch:
            epoch, done = epoch + 1, 0
        self.epoch, self.batch_in_epoch = epoch, done
        log.info(f"Resumed from {self.resume_path} at step {self.global_step} (epoch {epoch}, batch {done})")

    def _log_train(self, loss: float, lr: float, start_time: float) -> None:
        loss = float(self.accelerator.reduce(torch.tensor(loss, device=self.accelerator.device), "mean"))
        temperature = float(self.accelerator.unwrap_model(self.model).span_head.temperature.detach())
        elapsed = time.time() - start_time
        self.logger.info(
            f"Step {self.global_step}/{self.args.max_steps} - loss: {loss:.4f} - lr: {lr:.2e} - "
            f"temperature: {temperature:.4f} - {elapsed:.0f}s elapsed"
        )
        entry = {"step": self.global_step, "loss": loss, "learning_rate": lr, "temperature": temperature}
        self.log_history.append(entry)
        if self.args.report_to:
            self.accelerator.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=self.global_step)

    def evaluate(self, split: str, threshold: float | None = None) -> dict:
        """Metrics of the current model on a split (all processes take part; every example scored once).

        A mixture's split is scored corpus by corpus, each with its own label set; the top-level figures then pool
        every corpus's sentences, `mean_corpus_f1` averages the corpora's micro F1 and `corpora` holds each one.
        """
        model = self.accelerator.unwrap_model(self.model)
        sets = [(name, records, self.collator_for(labels)) for name, records, labels in self.eval_sets[split]]
        threshold = self.args.threshold if threshold is None else threshold
        common = dict(batch_size=self.args.per_device_eval_batch_size, threshold=threshold,
                      flat_ner=self.args.flat_ner, accelerator=self.accelerator)
        if self.mixture is None:
            metrics, _ = evaluate_records(model, sets[0][1], sets[0][2], **common)
            return metrics
        return evaluate_sets(model, sets, annotation_format=self.data_args.annotation_format, **common)

    def _log_eval(self, title: str, metrics: dict) -> None:
        formatted = format_corpus_metrics(metrics) if "corpora" in metrics else format_metrics(metrics)
        self.logger.info(f"{title}: " + formatted)

    def _checkpoint(self) -> None:
        """Evaluate (with do_eval), save checkpoint-<step>/, refresh best/ when the metric improved, rotate."""
        a, log = self.args, self.logger
        metrics = self._evaluate_validation() if a.do_eval else None
        checkpoint = self._save_checkpoint(metrics)
        if metrics is not None and self.best_step == self.global_step:
            with atomic_directory(self.output_dir / "best", is_main_process=self.is_main,
                                  accelerator=self.accelerator) as tmp:
                if self.is_main:
                    copy_model_files(checkpoint, tmp)
            log.info(f"New best model ({a.metric_for_best_model}={self.best_metric:.4f}) saved to "
                     f"{self.output_dir / 'best'}")
        # Only now, with best/ in place, may the checkpoint best/ came from before go.
        if self.is_main:
            checkpoints = list_checkpoints(self.output_dir)
            for path in rotation_victims(checkpoints, limit=a.save_total_limit, keep_step=self.best_step):
                remove_folder(path)

    def _evaluate_validation(self) -> dict:
        a = self.args
        metrics = self.evaluate("validation")
        self._log_eval(f"Evaluation at step {self.global_step}", metrics)
        entry = {"step": self.global_step, **{f"eval_{k}": v for k, v in metrics.items() if not isinstance(v, dict)}}
        for name, corpus in metrics.get("corpora", {}).items():
            entry[f"eval_corpus_f1/{name}"] = corpus["f1"]
        self.log_history.append(entry)
        if a.report_to:
            self.accelerator.log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
                                 step=self.global_step)
        value = metrics[a.metric_for_best_model]
        if self.best_metric is None or (value > self.best_metric if a.greater_is_better else value < self.best_metric):
            self.best_metric, self.best_step = value, self.global_step
        return metrics

    # ------------------------------------------------------------- saving
    def _save_checkpoint(self, metrics: dict | None) -> Path:
        """Model folder + eval_results.json + training_state/ (every process adds its RNG state) + trainer_state."""
        acc = self.accelerator
        target = self.output_dir / f"{CHECKPOINT_PREFIX}{self.global_step}"
        with atomic_directory(target, is_main_process=self.is_main, accelerator=acc) as tmp:
            if self.is_main:
                acc.unwrap_model(self.model).save_pretrained(tmp)
                if metrics is not None:
                    write_json_atomic(tmp / EVAL_RESULTS_NAME, {"step": self.global_step, "eval_metrics": metrics})
            # After evaluation, so a resumed run starts from the RNG state the uninterrupted one continues with.
            acc.save_state(str(tmp / TRAINING_STATE_DIR))
            if self.is_main:
                write_json_atomic(tmp / STATE_NAME, self._trainer_state())
        return target

    def _trainer_state(self) -> dict:
        return {
            "global_step": self.global_step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "train_batch_size": self.args.per_device_train_batch_size * self.accelerator.num_processes,
            "num_processes": self.accelerator.num_processes,
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "log_history": self.log_history,
        }

    def _save_final(self) -> None:
        acc = self.accelerator
        with atomic_directory(self.output_dir / "final", is_main_process=self.is_main, accelerator=acc) as tmp:
            if self.is_main:
                acc.unwrap_model(self.model).save_pretrained(tmp)
                write_json_atomic(tmp / EVAL_RESULTS_NAME, {"step": self.global_step})
        self.logger.info(f"Final model saved to {self.output_dir / 'final'}")

    # ------------------------------------------------------------- test
    def _scoring_model(self) -> str:
        """Make self.model the model to score after training (best/ when there is one); returns its name."""
        best = self.output_dir / "best"
        if best.is_dir():
            if self._scoring_source != "best":
                self.model = SpanModel.from_pretrained(best).to(self.accelerator.device)
            self._scoring_source = "best"
        elif self._scoring_source is None:
            self._scoring_source = (
                "final" if self.args.do_train else self.resume_path.name if self.resume_path else "untrained"
            )
        return self._scoring_source

    def calibrate(self) -> None:
        """Choose the decision threshold on the validation data only and save it with the model (inference.json).

        The criterion is the one that picks best/: mean corpus F1 for a mixture, micro F1 for one corpus. Test
        data, and any corpus the mixture does not hold, play no part, so a zero-shot user gets an honest default.
        """
        source = self._scoring_model()
        model = self.accelerator.unwrap_model(self.model)
        self.logger.info(f"Calibrating the decision threshold of the {source} model on the validation data...")
        results = [
            (records, collect_record_candidates(
                model, records, self.collator_for(labels), batch_size=self.args.per_device_eval_batch_size,
                min_threshold=min(DEFAULT_THRESHOLD_GRID), accelerator=self.accelerator,
            ))
            for _name, records, labels in self.eval_sets["validation"]
        ]
        search = search_threshold_over_sets(
            results, annotation_format=self.data_args.annotation_format, flat_ner=self.args.flat_ner
        )
        self.calibrated_threshold = search.threshold
        curve = ", ".join(f"{p['threshold']:.2f}: {p['f1']:.4f}" for p in search.curve)
        self.logger.info(f"Calibrated threshold {search.threshold:.2f} (validation "
                         f"{'mean corpus F1' if self.mixture else 'micro F1'} {search.f1:.4f}; curve {curve})")
        folder = self.output_dir / source
        if self.is_main and folder.is_dir():
            save_inference_config(folder, InferenceConfig(threshold=search.threshold, flat_ner=self.args.flat_ner))
            self.logger.info(f"Saved it to {folder / 'inference.json'}")

    # ------------------------------------------------------------- test
    def test(self) -> dict:
        """Score the test split with best/ (or the current model without one) and write test_results.json."""
        source = self._scoring_model()
        threshold = self.calibrated_threshold if self.calibrated_threshold is not None else self.args.threshold
        self.logger.info(f"Scoring the test set with the {source} model (threshold {threshold})...")
        metrics = self.evaluate("test", threshold=threshold)
        self._log_eval("Test results", metrics)
        results = {
            "test_metrics": metrics,
            "model": source,
            "threshold": threshold,
            "best_step": self.best_step,
            "final_step": self.global_step,
            "config": self.config_dict,
        }
        if self.is_main:
            write_json_atomic(self.output_dir / "test_results.json", results)
        return results


def train_from_config(model_config: SpanModelConfig, data_args: DataArgs, args: TrainingArgs) -> dict:
    """Run one training job; returns the test results."""
    return SpanTrainer(model_config, data_args, args).run()
