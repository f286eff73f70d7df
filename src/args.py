"""Run settings (data and training dataclasses) and the JSON-config reader with `--key value` overrides.

A config file is one flat JSON object whose keys are the fields of `SpanModelConfig` (architecture), `DataArgs`
and `TrainingArgs`; unknown keys and wrong types are errors that name the key.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from accelerate.utils import LoggerType
from transformers import HfArgumentParser

from .config import SpanModelConfig
from .sources import LABEL_SET_MODES, parse_sources

# Tracker names Accelerate knows ("all" left out: a run should say what it reports to).
TRACKERS = tuple(str(t) for t in LoggerType if str(t) != "all")
# Optimizer names as in transformers.TrainingArguments.optim; both are torch.optim.AdamW.
OPTIMIZERS = ("adamw_torch_fused", "adamw_torch")
# Validation metrics that can pick best/ (see metrics.py and evaluation.py); mean_corpus_f1 needs 'datasets'.
BEST_MODEL_METRICS = ("f1", "precision", "recall", "macro_f1", "macro_precision", "macro_recall", "accuracy", "loss",
                      "mean_corpus_f1")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and the key."""


@dataclass
class DataArgs:
    """Where the data comes from and how it is tokenised."""

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Alone: the data, an embedded corpus ('wnut16_demo') or a Hugging Face dataset (hub id, "
                  "'id:config' or a save_to_disk folder). With the *_file keys: only the name of their data."},
    )
    annotation_format: str = field(
        default="tokens",
        metadata={"help": "'tokens': token_spans over pre-split words; 'text': char_spans over the raw text."},
    )
    train_file: str | None = field(default=None, metadata={"help": "Training JSONL file."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation JSONL file (best-model choice)."})
    test_file: str | None = field(default=None, metadata={"help": "Test JSONL file, scored once after training."})
    max_seq_length: int = field(default=128, metadata={"help": "Subword window of the token encoder."})
    max_type_length: int = field(default=32, metadata={"help": "Subword limit of a type name or description."})
    context_size: int = field(
        default=0,
        metadata={"help": "Document context: up to this many subwords of the neighbouring sentences of the same "
                  "document (records' doc_id / sentence_index) are read around each sentence, within "
                  "max_seq_length; spans stay inside the sentence. 0: none. Needs annotation_format 'tokens'."},
    )
    datasets: list[dict] | None = field(
        default=None,
        metadata={"help": "A training mixture: a list of corpora (name, format, train/validation/test files, "
                  "label_map, labels, weight, ...; see configs/README.md) instead of dataset_name / *_file keys."},
    )
    sampling_temperature: float = field(
        default=1.0,
        metadata={"help": "Mixture sampling: corpus i is drawn with probability proportional to weight_i * "
                  "n_i ** (1 / T); 1 follows the corpus sizes, larger values flatten towards uniform."},
    )
    label_sets: str = field(
        default="record",
        metadata={"help": "'record': a record gives loss only for the types it was annotated for (its 'labels', else "
                  "its corpus's label set); 'batch_union': every record for every type present in the batch."},
    )
    max_types: int | None = field(
        default=25,
        metadata={"help": "Types per training batch: all present gold types, then negatives drawn from the records' "
                  "label sets up to this total (null: all of them)."},
    )
    max_eval_examples: int | None = field(
        default=None, metadata={"help": "Mixtures: score at most this many validation/test sentences per corpus."}
    )
    data_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Mixtures: folder for the converted Arrow files (default: the datasets library's cache)."},
    )

    def __post_init__(self) -> None:
        if self.annotation_format not in ("tokens", "text"):
            raise ConfigError(f"'annotation_format' must be 'tokens' or 'text', got {self.annotation_format!r}")
        if self.label_sets not in LABEL_SET_MODES:
            raise ConfigError(f"'label_sets' must be one of {', '.join(LABEL_SET_MODES)}, got {self.label_sets!r}")
        if self.max_types is not None and self.max_types < 1:
            raise ConfigError(f"'max_types' must be null or at least 1, got {self.max_types}")
        if self.sampling_temperature <= 0:
            raise ConfigError(f"'sampling_temperature' must be > 0, got {self.sampling_temperature}")
        if self.max_eval_examples is not None and self.max_eval_examples < 1:
            raise ConfigError(f"'max_eval_examples' must be null or at least 1, got {self.max_eval_examples}")
        if self.datasets is not None:
            if self.dataset_name or any((self.train_file, self.validation_file, self.test_file)):
                raise ConfigError("give either 'datasets' (a mixture) or 'dataset_name' / the '*_file' keys, not both")
            try:
                parse_sources(self.datasets)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        if self.context_size < 0:
            raise ConfigError(f"'context_size' must be >= 0, got {self.context_size}")
        if self.context_size and self.annotation_format != "tokens":
            raise ConfigError("'context_size' needs annotation_format 'tokens' (context is added as whole words)")
        if self.context_size and self.datasets is not None:
            raise ConfigError("'context_size' is not supported with 'datasets' (mixtures) yet: use the '*_file' keys")
        if self.max_seq_length < 8:
            raise ConfigError(f"'max_seq_length' must be at least 8, got {self.max_seq_length}")


@dataclass
class TrainingArgs:
    """Optimisation, evaluation, checkpointing and logging; names follow transformers.TrainingArguments."""

    run_name: str = field(default="span-ner", metadata={"help": "Name shown in logs and trackers."})
    output_dir: str | None = field(
        default=None, metadata={"help": "Run folder: logs, checkpoints, best/, final/ (default: outputs/<run_name>)."}
    )
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow starting in a non-empty output_dir."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "Checkpoint folder to resume from, or 'latest' for the newest complete one in output_dir."},
    )
    do_train: bool = field(default=True, metadata={"help": "Run training."})
    do_eval: bool = field(default=True, metadata={"help": "Evaluate on the validation set every eval_steps."})
    do_predict: bool = field(default=True, metadata={"help": "Score the test set after training."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Training batch size per process."})
    per_device_eval_batch_size: int = field(default=32, metadata={"help": "Evaluation batch size per process."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches accumulated per update."})
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate of the two encoders."})
    head_learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate of the span head (default: learning_rate)."}
    )
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases and norms)."})
    freeze_type_embeddings: bool = field(
        default=True,
        metadata={"help": "Keep the type encoder's word embeddings fixed (its layers still train): type names seen "
                  "in training would move only their own rows away from those of unseen names."},
    )
    optim: str = field(
        default="adamw_torch_fused",
        metadata={"help": "'adamw_torch_fused' (one fused kernel per step; transformers' default) or 'adamw_torch'."},
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0 disables)."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    max_steps: int = field(default=1000, metadata={"help": "Optimizer updates to run."})
    eval_steps: int = field(
        default=200, metadata={"help": "Checkpoint (and with do_eval evaluate) every this many updates."}
    )
    logging_steps: int = field(default=50, metadata={"help": "Log the training loss every this many updates."})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Keep at most this many checkpoint-* folders (best's source is kept)."}
    )
    metric_for_best_model: str = field(
        default="f1", metadata={"help": f"Validation metric that picks best/: one of {', '.join(BEST_MODEL_METRICS)}."}
    )
    greater_is_better: bool | None = field(
        default=None, metadata={"help": "Whether a larger metric_for_best_model is better (default: all but 'loss')."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for weights, data order and dropout."})
    threshold: float = field(default=0.5, metadata={"help": "Probability a start, end and span must all exceed."})
    calibrate_threshold: bool = field(
        default=False,
        metadata={"help": "After training, choose the threshold on the validation data (mean corpus F1 for a "
                  "mixture, else micro F1), save it as best/inference.json and test with it."},
    )
    flat_ner: bool = field(default=True, metadata={"help": "Resolve overlaps to flat spans; false keeps nesting."})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision."})
    fp16: bool = field(default=False, metadata={"help": "float16 mixed precision (GPU only)."})
    use_cpu: bool = field(default=False, metadata={"help": "Run on the CPU even when a GPU is present."})
    group_by_length: bool = field(
        default=False,
        metadata={"help": "Batch training sentences of similar length (random mega-batches of 50 batches, sorted by "
                  "length, as in transformers): much less padding, hence faster steps, on corpora of mixed lengths."},
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "Worker processes per data loader."})
    report_to: list[str] = field(
        default_factory=list, metadata={"help": "Trackers (installed separately), e.g. [\"tensorboard\"]."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the console progress bar."})

    def __post_init__(self) -> None:
        if self.output_dir is None:
            self.output_dir = str(Path("outputs") / self.run_name)
        positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                    "max_steps", "eval_steps", "logging_steps")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"'{key}' must be a positive integer, got {getattr(self, key)}")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"'threshold' must lie strictly between 0 and 1, got {self.threshold}")
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(f"'save_total_limit' must be null or at least 1, got {self.save_total_limit}")
        if self.metric_for_best_model not in BEST_MODEL_METRICS:
            raise ConfigError(f"'metric_for_best_model' must be one of {', '.join(BEST_MODEL_METRICS)}, "
                              f"got {self.metric_for_best_model!r}")
        if self.greater_is_better is None:
            self.greater_is_better = self.metric_for_best_model != "loss"
        if self.optim not in OPTIMIZERS:
            raise ConfigError(f"'optim' must be one of {', '.join(OPTIMIZERS)}, got {self.optim!r}")
        if self.bf16 and self.fp16:
            raise ConfigError("'bf16' and 'fp16' cannot both be true")
        if self.warmup_steps < 0 or self.learning_rate <= 0:
            raise ConfigError("'warmup_steps' must be >= 0 and 'learning_rate' > 0")
        for key in ("max_grad_norm", "dataloader_num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"'{key}' must be >= 0, got {getattr(self, key)}")
        unknown = [name for name in self.report_to if name not in TRACKERS]
        if unknown:
            raise ConfigError(f"'report_to': unknown tracker {unknown[0]!r}; choose from {', '.join(TRACKERS)}")

    @property
    def mixed_precision(self) -> str:
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "no"


ARG_CLASSES = (SpanModelConfig, DataArgs, TrainingArgs)


def _all_fields() -> dict[str, tuple[type, Any]]:
    """Every config key -> (its type, its dataclass)."""
    out = {}
    for cls in ARG_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            out[f.name] = (hints[f.name], cls)
    return out


def _check_type(key: str, value: Any, annotation: Any, source: str) -> None:
    """Raise ConfigError unless `value` fits `annotation` (str, int, float, bool, X | None, list[str], dict)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return
        annotation = next(a for a in options if a is not type(None))
        origin = typing.get_origin(annotation)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(annotation)
    if origin is list:
        item = (typing.get_args(annotation) or (str,))[0]
        item = dict if typing.get_origin(item) is dict else item
        ok = isinstance(value, list) and all(isinstance(v, item) for v in value)
    elif origin is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if not ok:
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"{source}: key '{key}' must be of type {name}, got {json.dumps(value)}")


def _parse_override(key: str, text: str, annotation: Any) -> Any:
    """Turn a command-line string into a value of the key's type (JSON for lists, dicts, null, numbers, bools)."""
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    if annotation is str or (is_union and str in typing.get_args(annotation) and text != "null"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"command line: cannot parse value {text!r} for key '{key}'") from err


def _unknown_key_error(key: str, known: dict, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{source}: unknown key '{key}'{hint}; run 'python train.py --help' for the list of keys")


def parse_overrides(argv: list[str]) -> dict[str, str]:
    """`--key value` / `--key=value` pairs -> {key: raw string}."""
    out, i = {}, 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ConfigError(f"command line: expected '--key value', got {token!r}")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv):
                raise ConfigError(f"command line: '{token}' needs a value")
            key, value = token[2:], argv[i + 1]
            i += 2
        out[key.replace("-", "_")] = value
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None):
    """Read a JSON config and overrides into (SpanModelConfig, DataArgs, TrainingArgs), checking every key."""
    known = _all_fields()
    values: dict[str, Any] = {}
    if path is not None:
        source = str(path)
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise ConfigError(f"{source}: config file not found") from err
        except json.JSONDecodeError as err:
            raise ConfigError(f"{source}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: a config must be one JSON object of key: value pairs")
        for key, value in values.items():
            if key not in known:
                raise _unknown_key_error(key, known, source)
            _check_type(key, value, known[key][0], source)
    for key, text in parse_overrides(overrides or []).items():
        if key not in known:
            raise _unknown_key_error(key, known, "command line")
        value = _parse_override(key, text, known[key][0])
        _check_type(key, value, known[key][0], "command line")
        values[key] = value
    parser = HfArgumentParser(ARG_CLASSES)
    try:
        return parser.parse_dict(values, allow_extra_keys=False)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path or 'command line'}: {err}") from err


def resolved_config(model_config: SpanModelConfig, data_args: DataArgs, training_args: TrainingArgs) -> dict:
    """The full flat config (every key, defaults filled in), loadable again by `load_config`."""
    return {**asdict(model_config), **asdict(data_args), **asdict(training_args)}


def config_help() -> str:
    """One line per key: name, type, default and help, grouped by dataclass."""
    lines = []
    for cls in ARG_CLASSES:
        lines.append(f"\n{cls.__name__}:")
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            name = getattr(hints[f.name], "__name__", str(hints[f.name]))
            lines.append(f"  --{f.name} ({name}, default {json.dumps(default)}): {f.metadata.get('help', '')}")
    return "\n".join(lines)
