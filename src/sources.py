"""The `datasets` entries of a training config: one corpus of a training mixture, its files and how to read them.

Stdlib only; `src.mixture` loads what an entry names, `src.args` checks the entries when a config is read.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field, fields

SOURCE_FORMATS = ("jsonl", "conll", "gliner", "benchmark", "slurp")
# How a training batch picks its types and which give each record loss (`label_sets` key; see src.collator).
LABEL_SET_MODES = ("record", "batch_union")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class DatasetSource:
    """One corpus of a training mixture. Paths are relative to the directory train.py runs in."""

    name: str = field(metadata={"help": "Unique name (letters, digits, '_', '.', '-'); used in logs and metrics."})
    format: str = field(default="jsonl", metadata={"help": f"File format: one of {', '.join(SOURCE_FORMATS)}."})
    train: list[str] = field(default_factory=list, metadata={"help": "Training file(s), read in order."})
    validation: list[str] = field(default_factory=list, metadata={"help": "Validation file(s)."})
    test: list[str] = field(default_factory=list, metadata={"help": "Test file(s)."})
    validation_split: float = field(
        default=0.0,
        metadata={"help": "Without validation files: hold out this share of the training sentences, taken from the "
                  "end of the training files (so at most one document is cut), as validation data."},
    )
    label_map: dict[str, str] = field(default_factory=dict, metadata={"help": "Renames, e.g. {\"PER\": \"person\"}."})
    labels: list[str] | None = field(
        default=None,
        metadata={"help": "The corpus's label set after renames (the types it was annotated for); default: every "
                  "label in its files. A record's own 'labels' field overrides it."},
    )
    type_descriptions: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Label -> text the type encoder reads (merged over all corpora)."}
    )
    weight: float = field(default=1.0, metadata={"help": "Sampling weight (multiplies the temperature share)."})
    max_train_examples: int | None = field(default=None, metadata={"help": "Use at most this many training sentences."})
    max_eval_examples: int | None = field(
        default=None, metadata={"help": "Score at most this many validation/test sentences (default: the data key)."}
    )
    tag_column: int | None = field(default=None, metadata={"help": "CoNLL: 1-based tag column (default: the last)."})
    scheme: str = field(default="auto", metadata={"help": "CoNLL tag scheme: auto, iob1, iob2 or bioes."})


def _type_ok(value: object, annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, option) for option in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    return False


def parse_source(entry: object, where: str) -> DatasetSource:
    """Check one `datasets` entry (a JSON object) and build it; ValueError names `where` and the key."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object with at least 'name' and 'train', got {type(entry).__name__}")
    hints = typing.get_type_hints(DatasetSource)
    known = {f.name for f in fields(DatasetSource)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key '{unknown[0]}'; allowed: {', '.join(sorted(known))}")
    if "name" not in entry:
        raise ValueError(f"{where}: missing key 'name'")
    values = dict(entry)
    for key in ("train", "validation", "test"):  # one path or a list of paths
        if isinstance(values.get(key), str):
            values[key] = [values[key]]
    for key, value in values.items():
        if not _type_ok(value, hints[key]):
            raise ValueError(f"{where}: key '{key}' has the wrong type ({value!r})")
    source = DatasetSource(**values)
    label = f"{where} ('{source.name}')"
    if not _NAME_RE.match(source.name):
        raise ValueError(f"{label}: 'name' may hold only letters, digits, '_', '.' and '-'")
    if source.format not in SOURCE_FORMATS:
        raise ValueError(f"{label}: 'format' must be one of {', '.join(SOURCE_FORMATS)}, got {source.format!r}")
    if not source.train and not source.validation and not source.test:
        raise ValueError(f"{label}: give at least one of 'train', 'validation', 'test'")
    if not 0.0 <= source.validation_split < 1.0:
        raise ValueError(f"{label}: 'validation_split' must lie in [0, 1), got {source.validation_split}")
    if source.validation_split and source.validation:
        raise ValueError(f"{label}: give 'validation' files or 'validation_split', not both")
    if source.validation_split and not source.train:
        raise ValueError(f"{label}: 'validation_split' needs 'train' files to split")
    if source.weight <= 0:
        raise ValueError(f"{label}: 'weight' must be > 0, got {source.weight}")
    for key in ("max_train_examples", "max_eval_examples", "tag_column"):
        if getattr(source, key) is not None and getattr(source, key) < 1:
            raise ValueError(f"{label}: '{key}' must be null or a positive integer, got {getattr(source, key)}")
    for old, new in source.label_map.items():
        if not new.strip() or new != new.strip():
            raise ValueError(f"{label}: label_map renames {old!r} to {new!r}; names need text and no edge spaces")
    if source.labels is not None and len(set(source.labels)) != len(source.labels):
        raise ValueError(f"{label}: 'labels' repeats a name")
    return source


def parse_sources(entries: list, where: str = "datasets") -> list[DatasetSource]:
    """Check a whole `datasets` list: each entry, unique names, and type descriptions that agree across corpora."""
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"'{where}' must be a non-empty list of dataset objects")
    sources = [parse_source(entry, f"{where}[{k}]") for k, entry in enumerate(entries)]
    seen: dict[str, int] = {}
    descriptions: dict[str, tuple[str, str]] = {}
    for k, source in enumerate(sources):
        if source.name in seen:
            raise ValueError(f"{where}[{k}]: name '{source.name}' is also used by {where}[{seen[source.name]}]")
        seen[source.name] = k
        for label, text in source.type_descriptions.items():
            if label in descriptions and descriptions[label][1] != text:
                other = descriptions[label][0]
                raise ValueError(f"{where}[{k}] ('{source.name}'): type_descriptions[{label!r}] differs from the one "
                                 f"of '{other}'; a type name means one thing across the mixture")
            descriptions[label] = (source.name, text)
    return sources


def merged_type_descriptions(sources: list[DatasetSource]) -> dict[str, str]:
    """All corpora's type descriptions in one map (`parse_sources` checked that they agree)."""
    return {label: text for source in sources for label, text in source.type_descriptions.items()}
