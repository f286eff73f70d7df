"""Running a span model over JSONL records and scoring its spans against the gold with `metrics`.

Used by the trainer (validation and test), by `evaluate.py` and by threshold tuning, so every number the project
reports comes from the same code (the scoring is `scoring.score_predictions`). Examples longer than the window are
split into overlapping windows and merged back, so every gold entity is scored. Works in single- and multi-process
runs: each process scores its shard and the spans are gathered and de-duplicated by example index before scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from accelerate.utils import gather_object
from torch.utils.data import DataLoader

from .collator import InBatchDataCollator, IndexedRecords, gold_spans, model_inputs
from .decoding import merge_windows_by_example, resolve_overlaps, span_candidates
from .metrics import compute_metrics
from .model import SpanModel
from .scoring import score_predictions

Span = tuple[int, int, str, float]  # (start, end_exclusive, label, score) in annotation units
# (start, end_inclusive, type_index, score, level) in annotation units; see `decoding.span_candidates`
UnitCandidate = tuple[int, int, int, float, float]
DEFAULT_THRESHOLD_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05, 0.10, ..., 0.95


@dataclass
class InferenceResult:
    """Per-example predicted spans (dataset order) and the mean loss over the windows (None without labels)."""

    predictions: list[list[Span]]
    loss: float | None


@dataclass
class CandidateResult:
    """Per-example thresholded, window-merged but unresolved candidates; `labels` names their type indices."""

    labels: list[str]
    candidates: list[list[UnitCandidate]]
    loss: float | None


def make_eval_loader(records: list[dict], collator: InBatchDataCollator, batch_size: int, num_workers: int = 0):
    """A sequential loader over (index, record) items."""
    return DataLoader(
        IndexedRecords(records), batch_size=batch_size, shuffle=False, collate_fn=collator, num_workers=num_workers
    )


@torch.no_grad()
def collect_candidates(
    model: SpanModel,
    loader: DataLoader,
    *,
    num_examples: int,
    threshold: float | Sequence[float],
    best_type_only: bool,
    accelerator=None,
    compute_loss: bool = True,
    window_batch_size: int | None = None,
) -> CandidateResult:
    """Run the model over `loader` (a fixed label set) and keep every span passing `threshold`, unresolved.

    Type embeddings are computed once. A batch's windows go through the model `window_batch_size` at a time
    (all at once when None). With `best_type_only` only the best type per span is kept (enough for one threshold);
    without it the result serves a threshold search above `threshold` (see `select_spans`).
    """
    was_training = model.training
    model.eval()
    type_embeddings, labels = None, None
    local: list[tuple[int, list[UnitCandidate]]] = []
    loss_sum, loss_count = 0.0, 0
    for batch in loader:
        if type_embeddings is None or batch["labels"] != labels:
            labels = batch["labels"]
            type_embeddings = model.encode_types(batch["type_input_ids"], batch["type_attention_mask"])
        inputs = model_inputs(batch, with_labels=compute_loss)
        inputs.pop("type_input_ids", None)
        inputs.pop("type_attention_mask", None)
        num_rows = len(batch["alignments"])
        step = window_batch_size or num_rows
        row_candidates: list[list[tuple]] = []
        for begin in range(0, num_rows, step):
            chunk = {k: v[begin : begin + step] for k, v in inputs.items()}
            out = model(**chunk, type_embeddings=type_embeddings)
            if out.loss is not None:
                rows = len(chunk["input_ids"])
                loss_sum += float(out.loss) * rows
                loss_count += rows
            row_candidates += span_candidates(
                out.start_logits, out.end_logits, out.span_logits, out.span_mask, threshold=threshold,
                type_mask=chunk["type_mask"], best_type_only=best_type_only,
            )
        alignments = batch["alignments"]
        units = [a.candidates_to_units(c) for a, c in zip(alignments, row_candidates, strict=True)]
        bounds = [a.covered_units() for a in alignments]
        merged = merge_windows_by_example(batch["window_example"], units, bounds, len(batch["indices"]))
        local += list(zip(batch["indices"], merged, strict=True))
    if accelerator is not None and accelerator.num_processes > 1:
        # A plain gather: the padding Accelerate adds to the last batch is removed by example index below, so
        # nothing depends on gather_for_metrics' trimming (which follows whichever loader is active).
        local = gather_object(local)
        totals = accelerator.reduce(torch.tensor([loss_sum, loss_count], device=accelerator.device), "sum")
        loss_sum, loss_count = float(totals[0]), int(totals[1])
    by_index = dict(local)  # gathered padding repeats examples; the index keeps each exactly once
    missing = [i for i in range(num_examples) if i not in by_index]
    if missing:
        raise RuntimeError(f"inference produced no output for {len(missing)} examples (first: {missing[:5]})")
    model.train(was_training)
    candidates = [by_index[i] for i in range(num_examples)]
    return CandidateResult(list(labels or []), candidates, loss_sum / loss_count if loss_count else None)


def type_thresholds(
    labels: Sequence[str], threshold: float, per_type_thresholds: dict[str, float] | None = None
) -> list[float]:
    """One threshold per label (label order): its per-type value when given, else the global one."""
    per_type = per_type_thresholds or {}
    return [float(per_type.get(label, threshold)) for label in labels]


def select_spans(
    result: CandidateResult, *, threshold: float | Sequence[float], flat_ner: bool, multi_label: bool = False
) -> list[list[Span]]:
    """Decode collected candidates at `threshold` (one value, or one per label): filter by level, resolve overlaps.

    Gives exactly what decoding the logits at that threshold would, for any threshold at or above the one the
    candidates were collected at.
    """
    if isinstance(threshold, int | float):
        threshold = [float(threshold)] * len(result.labels)
    if len(threshold) != len(result.labels):
        raise ValueError(f"threshold has {len(threshold)} values for {len(result.labels)} labels")
    predictions = []
    for candidates in result.candidates:
        passing = [c[:4] for c in candidates if c[4] > threshold[c[2]]]
        kept = resolve_overlaps(passing, flat_ner=flat_ner, multi_label=multi_label)
        predictions.append([(start, end + 1, result.labels[c], score) for start, end, c, score in kept])
    return predictions


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
    window_batch_size: int | None = None,
    multi_label: bool = False,
) -> InferenceResult:
    """Predict spans for every example of `loader` (a fixed label set, so type embeddings are computed once)."""
    result = collect_candidates(
        model, loader, num_examples=num_examples, threshold=threshold, best_type_only=not multi_label,
        accelerator=accelerator, compute_loss=compute_loss, window_batch_size=window_batch_size,
    )
    spans = select_spans(result, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label)
    return InferenceResult(spans, result.loss)


def evaluate_records(
    model: SpanModel,
    records: list[dict],
    collator: InBatchDataCollator,
    *,
    batch_size: int,
    threshold: float | list[float],
    flat_ner: bool,
    accelerator=None,
    multi_label: bool = False,
) -> tuple[dict, InferenceResult]:
    """Predict and score one split; returns (metrics with 'loss', the raw inference result).

    Long examples are windowed (`collator.with_windows()`), `batch_size` windows per forward pass.
    """
    loader = make_eval_loader(records, collator.with_windows(), batch_size)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    result = run_inference(
        model, loader, num_examples=len(records), threshold=threshold, flat_ner=flat_ner, accelerator=accelerator,
        window_batch_size=batch_size, multi_label=multi_label,
    )
    metrics = score_predictions(records, result.predictions, annotation_format=collator.annotation_format)
    metrics["loss"] = result.loss
    return metrics, result


def collect_record_candidates(
    model: SpanModel,
    records: list[dict],
    collator: InBatchDataCollator,
    *,
    batch_size: int,
    min_threshold: float,
    accelerator=None,
) -> CandidateResult:
    """Run the model once over `records` (windowed) and keep all candidates above `min_threshold`, for a search."""
    loader = make_eval_loader(records, collator.with_windows(), batch_size)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    return collect_candidates(
        model, loader, num_examples=len(records), threshold=min_threshold, best_type_only=False,
        accelerator=accelerator, compute_loss=False, window_batch_size=batch_size,
    )


@dataclass
class ThresholdSearch:
    """The thresholds that maximise micro F1 on a split, and the F1 curve that chose them."""

    threshold: float
    per_type_thresholds: dict[str, float] | None
    f1: float
    curve: list[dict]  # per global threshold: threshold, precision, recall, f1, num_predicted_entities
    per_type_curves: dict[str, list[dict]] | None = None  # per label: threshold, f1 (others at their best)


def _micro(records: list[dict], predictions: list[list[Span]], annotation_format: str) -> dict:
    gold = [gold_spans(r, annotation_format) for r in records]
    return compute_metrics(gold, [[(s, e, label) for s, e, label, _ in spans] for spans in predictions])


def search_thresholds(
    records: list[dict],
    result: CandidateResult,
    *,
    annotation_format: str,
    flat_ner: bool,
    grid: Sequence[float] = DEFAULT_THRESHOLD_GRID,
    per_type: bool = False,
) -> ThresholdSearch:
    """Pick the global threshold (then, with `per_type`, each type's) that maximises micro F1 on `records`.

    `result` must come from `collect_record_candidates` at a threshold below every grid value. Each threshold is
    decoded properly (filter, then overlap resolution), since flat resolution depends on which spans survive.
    Ties keep the global threshold closest to 0.5. Per-type values are found by one pass of coordinate ascent
    starting from the global best, in label order; a type keeps its current value unless another scores higher.
    """
    grid = sorted(grid)
    curve = []
    for value in grid:
        metrics = _micro(records, select_spans(result, threshold=value, flat_ner=flat_ner), annotation_format)
        curve.append({
            "threshold": value, "precision": metrics["precision"], "recall": metrics["recall"],
            "f1": metrics["f1"], "num_predicted_entities": metrics["num_predicted_entities"],
        })
    # Ties go to the value closest to 0.5 (then the lower), so a flat curve does not move the threshold.
    best = max(curve, key=lambda point: (point["f1"], -abs(point["threshold"] - 0.5), -point["threshold"]))
    search = ThresholdSearch(best["threshold"], None, best["f1"], curve)
    if not per_type:
        return search
    chosen = {label: best["threshold"] for label in result.labels}
    best_f1, per_type_curves = best["f1"], {}
    for label in result.labels:
        points = []
        for value in grid:
            trial = {**chosen, label: value}
            thresholds = [trial[name] for name in result.labels]
            f1 = _micro(records, select_spans(result, threshold=thresholds, flat_ner=flat_ner), annotation_format)["f1"]
            points.append({"threshold": value, "f1": f1})
            if f1 > best_f1:
                best_f1, chosen[label] = f1, value
        per_type_curves[label] = points
    search.per_type_thresholds, search.f1, search.per_type_curves = chosen, best_f1, per_type_curves
    return search


def evaluate_sets(
    model: SpanModel,
    sets: Sequence[tuple[str, list[dict], InBatchDataCollator]],
    *,
    annotation_format: str,
    batch_size: int,
    threshold: float | list[float],
    flat_ner: bool,
    accelerator=None,
) -> dict:
    """Score several corpora, each with its own collator (label set): pooled metrics plus one entry per corpus.

    The top level holds the metrics of all sentences pooled (each predicted over its own corpus's types),
    `mean_corpus_f1` the unweighted mean of the corpora's micro F1, and `corpora` each corpus's full metrics.
    """
    per_corpus, all_records, all_predictions = {}, [], []
    loss_sum, loss_count = 0.0, 0
    for name, records, collator in sets:
        metrics, result = evaluate_records(
            model, records, collator, batch_size=batch_size, threshold=threshold, flat_ner=flat_ner,
            accelerator=accelerator,
        )
        per_corpus[name] = metrics
        all_records += records
        all_predictions += result.predictions
        if result.loss is not None:
            loss_sum, loss_count = loss_sum + result.loss * len(records), loss_count + len(records)
    pooled = score_predictions(all_records, all_predictions, annotation_format=annotation_format)
    pooled["loss"] = loss_sum / loss_count if loss_count else None
    pooled["mean_corpus_f1"] = sum(m["f1"] for m in per_corpus.values()) / len(per_corpus)
    pooled["corpora"] = per_corpus
    return pooled


def search_threshold_over_sets(
    sets: Sequence[tuple[list[dict], CandidateResult]],
    *,
    annotation_format: str,
    flat_ner: bool,
    grid: Sequence[float] = DEFAULT_THRESHOLD_GRID,
) -> ThresholdSearch:
    """The global threshold that maximises the mean micro F1 over several corpora (each with its own candidates).

    With one corpus this is `search_thresholds`' global choice. Ties keep the value closest to 0.5, then the lower.
    Each point of the curve holds the mean F1 and, under `corpora`, every corpus's F1 in order.
    """
    curve = []
    for value in sorted(grid):
        scores = [_micro(records, select_spans(result, threshold=value, flat_ner=flat_ner), annotation_format)["f1"]
                  for records, result in sets]
        curve.append({"threshold": value, "f1": sum(scores) / len(scores), "corpora": scores})
    best = max(curve, key=lambda point: (point["f1"], -abs(point["threshold"] - 0.5), -point["threshold"]))
    return ThresholdSearch(best["threshold"], None, best["f1"], curve)
