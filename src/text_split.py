"""Raw text into words and sentences: the word rule of generated data (how raw text becomes `tokens`, and how the
original offsets come back) and the sentence rule. Shared by dataset generation (src/generation) and by prediction
on raw documents sentence by sentence (`SpanPredictor` with `sentences`).

A word is a run of letters and digits (Unicode `\\w` without `_`; combining marks stay in their word), or any
other single non-whitespace character. The written `text` is the words joined by single spaces, so deleting the
whitespace of `text` and of the original gives the same string: every word is a slice of the original, in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Combining marks (U+0300-U+036F and the other combining blocks) are not `\w` in Python, but belong to their word.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
WORD_PATTERN = re.compile(rf"[^\W_][^\W_{_MARKS}]*(?:[{_MARKS}]+[^\W_]*)*|\S")


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The words of `text` and their (start, end) character offsets in it (end exclusive)."""
    words, offsets = [], []
    for match in WORD_PATTERN.finditer(text):
        words.append(match.group())
        offsets.append(match.span())
    return words, offsets


def restore_offsets(words: Sequence[str], original: str) -> list[tuple[int, int]]:
    """Offsets in `original` of words written by this rule (e.g. a record's `tokens`): the rule's inverse.

    Raises ValueError when the words are not the rule's words of `original`, in order. A record cut from a
    longer document (`source.word` = w) holds the document's words w, w + 1, ...: their offsets are
    `split_words(original)[1][w:w + len(tokens)]`.
    """
    offsets, position = [], 0
    for k, word in enumerate(words):
        while position < len(original) and original[position].isspace():
            position += 1
        if not original.startswith(word, position):
            raise ValueError(f"word {k} {word!r} is not at character {position} of the original text")
        offsets.append((position, position + len(word)))
        position += len(word)
    return offsets


SENTENCE_ENDS = frozenset(".!?…")
CLOSERS = frozenset("\"'”’)]»")  # may follow the sentence end and belong to the sentence before the cut
# A "." after one of these (any case) ends no sentence: "Mr. Smith", "Corp. said".
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "inc", "ltd", "co", "corp", "vs", "etc", "no", "gen", "sen",
    "rep", "gov", "lt", "col", "capt", "mt", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct",
    "nov", "dec", "e.g", "i.e", "fig", "approx",
})


def inside_entity(cut: int, entities: Sequence[tuple[int, int]]) -> bool:
    """Whether a cut before word `cut` falls inside one of `entities` (word ranges, end exclusive)."""
    return any(start < cut < end for start, end in entities)


def sentence_cuts(
    words: Sequence[str], offsets: Sequence[tuple[int, int]], original: str,
    entities: Sequence[tuple[int, int]] = (), *, line_breaks: bool = False,
) -> list[int]:
    """Word indices where a new sentence starts (never 0 or len(words)), by the documented rule.

    A sentence ends after ".", "!", "?" or "…" (with any closing quotes or brackets after it) when the next word
    starts with an upper-case letter or a digit, unless it is a "." after a single letter ("U.S.") or after one of
    ABBREVIATIONS; a blank line in the original always ends one, and with `line_breaks` any line break does (text
    written one sentence per line). No cut falls inside an entity (word ranges, end exclusive).
    """
    cuts = []
    for k in range(1, len(words)):
        gap = original[offsets[k - 1][1] : offsets[k][0]]
        if gap.count("\n") >= (1 if line_breaks else 2):
            ends = True
        else:
            last = k - 1
            while last > 0 and words[last] in CLOSERS:
                last -= 1
            ends = words[last] in SENTENCE_ENDS and (words[k][0].isupper() or words[k][0].isdigit())
            if ends and words[last] == "." and last > 0:
                before = words[last - 1]
                ends = not (len(before) == 1 and before.isalpha()) and before.lower() not in ABBREVIATIONS
        if ends and not inside_entity(k, entities):
            cuts.append(k)
    return cuts
