"""Train a GLiNER uni-encoder span model on a GLiNER training JSON file with gliner's own Trainer (offline, CPU).

    python conll_dataset_formatter.py --input ../shared/data/conll2003/train.txt \
        --output data/processed/gliner/train.jsonl
    python conll_dataset_formatter.py --to-gliner data/processed/gliner/train.jsonl \
        --output data/processed/gliner/train.json
    python conll_dataset_formatter.py --input ../shared/data/conll2003/valid.txt \
        --output data/processed/gliner/valid.jsonl
    python benchmarks/train_gliner.py --train data/processed/gliner/train.json --output outputs/gliner_smoke \
        --steps 30 --threads 1
    python scripts/evaluate_gliner.py outputs/gliner_smoke --data data/processed/gliner/valid.jsonl

Issue 10's baseline (b) is this script on the mixture that `configs/open_type.json` draws, with that config's
steps, batch size, warmup and length grouping:
`python scripts/export_mixture.py configs/open_type.json --output data/processed/open_type/gliner_train.json`, then
`python benchmarks/train_gliner.py --train data/processed/open_type/gliner_train.json --output
outputs/gliner_open_type --steps 1500 --batch-size 16 --warmup-steps 150 --group-by-length --threads 1`.
`--group-by-length` hands transformers' LengthGroupedSampler the items' word counts (the span model's
`group_by_length` uses the same transformers function); without it a batch pads to its longest sentence and a
step costs about 2.5x more on the mixture. One torch thread, because on the busy shared 2-core machine one thread
was faster than two (benchmarks/RESULTS.md, "Threads"; this script's steps too).

This is baseline (b) of issue 10: GLiNER trained on the same mixture, backbone, steps and batch size as the span
model. The training file is a JSON list (or JSONL) of {"tokenized_text": [words], "ner": [[start, end_inclusive,
label], ...]}, as written by `conll_dataset_formatter.py --to-gliner`; it is validated with src/corpus_formats.py
(errors name the file and item index; duplicate spans are dropped). Every setting not listed here is gliner 0.2.29's:

Model: `GLiNERConfig(model_name=BACKBONE, max_types=, max_len=, max_width=)` built by
`GLiNER.from_config(config, backbone_from_pretrained=True, local_files_only=True)`, which picks UniEncoderSpanGLiNER
(no labels_encoder) and adds the <<ENT>>/<<SEP>> tokens to the tokenizer. The rest are GLiNERConfig defaults:
span_mode "markerV0", hidden_size 512, dropout 0.4, subtoken_pooling "first", num_rnn_layers 1 (a BiLSTM over the
words), fine_tune True, embed_ent_token True, max_neg_type_ratio 1. Defaults of this script: the embedded
all-MiniLM-L6-v2 (src/config.py resolves its names), max_types 25 and max_width 12 (GLiNERConfig's), max_len 256
words (GLiNERConfig says 384; longer sentences are cut, with a gliner warning).

Label sampling: gliner's collator (BaseProcessor.batch_generate_class_mappings), untouched. Per batch, the distinct
gold types of the batch (at most 100) form a shuffled pool of negatives (data_processing.utils.get_negatives); per
sentence a ratio r is drawn from {0, ..., max_neg_type_ratio} = {0, 1}; the prompt is the sentence's gold types
plus the first r x (its gold span count) pool types, shuffled and cut to max_types (so above max_types random
types, gold ones included, are dropped). A sentence without entities gets no negatives: one empty marker.

Training: gliner.training.Trainer and TrainingArguments, made with `GLiNER.create_training_args` and wired as
`GLiNER.train_model` wires them (its data collator, the tokenizer as processing_class), plus a logging callback,
which train_model cannot take. Defaults kept from create_training_args: optim adamw_torch, weight_decay 0.01 for
both parameter groups, focal_loss_alpha -1 and gamma 0 (plain binary cross-entropy), loss_reduction "sum",
negatives 1.0, masking "none", max_grad_norm 1.0, lr_scheduler_type "linear". Set here: max_steps (optimizer
updates), per_device_train_batch_size, learning_rate (parameters named "token_rep_layer": the encoder and its
384 -> 512 projection), others_lr (all other parameters: --head-learning-rate), warmup_steps, seed (also set
before the head is initialised), logging_steps, use_cpu, dataloader_num_workers 0, prediction_loss_only, no
checkpoints, report_to none. The learning rates, warmup and batch size default to configs/conll.json's values
and the steps to the issue's 2,500, so (a) and (b) train alike.

Writes to --output: model.safetensors, gliner_config.json and the tokenizer (`GLiNER.from_pretrained(DIR,
local_files_only=True)` loads them), and train_log.json: settings, the loss at each logging step (the mean of
the per-step summed losses since the previous log), eval losses (under the same random label sampling), wall
time and steps/s of the training loop (model building and saving excluded).
A non-empty --output is refused unless --overwrite, which replaces only a folder this script wrote, and only
once the new run has finished (it trains into a hidden sibling folder first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from harness import machine_summary, quiet_libraries  # noqa: E402 (also puts the repository on sys.path)
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import PrinterCallback  # noqa: E402

TOOL_NAME = "benchmarks/train_gliner.py"
LOG_NAME = "train_log.json"
DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_EVAL_STEPS = 500


def read_training_items(path: Path) -> list[dict]:
    """Validated GLiNER items of `path` (duplicate spans dropped); ValueError/FileNotFoundError name the file."""
    from src.corpus_formats import read_corpus
    from src.json_formats import records_to_gliner

    records = read_corpus(path, format="gliner").records
    if not records:
        raise ValueError(f"{path}: no items")
    return records_to_gliner(records)


def check_output_dir(output: Path, *, overwrite: bool) -> None:
    """Refuse a non-empty output folder, unless --overwrite and the folder is an earlier output of this script."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"{output}: exists and is not a folder")
    if not output.is_dir() or not any(output.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"{output}: folder is not empty (pass --overwrite to replace an earlier run)")
    try:
        written_here = json.loads((output / LOG_NAME).read_text(encoding="utf-8")).get("tool") == TOOL_NAME
    except (OSError, ValueError, AttributeError):
        written_here = False
    if not written_here:
        raise ValueError(f"{output}: --overwrite replaces only a folder written by {TOOL_NAME} (no {LOG_NAME} of it)")


