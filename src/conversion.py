"""The dataset formatter's work: convert CoNLL files, corpus folders and Hugging Face datasets into JSONL files,
convert JSONL to and from GLiNER's training format, parse label maps, and summarise each conversion.
`conll_dataset_formatter.py` is the command line around it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .conll import ConversionResult, convert_conll_file, convert_document, make_record, sentences_from_rows
from .data import read_jsonl, write_jsonl

HUB_PROBE_TIMEOUT_S = 5.0  # the hub answers in well under a second; without network we want to fail at once
_SKIPPED_SUFFIXES = {".jsonl", ".json", ".md"}
_SKIPPED_PREFIXES = ("readme", "license")


class HubUnreachableError(ConnectionError):
    """The Hugging Face hub could not be reached (offline, firewalled or HF_*_OFFLINE set)."""


@dataclass
class ConvertedFile:
    """One converted source and where its JSONL goes."""

    source: str
    target: Path
    result: ConversionResult


def parse_label_map(value: str) -> dict[str, str]:
    """A label map given as a JSON object string or as the path of a JSON file, e.g. {"PER": "person"}."""
    if value.lstrip().startswith("{"):
        text, origin = value, "--label-map"
    elif Path(value).is_file():
        text, origin = Path(value).read_text(encoding="utf-8"), value
    else:
        raise ValueError(f"--label-map {value!r} is neither a JSON object nor an existing file")
    try:
        label_map = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{origin}: invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    if not isinstance(label_map, dict):
        raise ValueError(f"{origin}: the label map must be a JSON object mapping old label to new label")
    for old, new in label_map.items():
        if not isinstance(new, str) or not new or any(char.isspace() for char in new):
            raise ValueError(f"{origin}: label {old!r} maps to {new!r}; expected a non-empty label without spaces")
    return label_map


def corpus_files(folder: Path) -> list[Path]:
    """The files a folder conversion reads: every regular file except hidden, .json/.jsonl/.md, README* and LICENSE*."""
    files = [
        path
        for path in sorted(folder.iterdir())
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() not in _SKIPPED_SUFFIXES
        and not path.name.lower().startswith(_SKIPPED_PREFIXES)
    ]
    if not files:
        raise FileNotFoundError(f"{folder}: no corpus files to convert")
    return files


def convert_paths(
    source: Path, target: Path, *, scheme: str = "auto", label_map: Mapping[str, str] | None = None
) -> list[ConvertedFile]:
    """Convert a file (target: a .jsonl path or a folder) or a folder of files (target: a folder; stem + .jsonl).

    Everything is converted before anything is written, so a malformed file leaves every output untouched.
    """
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"{target}: the output of a folder conversion must be a folder")
        pairs = [(path, target / f"{path.stem}.jsonl") for path in corpus_files(source)]
        outputs = [out for _, out in pairs]
        clash = next((out for out in outputs if outputs.count(out) > 1), None)
        if clash is not None:
            sources = [str(path) for path, out in pairs if out == clash]
            raise ValueError(f"{source}: {' and '.join(sources)} would both be written to {clash}")
    elif source.is_file():
        pairs = [(source, target / f"{source.stem}.jsonl" if target.is_dir() else target)]
    else:
        raise FileNotFoundError(f"{source}: no such file or folder")
    converted = [
        ConvertedFile(str(path), out, convert_conll_file(path, scheme=scheme, label_map=label_map))
        for path, out in pairs
    ]
    for item in converted:
        write_jsonl(item.target, item.result.records)
    return converted


def hf_split_to_records(
    dataset,
    *,
    scheme: str = "auto",
    label_map: Mapping[str, str] | None = None,
    source: str = "<dataset>",
    tokens_column: str = "tokens",
    tags_column: str = "ner_tags",
) -> ConversionResult:
    """Convert one split of a `datasets.Dataset` with token and tag columns (ClassLabel ids or tag strings).

    Rows are validated like file lines (row i is reported as line i+1) and get ids "0", "1", ... in row order.
    """
    for column in (tokens_column, tags_column):
        if column not in dataset.column_names:
            raise ValueError(f"{source}: no column {column!r}; columns are {dataset.column_names}")
    class_label = getattr(dataset.features[tags_column], "feature", None)
    names = getattr(class_label, "names", None)  # ClassLabel ids -> tag names; string tags need no lookup

    def rows():
        for tokens, tags in zip(dataset[tokens_column], dataset[tags_column], strict=True):
            yield tokens, [names[tag] for tag in tags] if names is not None else tags

    document = sentences_from_rows(rows(), source=source)
    return convert_document(document, scheme=scheme, label_map=label_map)


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _unreachable(name: str, reason: str) -> HubUnreachableError:
    return HubUnreachableError(
        f"cannot load {name!r}: the Hugging Face hub is unreachable ({reason}). Convert local CoNLL files instead, "
        "e.g.: python conll_dataset_formatter.py --input ../shared/data/conll2003 --output data/processed/conll2003 "
        "(a dataset already in the cache loads with HF_DATASETS_OFFLINE=1)"
    )


def load_hf_dataset(name: str, config: str | None = None):
    """`datasets.load_dataset(name, config)`, failing within seconds with HubUnreachableError if the hub is unreachable.

    Unless offline mode is set (then only the local cache is used), the hub is probed first with a short timeout,
    because `load_dataset` itself retries for about half a minute before giving up.
    """
    offline = any(os.environ.get(key, "").lower() in ("1", "true", "yes") for key in
                  ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not offline:
        try:
            urllib.request.urlopen(urllib.request.Request(_hub_endpoint(), method="HEAD"), timeout=HUB_PROBE_TIMEOUT_S)
        except urllib.error.HTTPError:
            pass  # the server answered: reachable
        except (OSError, ValueError) as error:  # URLError, timeouts, refused connections, bad HF_ENDPOINT
            raise _unreachable(name, f"{_hub_endpoint()}: {getattr(error, 'reason', error)}") from None
    import datasets

    try:
        return datasets.load_dataset(name, config)
    except ConnectionError as error:
        raise _unreachable(name, str(error)) from None


def convert_hf_dataset(
    dataset_dict: Mapping, target: Path, *, name: str, scheme: str = "auto", label_map: Mapping[str, str] | None = None
) -> list[ConvertedFile]:
    """Convert every split of a DatasetDict into `target/{split}.jsonl` (all converted before any is written)."""
    converted = [
        ConvertedFile(
            f"{name}[{split}]",
            target / f"{split}.jsonl",
            hf_split_to_records(dataset, scheme=scheme, label_map=label_map, source=f"{name}[{split}]"),
        )
        for split, dataset in dataset_dict.items()
    ]
    for item in converted:
        write_jsonl(item.target, item.result.records)
    return converted


def format_conversion_summary(item: ConvertedFile, label_map: Mapping[str, str] | None = None) -> str:
    """One conversion's summary: sentences, tokens, entities per type, scheme, repaired tags and dropped tokens."""
    result = item.result
    entities = Counter(span["label"] for record in result.records for span in record["token_spans"])
    per_type = ", ".join(f"{label} {count:,}" for label, count in sorted(entities.items())) or "none"
    lines = [
        f"{item.source} -> {item.target}",
        f"  sentences: {len(result.records):,}  tokens: {sum(len(r['tokens']) for r in result.records):,}",
        f"  entities: {sum(entities.values()):,} ({per_type})",
        f"  scheme: {result.scheme}  repaired tags: {result.repaired_tags:,}  "
        f"dropped empty tokens: {result.dropped_tokens:,}  empty sentences skipped: {result.empty_sentences:,}",
    ]
    unused = sorted(set(label_map or {}) - set(result.source_labels))
    if unused:
        lines.append(f"  warning: label map keys not found in this file: {', '.join(unused)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- GLiNER format
# GLiNER trains on {"tokenized_text": [words], "ner": [[start, end_inclusive, label], ...]} items, word indices,
# stored as one JSON list or as JSONL. Our records carry the same words (`tokens`) with exclusive ends.


def records_to_gliner(records: list[Mapping]) -> list[dict]:
    """Project records -> GLiNER items (token spans with the end made inclusive; ids are not kept)."""
    return [
        {"tokenized_text": list(record["tokens"]),
         "ner": [[span["start"], span["end"] - 1, span["label"]] for span in record["token_spans"]]}
        for record in records
    ]


def _gliner_item_to_record(item: object, index: int) -> tuple[dict, int]:
    """One GLiNER item -> (a project record with id str(index), duplicate spans dropped); ValueError says why."""
    if not isinstance(item, dict) or "tokenized_text" not in item or "ner" not in item:
        raise ValueError("expected an object with 'tokenized_text' and 'ner'")
    tokens, ner = item["tokenized_text"], item["ner"]
    if not isinstance(tokens, list) or not tokens:
        raise ValueError("'tokenized_text' must be a non-empty list of words")
    for k, token in enumerate(tokens):
        if not isinstance(token, str) or not token or any(char.isspace() for char in token):
            raise ValueError(f"tokenized_text[{k}] {token!r} must be a non-empty string without whitespace")
    if not isinstance(ner, list):
        raise ValueError("'ner' must be a list of [start, end_inclusive, label]")
    spans, seen = [], set()
    for k, entry in enumerate(ner):
        ok = isinstance(entry, list | tuple) and len(entry) == 3
        start, end, label = entry if ok else (None, None, None)
        ok = ok and all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end))
        if not ok or not isinstance(label, str) or not label.strip():
            raise ValueError(f"ner[{k}] must be [start, end_inclusive, label] with integer positions, got {entry!r}")
        if not 0 <= start <= end < len(tokens):
            raise ValueError(f"ner[{k}] {entry!r} lies outside the {len(tokens)} words (end is inclusive)")
        if (start, end + 1, label) not in seen:
            seen.add((start, end + 1, label))
            spans.append((start, end + 1, label))
    return make_record(index, tokens, spans), len(ner) - len(spans)


