"""Batching for the span model: tokenise, align gold spans to subwords, build label tensors and the type batch.

Spans live in "units": token indices for `annotation_format="tokens"` (pre-split words, `token_spans`) and
character offsets for `"text"` (raw text, `char_spans`); both use exclusive ends. Inside a batch they become
subword positions with an inclusive end. For evaluation and prediction an example longer than the window is split
into overlapping windows (`encode_windows`), so nothing is truncated.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from .casing import case_id_tensor
from .context import fit_context
from .sources import LABEL_SET_MODES

ANNOTATION_FORMATS = ("tokens", "text")


class IndexedRecords(Dataset):
    """A list of JSONL records served as (index, record), so predictions can be matched back to their gold."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[int, dict]:
        return index, self.records[index]

    def lengths(self) -> list[int]:
        """Words per record (for length-grouped batching)."""
        return [len(record["tokens"]) for record in self.records]


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

    def covered_units(self) -> tuple[int, int]:
        """(first, last) unit, both inclusive, spanned by the complete words of this row; (0, -1) if none."""
        if not self.start_of:
            return 0, -1
        return min(self.start_of), self.last_unit - 1

    def candidates_to_units(self, candidates: list[tuple]) -> list[tuple]:
        """Decoded (start, end_inclusive, ...) tuples in subword positions -> the same with inclusive unit ends."""
        out = []
        for i, j, *rest in candidates:
            start, end = self.to_units(i, j)
            out.append((start, end - 1, *rest))
        return out


def align_encoding(
    encoding, *, annotation_format: str, word_extents: dict[int, tuple[int, int]] | None = None,
    target_words: tuple[int, int] | None = None,
) -> tuple[Alignment, list[bool], list[bool]]:
    """Build the alignment and the word-initial / word-final masks of one tokenizers `Encoding`.

    A word is a pre-split token ("tokens") or a pre-tokenizer word ("text"); a word cut by truncation gets no
    word-final subword, so no span can end inside its visible part. For a window of a longer example pass
    `word_extents` (see `measure_word_extents`): a window may also start inside a word, and a subword then counts as
    word-initial / word-final only where it holds the word's first / last character.

    `target_words` = (first, end): the input holds document context around the example's own words, which are
    words first..end-1 ("tokens" only). Context subwords are read by the encoder but belong to no unit, like
    special tokens, so no span can start or end in them, and units count from the example's first word.
    """
    word_ids = encoding.word_ids
    offsets = encoding.offsets
    n = len(word_ids)
    cut_word = None
    if encoding.overflowing and word_extents is None:
        next_ids = [w for w in encoding.overflowing[0].word_ids if w is not None]
        cut_word = next_ids[0] if next_ids else None
    starts, ends = [False] * n, [False] * n
    unit_start: list[int | None] = [None] * n
    unit_end: list[int | None] = [None] * n
    alignment = Alignment(unit_start, unit_end)
    first_word, end_word = target_words if target_words is not None else (0, None)
    for p, w in enumerate(word_ids):
        if w is None or w < first_word or (end_word is not None and w >= end_word):
            continue
        if annotation_format == "tokens":
            unit_start[p], unit_end[p] = w - first_word, w - first_word + 1
        else:
            unit_start[p], unit_end[p] = offsets[p]
        first_in_window = p == 0 or word_ids[p - 1] != w
        last_in_window = p + 1 == n or word_ids[p + 1] != w
        if word_extents is not None:
            first_in_window &= offsets[p][0] == word_extents[w][0]
            last_in_window &= offsets[p][1] == word_extents[w][1]
        if first_in_window:
            starts[p] = True
            alignment.start_of[unit_start[p]] = p
        if last_in_window and w != cut_word:
            ends[p] = True
            alignment.end_of[unit_end[p]] = p
            alignment.last_unit = max(alignment.last_unit, unit_end[p])
    return alignment, starts, ends


