"""The dataset formatter's work: convert corpus files of any supported format, corpus folders and Hugging Face
datasets into JSONL files, write JSONL as GLiNER or benchmark JSON, parse label maps, and summarise each conversion.
`conll_dataset_formatter.py` is the command line around it; the readers are in src/corpus_formats.py.
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

from .conll import ConversionResult, convert_document, sentences_from_rows
from .corpus_formats import check_label_map, read_corpus
from .data import read_jsonl, write_jsonl
from .json_formats import records_to_benchmark, records_to_gliner

HUB_PROBE_TIMEOUT_S = 5.0  # the hub answers in well under a second; without network we want to fail at once
_SKIPPED_SUFFIXES = {".jsonl", ".json", ".md"}  # in a folder of CoNLL files
_SKIPPED_PREFIXES = ("readme", "license")
_FOLDER_SUFFIXES = {"jsonl": {".jsonl"}, "slurp": {".jsonl"}, "gliner": {".json", ".jsonl"}, "benchmark": {".json"}}


class HubUnreachableError(ConnectionError):
    """The Hugging Face hub could not be reached (offline, firewalled or HF_*_OFFLINE set)."""


@dataclass
class ConvertedFile:
    """One converted source and where its JSONL goes."""

    source: str
    target: Path
    result: ConversionResult
    format: str = "conll"


def parse_label_map(value: str) -> dict[str, str]:
    """A label map given as a JSON object string or as the path of a JSON file, e.g. {"PER": "person"}.

    New names follow `corpus_formats.label_name_problem`: spaces are fine ("point of interest").
    """
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
    return check_label_map(label_map, origin)


def corpus_files(folder: Path, format: str = "conll") -> list[Path]:
    """The files a folder conversion reads, sorted: every regular, non-hidden file with a suffix of the format
    (.jsonl for jsonl and slurp, .json/.jsonl for gliner, .json for benchmark); for conll every file except
    .json/.jsonl/.md files, README* and LICENSE*."""
    files = [path for path in sorted(folder.iterdir()) if path.is_file() and not path.name.startswith(".")]
    if format == "conll":
        files = [path for path in files if path.suffix.lower() not in _SKIPPED_SUFFIXES
                 and not path.name.lower().startswith(_SKIPPED_PREFIXES)]
    else:
        files = [path for path in files if path.suffix.lower() in _FOLDER_SUFFIXES[format]]
    if not files:
        raise FileNotFoundError(f"{folder}: no {format} corpus files to convert")
    return files


def convert_paths(
    source: Path, target: Path, *, format: str = "conll", scheme: str = "auto",
    label_map: Mapping[str, str] | None = None, tag_column: int | None = None,
) -> list[ConvertedFile]:
    """Convert a file (target: a .jsonl path or a folder) or a folder of files (target: a folder; stem + .jsonl).

    Files are read with `corpus_formats.read_corpus`. Everything is converted before anything is written, so a
    malformed file leaves every output untouched.
    """
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"{target}: the output of a folder conversion must be a folder")
        pairs = [(path, target / f"{path.stem}.jsonl") for path in corpus_files(source, format)]
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
        ConvertedFile(str(path), out, read_corpus(path, format=format, scheme=scheme, label_map=label_map,
                                                  tag_column=tag_column), format)
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
    """One conversion's summary: sentences, tokens, entities per type, then what the reader had to repair.

    CoNLL input: scheme, repaired tags, dropped empty tokens, empty sentences, replaced whitespace tokens. Other
    formats: words split at entity boundaries (benchmark), duplicate spans dropped, replaced whitespace tokens.
    """
    result = item.result
    entities = Counter(span["label"] for record in result.records for span in record["token_spans"])
    per_type = ", ".join(f"{label} {count:,}" for label, count in sorted(entities.items())) or "none"
    whitespace = f"whitespace tokens replaced: {result.replaced_whitespace_tokens:,}"
    if item.format == "conll":
        repairs = (f"  scheme: {result.scheme}  repaired tags: {result.repaired_tags:,}  dropped empty tokens: "
                   f"{result.dropped_tokens:,}  empty sentences skipped: {result.empty_sentences:,}  {whitespace}")
    else:
        split = f"words split at entity boundaries: {result.split_words:,}  " if item.format == "benchmark" else ""
        repairs = f"  format: {item.format}  {split}duplicate spans dropped: {result.duplicate_spans:,}  {whitespace}"
    lines = [
        f"{item.source} -> {item.target}",
        f"  sentences: {len(result.records):,}  tokens: {sum(len(r['tokens']) for r in result.records):,}",
        f"  entities: {sum(entities.values()):,} ({per_type})",
        repairs,
    ]
    unused = sorted(set(label_map or {}) - set(result.source_labels))
    if unused:
        lines.append(f"  warning: label map keys not found in this file: {', '.join(unused)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- JSON writers


def write_json_items(path: str | Path, items: list[dict]) -> None:
    """Write items as JSONL when `path` ends in .jsonl, else as one JSON list (what GLiNER's scripts load)."""
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
    write_json_items(target, records_to_gliner(records))
    entities = sum(len(r["token_spans"]) for r in records)
    return f"{source} -> {target}\n  sentences: {len(records):,}  entities: {entities:,} (GLiNER format)"


def convert_to_benchmark(source: Path, target: Path) -> str:
    """Project JSONL -> benchmark JSON (`json_formats.records_to_benchmark`); returns a summary."""
    records = read_jsonl(source)
    write_json_items(target, records_to_benchmark(records))
    entities = sum(len(r["char_spans"]) for r in records)
    return f"{source} -> {target}\n  sentences: {len(records):,}  entities: {entities:,} (benchmark format)"
