"""Letter case of each subword, read from the original text: what an uncased backbone's tokenizer throws away.

The embedded backbone (all-MiniLM-L6-v2) lower-cases its input, so "Bush" the president and "bush" the plant
reach the encoder as the same ids. With `case_features` the model adds a learned vector per case class to each
subword's input embedding (`SpanModel.case_embedding`). The class of a subword depends only on the characters it
covers in the original input (its offsets), so pre-split words ("tokens") and raw text ("text") give the same
classes for the same subwords.
"""

from __future__ import annotations

import torch

# Case classes: 0 is for positions that cover no input characters (special tokens, padding).
CASE_NONE, CASE_UNCASED, CASE_LOWER, CASE_TITLE, CASE_UPPER, CASE_SINGLE_UPPER, CASE_MIXED = range(7)
NUM_CASE_CLASSES = 7


def case_class(piece: str) -> int:
    """The case class of a subword's original characters.

    Only cased letters count: "1990" or "-" is CASE_UNCASED, "Ob" (from "Obama") CASE_TITLE, "AMA" CASE_UPPER,
    "U" CASE_SINGLE_UPPER, "ama" CASE_LOWER, "cDNA" CASE_MIXED.
    """
    cased = [c for c in piece if c.isupper() or c.islower()]
    if not cased:
        return CASE_UNCASED
    upper = [c.isupper() for c in cased]
    if not any(upper):
        return CASE_LOWER
    if all(upper):
        return CASE_SINGLE_UPPER if len(cased) == 1 else CASE_UPPER
    if upper[0] and not any(upper[1:]):
        return CASE_TITLE
    return CASE_MIXED


def encoding_case_ids(encoding, source: str | list[str], *, length: int) -> list[int]:
    """Case classes of one tokenizers `Encoding`, padded with CASE_NONE to `length`.

    `source` is what was tokenised: the text (offsets index it) or the list of pre-split words (offsets index the
    word of each subword, `encoding.word_ids`).
    """
    ids = [CASE_NONE] * length
    for p, (word, (start, end)) in enumerate(zip(encoding.word_ids, encoding.offsets, strict=True)):
        if word is None or end <= start:
            continue
        text = source if isinstance(source, str) else source[word]
        ids[p] = case_class(text[start:end])
    return ids


def case_id_tensor(encodings: list, sources: list, row_source: list[int], length: int) -> torch.Tensor:
    """case_ids [N, L] long for N encodings (rows); row n was tokenised from `sources[row_source[n]]`."""
    return torch.tensor(
        [encoding_case_ids(encodings[n], sources[row_source[n]], length=length) for n in range(len(encodings))],
        dtype=torch.long,
    ).view(len(encodings), length)
