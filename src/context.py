"""Document context: the words of a record's neighbouring sentences in the same document.

Records that carry `doc_id` (and `sentence_index`, their place in the document) get `left_context` and
`right_context`: the words of the sentences before and after them, nearest last / nearest first. The collator
(`context_size`) then reads as much of them as fits beside the sentence; spans, labels and predictions stay inside
the sentence itself. Records without `doc_id` get no context.
"""

from __future__ import annotations

from collections.abc import Sequence

CONTEXT_FIELDS = ("left_context", "right_context")


def attach_document_context(records: Sequence[dict], *, max_words: int) -> list[dict]:
    """Copies of `records` with up to `max_words` neighbouring words on each side (in document order).

    Sentences are ordered by `sentence_index` within their document (file order where a document has none); two
    records with the same `doc_id` and `sentence_index` are an error naming both ids. The records themselves are
    not changed, so the gold data stays as read.
    """
    if max_words < 0:
        raise ValueError(f"max_words must be >= 0, got {max_words}")
    documents: dict[str, list[int]] = {}
    for position, record in enumerate(records):
        if record.get("doc_id") is not None:
            documents.setdefault(record["doc_id"], []).append(position)
    out = [dict(record) for record in records]
    for doc_id, members in documents.items():
        if all(records[p].get("sentence_index") is not None for p in members):
            seen: dict[int, int] = {}
            for p in members:
                index = records[p]["sentence_index"]
                if index in seen:
                    raise ValueError(f"records {records[seen[index]].get('id')!r} and {records[p].get('id')!r} "
                                     f"both are sentence {index} of document {doc_id!r}")
                seen[index] = p
            members = sorted(members, key=lambda p: records[p]["sentence_index"])
        for k, p in enumerate(members):
            out[p]["left_context"] = _words_before(records, members[:k], max_words)
            out[p]["right_context"] = _words_after(records, members[k + 1 :], max_words)
    return out


def _words_before(records: Sequence[dict], members: Sequence[int], limit: int) -> list[str]:
    """The last `limit` words of the sentences `members` (document order)."""
    words: list[str] = []
    for p in reversed(members):
        if len(words) >= limit:
            break
        words[:0] = records[p]["tokens"]
    return words[len(words) - limit :] if len(words) > limit else words


def _words_after(records: Sequence[dict], members: Sequence[int], limit: int) -> list[str]:
    """The first `limit` words of the sentences `members` (document order)."""
    words: list[str] = []
    for p in members:
        if len(words) >= limit:
            break
        words.extend(records[p]["tokens"])
    return words[:limit]


def fit_context(
    left_lengths: Sequence[int], right_lengths: Sequence[int], *, budget: int
) -> tuple[int, int]:
    """How many context words to keep on each side: (left words, right words) within `budget` subwords.

    `left_lengths` are the subword counts of the left context's words, nearest last; `right_lengths` of the right
    context's, nearest first. Words are taken nearest first, alternating sides, so both sides get about half of
    the budget and one side takes over what the other cannot use; a word that does not fit whole ends that side.
    """
    left = right = used = 0
    left_open, right_open = bool(left_lengths), bool(right_lengths)
    while left_open or right_open:
        take_left = left_open and (not right_open or left <= right)
        if take_left:
            cost = left_lengths[len(left_lengths) - 1 - left]
            if used + cost > budget:
                left_open = False
            else:
                used, left = used + cost, left + 1
                left_open = left < len(left_lengths)
        else:
            cost = right_lengths[right]
            if used + cost > budget:
                right_open = False
            else:
                used, right = used + cost, right + 1
                right_open = right < len(right_lengths)
    return left, right
