"""Turn start/end/span logits into predicted spans: vectorised thresholding, then greedy overlap resolution.

Pure torch + python: no model, no I/O. Spans are (start, end_inclusive, type_index, score) in subword positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

# (start, end_inclusive, type_index, score)
Span = tuple[int, int, int, float]
# (start, end_inclusive, type_index, score, level): a thresholded but unresolved span, see `span_candidates`
Candidate = tuple[int, int, int, float, float]


def _threshold_per_type(threshold: float | Sequence[float] | torch.Tensor, num_types: int) -> torch.Tensor:
    """Return the threshold as a float32 cpu tensor of shape [C], validating a per-type length."""
    values = torch.as_tensor(threshold, dtype=torch.float32).detach().cpu()
    if values.dim() == 0:
        return values.expand(num_types)  # [C]
    if values.shape != (num_types,):
        raise ValueError(f"threshold must be a float or have one value per type ({num_types}), got {values.shape}")
    return values  # [C]


def _check_shapes(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    span_logits: torch.Tensor,
    span_mask: torch.Tensor,
    type_mask: torch.Tensor | None,
) -> None:
    if span_logits.dim() != 4:
        raise ValueError(f"span_logits must be [B, C, L, W], got {tuple(span_logits.shape)}")
    batch_size, num_types, seq_len, max_width = span_logits.shape
    expected = {
        "start_logits": (start_logits, (batch_size, num_types, seq_len)),
        "end_logits": (end_logits, (batch_size, num_types, seq_len)),
        "span_mask": (span_mask, (batch_size, seq_len, max_width)),
    }
    if type_mask is not None:
        expected["type_mask"] = (type_mask, (batch_size, num_types))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} to match span_logits, got {tuple(tensor.shape)}")


class SpanScoreSource(Protocol):
    """What decoding needs from a scored batch (see `model.SpanScores`): boundary logits and span logits on demand."""

    start_logits: torch.Tensor  # [B, C, L]
    end_logits: torch.Tensor  # [B, C, L]
    span_mask: torch.Tensor  # [B, L, W] bool

    def span_logits_at(self, example: torch.Tensor, start: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """Logits [S, C] of the spans (example, start, width), each [S]."""


class DenseScores:
    """`SpanScoreSource` over logits that are all computed already: span_logits [B, C, L, W]."""

    def __init__(self, start_logits, end_logits, span_logits, span_mask) -> None:
        self.start_logits, self.end_logits = start_logits, end_logits  # [B, C, L] each
        self.span_logits, self.span_mask = span_logits, span_mask  # [B, C, L, W], [B, L, W]

    def span_logits_at(self, example: torch.Tensor, start: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        return self.span_logits[example, :, start, width]  # [S, C]


def span_candidates(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    span_logits: torch.Tensor,
    span_mask: torch.Tensor,
    *,
    threshold: float | Sequence[float] | torch.Tensor = 0.5,
    type_mask: torch.Tensor | None = None,
    best_type_only: bool = False,
) -> list[list[Candidate]]:
    """Every legal span whose start, end and span probabilities all exceed its type's threshold, unresolved.

    Takes the arguments of `decode_batch`; see `scored_candidates` for the method and the result.
    """
    _check_shapes(start_logits, end_logits, span_logits, span_mask, type_mask)
    scores = DenseScores(start_logits, end_logits, span_logits, span_mask)
    return scored_candidates(scores, threshold=threshold, type_mask=type_mask, best_type_only=best_type_only)


def scored_candidates(
    scores: SpanScoreSource,
    *,
    threshold: float | Sequence[float] | torch.Tensor = 0.5,
    type_mask: torch.Tensor | None = None,
    best_type_only: bool = False,
) -> list[list[Candidate]]:
    """Thresholded, unresolved candidates of a scored batch, asking it for the logits of few spans only.

    Start and end probabilities [B, C, L] are thresholded first; span logits are then requested only for the
    legal spans where some type passes at both boundaries (`BoundaryScores.passing_spans`), as an [S, C] block,
    so the cost follows the number of such spans rather than B x C x L x W.

    With ``best_type_only`` only the highest-scoring type of each (start, end) is returned (ties: the smaller
    type index). Overlap resolution never keeps a second type with the same boundaries (see `resolve_overlaps`),
    so this loses nothing at this threshold and keeps decoding cheap with many types.

    Returns:
        Per example, ``(start, end_inclusive, type_index, score, level)`` tuples sorted by start, end, type, with
        ``score`` the span probability and ``level = min(start, end, span probability)``: the candidate survives
        exactly the thresholds below ``level``, so one call at a low threshold serves a whole threshold search.
    """
    batch_size, num_types, seq_len = scores.start_logits.shape
    if batch_size == 0 or num_types == 0 or seq_len == 0 or scores.span_mask.shape[-1] == 0:
        return [[] for _ in range(batch_size)]
    boundaries = BoundaryScores.from_logits(
        scores.start_logits, scores.end_logits, threshold=threshold, type_mask=type_mask
    )
    example, start, width = boundaries.passing_spans(scores.span_mask)  # each [S]
    span_prob = scores.span_logits_at(example, start, width).float().sigmoid()  # [S, C]
    return boundaries.candidates(example, start, width, span_prob, best_type_only=best_type_only)


class BoundaryScores:
    """Thresholded start/end probabilities of a batch: the first, type-wise cheap step of decoding.

    Lets a caller score spans only where some type passes at both boundaries (`passing_spans`) and then turn
    those spans' probabilities [S, C] into candidates (`candidates`), whether they come from a full
    [B, C, L, W] tensor or from a model that scores selected spans only.
    """

    def __init__(self, start_prob: torch.Tensor, end_prob: torch.Tensor, thresholds: torch.Tensor, type_ok=None):
        self.start_prob, self.end_prob = start_prob, end_prob  # [B, C, L] each
        self.thresholds = thresholds  # [C]
        self.start_ok = start_prob > thresholds[None, :, None]  # [B, C, L]
        if type_ok is not None:
            self.start_ok &= type_ok[:, :, None]
        self.end_ok = end_prob > thresholds[None, :, None]  # [B, C, L]

    @classmethod
    def from_logits(
        cls,
        start_logits: torch.Tensor,
        end_logits: torch.Tensor,
        *,
        threshold: float | Sequence[float] | torch.Tensor,
        type_mask: torch.Tensor | None = None,
    ) -> BoundaryScores:
        """start_logits, end_logits [B, C, L]; threshold one value or one per type; type_mask [B, C] bool."""
        device = start_logits.device
        thresholds = _threshold_per_type(threshold, start_logits.shape[1]).to(device)  # [C]
        type_ok = type_mask.bool().to(device) if type_mask is not None else None
        return cls(start_logits.float().sigmoid(), end_logits.float().sigmoid(), thresholds, type_ok)

    def passing_spans(self, span_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Legal spans [b, i, w] (span_mask [B, L, W]) with a type passing at both start i and end i + w.

        Returns (example, start, width), each [S], in (b, i, w) order.
        """
        batch_size, seq_len, max_width = span_mask.shape
        device = span_mask.device
        # pairs[b, i, j] counts the types whose start passes at i and end at j (exact: small integers in float).
        pairs = torch.bmm(self.start_ok.transpose(1, 2).float(), self.end_ok.float())  # [B, L, L]
        ends = torch.arange(seq_len, device=device)[:, None] + torch.arange(max_width, device=device)  # [L, W]
        in_range = ends < seq_len  # [L, W]
        # Out-of-range ends are clamped only so the gather is legal; in_range removes those spans.
        band = pairs.gather(2, ends.clamp(max=seq_len - 1).expand(batch_size, seq_len, max_width))  # [B, L, W]
        return ((band > 0) & span_mask.bool() & in_range).nonzero(as_tuple=True)

    def candidates(
        self,
        example: torch.Tensor,
        start: torch.Tensor,
        width: torch.Tensor,
        span_prob: torch.Tensor,
        *,
        best_type_only: bool,
    ) -> list[list[Candidate]]:
        """Candidates of the spans (example, start, width) [S] with span probabilities span_prob [S, C]."""
        end = start + width  # [S]
        keep = self.start_ok[example, :, start] & self.end_ok[example, :, end] & (span_prob > self.thresholds)  # [S, C]
        if best_type_only:
            # Kept probabilities exceed a threshold > 0, the rest become -1; max returns the first maximum, i.e. the
            # smallest type index among equal best scores, as in resolve_overlaps' tie-break.
            best, type_index = torch.where(keep, span_prob, -1.0).max(dim=1)  # [S] each
            row = (best >= 0).nonzero(as_tuple=True)[0]  # [N]
            type_index = type_index[row]  # [N]
        else:
            row, type_index = keep.nonzero(as_tuple=True)  # each [N]
        # Probabilities of the kept (span, type) pairs only: with many types most of the [S, C] block is dropped.
        kept_example, kept_start, kept_end = example[row], start[row], end[row]  # [N] each
        score = span_prob[row, type_index]  # [N]
        start_p = self.start_prob[kept_example, type_index, kept_start]  # [N]
        end_p = self.end_prob[kept_example, type_index, kept_end]  # [N]
        level = torch.minimum(torch.minimum(start_p, end_p), score)  # [N]
        batch_size = self.start_prob.shape[0]
        rows = torch.stack((kept_example, kept_start, kept_end, type_index), dim=1).cpu().tolist()  # [N, 4]
        values = torch.stack((score, level), dim=1).cpu().tolist()  # [N, 2]
        candidates: list[list[Candidate]] = [[] for _ in range(batch_size)]
        for (b, i, j, c), (score, pass_level) in zip(rows, values, strict=True):
            candidates[b].append((i, j, c, score, pass_level))
        return [sorted(example_candidates, key=lambda s: (s[0], s[1], s[2])) for example_candidates in candidates]


