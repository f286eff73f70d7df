"""Entity-level metrics: hand-computed scores, zero divisions, IOB2 conversion, and a seeded cross-check on seqeval."""

import random

import pytest
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from src.metrics import compute_metrics, format_metrics, spans_to_iob2

# Gold: PER x2, LOC x1, ORG x1. Predicted (after removing the duplicate): PER x2, ORG x2, MISC x1.
# Correct: (0, 2, PER) and (5, 7, ORG) in example 0.
GOLD = [[(0, 2, "PER"), (3, 4, "LOC"), (5, 7, "ORG")], [(1, 3, "PER")]]
PREDICTED = [[(0, 2, "PER"), (3, 4, "ORG"), (5, 7, "ORG"), (5, 7, "ORG")], [(1, 2, "PER"), (4, 5, "MISC")]]


def test_hand_computed_micro_macro_and_per_type():
    metrics = compute_metrics(GOLD, PREDICTED)
    assert metrics["precision"] == pytest.approx(2 / 5)
    assert metrics["recall"] == pytest.approx(2 / 4)
    assert metrics["f1"] == pytest.approx(4 / 9)  # 2 * 0.4 * 0.5 / 0.9
    # Macro over LOC, MISC, ORG, PER (MISC appears only in predictions but still counts).
    assert metrics["macro_precision"] == pytest.approx((0 + 0 + 1 / 2 + 1 / 2) / 4)
    assert metrics["macro_recall"] == pytest.approx((0 + 0 + 1 + 1 / 2) / 4)
    assert metrics["macro_f1"] == pytest.approx((0 + 0 + 2 / 3 + 1 / 2) / 4)
    assert list(metrics["per_type"]) == ["LOC", "MISC", "ORG", "PER"]
    assert metrics["per_type"]["ORG"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1, "num_predicted": 2, "true_positives": 1}
    )
    assert metrics["per_type"]["PER"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "num_predicted": 2, "true_positives": 1}
    )
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "true_positives": 0}
    assert metrics["per_type"]["LOC"] == {**zero, "support": 1, "num_predicted": 0}
    assert metrics["per_type"]["MISC"] == {**zero, "support": 0, "num_predicted": 1}
    assert (metrics["num_examples"], metrics["num_gold_entities"]) == (2, 4)
    assert (metrics["num_predicted_entities"], metrics["true_positives"]) == (5, 2)
    assert "accuracy" not in metrics


def test_hand_computed_accuracy():
    # Example 0 (8 tokens) differs at token 3 (B-LOC vs B-ORG); example 1 (6 tokens) at tokens 2 and 4.
    metrics = compute_metrics(GOLD, PREDICTED, num_tokens=[8, 6])
    assert metrics["accuracy"] == pytest.approx(11 / 14)


def test_duplicate_predictions_count_once_and_spans_may_be_lists():
    metrics = compute_metrics([[(0, 1, "A")]], [[[0, 1, "A"], (0, 1, "A")]])
    assert (metrics["precision"], metrics["recall"], metrics["num_predicted_entities"]) == (1.0, 1.0, 1)


@pytest.mark.parametrize(
    ("gold", "predicted", "support", "num_predicted"),
    [
        ([], [], None, None),
        ([[], []], [[], []], None, None),
        ([[(0, 1, "A")]], [[]], 1, 0),
        ([[]], [[(0, 1, "A")]], 0, 1),
    ],
)
def test_zero_divisions_give_zero(gold, predicted, support, num_predicted):
    metrics = compute_metrics(gold, predicted)
    for key in ("precision", "recall", "f1", "macro_precision", "macro_recall", "macro_f1"):
        assert metrics[key] == 0.0, key
    if support is None:
        assert metrics["per_type"] == {}
    else:
        scores = metrics["per_type"]["A"]
        assert (scores["f1"], scores["support"], scores["num_predicted"]) == (0.0, support, num_predicted)


def test_accuracy_zero_tokens_gives_zero():
    assert compute_metrics([], [], num_tokens=[])["accuracy"] == 0.0
    assert compute_metrics([[], []], [[], []], num_tokens=[0, 0])["accuracy"] == 0.0
    assert compute_metrics([[]], [[]], num_tokens=[3])["accuracy"] == 1.0


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="examples"):
        compute_metrics([[]], [[], []])
    with pytest.raises(ValueError, match="num_tokens"):
        compute_metrics([[]], [[]], num_tokens=[3, 4])


def test_spans_to_iob2():
    assert spans_to_iob2([(3, 5, "LOC"), (0, 1, "PER")], 6) == ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]
    assert spans_to_iob2([], 2) == ["O", "O"]


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([(1, 2, "B"), (0, 3, "A")], ["B-A", "I-A", "I-A", "O"]),  # outer span wins over a nested one
        ([(1, 4, "B"), (0, 2, "A")], ["B-A", "I-A", "O", "O"]),  # earlier span wins; the later is skipped whole
        ([(0, 2, "B"), (0, 3, "A")], ["B-A", "I-A", "I-A", "O"]),  # same start: longer wins
        ([(0, 2, "B"), (0, 2, "A")], ["B-A", "I-A", "O", "O"]),  # same boundaries: smaller label wins
    ],
)
def test_spans_to_iob2_overlap_rule(spans, expected):
    assert spans_to_iob2(spans, 4) == expected


