"""Decoding on hand-made logits: thresholding, masks, per-type thresholds, overlap resolution, ties, empty inputs."""

import itertools

import pytest
import torch

from src.decoding import decode_batch, resolve_overlaps

HIGH, LOW = 5.0, -5.0


def _prob(logit: float) -> float:
    return torch.tensor(logit, dtype=torch.float32).sigmoid().item()


def _blank_logits(*, batch_size: int = 2, num_types: int = 2, seq_len: int = 4, max_width: int = 2) -> dict:
    """All probabilities near 0; span_mask True wherever the span fits in the sequence."""
    ends = torch.arange(seq_len)[:, None] + torch.arange(max_width)  # [L, W]
    return {
        "start_logits": torch.full((batch_size, num_types, seq_len), LOW),  # [B, C, L]
        "end_logits": torch.full((batch_size, num_types, seq_len), LOW),  # [B, C, L]
        "span_logits": torch.full((batch_size, num_types, seq_len, max_width), LOW),  # [B, C, L, W]
        "span_mask": (ends < seq_len).expand(batch_size, seq_len, max_width).clone(),  # [B, L, W]
    }


def _add_span(
    logits: dict,
    *,
    example: int,
    type_index: int,
    start: int,
    end: int,
    span_logit: float = HIGH,
    start_logit: float = HIGH,
    end_logit: float = HIGH,
) -> None:
    """Set the three logits of the span [start, end] (inclusive) for one example and type."""
    logits["start_logits"][example, type_index, start] = start_logit
    logits["end_logits"][example, type_index, end] = end_logit
    logits["span_logits"][example, type_index, start, end - start] = span_logit


@pytest.mark.parametrize("failing", [None, "start", "end", "span"])
def test_span_kept_only_when_start_end_and_span_all_pass(failing):
    logits = _blank_logits()
    _add_span(logits, example=0, type_index=0, start=0, end=0)
    _add_span(
        logits,
        example=1,
        type_index=1,
        start=1,
        end=2,
        start_logit=LOW if failing == "start" else HIGH,
        end_logit=LOW if failing == "end" else HIGH,
        span_logit=LOW if failing == "span" else HIGH,
    )
    expected_second = [] if failing else [(1, 2, 1, _prob(HIGH))]
    assert decode_batch(**logits) == [[(0, 0, 0, _prob(HIGH))], expected_second]


def test_start_and_end_of_different_types_do_not_combine():
    logits = _blank_logits()
    logits["start_logits"][0, 0, 1] = HIGH
    logits["span_logits"][0, 0, 1, 1] = HIGH
    logits["end_logits"][0, 1, 2] = HIGH  # the end passes, but for the other type
    assert decode_batch(**logits) == [[], []]


def test_masked_span_is_never_predicted():
    logits = _blank_logits()
    _add_span(logits, example=0, type_index=0, start=0, end=0)
    _add_span(logits, example=1, type_index=1, start=1, end=2)
    logits["span_mask"][1, 1, 1] = False
    assert decode_batch(**logits) == [[(0, 0, 0, _prob(HIGH))], []]


def test_span_past_the_sequence_end_is_never_predicted_even_if_mask_allows_it():
    logits = _blank_logits()  # L = 4, W = 2: (i=3, w=1) would end at position 4
    logits["start_logits"][0, 0, 3] = HIGH
    logits["end_logits"][0, 0, 3] = HIGH  # where a clamped end index lands
    logits["span_logits"][0, 0, 3, 1] = HIGH
    logits["span_mask"][0, 3, 1] = True
    assert decode_batch(**logits) == [[], []]


def test_per_type_thresholds():
    logits = _blank_logits()
    _add_span(logits, example=0, type_index=0, start=0, end=1, start_logit=1.0, end_logit=1.0, span_logit=1.0)
    _add_span(logits, example=0, type_index=1, start=2, end=3, start_logit=1.0, end_logit=1.0, span_logit=1.0)
    type_0, type_1 = (0, 1, 0, _prob(1.0)), (2, 3, 1, _prob(1.0))  # probability 0.731
    assert decode_batch(**logits, threshold=0.7) == [[type_0, type_1], []]
    assert decode_batch(**logits, threshold=0.8) == [[], []]
    assert decode_batch(**logits, threshold=[0.7, 0.8]) == [[type_0], []]
    assert decode_batch(**logits, threshold=torch.tensor([0.8, 0.7])) == [[type_1], []]
    with pytest.raises(ValueError, match="one value per type"):
        decode_batch(**logits, threshold=[0.5, 0.5, 0.5])