def measure_word_extents(encodings) -> dict[int, tuple[int, int]]:
    """Word id -> (first, last) character offset of the word over all windows of one example.

    Offsets are into the text ("text") or into the word itself (pre-split words), so in both cases a subword
    starting at `first` begins its word and one ending at `last` completes it.
    """
    extents: dict[int, tuple[int, int]] = {}
    for encoding in encodings:
        for w, (start, end) in zip(encoding.word_ids, encoding.offsets, strict=True):
            if w is None:
                continue
            first, last = extents.get(w, (start, end))
            extents[w] = (min(first, start), max(last, end))
    return extents


def default_stride(tokenizer: PreTrainedTokenizerBase, *, max_seq_length: int, max_span_length: int) -> int:
    """Subwords shared by consecutive windows: a quarter of the window, and at least the longest span.

    With an overlap of at least `max_span_length` every candidate span lies whole inside some window; the
    tokenizer needs the overlap to be smaller than the window's content.
    """
    content = max_seq_length - tokenizer.num_special_tokens_to_add()
    return max(1, min(content - 1, max(max_span_length, content // 4)))


@dataclass
class Windows:
    """Inputs split into overlapping windows of at most max_seq_length subwords; N windows in input order."""

    input_ids: torch.Tensor  # [N, L]
    attention_mask: torch.Tensor  # [N, L]
    start_mask: torch.Tensor  # [N, L] bool, word-initial subwords
    end_mask: torch.Tensor  # [N, L] bool, word-final subwords
    alignments: list[Alignment]  # per window, in the units of its input
    window_example: list[int]  # per window, the index of its input
    encodings: list  # per window, the tokenizers `Encoding`
    case_ids: torch.Tensor  # [N, L] long, the letter case of each subword (`src.casing`)


def encode_windows(
    tokenizer: PreTrainedTokenizerBase, inputs: list, *, annotation_format: str, max_seq_length: int, stride: int,
    targets: list[tuple[int, int] | None] | None = None,
) -> Windows:
    """Tokenise texts (or pre-split word lists for "tokens") into overlapping windows, padded to the longest.

    Uses the fast tokenizer's overflow: consecutive windows of one input share `stride` subwords. Every input gets
    at least one window, and every word boundary of the input is a boundary in each window that holds the word
    whole, so the windows together cover every span of up to `stride` subwords. `targets`: per input, the word
    range of the example inside its document context (see `align_encoding`), or None.
    """
    enc = tokenizer(
        inputs,
        is_split_into_words=annotation_format == "tokens",
        truncation=True,
        max_length=max_seq_length,
        stride=stride,
        return_overflowing_tokens=True,
        padding=True,
        return_tensors="pt",
    )
    window_example = enc["overflow_to_sample_mapping"].tolist()
    by_example: dict[int, list[int]] = {}
    for n, example in enumerate(window_example):
        by_example.setdefault(example, []).append(n)
    num_windows, length = enc["input_ids"].shape
    start_mask = torch.zeros(num_windows, length, dtype=torch.bool)  # [N, L]
    end_mask = torch.zeros(num_windows, length, dtype=torch.bool)  # [N, L]
    alignments: list[Alignment | None] = [None] * num_windows
    for windows in by_example.values():
        extents = measure_word_extents([enc.encodings[n] for n in windows])
        for n in windows:
            alignment, starts, ends = align_encoding(
                enc.encodings[n], annotation_format=annotation_format, word_extents=extents,
                target_words=targets[window_example[n]] if targets is not None else None,
            )
            alignments[n] = alignment
            start_mask[n, : len(starts)] = torch.tensor(starts)
            end_mask[n, : len(ends)] = torch.tensor(ends)
    return Windows(
        enc["input_ids"], enc["attention_mask"], start_mask, end_mask, alignments, window_example, enc.encodings,
        case_id_tensor(enc.encodings, inputs, window_example, length),
    )


def words_with_context(
    tokenizer: PreTrainedTokenizerBase, pieces: list[tuple[list[str], list[str], list[str]]], *, context_size: int,
    max_seq_length: int,
) -> tuple[list[list[str]], list[tuple[int, int]]]:
    """Per (left context, words, right context) piece: the words the encoder reads and the piece's own word range.

    Context words are added around the piece's words, nearest first, as far as `context_size` subwords and the
    window (`max_seq_length`, less the special tokens and the piece's own subwords) allow; a piece that fills the
    window alone gets none. `left` ends with the word nearest the piece, `right` starts with it.
    """
    counted = tokenizer(
        [left + words + right for left, words, right in pieces], is_split_into_words=True,
        add_special_tokens=False, verbose=False,  # only counted: no warning about lengths over the model's
    )
    room = max_seq_length - tokenizer.num_special_tokens_to_add()
    inputs, targets = [], []
    for n, (left, words, right) in enumerate(pieces):
        lengths = Counter(w for w in counted.encodings[n].word_ids if w is not None)
        own = sum(lengths[len(left) + k] for k in range(len(words)))
        keep_left, keep_right = fit_context(
            [lengths[k] for k in range(len(left))],
            [lengths[len(left) + len(words) + k] for k in range(len(right))],
            budget=max(0, min(context_size, room - own)),
        )
        inputs.append(left[len(left) - keep_left :] + words + right[:keep_right])
        targets.append((keep_left, keep_left + len(words)))
    return inputs, targets


def gold_spans(record: dict, annotation_format: str) -> list[tuple[int, int, str]]:
    """The record's gold spans in units: (start, end_exclusive, label)."""
    key = "token_spans" if annotation_format == "tokens" else "char_spans"
    return [(s["start"], s["end"], s["label"]) for s in record.get(key, [])]


class InBatchDataCollator:
    """Turns (index, record) items into model inputs; the type batch holds only the labels present in the batch.

    Per-record label sets (`label_sets="record"`): a record's optional `labels` lists the types it was annotated
    for; only those types give it loss (type_mask [N, C]), every other type of the batch is masked for it. The
    batch's types are the gold types present in it plus, up to `max_types` in all, negative types drawn from the
    records' own label sets (positives are always kept). Records without `labels` accept every type of the batch,
    which is today's single-corpus behaviour: with no record carrying `labels` there is nothing to draw negatives
    from, so the batch types are exactly the gold types present. `label_sets="batch_union"` ignores `labels` and
    gives every record loss for every present type (the behaviour before per-record label sets).

    With `label_set` given (evaluation, prediction) every batch scores that fixed list of types instead.
    Per batch it also returns `labels` (the type names, in type order), `indices` (dataset indices) and
    `alignments` (one `Alignment` per row) for decoding, and `lost` (Counter of gold spans that could not
    be trained on: truncated, misaligned, too_long).

    Without `stride` (training) each example is one row, truncated to max_seq_length. With `stride` (evaluation,
    see `with_windows`) an example becomes one row per overlapping window and nothing is truncated; the tensors
    then have one row per window, `window_example[n]` says which example (position in `indices`) row n belongs
    to, and a gold span is labelled in every window that holds it whole.
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
        stride: int | None = None,
        label_sets: str = "record",
        max_types: int | None = None,
        seed: int = 0,
        context_size: int = 0,
    ) -> None:
        if annotation_format not in ANNOTATION_FORMATS:
            raise ValueError(f"annotation_format must be one of {ANNOTATION_FORMATS}, got {annotation_format!r}")
        if label_sets not in LABEL_SET_MODES:
            raise ValueError(f"label_sets must be one of {LABEL_SET_MODES}, got {label_sets!r}")
        if max_types is not None and max_types < 1:
            raise ValueError(f"max_types must be None or at least 1, got {max_types}")
        if context_size < 0 or (context_size and annotation_format != "tokens"):
            raise ValueError(f"context_size must be >= 0, and 0 unless annotation_format is 'tokens'; got "
                             f"{context_size} with {annotation_format!r}")
        self.token_tokenizer = token_tokenizer
        self.type_tokenizer = type_tokenizer
        self.annotation_format = annotation_format
        self.max_seq_length = max_seq_length
        self.max_span_length = max_span_length
        self.max_type_length = max_type_length
        self.type_descriptions = type_descriptions or {}
        self.label_set = list(label_set) if label_set is not None else None
        self.stride = stride
        self.label_sets = label_sets
        self.max_types = max_types
        self.seed = seed
        self.context_size = context_size

    def with_windows(self, stride: int | None = None) -> InBatchDataCollator:
        """A copy that splits long examples into overlapping windows; self when it already does.

        `stride` is the number of subwords neighbouring windows share (default: `default_stride`).
        """
        if self.stride is not None and stride is None:
            return self
        if stride is None:
            stride = default_stride(
                self.token_tokenizer, max_seq_length=self.max_seq_length, max_span_length=self.max_span_length
            )
        return InBatchDataCollator(
            self.token_tokenizer,
            self.type_tokenizer,
            annotation_format=self.annotation_format,
            max_seq_length=self.max_seq_length,
            max_span_length=self.max_span_length,
            max_type_length=self.max_type_length,
            type_descriptions=self.type_descriptions,
            label_set=self.label_set,
            stride=stride,
            label_sets=self.label_sets,
            max_types=self.max_types,
            seed=self.seed,
            context_size=self.context_size,
        )

    def inputs_with_context(self, records: list[dict]) -> tuple[list, list[tuple[int, int]] | None]:
        """The encoder's input per record and, with `context_size`, the record's word range inside it.

        Without context the input is the record's words ("tokens") or text. With it, a record's `left_context` and
        `right_context` words (see `src.context`) are added around its words as `words_with_context` does.
        """
        if self.annotation_format != "tokens":
            return [r["text"] for r in records], None
        if not self.context_size:
            return [r["tokens"] for r in records], None
        pieces = [(r.get("left_context") or [], r["tokens"], r.get("right_context") or []) for r in records]
        return words_with_context(self.token_tokenizer, pieces, context_size=self.context_size,
                                  max_seq_length=self.max_seq_length)

    def tokenize(self, records: list[dict]):
        """Tokenise a list of records with truncation and padding (a `BatchEncoding` of tensors)."""
        return self._tokenize(self.inputs_with_context(records)[0])

    def _tokenize(self, inputs: list):
        return self.token_tokenizer(
            inputs,
            is_split_into_words=self.annotation_format == "tokens",
            truncation=True,
            max_length=self.max_seq_length,
            padding=True,
            return_tensors="pt",
        )

    def encode_type_texts(self, labels: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise the type encoder's text for each label: type_input_ids / type_attention_mask [C, T]."""
        if not labels:  # a batch without entities: no types to score, an empty [0, 1] type batch
            empty = torch.zeros(0, 1, dtype=torch.long)
            return {"type_input_ids": empty, "type_attention_mask": empty.clone()}
        texts = [self.type_descriptions.get(label, label) for label in labels]
        enc = self.type_tokenizer(
            texts, truncation=True, max_length=self.max_type_length, padding=True, return_tensors="pt"
        )
        return {"type_input_ids": enc["input_ids"], "type_attention_mask": enc["attention_mask"]}

    def _rows(self, records: list[dict]) -> Windows:
        """One row per example (truncated), or one per window when `stride` is set."""
        inputs, targets = self.inputs_with_context(records)
        if self.stride is not None:
            return encode_windows(
                self.token_tokenizer, inputs, annotation_format=self.annotation_format,
                max_seq_length=self.max_seq_length, stride=self.stride, targets=targets,
            )
        enc = self._tokenize(inputs)
        batch_size, length = enc["input_ids"].shape
        start_mask = torch.zeros(batch_size, length, dtype=torch.bool)  # [B, L]
        end_mask = torch.zeros(batch_size, length, dtype=torch.bool)  # [B, L]
        alignments = []
        for b in range(batch_size):
            alignment, starts, ends = align_encoding(
                enc.encodings[b], annotation_format=self.annotation_format,
                target_words=targets[b] if targets is not None else None,
            )
            alignments.append(alignment)
            start_mask[b, : len(starts)] = torch.tensor(starts)
            end_mask[b, : len(ends)] = torch.tensor(ends)
        rows = list(range(batch_size))
        return Windows(
            enc["input_ids"], enc["attention_mask"], start_mask, end_mask, alignments, rows, enc.encodings,
            case_id_tensor(enc.encodings, inputs, rows, length),
        )

    def record_label_sets(self, records: list[dict]) -> list[frozenset[str] | None]:
        """Per record, the types it gives loss for; None means every type of the batch (no `labels` given)."""
        if self.label_sets == "batch_union":
            return [None] * len(records)
        return [frozenset(r["labels"]) if r.get("labels") is not None else None for r in records]

    def batch_types(
        self, indices: list[int], golds: list[list[tuple]], record_labels: list[frozenset[str] | None]
    ) -> list[str]:
        """The training batch's types: every present gold type, then negatives from the records' label sets.

        Negatives fill the batch up to `max_types` (all of them when None), drawn without replacement by a
        generator seeded from the batch's dataset indices, so a resumed run and any number of workers draw the same.
        """
        present = {span[2] for spans in golds for span in spans}
        pool = sorted(set().union(*(s for s in record_labels if s is not None)) - present)
        room = len(pool) if self.max_types is None else max(0, self.max_types - len(present))
        if room < len(pool):
            key = hashlib.sha256(f"{self.seed}:{','.join(map(str, indices))}".encode()).digest()
            pool = random.Random(key).sample(pool, room)
        return sorted(present | set(pool))

    @staticmethod
    def type_mask(labels: list[str], row_label_sets: list[frozenset[str] | None]) -> torch.Tensor:
        """type_mask [N, C]: True where the row's record was annotated for the type (always without a label set)."""
        mask = torch.ones(len(row_label_sets), len(labels), dtype=torch.bool)  # [N, C]
        for n, allowed in enumerate(row_label_sets):
            if allowed is not None:
                mask[n] = torch.tensor([label in allowed for label in labels], dtype=torch.bool)
        return mask

    def __call__(self, items: list[tuple[int, dict]]) -> dict:
        indices = [i for i, _ in items]
        records = [r for _, r in items]
        rows = self._rows(records)
        num_rows, length = rows.input_ids.shape
        golds = [gold_spans(r, self.annotation_format) for r in records]
        record_labels = self.record_label_sets(records)
        labels = self.label_set if self.label_set is not None else self.batch_types(indices, golds, record_labels)
        type_index = {label: c for c, label in enumerate(labels)}
        num_types, width = len(labels), self.max_span_length

        start_labels = torch.zeros(num_rows, num_types, length)  # [N, C, L]
        end_labels = torch.zeros(num_rows, num_types, length)  # [N, C, L]
        span_labels = torch.zeros(num_rows, num_types, length, width)  # [N, C, L, W]
        # Per example and gold span, the subword spans of the rows that hold it (several windows may).
        placed: list[list[list[tuple[int, int]]]] = [[[] for _ in spans] for spans in golds]
        for n, (b, alignment) in enumerate(zip(rows.window_example, rows.alignments, strict=True)):
            for k, (start, end, label) in enumerate(golds[b]):
                sub = alignment.to_subwords(start, end) if label in type_index else None
                if sub is None:
                    continue
                placed[b][k].append(sub)
                c, (i, j) = type_index[label], sub
                start_labels[n, c, i] = 1.0
                end_labels[n, c, j] = 1.0
                if j - i < width:
                    span_labels[n, c, i, j - i] = 1.0
        lost = Counter()
        last_unit = [-1] * len(records)
        for b, alignment in zip(rows.window_example, rows.alignments, strict=True):
            last_unit[b] = max(last_unit[b], alignment.last_unit)
        for b, spans in enumerate(golds):
            for (_start, end, label), subs in zip(spans, placed[b], strict=True):
                if label not in type_index:
                    lost["unknown_type"] += 1
                elif not subs:
                    lost["truncated" if end > last_unit[b] else "misaligned"] += 1
                elif subs[0][1] - subs[0][0] >= width:
                    lost["too_long"] += 1
        batch = {
            "input_ids": rows.input_ids,
            "attention_mask": rows.attention_mask,
            "case_ids": rows.case_ids,
            "start_mask": rows.start_mask,
            "end_mask": rows.end_mask,
            "type_mask": self.type_mask(labels, [record_labels[b] for b in rows.window_example]),
            "start_labels": start_labels,
            "end_labels": end_labels,
            "span_labels": span_labels,
            **self.encode_type_texts(labels),
            "labels": labels,
            "indices": indices,
            "alignments": rows.alignments,
            "window_example": rows.window_example,
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
    "case_ids",
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
