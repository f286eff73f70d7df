"""Cut a document's words into the pieces written as records: sentences (`src.text_split`), and windows of at most
N words.

Cuts never fall inside an entity the teacher found, unless an entity is longer than the window itself (it is then
cut, and lost). The teacher always reads the whole document, so a piece's entities were found with full context.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..text_split import inside_entity, sentence_cuts


def window_cuts(begin: int, end: int, max_words: int, entities: Sequence[tuple[int, int]]) -> tuple[list[int], int]:
    """Cuts that split words [begin, end) into windows of at most `max_words`, each as long as it can be.

    Returns the cuts and the number of entities a forced cut went through (an entity longer than the window).
    """
    cuts, lost, start = [], 0, begin
    while end - start > max_words:
        cut = start + max_words
        while cut > start and inside_entity(cut, entities):
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
