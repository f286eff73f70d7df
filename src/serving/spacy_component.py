"""spaCy pipeline component "span_ner": predicts entities on a Doc's text and aligns them to spaCy tokens.

Importing this module registers the factory: `nlp.add_pipe("span_ner", config={"model": DIR, "labels": [...]})`.
"""

# No `from __future__ import annotations`: spaCy checks the factory's config against its real type annotations.
from collections.abc import Iterable, Iterator

from spacy.language import Language
from spacy.tokens import Doc, SpanGroup
from spacy.util import minibatch

from .onnx_backend import load_predictor

FACTORY_NAME = "span_ner"
ALIGNMENT_MODES = ("strict", "contract", "expand")  # as `Doc.char_span`


class SpanNerComponent:
    """Writes every prediction to `doc.spans[spans_key]` (its `attrs["scores"]` holds the scores, in span order)
    and, for flat single-label decoding, also sets `doc.ents` (replacing the entities a Doc had).

    Character offsets become token spans with `Doc.char_span(alignment_mode=...)`: "expand" (default) takes every
    token the entity touches, "contract" only tokens inside it, "strict" drops entities that do not start and end on
    token boundaries. Expansion can make two entities share a token; `doc.ents` then keeps the higher-scoring one.
    """

    def __init__(self, predictor, *, labels: list, threshold: float | None, flat_ner: bool | None,
                 multi_label: bool, spans_key: str, alignment_mode: str, batch_size: int) -> None:
        if alignment_mode not in ALIGNMENT_MODES:
            raise ValueError(f"span_ner: alignment_mode must be one of {ALIGNMENT_MODES}, got {alignment_mode!r}")
        if not labels:
            raise ValueError("span_ner: 'labels' must list at least one entity type")
        if batch_size < 1:
            raise ValueError(f"span_ner: batch_size must be a positive integer, got {batch_size!r}")
        predictor.queries("", labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label)  # checks
        self.predictor, self.labels = predictor, list(labels)
        self.threshold, self.multi_label = threshold, multi_label
        self.flat_ner = predictor.config.flat_ner if flat_ner is None else flat_ner
        self.spans_key, self.alignment_mode, self.batch_size = spans_key, alignment_mode, batch_size

    def __call__(self, doc: Doc) -> Doc:
        return self._annotate([doc])[0]

    def pipe(self, stream: Iterable[Doc], *, batch_size: int | None = None) -> Iterator[Doc]:
        """Annotate docs `batch_size` at a time (`nlp.pipe`'s batch_size; one predictor call per batch, which runs
        the model on the component's `batch_size` texts at a time)."""
        for docs in minibatch(stream, size=batch_size or self.batch_size):
            yield from self._annotate(list(docs))

    def _annotate(self, docs: list) -> list:
        found = self.predictor.predict([doc.text for doc in docs], self.labels, threshold=self.threshold,
                                       flat_ner=self.flat_ner, multi_label=self.multi_label,
                                       batch_size=self.batch_size)
        for doc, entities in zip(docs, found, strict=True):
            self._set_annotations(doc, entities)
        return docs

    def _set_annotations(self, doc: Doc, entities: list) -> None:
        spans, scores = [], []
        for entity in entities:
            span = doc.char_span(entity["start"], entity["end"], label=entity["label"],
                                 alignment_mode=self.alignment_mode)
            if span is not None and len(span):
                spans.append(span)
                scores.append(entity["score"])
        doc.spans[self.spans_key] = SpanGroup(doc, name=self.spans_key, spans=spans, attrs={"scores": scores})
        if self.flat_ner and not self.multi_label:
            taken: set[int] = set()
            ents = []
            for k in sorted(range(len(spans)), key=lambda k: -scores[k]):
                tokens = set(range(spans[k].start, spans[k].end))
                if not tokens & taken:
                    taken |= tokens
                    ents.append(spans[k])
            doc.ents = sorted(ents, key=lambda span: span.start)


@Language.factory(
    FACTORY_NAME,
    default_config={"model": None, "labels": [], "threshold": None, "flat_ner": None, "multi_label": False,
                    "backend": "torch", "precision": None, "spans_key": FACTORY_NAME, "alignment_mode": "expand",
                    "batch_size": 8},
)
def make_span_ner(nlp: Language, name: str, model: str, labels: list, threshold: float | None,
                  flat_ner: bool | None, multi_label: bool, backend: str, precision: str | None, spans_key: str,
                  alignment_mode: str, batch_size: int) -> SpanNerComponent:
    """Build the component from a model folder (`backend` "torch") or an export.py folder (`backend` "onnx");
    `precision` as predict.py's (torch: fp32, bf16, fp16; onnx: fp32, int8; default: fp32 / the export's)."""
    if not model:
        raise ValueError("span_ner: config 'model' must name a model folder")
    predictor = load_predictor(model, backend=backend, precision=precision)
    return SpanNerComponent(predictor, labels=labels, threshold=threshold, flat_ner=flat_ner, multi_label=multi_label,
                            spans_key=spans_key, alignment_mode=alignment_mode, batch_size=batch_size)
