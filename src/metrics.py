"""Entity-level scoring of predicted spans against gold spans: micro/macro/per-type P/R/F1 and token accuracy.

Pure python, matching seqeval (strict mode, IOB2) on flat spans. Spans are (start, end_exclusive, label) in tokens.
"""

from collections import Counter
from collections.abc import Sequence

# (start, end_exclusive, label)
LabeledSpan = tuple[int, int, str]


def _divide(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    # Same formula (from the already-divided precision and recall) as seqeval, so the floats agree exactly.
    return _divide(2 * precision * recall, precision + recall)


def _scores(true_positives: int, num_predicted: int, num_gold: int) -> dict[str, float]:
    precision = _divide(true_positives, num_predicted)
    recall = _divide(true_positives, num_gold)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def spans_to_iob2(spans: Sequence[LabeledSpan], num_tokens: int) -> list[str]:
    """Write spans as an IOB2 tag sequence of length ``num_tokens`` (``B-X``, ``I-X``, ``O``).

    Overlapping spans (possible with nested gold or nested decoding) cannot all be written. Spans are written in
    order of start ascending, then length descending, and a span that shares any token with an already written one
    is skipped whole: the earlier span wins, at equal starts the longer (outer) span wins, then the smaller label.

    Raises:
        ValueError: a span is empty or lies outside ``[0, num_tokens)``.
    """
    tags = ["O"] * num_tokens
    for start, end, label in sorted(spans, key=lambda s: (s[0], -(s[1] - s[0]), s[2])):
        if not 0 <= start < end <= num_tokens:
            raise ValueError(f"span {(start, end, label)} is empty or outside a sequence of {num_tokens} tokens")
        if any(tag != "O" for tag in tags[start:end]):
            continue
        tags[start] = f"B-{label}"
        tags[start + 1 : end] = [f"I-{label}"] * (end - start - 1)
    return tags


def _token_accuracy(
    gold: Sequence[Sequence[LabeledSpan]], predicted: Sequence[Sequence[LabeledSpan]], num_tokens: Sequence[int]
) -> float:
    if len(num_tokens) != len(gold):
        raise ValueError(f"num_tokens has {len(num_tokens)} entries for {len(gold)} examples")
    correct = total = 0
    for gold_spans, predicted_spans, length in zip(gold, predicted, num_tokens, strict=True):
        gold_tags = spans_to_iob2(gold_spans, length)
        predicted_tags = spans_to_iob2(predicted_spans, length)
        correct += sum(g == p for g, p in zip(gold_tags, predicted_tags, strict=True))
        total += length
    return _divide(correct, total)


def compute_metrics(
    gold: Sequence[Sequence[LabeledSpan]],
    predicted: Sequence[Sequence[LabeledSpan]],
    *,
    num_tokens: Sequence[int] | None = None,
) -> dict:
    """Score predicted spans against gold spans by exact (start, end_exclusive, label) match per example.

    Duplicate identical triples within an example count once, in predictions and in gold (as in seqeval, whose
    entities are sets). Any division by zero gives 0.0.

    Returns:
        ``precision``, ``recall``, ``f1``: micro-averaged over all entities. ``macro_precision``, ``macro_recall``,
        ``macro_f1``: unweighted means of the per-type scores over every type that appears in gold or in the
        predictions (the same set as seqeval's ``classification_report`` "macro avg"; 0.0 when there is none).
        ``per_type``: label -> ``precision``, ``recall``, ``f1``, ``support`` (gold count), ``num_predicted``,
        ``true_positives``, with labels sorted. ``num_examples``, ``num_gold_entities``, ``num_predicted_entities``,
        ``true_positives``. ``accuracy`` only when ``num_tokens`` (tokens per example) is given: token-level tag
        accuracy of the IOB2 sequences from ``spans_to_iob2``, equal to seqeval's ``accuracy_score``.

    Raises:
        ValueError: gold and predicted (or num_tokens) have different numbers of examples, or, when num_tokens is
            given, a span is empty or does not fit its example.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"gold has {len(gold)} examples but predicted has {len(predicted)}")
    gold_counts: Counter[str] = Counter()
    predicted_counts: Counter[str] = Counter()
    true_positive_counts: Counter[str] = Counter()
    for gold_spans, predicted_spans in zip(gold, predicted, strict=True):
        gold_set = {tuple(span) for span in gold_spans}
        predicted_set = {tuple(span) for span in predicted_spans}
        gold_counts.update(label for _, _, label in gold_set)
        predicted_counts.update(label for _, _, label in predicted_set)
        true_positive_counts.update(label for _, _, label in gold_set & predicted_set)

    per_type = {}
    for label in sorted(gold_counts.keys() | predicted_counts.keys()):
        per_type[label] = {
            **_scores(true_positive_counts[label], predicted_counts[label], gold_counts[label]),
            "support": gold_counts[label],
            "num_predicted": predicted_counts[label],
            "true_positives": true_positive_counts[label],
        }
    num_gold, num_predicted = gold_counts.total(), predicted_counts.total()
    true_positives = true_positive_counts.total()

    metrics: dict = _scores(true_positives, num_predicted, num_gold)
    for key in ("precision", "recall", "f1"):
        metrics[f"macro_{key}"] = _divide(sum(scores[key] for scores in per_type.values()), len(per_type))
    metrics.update(
        per_type=per_type,
        num_examples=len(gold),
        num_gold_entities=num_gold,
        num_predicted_entities=num_predicted,
        true_positives=true_positives,
    )
    if num_tokens is not None:
        metrics["accuracy"] = _token_accuracy(gold, predicted, num_tokens)
    return metrics


def format_metrics(metrics: dict) -> str:
    """Format ``compute_metrics`` output as a short multi-line summary with a per-type table, for logs."""
    summary = (
        f"micro P {metrics['precision']:.4f} R {metrics['recall']:.4f} F1 {metrics['f1']:.4f}"
        f" | macro F1 {metrics['macro_f1']:.4f}"
    )
    if "accuracy" in metrics:
        summary += f" | accuracy {metrics['accuracy']:.4f}"
    summary += (
        f" | {metrics['num_examples']} examples, {metrics['num_gold_entities']} gold,"
        f" {metrics['num_predicted_entities']} predicted, {metrics['true_positives']} correct"
    )
    per_type = metrics["per_type"]
    width = max([len("type"), *map(len, per_type)])
    lines = [summary, f"{'type':<{width}}  {'P':>6}  {'R':>6}  {'F1':>6}  {'gold':>6}  {'pred':>6}"]
    for label, scores in per_type.items():
        lines.append(
            f"{label:<{width}}  {scores['precision']:6.4f}  {scores['recall']:6.4f}  {scores['f1']:6.4f}"
            f"  {scores['support']:>6}  {scores['num_predicted']:>6}"
        )
    return "\n".join(lines)


def format_corpus_metrics(metrics: dict) -> str:
    """Pooled summary, then one line per corpus (micro P/R/F1, gold, predicted), for a mixture's evaluation."""
    corpora = metrics["corpora"]
    width = max([len("corpus"), *map(len, corpora)])
    lines = [
        f"pooled micro P {metrics['precision']:.4f} R {metrics['recall']:.4f} F1 {metrics['f1']:.4f} | mean corpus "
        f"F1 {metrics['mean_corpus_f1']:.4f} | {metrics['num_examples']} examples, {metrics['num_gold_entities']} "
        f"gold, {metrics['num_predicted_entities']} predicted, {metrics['true_positives']} correct",
        f"{'corpus':<{width}}  {'P':>6}  {'R':>6}  {'F1':>6}  {'gold':>6}  {'pred':>6}",
    ]
    for name, scores in corpora.items():
        lines.append(
            f"{name:<{width}}  {scores['precision']:6.4f}  {scores['recall']:6.4f}  {scores['f1']:6.4f}"
            f"  {scores['num_gold_entities']:>6}  {scores['num_predicted_entities']:>6}"
        )
    return "\n".join(lines)
