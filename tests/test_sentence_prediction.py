"""Raw documents read sentence by sentence (`SpanPredictor(sentences=True)`): the split, spans that never leave
their sentence, context that is really read, the defaults a trained run gives, predict.py's flags and ONNX."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import predict as predict_cli
from src.config import SpanModelConfig
from src.inference import SpanPredictor, split_sentences
from src.model import SpanModel

DOCUMENT = ("John Smith lives in New York. He works for Apple in Paris!\n"
            "Angela Merkel visited Berlin and the U.N. yesterday\n\n"
            "Mr. Jones met Mary Jones in London .")
LABELS = ["PER", "LOC", "ORG"]


@pytest.fixture(scope="module")
def model(tiny_backbone) -> SpanModel:
    torch.manual_seed(0)
    config = SpanModelConfig(token_encoder=tiny_backbone, type_encoder=tiny_backbone, max_span_length=4,
                             linear_hidden_size=16, dropout=0.0)
    return SpanModel.from_config(config).eval()


def sentence_ranges(text: str) -> list[tuple[int, int]]:
    _words, offsets, bounds = split_sentences(text)
    return [(offsets[first][0], offsets[end - 1][1]) for first, end in bounds]


def test_split_sentences_by_rule_and_line_breaks():
    ranges = sentence_ranges(DOCUMENT)
    assert [DOCUMENT[s:e] for s, e in ranges] == [
        "John Smith lives in New York.", "He works for Apple in Paris!",
        "Angela Merkel visited Berlin and the U.N. yesterday", "Mr. Jones met Mary Jones in London .",
    ]
    assert split_sentences("") == ([], [], []) and split_sentences(" \n ")[2] == []


def test_without_context_each_sentence_is_predicted_as_if_alone(model):
    predictor = SpanPredictor(model, sentences=True)
    [found] = predictor.predict(DOCUMENT, LABELS, threshold=0.3)
    assert found, "the tiny random model predicts something at 0.3"
    expected = []
    for start, end in sentence_ranges(DOCUMENT):
        [alone] = SpanPredictor(model).predict(DOCUMENT[start:end], LABELS, threshold=0.3)
        expected += [{**e, "start": e["start"] + start, "end": e["end"] + start} for e in alone]
    assert [(e["start"], e["end"], e["label"]) for e in found] == [(e["start"], e["end"], e["label"]) for e in expected]
    assert [e["score"] for e in found] == pytest.approx([e["score"] for e in expected], abs=1e-5)
    assert all(DOCUMENT[e["start"]:e["end"]] == e["text"] for e in found)


def test_context_is_read_but_spans_stay_inside_their_sentence(model):
    plain = SpanPredictor(model, sentences=True).predict(DOCUMENT, LABELS, threshold=0.3, flat_ner=False)[0]
    context = SpanPredictor(model, sentences=True, context_size=32)
    found = context.predict(DOCUMENT, LABELS, threshold=0.3, flat_ner=False)[0]
    ranges = sentence_ranges(DOCUMENT)
    assert found and all(any(s <= e["start"] and e["end"] <= t for s, t in ranges) for e in found)
    scores = {(e["start"], e["end"], e["label"]): e["score"] for e in found}
    shared = [(scores[key], e["score"]) for e in plain if (key := (e["start"], e["end"], e["label"])) in scores]
    assert shared and any(abs(a - b) > 1e-4 for a, b in shared), "the neighbours must change the scores"
    # the same document next to others, or with its sentences in a longer batch, gives the same result
    again = context.predict(["Paris .", DOCUMENT, "x"], LABELS, threshold=0.3, flat_ner=False, batch_size=2)[1]
    assert [(e["start"], e["end"], e["label"]) for e in again] == [(e["start"], e["end"], e["label"]) for e in found]
    assert context.predict(["", "  "], LABELS) == [[], []]


def test_bad_settings_are_errors(model):
    with pytest.raises(ValueError, match="context_size needs sentences"):
        SpanPredictor(model, context_size=8)
    with pytest.raises(ValueError, match="context_size"):
        SpanPredictor(model, sentences=True, context_size=-1)
    with pytest.raises(TypeError, match="sentences"):
        SpanPredictor(model, sentences="yes")


@pytest.fixture()
def context_run(tiny_model_dir, tmp_path):
    """A training run folder whose config.json says context_size 16, with the tiny model as best/."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "best")
    settings = {"output_dir": str(run), "max_seq_length": 64, "annotation_format": "tokens", "context_size": 16}
    (run / "config.json").write_text(json.dumps(settings))
    return run


def test_a_context_model_reads_sentences_with_its_context_by_default(context_run, tiny_model_dir):
    default = SpanPredictor.from_pretrained(context_run / "best")
    assert (default.sentences, default.context_size, default.max_seq_length) == (True, 16, 64)
    windows = SpanPredictor.from_pretrained(context_run / "best", sentences=False)
    assert (windows.sentences, windows.context_size) == (False, 0)
    fewer = SpanPredictor.from_pretrained(context_run / "best", context_size=4)
    assert (fewer.sentences, fewer.context_size) == (True, 4)
    plain = SpanPredictor.from_pretrained(tiny_model_dir)  # no run config: windows, as before
    assert (plain.sentences, plain.context_size) == (False, 0)


def test_predict_cli_sentence_flags(context_run, capsys):
    model = str(context_run / "best")
    assert predict_cli.main([model, "--labels", "PER,LOC", "--text", DOCUMENT, "--threshold", "0.3"]) == 0
    by_default = json.loads(capsys.readouterr().out)
    expected = SpanPredictor.from_pretrained(context_run / "best").predict(DOCUMENT, ["PER", "LOC"], threshold=0.3)
    assert by_default["entities"] == json.loads(json.dumps(expected[0]))
    assert predict_cli.main([model, "--labels", "PER,LOC", "--text", DOCUMENT, "--no-sentences"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        predict_cli.main([model, "--labels", "PER", "--text", "x", "--no-sentences", "--context-size", "8"])
    assert err.value.code == 2 and "--context-size needs --sentences" in capsys.readouterr().err


def test_onnx_sentence_mode_equals_pytorch(tiny_model_dir, tiny_onnx_dir):
    from src.serving.onnx_backend import load_onnx_predictor

    torch_found = SpanPredictor.from_pretrained(tiny_model_dir, sentences=True, context_size=16).predict(
        [DOCUMENT, "Paris"], LABELS, threshold=0.3)
    onnx_found = load_onnx_predictor(tiny_onnx_dir, precision="fp32", sentences=True, context_size=16).predict(
        [DOCUMENT, "Paris"], LABELS, threshold=0.3)
    assert [[(e["start"], e["end"], e["label"]) for e in t] for t in onnx_found] == \
        [[(e["start"], e["end"], e["label"]) for e in t] for t in torch_found]