def test_type_mask_removes_types_per_example():
    logits = _blank_logits()
    for example in range(2):
        _add_span(logits, example=example, type_index=0, start=0, end=0)
        _add_span(logits, example=example, type_index=1, start=2, end=3)
    both = [(0, 0, 0, _prob(HIGH)), (2, 3, 1, _prob(HIGH))]
    assert decode_batch(**logits) == [both, both]
    type_mask = torch.tensor([[True, False], [False, True]])
    assert decode_batch(**logits, type_mask=type_mask) == [[both[0]], [both[1]]]


@pytest.mark.parametrize("flat_ner", [True, False])
def test_overlapping_spans_across_types_keep_the_higher_score(flat_ner):
    logits = _blank_logits()
    # Example 0: the later span scores higher; example 1: the earlier one does. (0, 1) and (1, 2) cross.
    _add_span(logits, example=0, type_index=0, start=0, end=1, span_logit=2.0)
    _add_span(logits, example=0, type_index=1, start=1, end=2, span_logit=3.0)
    _add_span(logits, example=1, type_index=0, start=0, end=1, span_logit=3.0)
    _add_span(logits, example=1, type_index=1, start=1, end=2, span_logit=2.0)
    assert decode_batch(**logits, flat_ner=flat_ner) == [[(1, 2, 1, _prob(3.0))], [(0, 1, 0, _prob(3.0))]]


@pytest.mark.parametrize(
    ("flat_ner", "expected_first"),
    [
        (True, [(0, 2, 0, _prob(4.0)), (3, 4, 0, _prob(1.0))]),
        (False, [(0, 2, 0, _prob(4.0)), (1, 1, 1, _prob(3.0)), (3, 4, 0, _prob(1.0))]),
    ],
)
def test_nested_keeps_contained_spans_and_drops_crossing_ones(flat_ner, expected_first):
    logits = _blank_logits(seq_len=5, max_width=3)
    _add_span(logits, example=0, type_index=0, start=0, end=2, span_logit=4.0)
    _add_span(logits, example=0, type_index=1, start=1, end=1, span_logit=3.0)  # inside (0, 2)
    _add_span(logits, example=0, type_index=1, start=2, end=4, span_logit=2.0)  # crosses (0, 2)
    _add_span(logits, example=0, type_index=0, start=3, end=4, span_logit=1.0)  # disjoint from (0, 2)
    # Example 1: same boundaries for both types; only the higher-scoring type survives, nested or not.
    _add_span(logits, example=1, type_index=0, start=0, end=1, span_logit=2.0)
    _add_span(logits, example=1, type_index=1, start=0, end=1, span_logit=3.0)
    assert decode_batch(**logits, flat_ner=flat_ner) == [expected_first, [(0, 1, 1, _prob(3.0))]]


@pytest.mark.parametrize("flat_ner", [True, False])
def test_equal_scores_are_broken_by_start_end_then_type(flat_ner):
    logits = _blank_logits()
    _add_span(logits, example=0, type_index=1, start=0, end=1)
    _add_span(logits, example=0, type_index=0, start=1, end=2)  # same score, later start, lower type
    _add_span(logits, example=1, type_index=1, start=0, end=1)
    _add_span(logits, example=1, type_index=0, start=0, end=1)  # same score and boundaries, lower type
    assert decode_batch(**logits, flat_ner=flat_ner) == [[(0, 1, 1, _prob(HIGH))], [(0, 1, 0, _prob(HIGH))]]


