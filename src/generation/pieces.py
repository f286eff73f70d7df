"""Cut a document's words into the pieces written as records: sentences, and windows of at most N words.

Cuts never fall inside an entity the teacher found, unless an entity is longer than the window itself (it is then
cut, and lost). The teacher always reads the whole document, so a piece's entities were found with full context.
"""

from __future__ import annotations

from collections.abc import Sequence

SENTENCE_ENDS = frozenset(".!?…")
CLOSERS = frozenset("\"'”’)]»")  # may follow the sentence end and belong to the sentence before the cut
# A "." after one of these (any case) ends no sentence: "Mr. Smith", "Corp. said".
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "inc", "ltd", "co", "corp", "vs", "etc", "no", "gen", "sen",
    "rep", "gov", "lt", "col", "capt", "mt", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "e.g", "i.e", "fig", "approx",
})


def _inside_entity(cut: int, entities: Sequence[tuple[int, int]]) -> bool:
    return any(start < cut < end for start, end in entities)


def sentence_cuts(
    words: Sequence[str], offsets: Sequence[tuple[int, int]], original: str, entities: Sequence[tuple[int, int]]
) -> list[int]:
    """Word indices where a new sentence starts (never 0 or len(words)), by the documented rule.

    A sentence ends after ".", "!", "?" or "…" (with any closing quotes or brackets after it) when the next word
    starts with an upper-case letter or a digit, unless it is a "." after a single letter ("U.S.") or after one of
    ABBREVIATIONS; a blank line in the original always ends one. No cut falls inside an entity.
    """
    cuts = []
    for k in range(1, len(words)):
        gap = original[offsets[k - 1][1] : offsets[k][0]]
        if gap.count("\n") >= 2:
            ends = True
        else:
            last = k - 1
            while last > 0 and words[last] in CLOSERS:
                last -= 1
            ends = words[last] in SENTENCE_ENDS and (words[k][0].isupper() or words[k][0].isdigit())
            if ends and words[last] == "." and last > 0:
                before = words[last - 1]
                ends = not (len(before) == 1 and before.isalpha()) and before.lower() not in ABBREVIATIONS
        if ends and not _inside_entity(k, entities):
            cuts.append(k)
    return cuts


def window_cuts(begin: int, end: int, max_words: int, entities: Sequence[tuple[int, int]]) -> tuple[list[int], int]:
    """Cuts that split words [begin, end) into windows of at most `max_words`, each as long as it can be.

    Returns the cuts and the number of entities a forced cut went through (an entity longer than the window).
    """
    cuts, lost, start = [], 0, begin
    while end - start > max_words:
        cut = start + max_words
        while cut > start and _inside_entity(cut, entities):
            cut -= 1
        if cut == start:  # every position inside the window cuts an entity: cut at the window's end anyway
            cut = start + max_words
            lost += sum(1 for s, e in entities if s < cut < e)
        cuts.append(cut)
        start = cut
    return cuts, lost


def cut_pieces(
    words: Sequence[str],
    offsets: Sequence[tuple[int, int]],
    original: str,
    entities: Sequence[tuple[int, int]],
    *,
    sentences: bool,
    max_words: int | None,
) -> tuple[list[tuple[int, int]], int]:
    """The (first word, end word) pieces of a document and the number of entities cut by a forced window cut."""
    bounds = [0, *(sentence_cuts(words, offsets, original, entities) if sentences else []), len(words)]
    pieces, lost = [], 0
    for begin, end in zip(bounds, bounds[1:], strict=False):
        cuts = []
        if max_words is not None:
            cuts, cut_through = window_cuts(begin, end, max_words, entities)
            lost += cut_through
        edges = [begin, *cuts, end]
        pieces += list(zip(edges, edges[1:], strict=False))
    return pieces, lost