def decode_batch(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    span_logits: torch.Tensor,
    span_mask: torch.Tensor,
    *,
    threshold: float | Sequence[float] | torch.Tensor = 0.5,
    flat_ner: bool = True,
    type_mask: torch.Tensor | None = None,
    multi_label: bool = False,
) -> list[list[Span]]:
    """Decode a batch of logits into spans, one list per example.

    Args:
        start_logits: [B, C, L] start scores per type and position.
        end_logits: [B, C, L] end scores per type and position.
        span_logits: [B, C, L, W]; ``span_logits[b, c, i, w]`` scores the span from ``i`` to ``i + w`` inclusive.
        span_mask: [B, L, W] bool, True for legal candidate spans. Spans with ``i + w >= L`` are never predicted.
        threshold: one probability threshold, or one per type (length C). All of the start, end and span
            probabilities must be strictly greater than the type's threshold.
        flat_ner: resolve overlaps flat (no shared positions) if True, nested (no crossing spans) if False.
        type_mask: optional [B, C] bool, False for types that do not apply to an example; those are never predicted.
        multi_label: a span may carry several types (every type that passes); see `resolve_overlaps`.

    Returns:
        Per example, a list of ``(start, end_inclusive, type_index, score)`` sorted by start, end, type, where
        ``score`` is the span probability ``sigmoid(span_logits)``.
    """
    candidates = span_candidates(
        start_logits, end_logits, span_logits, span_mask, threshold=threshold, type_mask=type_mask,
        best_type_only=not multi_label,
    )
    return [
        resolve_overlaps([candidate[:4] for candidate in example_candidates], flat_ner=flat_ner,
                         multi_label=multi_label)
        for example_candidates in candidates
    ]


