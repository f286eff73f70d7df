"""The one per-batch function of generation: a batch of documents -> its JSONL bytes and counts.

Every engine (one process, a process pool, `accelerate launch`, Ray Data actors) calls `Annotator` on the same
batches, so their outputs can be compared byte for byte; engines only feed batches and collect results.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from ..text_split import split_words
from .records import AnnotationSettings, Document, build_records
from .teachers import Teacher, TeacherSpec, WordDocument, load_teacher

# Counts each batch reports (plus "entities[<label>]" per label); the manifest sums them over the run.
STAT_KEYS = (
    "documents",  # input documents read
    "no_words",  # documents with no word at all (blank text): no record can hold them
    "records",  # records written
    "entities",  # entities written
    "dropped_empty",  # records without entities left out by the keep_empty draw
    "dropped_low_confidence",  # records left out by min_confidence
    "unaligned_spans",  # teacher spans whose boundary fell inside a word (not written)
    "cut_entities",  # entities lost to a window cut (an entity longer than max_words)
)


@dataclass(frozen=True)
class Batch:
    """Consecutive input documents; `index` is the batch's position in the input (batch k holds documents
    k * batch_size ... on every engine, which keeps each batch's padding, hence its float rounding, the same)."""

    index: int
    documents: tuple[Document, ...]

    def to_json(self) -> str:
        """The batch as one JSON string (what a Ray row carries)."""
        return json.dumps([self.index, [[d.ordinal, d.source, d.text] for d in self.documents]], ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Batch:
        """Inverse of `to_json`."""
        index, documents = json.loads(text)
        return cls(index, tuple(Document(*values) for values in documents))


@dataclass
class BatchResult:
    """What a batch gave: its JSONL lines as UTF-8 bytes (in document order) and its counts."""

    index: int
    documents: int
    data: bytes
    stats: dict[str, int] = field(default_factory=dict)


def annotate_batch(teacher: Teacher, batch: Batch, settings: AnnotationSettings) -> BatchResult:
    """Split each document into words, let the teacher find entities, build and serialise the records."""
    stats: Counter = Counter()
    with_words, views = [], []
    for document in batch.documents:
        words, offsets = split_words(document.text)
        if words:
            with_words.append(document)
            views.append(WordDocument(document.text, tuple(words), tuple(offsets)))
        else:
            stats.update(documents=1, no_words=1)
    found, stats["unaligned_spans"] = teacher.find(
        views, settings.prompts, settings.thresholds, flat_ner=settings.flat_ner, batch_size=settings.batch_size
    ) if views else ([], 0)
    lines = []
    for document, view, spans in zip(with_words, views, found, strict=True):
        records, counts = build_records(document, view, spans, settings)
        stats.update(counts)
        lines += [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    data = "".join(lines).encode("utf-8")
    return BatchResult(batch.index, len(batch.documents), data, {k: v for k, v in sorted(stats.items()) if v})


class Annotator:
    """`annotate_batch` with its teacher loaded once (per process, per actor): `Annotator(spec, settings)(batch)`."""

    def __init__(self, spec: TeacherSpec, settings: AnnotationSettings) -> None:
        self.teacher = load_teacher(spec)
        self.settings = settings

    def __call__(self, batch: Batch) -> BatchResult:
        return annotate_batch(self.teacher, batch, self.settings)
