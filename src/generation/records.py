"""Build the JSONL records of one annotated document: pieces, training fields, scores, labels, source, filters.

A record is the training format (`id`, `tokens`, `text`, `token_spans`, `char_spans`; see docs/data.md) plus
`scores` (the teacher's probability of each span, in `token_spans` order), `labels` (the label set asked, so
absent types count as negatives) and `source` ({"id": the input document, "word": its first word's index}).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass

from ..conll import make_record
from .pieces import cut_pieces
from .teachers import WordDocument, WordSpan


@dataclass(frozen=True)
class Document:
    """One input document: its position in the input (0-based), where it came from, and its text."""

    ordinal: int
    source: str
    text: str


@dataclass(frozen=True)
class AnnotationSettings:
    """Everything that decides the output bytes of a document; recorded in the manifest and matched on resume."""

    labels: tuple[str, ...]  # names written into the records
    prompts: tuple[str, ...]  # what the teacher reads for each label (the name itself unless NAME=PROMPT)
    thresholds: tuple[float, ...]  # one per label
    flat_ner: bool = True
    min_confidence: float | None = None  # a record whose least confident entity scores below is dropped
    sentences: bool = False  # one record per sentence instead of per document
    max_words: int | None = None  # windows of at most this many words
    keep_empty: float = 1.0  # share of records without entities that is kept (a seeded draw per record)
    seed: int = 0
    batch_size: int = 8  # documents per call of the per-batch function (fixed, so float rounding is too)
    score_digits: int = 4

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("no labels: name at least one entity type")
        if not len(self.labels) == len(self.prompts) == len(self.thresholds):
            raise ValueError("labels, prompts and thresholds must have one entry per label")
        for name, value in (("labels", self.labels), ("prompts", self.prompts)):
            if len(set(value)) != len(value):
                raise ValueError(f"{name} repeat an entry: {list(value)}")
        for label, value in zip(self.labels, self.thresholds, strict=True):
            if not 0.0 < value < 1.0:
                raise ValueError(f"threshold of {label!r} must lie strictly between 0 and 1, got {value}")
        if self.min_confidence is not None and not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie between 0 and 1, got {self.min_confidence}")
        if not 0.0 <= self.keep_empty <= 1.0:
            raise ValueError(f"keep_empty must lie between 0 and 1, got {self.keep_empty}")
        if self.max_words is not None and self.max_words < 1:
            raise ValueError(f"max_words must be a positive integer, got {self.max_words}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")

    def to_json(self) -> dict:
        """The settings as JSON values (tuples become lists), for the manifest."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @property
    def splits_documents(self) -> bool:
        """True when a document may give several records (ids then read `<ordinal>-<piece>`)."""
        return self.sentences or self.max_words is not None


def keeps_empty_record(record_id: str, settings: AnnotationSettings) -> bool:
    """The seeded draw that keeps a share `keep_empty` of the records without entities (same on every engine)."""
    if settings.keep_empty >= 1.0:
        return True
    digest = hashlib.sha256(f"{settings.seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < settings.keep_empty


def build_records(
    document: Document, words: WordDocument, spans: list[WordSpan], settings: AnnotationSettings
) -> tuple[list[dict], Counter]:
    """The records of one document (in order) and counts of what happened to it (see `annotator.STAT_KEYS`)."""
    stats: Counter = Counter(documents=1)
    pieces, stats["cut_entities"] = cut_pieces(
        words.words, words.offsets, words.text, [(start, end) for start, end, _, _ in spans],
        sentences=settings.sentences, max_words=settings.max_words,
    )
    records = []
    for k, (begin, end) in enumerate(pieces):
        record_id = f"{document.ordinal}-{k}" if settings.splits_documents else str(document.ordinal)
        inside = [span for span in spans if begin <= span[0] and span[1] <= end]
        if not inside and not keeps_empty_record(record_id, settings):
            stats["dropped_empty"] += 1
            continue
        scores = [round(span[3], settings.score_digits) for span in inside]
        if inside and settings.min_confidence is not None and min(scores) < settings.min_confidence:
            stats["dropped_low_confidence"] += 1
            continue
        record = make_record(record_id, words.words[begin:end],
                             [(start - begin, stop - begin, settings.labels[c]) for start, stop, c, _ in inside])
        record.update(scores=scores, labels=list(settings.labels), source={"id": document.source, "word": begin})
        records.append(record)
        stats["records"] += 1
        stats["entities"] += len(inside)
        stats.update(f"entities[{settings.labels[c]}]" for _, _, c, _ in inside)
    return records, stats
