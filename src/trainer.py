"""Step-based training of a `SpanModel` with Hugging Face Accelerate: evaluation, checkpoints, best/final, test.

One process or many (`accelerate launch`, `torchrun`): only the main process writes files and `run.log`.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from transformers import get_scheduler

from .args import DataArgs, TrainingArgs, resolved_config
from .collator import InBatchDataCollator, IndexedRecords, model_inputs
from .config import SpanModelConfig
from .data import label_set, load_splits
from .evaluation import evaluate_records
from .logger import setup_logging
from .metrics import format_metrics
from .model import SpanModel

CHECKPOINT_PREFIX = "checkpoint-"
STATE_NAME = "trainer_state.json"
TRAINING_STATE_DIR = "training_state"


class OutputDirError(RuntimeError):
    """The output folder holds an earlier run and neither overwrite nor resume was asked for."""


def check_output_dir(args: TrainingArgs) -> None:
    """Refuse to start in a non-empty output_dir unless overwrite_output_dir or resume_from_checkpoint is set."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output_dir '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite_output_dir and not args.resume_from_checkpoint:
        raise OutputDirError(
            f"output_dir '{out}' already exists and is not empty. Nothing was changed. To continue that run, set "
            "\"resume_from_checkpoint\": \"latest\" (or a checkpoint path); to write over it, set "
            "\"overwrite_output_dir\": true; or choose another output_dir."
        )


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temporary folders of an interrupted save excluded)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX)]
    found = [p for p in found if p.name[len(CHECKPOINT_PREFIX):].isdigit() and (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def resolve_checkpoint(output_dir: str | Path, resume: str) -> Path:
    """'latest' -> the newest complete checkpoint in output_dir; else the given folder, which must be complete."""
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(f"resume_from_checkpoint='latest': no complete checkpoint in '{output_dir}'")
        return checkpoints[-1]
    path = Path(resume)
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(f"resume_from_checkpoint: '{path}' is not a complete checkpoint (no {STATE_NAME})")
    return path


@contextmanager
def atomic_directory(final: Path, *, is_main_process: bool = True, accelerator: Accelerator | None = None):
    """Yield a temporary sibling folder and rename it to `final` only once everything inside was written.

    A crash at any moment leaves either the old `final` or the new one, never a half-written folder under that
    name; leftovers are hidden `.name.tmp`/`.name.old` folders that the next save clears.
    """
    tmp = final.parent / f".{final.name}.tmp"
    old = final.parent / f".{final.name}.old"
    if is_main_process:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    if accelerator is not None:
        accelerator.wait_for_everyone()
    try:
        yield tmp
        if accelerator is not None:
            accelerator.wait_for_everyone()
    except BaseException:
        if is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if is_main_process:
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temporary file and a rename, so readers never see a partial file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def build_optimizer(model: SpanModel, args: TrainingArgs) -> torch.optim.Optimizer:
    """AdamW with encoder and span-head groups (own learning rates); no decay on biases and norm weights."""
    head_lr = args.head_learning_rate if args.head_learning_rate is not None else args.learning_rate
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr = head_lr if name.startswith("span_head.") else args.learning_rate
        no_decay = param.ndim < 2 or "norm" in name.lower() or name.endswith("log_temperature")
        groups.setdefault((lr, 0.0 if no_decay else args.weight_decay), []).append(param)
    return torch.optim.AdamW([{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()])


class SpanTrainer:
    """Owns one run: data, model, optimisation loop, evaluation, checkpoints and result files."""

    def __init__(self, model_config: SpanModelConfig, data_args: DataArgs, args: TrainingArgs) -> None:
        self.model_config, self.data_args, self.args = model_config, data_args, args
        self.output_dir = Path(args.output_dir)
        self.accelerator = Accelerator(
            mixed_precision=args.mixed_precision,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            cpu=args.use_cpu,
            log_with=args.report_to or None,
            project_dir=str(self.output_dir),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        self.is_main = self.accelerator.is_main_process
        self.logger = setup_logging(None, is_main_process=self.is_main)
        self.global_step = 0
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.log_history: list[dict] = []

    # ----------------------------------------------------------------- setup
    def _load_data(self) -> None:
        d = self.data_args
        self.splits = load_splits(
            dataset_name=d.dataset_name, train_file=d.train_file, validation_file=d.validation_file,
            test_file=d.test_file,
        )
        a = self.args
        needed = {"train": a.do_train, "validation": a.do_train and a.do_eval, "test": a.do_predict}
        for split, wanted in needed.items():
            if wanted and not self.splits.get(split):
                raise ValueError(
                    f"no {split} data: set '{'dataset_name' if d.dataset_name else split + '_file'}' or turn off "
                    f"'{'do_predict' if split == 'test' else 'do_eval' if split == 'validation' else 'do_train'}'"
                )
        # Evaluation scores every type of every split, so a type unseen in training is still asked for.
        self.all_labels = sorted({lab for recs in self.splits.values() for lab in label_set(recs)})

    def _build_model(self) -> None:
        if self.resume_path is not None:
            self.model = SpanModel.from_pretrained(self.resume_path)
            self.model_config = self.model.config
        else:
            self.model = SpanModel.from_config(self.model_config)
        m, d = self.model, self.data_args
        common = dict(
            annotation_format=d.annotation_format, max_seq_length=d.max_seq_length,
            max_span_length=self.model_config.max_span_length, max_type_length=d.max_type_length,
            type_descriptions=self.model_config.type_descriptions,
        )
        self.train_collator = InBatchDataCollator(m.token_tokenizer, m.type_tokenizer, **common)
        self.eval_collator = InBatchDataCollator(
            m.token_tokenizer, m.type_tokenizer, label_set=self.all_labels, **common
        )

    def _log_setup(self) -> None:
        a, log = self.args, self.logger
        acc = self.accelerator
        log.info(f"Run '{a.run_name}' -> {self.output_dir.resolve()}")
        log.info(f"Device: {acc.device} | processes: {acc.num_processes} | mixed precision: {a.mixed_precision}")
        for split, records in self.splits.items():
            n_ent = sum(len(r.get("token_spans", [])) for r in records)
            log.info(f"Dataset {split}: {len(records)} examples, {n_ent} entities, labels {label_set(records)}")
        total = sum(p.numel() for p in self.model.parameters())
        head = sum(p.numel() for p in self.model.span_head.parameters())
        log.info(
            f"Parameters: {total:,} total ({sum(p.numel() for p in self.model.token_encoder.parameters()):,} token "
            f"encoder, {sum(p.numel() for p in self.model.type_encoder.parameters()):,} type encoder, "
            f"{head:,} span head)"
        )
        eff = a.per_device_train_batch_size * acc.num_processes * a.gradient_accumulation_steps
        log.info(
            f"Effective batch size: {eff} ({a.per_device_train_batch_size} per device x {acc.num_processes} "
            f"processes x {a.gradient_accumulation_steps} accumulation steps)"
        )
        for split, records in self.splits.items():
            collator = self.train_collator if split == "train" else self.eval_collator
            counts = collator.audit(records)
            lost = {k: v for k, v in counts.items() if k != "entities"}
            if lost:
                log.warning(
                    f"Dataset {split}: {sum(lost.values())} of {counts['entities']} gold entities cannot be "
                    f"represented ({dict(lost)}); they stay in the gold set and count as misses"
                )

    # ------------------------------------------------------------- main entry
    def run(self) -> dict:
        """Train (if asked), evaluate, test; returns the test results dict (empty without do_predict)."""
        a = self.args
        check_output_dir(a)
        self.resume_path = resolve_checkpoint(a.output_dir, a.resume_from_checkpoint) if a.resume_from_checkpoint \
            else None
        set_seed(a.seed)
        self._load_data()  # bad data fails here, before anything is written
        self._build_model()
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self.logger = setup_logging(self.output_dir, is_main_process=self.is_main)
        self.config_dict = resolved_config(self.model_config, self.data_args, a)
        if self.is_main:
            write_json_atomic(self.output_dir / "config.json", self.config_dict)
        if a.report_to:
            self.accelerator.init_trackers(a.run_name, config={k: str(v) for k, v in self.config_dict.items()})
        self._log_setup()
        if a.do_train:
            self.train()
        results = self.test() if a.do_predict else {}
        if a.report_to:
            self.accelerator.end_training()
        return results

    # ------------------------------------------------------------- training
    def _train_loader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.args.seed)  # keeps loader seeding off the global RNG
        loader = DataLoader(
            IndexedRecords(self.splits["train"]), batch_size=self.args.per_device_train_batch_size, shuffle=True,
            collate_fn=self.train_collator, num_workers=self.args.dataloader_num_workers, generator=generator,
            drop_last=False,
        )
        return loader

    def train(self) -> None:
        a, acc, log = self.args, self.accelerator, self.logger
        optimizer = build_optimizer(self.model, a)
        scheduler = get_scheduler(
            a.lr_scheduler_type, optimizer, num_warmup_steps=a.warmup_steps, num_training_steps=a.max_steps
        )
        # The scheduler is stepped by hand once per update: Accelerate's wrapper would step it once per process.
        acc.register_for_checkpointing(scheduler)
        self.model, optimizer, loader = acc.prepare(self.model, optimizer, self._train_loader())
        self.optimizer, self.scheduler = optimizer, scheduler
        # Model weights live in the checkpoint's save_pretrained layout; training_state/ holds only the rest.
        acc.register_save_state_pre_hook(lambda models, weights, output_dir: weights.clear())
        acc.register_load_state_pre_hook(lambda models, input_dir: models.clear())
        epoch, skip = 0, 0
        if self.resume_path is not None:
            acc.load_state(str(self.resume_path / TRAINING_STATE_DIR))
            state = json.loads((self.resume_path / STATE_NAME).read_text())
            self.global_step, self.log_history = state["global_step"], state["log_history"]
            self.best_metric, self.best_step = state["best_metric"], state["best_step"]
            batches_done = self.global_step * a.gradient_accumulation_steps
            epoch, skip = divmod(batches_done, len(loader))
            log.info(f"Resumed from {self.resume_path} at step {self.global_step} (epoch {epoch}, batch {skip})")
        log.info(f"Starting training for {a.max_steps} steps...")
        start_time, window_loss, window_n = time.time(), 0.0, 0
        bar = tqdm(
            total=a.max_steps, initial=self.global_step, disable=not self.is_main or a.disable_tqdm,
            dynamic_ncols=True, desc="train",
        )
        self.model.train()
        with logging_redirect_tqdm(loggers=[log]):
            while self.global_step < a.max_steps:
                loader.set_epoch(epoch)
                batches = acc.skip_first_batches(loader, skip) if skip else loader
                skip = 0
                for batch in batches:
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
                    if a.do_eval and (self.global_step % a.eval_steps == 0 or self.global_step == a.max_steps):
                        self._evaluate_and_checkpoint()
                    if self.global_step >= a.max_steps:
                        break
                epoch += 1
        bar.close()
        self._save_final()
        log.info(f"Training finished: {self.global_step} steps in {time.time() - start_time:.1f}s")

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

    def evaluate(self, split: str) -> dict:
        """Metrics of the current model on a split (all processes take part; every example scored once)."""
        model = self.accelerator.unwrap_model(self.model)
        metrics, _ = evaluate_records(
            model, self.splits[split], self.eval_collator, batch_size=self.args.per_device_eval_batch_size,
            threshold=self.args.threshold, flat_ner=self.args.flat_ner, accelerator=self.accelerator,
        )
        return metrics

    def _evaluate_and_checkpoint(self) -> None:
        a, log = self.args, self.logger
        metrics = self.evaluate("validation")
        log.info(f"Evaluation at step {self.global_step}: " + format_metrics(metrics))
        value = metrics[a.metric_for_best_model]
        self.log_history.append({"step": self.global_step, **{f"eval_{k}": v for k, v in metrics.items()
                                                              if not isinstance(v, dict)}})
        if a.report_to:
            self.accelerator.log({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, int | float)},
                                 step=self.global_step)
        improved = self.best_metric is None or value > self.best_metric
        if improved:
            self.best_metric, self.best_step = value, self.global_step
        self._save_checkpoint()
        if improved:
            self._save_model(self.output_dir / "best", extra={"step": self.global_step, "eval_metrics": metrics})
            log.info(f"New best model ({a.metric_for_best_model}={value:.4f}) saved to {self.output_dir / 'best'}")

    # ------------------------------------------------------------- saving
    def _save_model(self, target: Path, *, extra: dict | None = None) -> None:
        acc = self.accelerator
        with atomic_directory(target, is_main_process=self.is_main, accelerator=acc) as tmp:
            if self.is_main:
                acc.unwrap_model(self.model).save_pretrained(tmp)
                if extra is not None:
                    write_json_atomic(tmp / "eval_results.json", extra)

    def _save_checkpoint(self) -> None:
        acc = self.accelerator
        target = self.output_dir / f"{CHECKPOINT_PREFIX}{self.global_step}"
        with atomic_directory(target, is_main_process=self.is_main, accelerator=acc) as tmp:
            if self.is_main:
                acc.unwrap_model(self.model).save_pretrained(tmp)
            acc.save_state(str(tmp / TRAINING_STATE_DIR))
            if self.is_main:
                state = {
                    "global_step": self.global_step, "best_metric": self.best_metric, "best_step": self.best_step,
                    "log_history": self.log_history,
                }
                write_json_atomic(tmp / STATE_NAME, state)
        if self.is_main:
            self._rotate_checkpoints()

    def _rotate_checkpoints(self) -> None:
        limit = self.args.save_total_limit
        if limit is None:
            return
        keep_best = f"{CHECKPOINT_PREFIX}{self.best_step}"
        removable = [p for p in list_checkpoints(self.output_dir) if p.name != keep_best]
        budget = limit - (1 if (self.output_dir / keep_best).is_dir() else 0)
        for path in removable[: max(0, len(removable) - max(budget, 1))]:
            shutil.rmtree(path, ignore_errors=True)

    def _save_final(self) -> None:
        self._save_model(self.output_dir / "final", extra={"step": self.global_step})
        self.logger.info(f"Final model saved to {self.output_dir / 'final'}")

    # ------------------------------------------------------------- test
    def test(self) -> dict:
        """Score the test split with best/ (or the current model without one) and write test_results.json."""
        best = self.output_dir / "best"
        source = "best" if best.is_dir() else "final" if self.args.do_train else "untrained"
        if source == "best":
            self.model = SpanModel.from_pretrained(best).to(self.accelerator.device)
        self.logger.info(f"Scoring the test set with the {source} model...")
        metrics = self.evaluate("test")
        self.logger.info("Test results: " + format_metrics(metrics))
        results = {
            "test_metrics": metrics,
            "model": source,
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