def _crosses(span: Span, other: Span) -> bool:
    """True when the spans overlap but neither contains the other, or when they have identical boundaries."""
    start, end = span[0], span[1]
    other_start, other_end = other[0], other[1]
    if end < other_start or other_end < start:
        return False
    if (start, end) == (other_start, other_end):
        return True
    contains = start <= other_start and other_end <= end
    contained = other_start <= start and end <= other_end
    return not (contains or contained)


def resolve_overlaps(candidates: Sequence[Span], *, flat_ner: bool, multi_label: bool = False) -> list[Span]:
    """Greedily keep the best-scoring spans that are compatible with the spans already kept.

    Candidates are visited by score descending, ties broken by start, end, then type index (ascending), so the
    result does not depend on the input order. With ``flat_ner`` a span is kept only if it shares no position with
    a kept span of any type. Otherwise nesting is allowed: a span is dropped only if it partially overlaps a kept
    span (neither contains the other) or has exactly its boundaries (the higher-scoring type wins). With
    ``multi_label`` a span with exactly the boundaries of a kept span is compatible with it (one span, several
    types, as GLiNER's ``multi_label=True``); every other rule stays.

    Returns:
        The kept ``(start, end_inclusive, type_index, score)`` tuples sorted by start, end, type.
    """
    kept: list[Span] = []
    occupied: dict[int, tuple[int, int]] = {}  # flat mode: position -> boundaries of the kept span covering it
    for span in sorted(candidates, key=lambda s: (-s[3], s[0], s[1], s[2])):
        start, end = span[0], span[1]
        if flat_ner:
            positions = range(start, end + 1)
            # Kept flat spans share positions only when they have the same boundaries (multi_label), so each
            # position is covered by one pair of boundaries at most.
            if any(p in occupied and not (multi_label and occupied[p] == (start, end)) for p in positions):
                continue
            occupied.update(dict.fromkeys(positions, (start, end)))
        elif any(_crosses(span, other) and (not multi_label or span[:2] != other[:2]) for other in kept):
            continue
        kept.append(span)
    return sorted(kept, key=lambda s: (s[0], s[1], s[2]))


