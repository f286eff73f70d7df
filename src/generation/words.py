"""The word rule of generated data: how raw text becomes `tokens`, and how the original offsets come back.

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
