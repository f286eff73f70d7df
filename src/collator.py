"""Batching for the span model: tokenise, align gold spans to subwords, build label tensors and the type batch.

Spans live in "units": token indices for `annotation_format="tokens"` (pre-split words, `token_spans`) and
character offsets for `"text"` (raw text, `char_spans`); both use exclusive ends. Inside a batch they become
subword positions with an inclusive end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

ANNOTATION_FORMATS = ("tokens", "text")


class IndexedRecords(Dataset):
    """A list of JSONL records served as (index, record), so predictions can be matched back to their gold."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[int, dict]:
        return index, self.records[index]


@dataclass
class Alignment:
    """Maps one example's subword positions to units and back.

    unit_start[p] / unit_end[p]: the unit where subword p starts / ends (exclusive), None for special tokens.
    start_of[u] / end_of[u]: the word-initial subword starting at unit u / the word-final subword ending at u.
    """

    unit_start: list[int | None]
    unit_end: list[int | None]
    start_of: dict[int, int] = field(default_factory=dict)
    end_of: dict[int, int] = field(default_factory=dict)
    last_unit: int = -1  # exclusive end of the last unit fully inside the window

    def to_units(self, start: int, end_inclusive: int) -> tuple[int, int]:
        """Subword span (inclusive end) -> unit span (exclusive end)."""
        return self.unit_start[start], self.unit_end[end_inclusive]

    def to_subwords(self, start: int, end: int) -> tuple[int, int] | None:
        """Unit span (exclusive end) -> subword span (inclusive end), or None when it cannot be represented."""
        if start in self.start_of and end in self.end_of:
            return self.start_of[start], self.end_of[end]
        return None


def align_encoding(encoding, *, annotation_format: str) -> tuple[Alignment, list[bool], list[bool]]:
    """Build the alignment and the word-initial / word-final masks of one tokenizers `Encoding`.

    A word is a pre-split token ("tokens") or a pre-tokenizer word ("text"); a word cut by truncation gets no
    word-final subword, so no span can end inside its visible part.
    """
    word_ids = encoding.word_ids
    offsets = encoding.offsets
    n = len(word_ids)
    cut_word = None
    if encoding.overflowing:
        next_ids = [w for w in encoding.overflowing[0].word_ids if w is not None]
        cut_word = next_ids[0] if next_ids else None
    starts, ends = [False] * n, [False] * n
    unit_start: list[int | None] = [None] * n
    unit_end: list[int | None] = [None] * n
    alignment = Alignment(unit_start, unit_end)
    for p, w in enumerate(word_ids):
        if w is None:
            continue
        if annotation_format == "tokens":
            unit_start[p], unit_end[p] = w, w + 1
        else:
            unit_start[p], unit_end[p] = offsets[p]
        if p == 0 or word_ids[p - 1] != w:
            starts[p] = True
            alignment.start_of[unit_start[p]] = p
        if (p + 1 == n or word_ids[p + 1] != w) and w != cut_word:
            ends[p] = True
            alignment.end_of[unit_end[p]] = p
            alignment.last_unit = max(alignment.last_unit, unit_end[p])
    return alignment, starts, ends


def gold_spans(record: dict, annotation_format: str) -> list[tuple[int, int, str]]:
    """The record's gold spans in units: (start, end_exclusive, label)."""
    key = "token_spans" if annotation_format == "tokens" else "char_spans"
    return [(s["start"], s["end"], s["label"]) for s in record.get(key, [])]