def read_gliner_items(path: str | Path) -> list[object]:
    """A GLiNER data file's items: a JSON list, or JSONL (one item per line); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{error.lineno}: invalid JSON: {error.msg} (column {error.colno})") from None
        return items
    items = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: invalid JSON: {error.msg} (column {error.colno})") from None
    return items


def gliner_to_records(items: list[object], *, source: str = "<gliner>") -> tuple[list[dict], int]:
    """GLiNER items -> (project records with ids "0", "1", ..., the number of duplicate spans dropped).

    Raises ValueError "{source}: item {k}: ..." for a malformed item (k 0-based; the line for JSONL is k + 1 when
    the file has no blank lines).
    """
    if not isinstance(items, list):
        raise ValueError(f"{source}: a GLiNER file is a JSON list of items or JSONL")
    records, dropped = [], 0
    for index, item in enumerate(items):
        try:
            record, duplicates = _gliner_item_to_record(item, index)
        except ValueError as error:
            raise ValueError(f"{source}: item {index}: {error}") from None
        records.append(record)
        dropped += duplicates
    return records, dropped


def write_gliner_file(path: str | Path, items: list[dict]) -> None:
    """Write GLiNER items as JSONL when `path` ends in .jsonl, else as one JSON list (what GLiNER's scripts load)."""
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        write_jsonl(path, items)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(items, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def convert_to_gliner(source: Path, target: Path) -> str:
    """Project JSONL -> GLiNER file; returns a summary."""
    records = read_jsonl(source)
    write_gliner_file(target, records_to_gliner(records))
    entities = sum(len(r["token_spans"]) for r in records)
    return f"{source} -> {target}\n  sentences: {len(records):,}  entities: {entities:,} (GLiNER format)"


def convert_from_gliner(source: Path, target: Path) -> str:
    """GLiNER file (JSON list or JSONL) -> project JSONL; returns a summary."""
    records, dropped = gliner_to_records(read_gliner_items(source), source=str(source))
    if not records:
        raise ValueError(f"{source}: no items")
    write_jsonl(target, records)
    entities = Counter(span["label"] for record in records for span in record["token_spans"])
    per_type = ", ".join(f"{label} {count:,}" for label, count in sorted(entities.items())) or "none"
    return (f"{source} -> {target}\n  sentences: {len(records):,}  entities: {sum(entities.values()):,} ({per_type})"
            f"\n  duplicate spans dropped: {dropped:,}")
