"""PROVISIONAL stand-in until the formats branch lands: read a corpus file of a supported format."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .conll import ConversionResult, convert_conll_file
from .data import read_jsonl

CORPUS_FORMATS = ("jsonl", "conll", "gliner", "benchmark", "slurp")


def read_corpus(path, *, format: str, label_map: Mapping[str, str] | None = None, scheme: str = "auto",
                tag_column: int | None = None) -> ConversionResult:
    if format == "conll":
        return convert_conll_file(Path(path), scheme=scheme, label_map=label_map)
    if format == "jsonl":
        records = read_jsonl(path)
        label_map = label_map or {}
        for r in records:
            for key in ("token_spans", "char_spans"):
                for s in r[key]:
                    s["label"] = label_map.get(s["label"], s["label"])
        return ConversionResult(records=records, scheme="none", repaired_tags=0)
    raise ValueError(f"format {format} not yet supported")