class InBatchDataCollator:
    """Turns (index, record) items into model inputs; the type batch holds only the labels present in the batch.

    With `label_set` given (evaluation, prediction) every batch scores that fixed list of types instead.
    Per batch it also returns `labels` (the type names, in type order), `indices` (dataset indices) and
    `alignments` (one `Alignment` per example) for decoding, and `lost` (Counter of gold spans that could not
    be trained on: truncated, misaligned, too_long).
    """

    def __init__(
        self,
        token_tokenizer: PreTrainedTokenizerBase,
        type_tokenizer: PreTrainedTokenizerBase,
        *,
        annotation_format: str,
        max_seq_length: int,
        max_span_length: int,
        max_type_length: int = 32,
        type_descriptions: dict[str, str] | None = None,
        label_set: list[str] | None = None,
    ) -> None:
        if annotation_format not in ANNOTATION_FORMATS:
            raise ValueError(f"annotation_format must be one of {ANNOTATION_FORMATS}, got {annotation_format!r}")
        self.token_tokenizer = token_tokenizer
        self.type_tokenizer = type_tokenizer
        self.annotation_format = annotation_format
        self.max_seq_length = max_seq_length
        self.max_span_length = max_span_length
        self.max_type_length = max_type_length
        self.type_descriptions = type_descriptions or {}
        self.label_set = list(label_set) if label_set is not None else None

    def tokenize(self, records: list[dict]):
        """Tokenise a list of records with truncation and padding (a `BatchEncoding` of tensors)."""
        if self.annotation_format == "tokens":
            inputs, split = [r["tokens"] for r in records], True
        else:
            inputs, split = [r["text"] for r in records], False
        return self.token_tokenizer(
            inputs,
            is_split_into_words=split,
            truncation=True,
            max_length=self.max_seq_length,
            padding=True,
            return_tensors="pt",
        )

    def encode_type_texts(self, labels: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise the type encoder's text for each label: type_input_ids / type_attention_mask [C, T]."""
        texts = [self.type_descriptions.get(label, label) for label in labels]
        enc = self.type_tokenizer(
            texts, truncation=True, max_length=self.max_type_length, padding=True, return_tensors="pt"
        )
        return {"type_input_ids": enc["input_ids"], "type_attention_mask": enc["attention_mask"]}

    def __call__(self, items: list[tuple[int, dict]]) -> dict:
        indices = [i for i, _ in items]
        records = [r for _, r in items]
        enc = self.tokenize(records)
        batch_size, length = enc["input_ids"].shape
        golds = [gold_spans(r, self.annotation_format) for r in records]
        labels = self.label_set if self.label_set is not None else sorted({g[2] for spans in golds for g in spans})
        type_index = {label: c for c, label in enumerate(labels)}
        num_types, width = len(labels), self.max_span_length

        start_mask = torch.zeros(batch_size, length, dtype=torch.bool)  # [B, L]
        end_mask = torch.zeros(batch_size, length, dtype=torch.bool)  # [B, L]
        start_labels = torch.zeros(batch_size, num_types, length)  # [B, C, L]
        end_labels = torch.zeros(batch_size, num_types, length)  # [B, C, L]
        span_labels = torch.zeros(batch_size, num_types, length, width)  # [B, C, L, W]
        alignments, lost = [], Counter()
        for b, spans in enumerate(golds):
            alignment, starts, ends = align_encoding(enc.encodings[b], annotation_format=self.annotation_format)
            alignments.append(alignment)
            start_mask[b, : len(starts)] = torch.tensor(starts)
            end_mask[b, : len(ends)] = torch.tensor(ends)
            for start, end, label in spans:
                if label not in type_index:
                    lost["unknown_type"] += 1
                    continue
                sub = alignment.to_subwords(start, end)
                if sub is None:
                    lost["truncated" if end > alignment.last_unit else "misaligned"] += 1
                    continue
                c, (i, j) = type_index[label], sub
                start_labels[b, c, i] = 1.0
                end_labels[b, c, j] = 1.0
                if j - i < width:
                    span_labels[b, c, i, j - i] = 1.0
                else:
                    lost["too_long"] += 1
        batch = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            "start_mask": start_mask,
            "end_mask": end_mask,
            "type_mask": torch.ones(batch_size, num_types, dtype=torch.bool),
            "start_labels": start_labels,
            "end_labels": end_labels,
            "span_labels": span_labels,
            **self.encode_type_texts(labels),
            "labels": labels,
            "indices": indices,
            "alignments": alignments,
            "lost": lost,
        }
        return batch

    def audit(self, records: list[dict], batch_size: int = 256) -> Counter:
        """Count gold spans over a whole split and how many of them training cannot see, and why."""
        counts = Counter()
        for begin in range(0, len(records), batch_size):
            chunk = records[begin : begin + batch_size]
            batch = self([(begin + k, r) for k, r in enumerate(chunk)])
            counts.update(batch["lost"])
            counts["entities"] += sum(len(gold_spans(r, self.annotation_format)) for r in chunk)
        return counts


MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "start_mask",
    "end_mask",
    "type_input_ids",
    "type_attention_mask",
    "type_mask",
    "start_labels",
    "end_labels",
    "span_labels",
)


def model_inputs(batch: dict, *, with_labels: bool = True) -> dict[str, torch.Tensor]:
    """The tensor keys of a collated batch that `SpanModel.forward` takes."""
    label_keys = {"start_labels", "end_labels", "span_labels"}
    return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch and (with_labels or k not in label_keys)}