@pytest.mark.parametrize("span", [(2, 2, "A"), (3, 2, "A"), (-1, 1, "A"), (2, 5, "A")])
def test_spans_to_iob2_rejects_empty_or_out_of_range_spans(span):
    with pytest.raises(ValueError, match="outside"):
        spans_to_iob2([span], 4)


def test_format_metrics():
    text = format_metrics(compute_metrics(GOLD, PREDICTED, num_tokens=[8, 6]))
    lines = text.splitlines()
    assert lines[0] == (
        "micro P 0.4000 R 0.5000 F1 0.4444 | macro F1 0.2917 | accuracy 0.7857"
        " | 2 examples, 4 gold, 5 predicted, 2 correct"
    )
    assert lines[1].split() == ["type", "P", "R", "F1", "gold", "pred"]
    assert [line.split() for line in lines[2:]] == [
        ["LOC", "0.0000", "0.0000", "0.0000", "1", "0"],
        ["MISC", "0.0000", "0.0000", "0.0000", "0", "1"],
        ["ORG", "0.5000", "1.0000", "0.6667", "1", "2"],
        ["PER", "0.5000", "0.5000", "0.5000", "2", "2"],
    ]


def _random_flat_spans(rng: random.Random, num_tokens: int, labels: list[str]) -> list[tuple[int, int, str]]:
    spans, position = [], 0
    while position < num_tokens:
        if rng.random() < 0.35:
            end = min(num_tokens, position + rng.randint(1, 3))
            spans.append((position, end, rng.choice(labels)))
            position = end
        else:
            position += 1
    return spans


def _perturbed_prediction(rng: random.Random, gold: list, num_tokens: int) -> list[tuple[int, int, str]]:
    """Keep, relabel, shrink or drop each gold span, then add random spans that keep the prediction flat."""
    predicted = []
    for start, end, label in gold:
        action = rng.random()
        if action < 0.55:
            predicted.append((start, end, label))
        elif action < 0.7:
            predicted.append((start, end, rng.choice(["PER", "LOC", "EVENT"])))  # EVENT never appears in gold
        elif action < 0.85 and end - start > 1:
            predicted.append((start + 1, end, label) if rng.random() < 0.5 else (start, end - 1, label))
    taken = {position for start, end, _ in predicted for position in range(start, end)}
    for start, end, label in _random_flat_spans(rng, num_tokens, ["PER", "LOC", "ORG"]):
        if rng.random() < 0.3 and not taken & set(range(start, end)):
            predicted.append((start, end, label))
            taken.update(range(start, end))
    return predicted


def test_matches_seqeval_on_random_flat_spans():
    rng = random.Random(1234)
    gold, predicted, num_tokens = [], [], []
    for _ in range(300):
        length = rng.randint(0, 15)
        gold_spans = _random_flat_spans(rng, length, ["PER", "LOC", "ORG", "MISC"])
        gold.append(gold_spans)
        predicted.append(_perturbed_prediction(rng, gold_spans, length))
        num_tokens.append(length)
    y_true = [spans_to_iob2(spans, length) for spans, length in zip(gold, num_tokens, strict=True)]
    y_pred = [spans_to_iob2(spans, length) for spans, length in zip(predicted, num_tokens, strict=True)]

    metrics = compute_metrics(gold, predicted, num_tokens=num_tokens)

    assert 0.3 < metrics["f1"] < 0.9  # a mix of hits and misses, so the comparison below means something
    strict = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    assert metrics["precision"] == pytest.approx(precision_score(y_true, y_pred, **strict), abs=1e-9)
    assert metrics["recall"] == pytest.approx(recall_score(y_true, y_pred, **strict), abs=1e-9)
    assert metrics["f1"] == pytest.approx(f1_score(y_true, y_pred, **strict), abs=1e-9)
    report = classification_report(y_true, y_pred, output_dict=True, scheme=IOB2, mode="strict", zero_division=0)
    assert set(report) - {"micro avg", "macro avg", "weighted avg"} == {"PER", "LOC", "ORG", "MISC", "EVENT"}
    assert set(metrics["per_type"]) == set(report) - {"micro avg", "macro avg", "weighted avg"}
    for key in ("precision", "recall", "f1"):
        seqeval_key = "f1-score" if key == "f1" else key
        assert metrics[f"macro_{key}"] == pytest.approx(report["macro avg"][seqeval_key], abs=1e-9)
        for label, scores in metrics["per_type"].items():
            assert scores[key] == pytest.approx(report[label][seqeval_key], abs=1e-9)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-9)
