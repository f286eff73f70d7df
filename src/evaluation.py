"""Running a span model over JSONL records and scoring its spans against the gold with `metrics`.

Used by the trainer (validation and test), by `evaluate.py` and by threshold tuning, so every number the project
reports comes from the same code. Works in single- and multi-process runs: each process scores its shard and the
spans are gathered and de-duplicated by example index before scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from .collator import InBatchDataCollator, IndexedRecords, gold_spans, model_inputs
from .data import char_span_to_token_span
from .decoding import decode_batch
from .metrics import compute_metrics
from .model import SpanModel

Span = tuple[int, int, str, float]  # (start, end_exclusive, label, score) in annotation units


@dataclass
class InferenceResult:
    """Per-example predicted spans (dataset order) and the mean loss over the examples (None without labels)."""

    predictions: list[list[Span]]
    loss: float | None


def make_eval_loader(records: list[dict], collator: InBatchDataCollator, batch_size: int, num_workers: int = 0):
    """A sequential loader over (index, record) items."""
    return DataLoader(
        IndexedRecords(records), batch_size=batch_size, shuffle=False, collate_fn=collator, num_workers=num_workers
    )


@torch.no_grad()
def run_inference(
    model: SpanModel,
    loader: DataLoader,
    *,
    num_examples: int,
    threshold: float | list[float],
    flat_ner: bool,
    accelerator=None,
    compute_loss: bool = True,
) -> InferenceResult:
    """Predict spans for every example of `loader` (a fixed label set, so type embeddings are computed once)."""
    was_training = model.training
    model.eval()
    type_embeddings, labels = None, None
    local: list[tuple[int, list[Span]]] = []
    loss_sum, loss_count = 0.0, 0
    for batch in loader:
        if type_embeddings is None or batch["labels"] != labels:
            labels = batch["labels"]
            type_embeddings = model.encode_types(batch["type_input_ids"], batch["type_attention_mask"])
        inputs = model_inputs(batch, with_labels=compute_loss)
        inputs.pop("type_input_ids", None)
        inputs.pop("type_attention_mask", None)
        out = model(**inputs, type_embeddings=type_embeddings)
        if out.loss is not None:
            loss_sum += float(out.loss) * len(batch["indices"])
            loss_count += len(batch["indices"])
        decoded = decode_batch(
            out.start_logits,
            out.end_logits,
            out.span_logits,
            out.span_mask,
            threshold=threshold,
            flat_ner=flat_ner,
            type_mask=batch["type_mask"],
        )
        for index, alignment, spans in zip(batch["indices"], batch["alignments"], decoded, strict=True):
            units = [(*alignment.to_units(i, j), labels[c], score) for i, j, c, score in spans]
            local.append((index, units))
    if accelerator is not None and accelerator.num_processes > 1:
        local = accelerator.gather_for_metrics(local, use_gather_object=True)
        totals = accelerator.reduce(torch.tensor([loss_sum, loss_count], device=accelerator.device), "sum")
        loss_sum, loss_count = float(totals[0]), int(totals[1])
    by_index = dict(local)  # gathered padding repeats examples; the index keeps each exactly once
    missing = [i for i in range(num_examples) if i not in by_index]
    if missing:
        raise RuntimeError(f"inference produced no output for {len(missing)} examples (first: {missing[:5]})")
    model.train(was_training)
    return InferenceResult([by_index[i] for i in range(num_examples)], loss_sum / loss_count if loss_count else None)


def score_predictions(records: list[dict], predictions: list[list[Span]], *, annotation_format: str) -> dict:
    """Entity metrics in annotation units, plus token-level accuracy (text-format spans mapped onto tokens)."""
    gold = [gold_spans(r, annotation_format) for r in records]
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


def evaluate_records(
    model: SpanModel,
    records: list[dict],
    collator: InBatchDataCollator,
    *,
    batch_size: int,
    threshold: float | list[float],
    flat_ner: bool,
    accelerator=None,
) -> tuple[dict, InferenceResult]:
    """Predict and score one split; returns (metrics with 'loss', the raw inference result)."""
    loader = make_eval_loader(records, collator, batch_size)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    result = run_inference(
        model, loader, num_examples=len(records), threshold=threshold, flat_ner=flat_ner, accelerator=accelerator
    )
    metrics = score_predictions(records, result.predictions, annotation_format=collator.annotation_format)
    metrics["loss"] = result.loss
    return metrics, result