def merge_windows(window_candidates: Sequence[Sequence[tuple]], bounds: Sequence[tuple[int, int]]) -> list[tuple]:
    """Merge the candidates of one example's overlapping windows, keeping each span from one window only.

    Args:
        window_candidates: per window, in text order, tuples whose first two fields are the span's start and
            inclusive end in example-level units (characters or words), e.g. ``(start, end, type, score, level)``.
        bounds: per window, ``(first, last)``: the first and last unit (inclusive) covered by its complete words.

    A span is taken from the window where it lies furthest from a window edge, its "owner" among the windows that
    contain it whole; the text's own start and end are not edges (nothing is cut there), so the first and last
    windows never lose context on that side. Ties go to the earlier window. Ownership depends only on geometry,
    so the same windows are chosen at every threshold, and a text that fits one window is returned unchanged.

    Returns:
        The owned candidates of all windows (unresolved; pass them to `resolve_overlaps`), sorted by start, end.
    """
    last_window = len(bounds) - 1

    def margin(k: int, start: int, end: int) -> float:
        first, last = bounds[k]
        if not first <= start <= end <= last:
            return -1.0
        left = float("inf") if k == 0 else start - first
        right = float("inf") if k == last_window else last - end
        return min(left, right)

    owners: dict[tuple[int, int], int] = {}
    merged = []
    for k, candidates in enumerate(window_candidates):
        for candidate in candidates:
            key = (candidate[0], candidate[1])
            if key not in owners:
                # Windows advance monotonically, so the windows holding a span form a run around k.
                best, best_margin = k, margin(k, *key)
                for step in (-1, 1):
                    other = k + step
                    while 0 <= other <= last_window and (value := margin(other, *key)) >= 0:
                        if value > best_margin or (value == best_margin and other < best):
                            best, best_margin = other, value
                        other += step
                owners[key] = best
            if owners[key] == k:
                merged.append(candidate)
    return sorted(merged, key=lambda s: (s[0], s[1], s[2]))


def merge_windows_by_example(
    window_example: Sequence[int],
    window_candidates: Sequence[Sequence[tuple]],
    bounds: Sequence[tuple[int, int]],
    num_examples: int,
) -> list[list[tuple]]:
    """`merge_windows` for a batch of rows: row n belongs to example window_example[n]; rows in text order."""
    grouped: list[tuple[list, list]] = [([], []) for _ in range(num_examples)]
    for example, candidates, window in zip(window_example, window_candidates, bounds, strict=True):
        grouped[example][0].append(candidates)
        grouped[example][1].append(window)
    return [merge_windows(candidates, example_bounds) for candidates, example_bounds in grouped]