@pytest.mark.parametrize("at_threshold", ["start", "end", "span"])
def test_probability_equal_to_threshold_is_not_kept(at_threshold):
    logits = _blank_logits()
    _add_span(
        logits,
        example=0,
        type_index=0,
        start=1,
        end=2,
        start_logit=0.0 if at_threshold == "start" else HIGH,  # sigmoid(0) == 0.5 exactly
        end_logit=0.0 if at_threshold == "end" else HIGH,
        span_logit=0.0 if at_threshold == "span" else HIGH,
    )
    assert decode_batch(**logits, threshold=0.5) == [[], []]
    assert decode_batch(**logits, threshold=0.49) == [[(1, 2, 0, _prob(0.0 if at_threshold == "span" else HIGH))], []]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_output_sorted_by_position_for_any_dtype(dtype):
    logits = _blank_logits()
    _add_span(logits, example=0, type_index=0, start=3, end=3, span_logit=4.0)
    _add_span(logits, example=0, type_index=1, start=0, end=1, span_logit=2.0)
    for key in ("start_logits", "end_logits", "span_logits"):
        logits[key] = logits[key].to(dtype)
    assert decode_batch(**logits) == [[(0, 1, 1, _prob(2.0)), (3, 3, 0, _prob(4.0))], []]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ({"batch_size": 0}, []),
        ({"num_types": 0}, [[], []]),
        ({"seq_len": 0}, [[], []]),
        ({"max_width": 0}, [[], []]),
    ],
)
def test_empty_inputs_give_empty_lists(shape, expected):
    logits = _blank_logits(**shape)
    type_mask = torch.ones(logits["span_logits"].shape[:2], dtype=torch.bool)  # [B, C]
    assert decode_batch(**logits, threshold=0.0, type_mask=type_mask) == expected


def test_mismatched_shapes_raise():
    logits = _blank_logits()
    logits["span_mask"] = logits["span_mask"][:, :3]
    with pytest.raises(ValueError, match="span_mask"):
        decode_batch(**logits)


@pytest.mark.parametrize(
    ("flat_ner", "expected"),
    [
        (True, [(0, 2, 0, 0.9), (3, 4, 1, 0.95)]),
        (False, [(0, 2, 0, 0.9), (3, 4, 1, 0.95), (4, 4, 0, 0.7)]),
    ],
)
def test_resolve_overlaps_on_tuples(flat_ner, expected):
    # (3, 4) is best; (0, 2) is disjoint from it; (2, 3) crosses both; (4, 4) sits inside (3, 4).
    candidates = [(0, 2, 0, 0.9), (2, 3, 1, 0.8), (4, 4, 0, 0.7), (3, 4, 1, 0.95)]
    assert resolve_overlaps(candidates, flat_ner=flat_ner) == expected


def test_resolve_overlaps_nested_keeps_inner_span_that_outscores_its_outer_span():
    candidates = [(0, 3, 0, 0.5), (1, 2, 1, 0.9)]
    assert resolve_overlaps(candidates, flat_ner=False) == [(0, 3, 0, 0.5), (1, 2, 1, 0.9)]
    assert resolve_overlaps(candidates, flat_ner=True) == [(1, 2, 1, 0.9)]


def test_resolve_overlaps_same_boundaries_keep_the_higher_scoring_type():
    candidates = [(1, 2, 0, 0.6), (1, 2, 1, 0.7)]
    assert resolve_overlaps(candidates, flat_ner=False) == [(1, 2, 1, 0.7)]


def test_resolve_overlaps_touching_spans_do_not_overlap():
    assert resolve_overlaps([(0, 1, 0, 0.9), (2, 3, 0, 0.8)], flat_ner=True) == [(0, 1, 0, 0.9), (2, 3, 0, 0.8)]
    assert resolve_overlaps([(0, 1, 0, 0.9), (1, 2, 0, 0.8)], flat_ner=True) == [(0, 1, 0, 0.9)]


@pytest.mark.parametrize("flat_ner", [True, False])
def test_resolve_overlaps_ties_do_not_depend_on_input_order(flat_ner):
    tied = [(0, 1, 1, 0.5), (1, 2, 0, 0.5), (0, 1, 0, 0.5)]
    for order in itertools.permutations(tied):
        assert resolve_overlaps(list(order), flat_ner=flat_ner) == [(0, 1, 0, 0.5)]


def test_resolve_overlaps_empty():
    assert resolve_overlaps([], flat_ner=True) == []
    assert resolve_overlaps([], flat_ner=False) == []


