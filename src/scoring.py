"""Scoring predicted spans of JSONL records against their gold with `metrics`, in annotation units.

Model-free (no torch), so every tool that predicts spans (the trainer, evaluate.py, the GLiNER script, suites)
scores them with this one function.
"""

from __future__ import annotations

from .data import char_span_to_token_span
from .metrics import compute_metrics

Span = tuple[int, int, str, float]  # (start, end_exclusive, label, score) in annotation units
_SPAN_FIELD = {"tokens": "token_spans", "text": "char_spans"}


def record_gold_spans(record: dict, annotation_format: str) -> list[tuple[int, int, str]]:
    """The record's gold spans in units of `annotation_format` ("tokens" or "text"): (start, end_exclusive, label)."""
    return [(s["start"], s["end"], s["label"]) for s in record.get(_SPAN_FIELD[annotation_format], [])]


def score_predictions(records: list[dict], predictions: list[list[Span]], *, annotation_format: str) -> dict:
    """Entity metrics in annotation units, plus token-level accuracy (text-format spans mapped onto tokens)."""
    gold = [record_gold_spans(r, annotation_format) for r in records]
    pred = [[(s, e, label) for s, e, label, _ in spans] for spans in predictions]
    metrics = compute_metrics(gold, pred)
    if annotation_format == "tokens":
        gold_tok, pred_tok = gold, pred
    else:
        # Accuracy is defined on tokens; spans that do not fall on token boundaries cannot be tagged and are
        # left out of it (they still count as errors in precision and recall above).
        gold_tok = [[(*_token_span(r, s, e), label) for s, e, label in g] for r, g in zip(records, gold, strict=True)]
        pred_tok = []
        for r, spans in zip(records, pred, strict=True):
            mapped = [(char_span_to_token_span(r, s, e), label) for s, e, label in spans]
            pred_tok.append([(*m, label) for m, label in mapped if m is not None])
    accuracy = compute_metrics(gold_tok, pred_tok, num_tokens=[len(r["tokens"]) for r in records])["accuracy"]
    metrics["accuracy"] = accuracy
    return metrics


def _token_span(record: dict, start: int, end: int) -> tuple[int, int]:
    span = char_span_to_token_span(record, start, end)
    if span is None:  # validated data always maps; keep the failure loud rather than drop a gold entity
        raise ValueError(f"record {record.get('id')}: gold char span {start}-{end} is not on token boundaries")
    return span
