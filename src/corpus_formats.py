"""One entry point, `read_corpus`, for every supported corpus file format, returning normalised project records
with label renames applied; also the rule for label names. Pure Python (used by the formatter, suites, mixtures).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from pathlib import Path

from .conll import SCHEMES, ConversionResult, convert_conll_file
from .data import read_jsonl
from .json_formats import NO_SCHEME, benchmark_to_result, gliner_to_result, read_json_items, read_slurp

CORPUS_FORMATS = ("jsonl", "conll", "gliner", "benchmark", "slurp")
DEFAULT_FORMAT = "jsonl"  # the project's own format; the formatter's --input defaults to conll instead


def label_name_problem(name: object) -> str | None:
    """Why `name` cannot be an entity type name, or None if it can.

    Types are read as text, so any non-empty string is fine ("point of interest", "creative-work") except one with
    whitespace at either end or with control characters (tabs, newlines, ...).
    """
    if not isinstance(name, str) or not name:
        return "expected a non-empty string"
    if name != name.strip():
        return "it starts or ends with whitespace"
    if any(unicodedata.category(char) == "Cc" for char in name):
        return "it contains a control character"
    return None


def check_label_map(label_map: object, origin: str) -> dict[str, str]:
    """A validated copy of a label map {old: new}; ValueError "{origin}: ..." names the bad entry."""
    if not isinstance(label_map, Mapping):
        raise ValueError(f"{origin}: the label map must be a JSON object mapping old label to new label")
    for old, new in label_map.items():
        problem = label_name_problem(new)
        if not isinstance(old, str) or problem:
            raise ValueError(f"{origin}: label {old!r} maps to {new!r}: {problem or 'old labels are strings'}")
    return dict(label_map)


def apply_label_map(result: ConversionResult, label_map: Mapping[str, str] | None) -> ConversionResult:
    """Rename the labels of every record in place (spans and any per-record `labels` list) and record what changed.

    `source_labels` becomes the sorted labels before renaming. Two spans that become identical (two old labels
    renamed to the same new one on the same words) keep only the first; `duplicate_spans` counts the others.
    """
    result.source_labels = sorted({span["label"] for record in result.records for span in record["token_spans"]})
    if not label_map:
        return result
    for record in result.records:
        kept, seen = [], set()
        for k, span in enumerate(record["token_spans"]):
            key = (span["start"], span["end"], label_map.get(span["label"], span["label"]))
            if key not in seen:
                seen.add(key)
                kept.append(k)
        result.duplicate_spans += len(record["token_spans"]) - len(kept)
        for field in ("token_spans", "char_spans"):
            record[field] = [{**record[field][k], "label": label_map.get(record[field][k]["label"],
                                                                         record[field][k]["label"])} for k in kept]
        if "labels" in record:
            record["labels"] = list(dict.fromkeys(label_map.get(label, label) for label in record["labels"]))
    return result


def read_corpus(
    path: str | Path,
    *,
    format: str,
    label_map: Mapping[str, str] | None = None,
    scheme: str = "auto",
    tag_column: int | None = None,
) -> ConversionResult:
    """Read one corpus file of `format` (one of CORPUS_FORMATS) into validated, normalised records.

    Records have the fields `src.data.read_jsonl` returns (id, tokens, text, token_spans, char_spans; ids unique
    strings), labels renamed by `label_map` ({old: new}; others keep their name), and `source_labels` the labels
    before renaming. `scheme` and `tag_column` (1-based column of the tag; default the last) apply to "conll" only.
    Formats: "jsonl" (project records), "conll" (CoNLL/BIO, see src/conll.py), "gliner" (GLiNER's training JSON or
    JSONL), "benchmark" (the zero-shot benchmark JSON) and "slurp" (SLURP JSONL); see src/json_formats.py.
    Bad input raises a ValueError naming the file and the line or item; a missing file FileNotFoundError.
    """
    if format not in CORPUS_FORMATS:
        raise ValueError(f"{path}: unknown format {format!r}; expected one of {', '.join(CORPUS_FORMATS)}")
    if format != "conll" and (scheme != "auto" or tag_column is not None):
        raise ValueError(f"{path}: scheme and tag_column apply to the conll format only, not {format}")
    if scheme != "auto" and scheme not in SCHEMES:
        raise ValueError(f"{path}: unknown scheme {scheme!r}; expected auto or one of {', '.join(SCHEMES)}")
    label_map = check_label_map(label_map, f"{path}: label_map") if label_map is not None else None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {format} file")
    if format == "conll":
        return convert_conll_file(path, scheme=scheme, label_map=label_map, tag_column=tag_column)
    if format == "jsonl":
        result = ConversionResult(records=read_jsonl(path), scheme=NO_SCHEME, repaired_tags=0)
    elif format == "gliner":
        result = gliner_to_result(read_json_items(path), source=str(path))
    elif format == "benchmark":
        result = benchmark_to_result(read_json_items(path), source=str(path))
    else:
        result = read_slurp(path)
    return apply_label_map(result, label_map)