def test_candidates_all_types_and_best_type_only():
    """Three types on one span: all pass with their levels, or only the best (ties: the smaller type index)."""
    from src.decoding import span_candidates

    logits = _blank_logits(batch_size=1, num_types=4, seq_len=3, max_width=2)
    _add_span(logits, example=0, type_index=1, start=0, end=1, span_logit=2.0, start_logit=1.0, end_logit=3.0)
    _add_span(logits, example=0, type_index=2, start=0, end=1, span_logit=2.0, start_logit=4.0, end_logit=0.5)
    _add_span(logits, example=0, type_index=3, start=0, end=1, span_logit=1.5, start_logit=4.0, end_logit=4.0)
    _add_span(logits, example=0, type_index=0, start=2, end=2, span_logit=0.2, start_logit=LOW, end_logit=HIGH)
    every = span_candidates(**logits, threshold=0.5)
    assert every == [[
        (0, 1, 1, _prob(2.0), _prob(1.0)),
        (0, 1, 2, _prob(2.0), _prob(0.5)),
        (0, 1, 3, _prob(1.5), _prob(1.5)),
    ]]
    assert span_candidates(**logits, threshold=0.5, best_type_only=True) == [[(0, 1, 1, _prob(2.0), _prob(1.0))]]
    # Type 1 fails its own threshold: the best remaining type is 2, then 3 once 2 fails as well.
    assert span_candidates(**logits, threshold=[0.5, 0.9, 0.5, 0.5], best_type_only=True) == [
        [(0, 1, 2, _prob(2.0), _prob(0.5))]
    ]
    assert span_candidates(**logits, threshold=[0.5, 0.9, 0.7, 0.5], best_type_only=True) == [
        [(0, 1, 3, _prob(1.5), _prob(1.5))]
    ]


# ------------------------------------------------------------------------------------------------- multi_label


@pytest.mark.parametrize(
    ("flat_ner", "expected"),
    [
        # (0, 1) keeps both its types; (1, 2) overlaps it with other boundaries and goes; (3, 3) is disjoint.
        (True, [(0, 1, 0, 0.9), (0, 1, 2, 0.6), (3, 3, 1, 0.5)]),
        # Nested: (1, 1) sits inside (0, 1) and (1, 2) crosses it; the two types of (1, 1) are kept too.
        (False, [(0, 1, 0, 0.9), (0, 1, 2, 0.6), (1, 1, 0, 0.55), (1, 1, 1, 0.4), (3, 3, 1, 0.5)]),
    ],
)
def test_multi_label_keeps_every_type_of_a_span(flat_ner, expected):
    candidates = [(0, 1, 0, 0.9), (1, 2, 1, 0.8), (0, 1, 2, 0.6), (1, 1, 0, 0.55), (3, 3, 1, 0.5), (1, 1, 1, 0.4)]
    assert resolve_overlaps(candidates, flat_ner=flat_ner, multi_label=True) == expected
    single = resolve_overlaps(candidates, flat_ner=flat_ner)
    assert single == [(0, 1, 0, 0.9), (3, 3, 1, 0.5)] if flat_ner else [(0, 1, 0, 0.9), (1, 1, 0, 0.55), (3, 3, 1, 0.5)]


def test_multi_label_flat_span_blocked_by_a_better_overlap_keeps_none_of_its_types():
    # (1, 2) wins; both types of (0, 1) overlap it with other boundaries, so neither is kept in flat mode.
    candidates = [(1, 2, 0, 0.9), (0, 1, 0, 0.8), (0, 1, 1, 0.7), (2, 2, 1, 0.6)]
    assert resolve_overlaps(candidates, flat_ner=True, multi_label=True) == [(1, 2, 0, 0.9)]
    assert resolve_overlaps(candidates, flat_ner=False, multi_label=True) == [(1, 2, 0, 0.9), (2, 2, 1, 0.6)]


def test_multi_label_does_not_depend_on_input_order():
    candidates = [(0, 1, 1, 0.5), (0, 1, 0, 0.5), (1, 2, 0, 0.5), (0, 0, 2, 0.7)]
    for order in itertools.permutations(candidates):
        assert resolve_overlaps(list(order), flat_ner=True, multi_label=True) == [(0, 0, 2, 0.7), (1, 2, 0, 0.5)]
        assert resolve_overlaps(list(order), flat_ner=False, multi_label=True) == [
            (0, 0, 2, 0.7), (0, 1, 0, 0.5), (0, 1, 1, 0.5)
        ]


def test_decode_batch_multi_label_returns_every_passing_type():
    logits = _blank_logits(batch_size=1, num_types=3, seq_len=4, max_width=2)
    _add_span(logits, example=0, type_index=0, start=0, end=1, span_logit=1.0)
    _add_span(logits, example=0, type_index=2, start=0, end=1, span_logit=2.0)
    _add_span(logits, example=0, type_index=1, start=0, end=1, span_logit=LOW)  # fails its span probability
    assert decode_batch(**logits, multi_label=True) == [[(0, 1, 0, _prob(1.0)), (0, 1, 2, _prob(2.0))]]
    assert decode_batch(**logits) == [[(0, 1, 2, _prob(2.0))]]
