"""The spaCy component on a real `spacy.blank("en")` pipeline: doc.ents / doc.spans equal `predict`, nested and
multi-label spans, batching in nlp.pipe, alignment to spaCy tokens, config errors."""

from __future__ import annotations

import pytest
import spacy

import src.serving.spacy_component  # noqa: F401  (registers the "span_ner" factory)
from src.inference import InferenceConfig, SpanPredictor
from src.serving.spacy_component import SpanNerComponent

# Whitespace-separated words and punctuation: spaCy's tokens and the model's words agree, so offsets match exactly.
TEXTS = ["John Smith lives in New York .", "Apple hired Mary Jones yesterday in Paris and Berlin .",
         "Angela Merkel visited Berlin and the UN .", "Nothing to see here"]
LABELS = ["PER", "LOC", "ORG"]


@pytest.fixture(scope="module")
def local(tiny_model_dir) -> SpanPredictor:
    return SpanPredictor.from_pretrained(tiny_model_dir)


def triples(spans) -> list[tuple[int, int, str]]:
    return [(span.start_char, span.end_char, span.label_) for span in spans]


def expected(entities) -> list[tuple[int, int, str]]:
    return [(e["start"], e["end"], e["label"]) for e in entities]


def test_doc_ents_equal_predict_and_nlp_pipe_batches(tiny_model_dir, local, monkeypatch):
    nlp = spacy.blank("en")
    nlp.add_pipe("span_ner", config={"model": str(tiny_model_dir), "labels": LABELS, "threshold": 0.3})
    want = local.predict(TEXTS, LABELS, threshold=0.3)
    assert sum(map(len, want)) > 3
    for text, entities in zip(TEXTS, want, strict=True):
        doc = nlp(text)
        assert triples(doc.ents) == expected(entities)
        assert triples(doc.spans["span_ner"]) == expected(entities)
        assert doc.spans["span_ner"].attrs["scores"] == pytest.approx([e["score"] for e in entities], abs=1e-5)
    component = nlp.get_pipe("span_ner")
    calls = []
    original = component.predictor.predict
    monkeypatch.setattr(component.predictor, "predict", lambda texts, *a, **k: calls.append(len(texts)) or
                        original(texts, *a, **k))
    docs = list(nlp.pipe(TEXTS * 2, batch_size=3))
    assert calls == [3, 3, 2]  # nlp.pipe's batch_size docs per predictor call
    assert [triples(doc.ents) for doc in docs] == [expected(e) for e in want * 2]


def test_nested_and_multi_label_go_to_doc_spans(tiny_model_dir, local):
    nlp = spacy.blank("en")
    nlp.add_pipe("span_ner", name="nested", config={"model": str(tiny_model_dir), "labels": LABELS,
                                                    "threshold": 0.2, "flat_ner": False, "spans_key": "nested"})
    nlp.add_pipe("span_ner", name="multi", config={"model": str(tiny_model_dir), "labels": LABELS,
                                                   "threshold": 0.2, "multi_label": True, "spans_key": "multi"})
    doc = nlp(TEXTS[1])
    nested = local.predict([TEXTS[1]], LABELS, threshold=0.2, flat_ner=False)[0]
    multi = local.predict([TEXTS[1]], LABELS, threshold=0.2, multi_label=True)[0]
    assert triples(doc.spans["nested"]) == expected(nested)
    assert triples(doc.spans["multi"]) == expected(multi)
    assert len({(s, e) for s, e, _ in expected(multi)}) < len(multi)  # some span carries two types
    assert not doc.ents  # neither pipe is flat single-label


class FixedPredictor:
    """Stands in for SpanPredictor: returns the given entities for every text."""

    def __init__(self, entities):
        self.entities = entities
        self.config = InferenceConfig()

    def queries(self, *args, **kwargs):
        return []

    def predict(self, texts, labels, **kwargs):
        return [list(self.entities) for _ in texts]


@pytest.mark.parametrize(
    ("mode", "spans", "ents"),
    [
        ("expand", [(0, 4, "ORG"), (5, 9, "PER"), (5, 9, "LOC")], [(0, 4, "ORG"), (5, 9, "PER")]),
        ("contract", [(5, 9, "PER")], [(5, 9, "PER")]),
        ("strict", [(5, 9, "PER")], [(5, 9, "PER")]),
    ],
)
def test_alignment_modes_map_character_offsets_to_spacy_tokens(mode, spans, ents):
    # "U.N." is one spaCy token, and the model's tokenizer can predict "U" alone: only "expand" keeps it (as "U.N.").
    # "Anna" is exact in every mode; the misaligned "nna" expands onto the same token, so doc.ents keeps the
    # higher-scoring PER while doc.spans holds both.
    text = "U.N. Anna Lee"
    entities = [{"start": 0, "end": 1, "label": "ORG", "score": 0.9},
                {"start": 5, "end": 9, "label": "PER", "score": 0.8},
                {"start": 6, "end": 9, "label": "LOC", "score": 0.7}]
    component = SpanNerComponent(FixedPredictor(entities), labels=["ORG"], threshold=None, flat_ner=None,
                                 multi_label=False, spans_key="sn", alignment_mode=mode, batch_size=2)
    doc = component(spacy.blank("en")(text))
    assert triples(doc.spans["sn"]) == spans
    assert triples(doc.ents) == ents


def test_bad_config_is_an_error_naming_the_key(tiny_model_dir):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="labels"):
        nlp.add_pipe("span_ner", config={"model": str(tiny_model_dir), "labels": []})
    with pytest.raises(ValueError, match="alignment_mode"):
        nlp.add_pipe("span_ner", name="b", config={"model": str(tiny_model_dir), "labels": ["PER"],
                                                   "alignment_mode": "fuzzy"})
    with pytest.raises(ValueError, match="threshold"):
        nlp.add_pipe("span_ner", name="c", config={"model": str(tiny_model_dir), "labels": ["PER"],
                                                   "threshold": 2.0})
    with pytest.raises(ValueError, match="model"):
        nlp.add_pipe("span_ner", name="d", config={"labels": ["PER"]})


def test_factory_takes_precision(tiny_model_dir):
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("span_ner", config={"model": str(tiny_model_dir), "labels": LABELS, "precision": "bf16"})
    assert pipe.predictor.backend.precision == "bf16"
    bf16 = SpanPredictor.from_pretrained(tiny_model_dir, precision="bf16")
    assert triples(nlp(TEXTS[1]).ents) == expected(bf16.predict(TEXTS[1], LABELS)[0])
