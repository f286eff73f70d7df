"""Zero-shot evaluation suites: a JSON list of datasets, each read with its own format, renames and label set, then
scored, tabulated and averaged. Model-free: evaluate.py and scripts/evaluate_gliner.py predict, this module scores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .conll import SCHEMES
from .corpus_formats import CORPUS_FORMATS, DEFAULT_FORMAT, label_name_problem, read_corpus
from .data import label_set
from .scoring import Span, score_predictions

SUITE_KEYS = ("name", "path", "format", "labels", "label_map", "tag_column", "scheme", "max_examples")
_REQUIRED_KEYS = ("name", "path")


class SuiteError(ValueError):
    """A malformed suite file; the message names the file, and the entry and key where there is one."""


@dataclass(frozen=True)
class SuiteDataset:
    """One dataset of a suite. `path` is relative to the current directory; `labels` None means "those in its gold"."""

    name: str
    path: Path
    format: str = DEFAULT_FORMAT
    labels: tuple[str, ...] | None = None
    label_map: Mapping[str, str] = field(default_factory=dict)
    tag_column: int | None = None
    scheme: str = "auto"
    max_examples: int | None = None


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null", float: "number"}
    return names.get(type(value), "integer" if isinstance(value, int) else type(value).__name__)


def _positive_int(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _check_value(key: str, value: object) -> str | None:
    """Why `value` is not valid for `key`, or None."""
    if key in ("name", "path"):
        return None if isinstance(value, str) and value.strip() else f"must be a non-empty string, got {value!r}"
    if key == "format":
        return None if value in CORPUS_FORMATS else f"must be one of {', '.join(CORPUS_FORMATS)}, got {value!r}"
    if key == "scheme":
        return None if value in ("auto", *SCHEMES) else f"must be auto or one of {', '.join(SCHEMES)}, got {value!r}"
    if key == "tag_column":
        return None if _positive_int(value, 2) else f"must be an integer >= 2 (column 1 holds the token), got {value!r}"
    if key == "max_examples":
        return None if _positive_int(value, 1) else f"must be a positive integer, got {value!r}"
    if key == "labels":
        if not isinstance(value, list) or not value:
            return f"must be a non-empty list of label names, got {_json_type(value)}"
        for k, label in enumerate(value):
            if label_name_problem(label):
                return f"[{k}] {label!r}: {label_name_problem(label)}"
        duplicate = next((label for k, label in enumerate(value) if label in value[:k]), None)
        return f"lists {duplicate!r} twice" if duplicate is not None else None
    # label_map
    if not isinstance(value, dict):
        return f"must be an object mapping old label to new label, got {_json_type(value)}"
    for old, new in value.items():
        if label_name_problem(new):
            return f"{old!r} maps to {new!r}: {label_name_problem(new)}"
    return None


def _parse_entry(entry: object, where: str) -> SuiteDataset:
    if not isinstance(entry, dict):
        raise SuiteError(f"{where}: expected an object with name, path, ..., got {_json_type(entry)}")
    unknown = [key for key in entry if key not in SUITE_KEYS]
    if unknown:
        raise SuiteError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(SUITE_KEYS)}")
    missing = [key for key in _REQUIRED_KEYS if key not in entry]
    if missing:
        raise SuiteError(f"{where}: missing key {missing[0]!r}")
    for key, value in entry.items():
        problem = _check_value(key, value)
        if problem:
            raise SuiteError(f"{where}: key {key!r} {problem}")
    format = entry.get("format", DEFAULT_FORMAT)
    for key in ("tag_column", "scheme"):
        if key in entry and format != "conll":
            raise SuiteError(f"{where}: key {key!r} applies to the conll format only, not {format}")
    return SuiteDataset(
        name=entry["name"], path=Path(entry["path"]), format=format,
        labels=tuple(entry["labels"]) if "labels" in entry else None, label_map=dict(entry.get("label_map", {})),
        tag_column=entry.get("tag_column"), scheme=entry.get("scheme", "auto"), max_examples=entry.get("max_examples"),
    )


def load_suite(path: str | Path) -> list[SuiteDataset]:
    """Read and validate a suite file: a JSON list of dataset objects with keys SUITE_KEYS (name and path required).

    Unknown keys, wrong types and repeated names raise SuiteError "{path}: entry {k}: key ...".
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such suite file")
    try:
        entries = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise SuiteError(f"{path}:{error.lineno}: invalid JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(entries, list):
        raise SuiteError(f"{path}: expected a JSON list of datasets, got {_json_type(entries)}")
    if not entries:
        raise SuiteError(f"{path}: the suite lists no datasets")
    datasets: list[SuiteDataset] = []
    for index, entry in enumerate(entries):
        dataset = _parse_entry(entry, f"{path}: entry {index}")
        earlier = next((k for k, other in enumerate(datasets) if other.name == dataset.name), None)
        if earlier is not None:
            raise SuiteError(f"{path}: entry {index}: key 'name' {dataset.name!r} is also the name of entry {earlier}")
        datasets.append(dataset)
    return datasets


def load_suite_dataset(dataset: SuiteDataset) -> tuple[list[dict], list[str]]:
    """The dataset's records (renamed, the first `max_examples`) and the labels to ask for.

    Labels: the dataset's `labels` in the given order, else the sorted labels of its gold. Gold entities of other
    types stay in the gold and count as misses (see `unasked_gold_entities`).
    """
    result = read_corpus(dataset.path, format=dataset.format, label_map=dataset.label_map or None,
                         scheme=dataset.scheme, tag_column=dataset.tag_column)
    records = result.records[: dataset.max_examples]
    labels = list(dataset.labels) if dataset.labels is not None else label_set(records)
    if not labels:
        raise ValueError(f"{dataset.path}: dataset {dataset.name!r} has no gold entities; give its 'labels'")
    return records, labels


def unasked_gold_entities(records: Sequence[dict], labels: Sequence[str]) -> int:
    """Gold entities whose type is not among `labels`: no model is asked for them, so they are misses."""
    asked = set(labels)
    return sum(span["label"] not in asked for record in records for span in record["token_spans"])


def score_suite_dataset(
    dataset: SuiteDataset, records: list[dict], labels: list[str], predictions: list[list[Span]], *,
    annotation_format: str,
) -> dict:
    """One dataset's entry of the results: where it came from, its label set and `score_predictions`' metrics."""
    metrics = score_predictions(records, predictions, annotation_format=annotation_format)
    return {"path": str(dataset.path), "format": dataset.format, "labels": list(labels),
            "num_unasked_gold_entities": unasked_gold_entities(records, labels), **metrics}


def suite_results(per_dataset: Mapping[str, dict]) -> dict:
    """{"datasets": {name: entry}, "average": unweighted mean over datasets of micro precision, recall and F1}."""
    if not per_dataset:
        raise ValueError("no datasets to average")
    average = {key: sum(entry[key] for entry in per_dataset.values()) / len(per_dataset)
               for key in ("precision", "recall", "f1")}
    return {"datasets": dict(per_dataset), "average": {**average, "num_datasets": len(per_dataset)}}


def format_suite_table(results: Mapping) -> str:
    """The results as a table: dataset, sentences, gold entities, types, P, R, F1, then the average and notes."""
    datasets, average = results["datasets"], results["average"]
    width = max(len("average"), len("dataset"), *map(len, datasets))
    header = f"{'dataset':<{width}}  {'sentences':>9}  {'gold':>7}  {'types':>5}  {'P':>6}  {'R':>6}  {'F1':>6}"
    lines = [header, "-" * len(header)]
    def scores(row: Mapping) -> str:
        return f"{row['precision']:6.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}"

    for name, entry in datasets.items():
        lines.append(f"{name:<{width}}  {entry['num_examples']:>9,}  {entry['num_gold_entities']:>7,}  "
                     f"{len(entry['labels']):>5}  {scores(entry)}")
    lines.append("-" * len(header))
    lines.append(f"{'average':<{width}}  {'':>9}  {'':>7}  {'':>5}  {scores(average)}")
    lines.append(f"average: unweighted mean over the {average['num_datasets']} datasets of their micro P, R and F1")
    for name, entry in datasets.items():
        if entry["num_unasked_gold_entities"]:
            lines.append(f"note: {name}: {entry['num_unasked_gold_entities']:,} gold entities have types outside its "
                         "labels; they count as misses")
    return "\n".join(lines)
