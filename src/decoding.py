"""Turn start/end/span logits into predicted spans: vectorised thresholding, then greedy overlap resolution.

Pure torch + python: no model, no I/O. Spans are (start, end_inclusive, type_index, score) in subword positions.
"""

from collections.abc import Sequence

import torch

# (start, end_inclusive, type_index, score)
Span = tuple[int, int, int, float]


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


def decode_batch(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    span_logits: torch.Tensor,
    span_mask: torch.Tensor,
    *,
    threshold: float | Sequence[float] | torch.Tensor = 0.5,
    flat_ner: bool = True,
    type_mask: torch.Tensor | None = None,
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

    Returns:
        Per example, a list of ``(start, end_inclusive, type_index, score)`` sorted by start, end, type, where
        ``score`` is the span probability ``sigmoid(span_logits)``.
    """
    _check_shapes(start_logits, end_logits, span_logits, span_mask, type_mask)
    batch_size, num_types, seq_len, max_width = span_logits.shape
    if batch_size == 0 or num_types == 0 or seq_len == 0 or max_width == 0:
        return [[] for _ in range(batch_size)]
    device = span_logits.device
    thresholds = _threshold_per_type(threshold, num_types).to(device).view(1, num_types, 1, 1)  # [1, C, 1, 1]

    start_prob = start_logits.float().sigmoid()  # [B, C, L]
    end_prob = end_logits.float().sigmoid()  # [B, C, L]
    span_prob = span_logits.float().sigmoid()  # [B, C, L, W]

    end_index = torch.arange(seq_len, device=device)[:, None] + torch.arange(max_width, device=device)  # [L, W]
    in_range = end_index < seq_len  # [L, W]
    # Out-of-range ends are clamped only so the gather is legal; in_range removes those candidates below.
    end_prob_per_span = end_prob[:, :, end_index.clamp(max=seq_len - 1)]  # [B, C, L, W]

    keep = (
        (start_prob[..., None] > thresholds)
        & (end_prob_per_span > thresholds)
        & (span_prob > thresholds)
        & (span_mask.bool() & in_range)[:, None]
    )  # [B, C, L, W]
    if type_mask is not None:
        keep &= type_mask.bool().to(device)[:, :, None, None]

    example, type_index, start, width = keep.nonzero(as_tuple=True)  # each [N]
    scores = span_prob[example, type_index, start, width].cpu().tolist()  # [N]
    indices = torch.stack((example, type_index, start, width), dim=1).cpu().tolist()  # [N, 4]

    candidates: list[list[Span]] = [[] for _ in range(batch_size)]
    for (b, c, i, w), score in zip(indices, scores, strict=True):
        candidates[b].append((i, i + w, c, score))
    return [resolve_overlaps(example_candidates, flat_ner=flat_ner) for example_candidates in candidates]


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


def resolve_overlaps(candidates: Sequence[Span], *, flat_ner: bool) -> list[Span]:
    """Greedily keep the best-scoring spans that are compatible with the spans already kept.

    Candidates are visited by score descending, ties broken by start, end, then type index (ascending), so the
    result does not depend on the input order. With ``flat_ner`` a span is kept only if it shares no position with
    a kept span of any type. Otherwise nesting is allowed: a span is dropped only if it partially overlaps a kept
    span (neither contains the other) or has exactly its boundaries (the higher-scoring type wins).

    Returns:
        The kept ``(start, end_inclusive, type_index, score)`` tuples sorted by start, end, type.
    """
    kept: list[Span] = []
    occupied: set[int] = set()  # positions covered by kept spans, used in flat mode
    for span in sorted(candidates, key=lambda s: (-s[3], s[0], s[1], s[2])):
        start, end = span[0], span[1]
        if flat_ner:
            positions = range(start, end + 1)
            if any(position in occupied for position in positions):
                continue
            occupied.update(positions)
        elif any(_crosses(span, other) for other in kept):
            continue
        kept.append(span)
    return sorted(kept, key=lambda s: (s[0], s[1], s[2]))