def build_model(backbone: str, *, max_types: int, max_len: int, max_width: int):
    """A fresh uni-encoder span GLiNER around `backbone` (random head, pretrained encoder), without download."""
    from gliner import GLiNER, GLiNERConfig

    config = GLiNERConfig(model_name=backbone, max_types=max_types, max_len=max_len, max_width=max_width)
    local = Path(backbone).is_dir()
    return GLiNER.from_config(config, backbone_from_pretrained=True, local_files_only=local)


class ConsoleLog(TrainerCallback):
    """Prints step, loss and elapsed time at each log, and keeps every log entry with its time."""

    def __init__(self):
        self.entries: list[dict] = []
        self.started = self.finished = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.finished = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        elapsed = time.perf_counter() - self.started
        entry = {"step": state.global_step, "elapsed_s": round(elapsed, 3), **(logs or {})}
        if "loss" in entry:
            # Trainer logs the rate its last update used, of the first param group: gliner puts the head first.
            # One schedule scales both groups, so the encoder's rate is the same fraction of its own peak.
            entry["head_lr"] = entry.pop("learning_rate", 0.0)
            entry["encoder_lr"] = entry["head_lr"] * args.learning_rate / args.others_lr
            print(f"step {state.global_step:>6}/{state.max_steps}  loss {entry['loss']:.4f}  "
                  f"lr {entry['encoder_lr']:.2e}/{entry['head_lr']:.2e}  elapsed {elapsed:.1f}s", flush=True)
        elif "eval_loss" in entry:
            print(f"step {state.global_step:>6}  eval_loss {entry['eval_loss']:.4f}  elapsed {elapsed:.1f}s",
                  flush=True)
        self.entries.append(entry)


def length_grouped(trainer_class):
    """`trainer_class` drawing its batches with transformers' LengthGroupedSampler over the items' word counts.

    Trainer's own `train_sampling_strategy="group_by_length"` reads lengths from a `datasets.Dataset` column or
    from `input_ids`, and gliner's items have neither (a list of dicts, tokenised by the collator), so the
    sampler is handed the lengths here. The span model's `group_by_length` uses the same transformers function.
    """
    from transformers.trainer_pt_utils import LengthGroupedSampler

    class LengthGroupedTrainer(trainer_class):
        def _get_train_sampler(self, train_dataset=None):
            items = self.train_dataset if train_dataset is None else train_dataset
            lengths = [len(item["tokenized_text"]) for item in items]
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                        lengths=lengths)

    return LengthGroupedTrainer


def make_trainer(model, args: argparse.Namespace, staging: Path, train_items: list[dict],
                 eval_items: list[dict] | None, callback):
    """gliner's Trainer with the settings listed in the module docstring."""
    from gliner.training import Trainer

    evaluating = eval_items is not None
    training_args = model.create_training_args(
        output_dir=str(staging), learning_rate=args.learning_rate, others_lr=args.head_learning_rate,
        warmup_ratio=0.0, warmup_steps=args.warmup_steps, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, max_steps=args.steps, logging_steps=args.logging_steps,
        seed=args.seed, use_cpu=True, dataloader_num_workers=0, dataloader_pin_memory=False, save_strategy="no",
        eval_strategy="steps" if evaluating else "no",
        eval_steps=(args.eval_steps or DEFAULT_EVAL_STEPS) if evaluating else None,
        prediction_loss_only=True, disable_tqdm=True,
    )
    collator = model.data_collator_class(model.config, data_processor=model.data_processor, prepare_labels=True)
    trainer_class = length_grouped(Trainer) if args.group_by_length else Trainer
    trainer = trainer_class(model=model, args=training_args, train_dataset=train_items, eval_dataset=eval_items,
                      data_collator=collator, processing_class=model.data_processor.transformer_tokenizer,
                      callbacks=[callback])
    trainer.remove_callback(PrinterCallback)  # ConsoleLog prints instead
    return trainer


def train(args: argparse.Namespace, train_items: list[dict], eval_items: list[dict] | None) -> dict:
    """Train, save the model and train_log.json into args.output (checked by check_output_dir); returns the log."""
    import torch
    from transformers import set_seed

    from src.atomic_files import write_json_atomic
    from src.config import resolve_model_name_or_path

    if args.threads:
        torch.set_num_threads(args.threads)
    backbone = resolve_model_name_or_path(args.backbone)
    staging = args.output.parent / f".{args.output.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted run of this script; never the user's folder

    set_seed(args.seed)  # the head's initial weights
    model = build_model(backbone, max_types=args.max_types, max_len=args.max_len, max_width=args.max_width)
    callback = ConsoleLog()
    trainer = make_trainer(model, args, staging, train_items, eval_items, callback)
    print(f"training GLiNER on {len(train_items):,} items of {args.train}: {args.steps} steps of {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}", flush=True)
    trainer.train()
    wall = callback.finished - callback.started
    steps = trainer.state.global_step
    model.save_pretrained(staging, safe_serialization=True)
    log = {
        "tool": TOOL_NAME, "gliner_version": __import__("gliner").__version__, "machine": machine_summary(),
        "settings": {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                     "backbone_path": backbone, "train_items": len(train_items),
                     "validation_items": len(eval_items) if eval_items else 0},
        "steps": steps, "wall_time_s": round(wall, 3), "steps_per_second": round(steps / wall, 4),
        "seconds_per_step": round(wall / steps, 4),
        "train_loss": [{k: e[k] for k in ("step", "loss", "encoder_lr", "head_lr", "grad_norm", "elapsed_s") if k in e}
                       for e in callback.entries if "loss" in e],
        "eval_loss": [{"step": e["step"], "eval_loss": e["eval_loss"], "elapsed_s": e["elapsed_s"]}
                      for e in callback.entries if "eval_loss" in e],
    }
    write_json_atomic(staging / LOG_NAME, log)
    if args.output.exists():
        shutil.rmtree(args.output)  # checked above: empty, or an earlier output of this script with --overwrite
    os.replace(staging, args.output)
    print(f"{steps} steps in {wall:.1f}s ({steps / wall:.3f} steps/s) -> {args.output}", flush=True)
    return log


def positive_int(text: str, minimum: int = 1) -> int:
    """argparse type: an integer >= `minimum` (1 unless said otherwise)."""
    value = int(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return positive_int(text, minimum=0)


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (every default of the run lives here)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True, help="GLiNER training JSON (list) or JSONL file")
    parser.add_argument("--output", type=Path, required=True, help="folder for the model and train_log.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output of this script")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="encoder: hub id or local folder")
    parser.add_argument("--steps", type=positive_int, default=2500, help="optimizer updates (max_steps)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="sentences per optimizer update")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="encoder learning rate")
    parser.add_argument("--head-learning-rate", type=float, default=1e-3, help="others_lr: all non-encoder layers")
    parser.add_argument("--warmup-steps", type=non_negative_int, default=300, help="linear warmup, then decay to 0")
    parser.add_argument("--max-types", type=positive_int, default=25, help="most entity types in one prompt")
    parser.add_argument("--max-len", type=positive_int, default=256, help="most words per sentence (cut beyond)")
    parser.add_argument("--max-width", type=positive_int, default=12, help="longest span, in words")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--group-by-length", action="store_true",
                        help="batch sentences of similar length (as the span model's group_by_length)")
    parser.add_argument("--threads", type=positive_int, help="torch threads (default: torch's choice)")
    parser.add_argument("--logging-steps", type=positive_int, default=10, help="log the mean loss every N steps")
    parser.add_argument("--validation", type=Path, help="GLiNER file whose loss is logged every --eval-steps")
    parser.add_argument("--eval-steps", type=positive_int,
                        help=f"steps between validation losses (default: {DEFAULT_EVAL_STEPS})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, check the inputs and the output folder, train, save; 1 with a message on bad input or output."""
    args = build_parser().parse_args(argv)
    if args.eval_steps and not args.validation:
        print("error: --eval-steps needs --validation", file=sys.stderr)
        return 1
    try:
        train_items = read_training_items(args.train)
        eval_items = read_training_items(args.validation) if args.validation else None
        check_output_dir(args.output, overwrite=args.overwrite)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    quiet_libraries()
    train(args, train_items, eval_items)
    return 0


if __name__ == "__main__":
    sys.exit(main())
