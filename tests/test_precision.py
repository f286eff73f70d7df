"""Reduced-precision PyTorch weights (`precision="bf16"` / "fp16"): the API, predict.py, serve.py and the server app
take it; scores stay close to fp32 and bad values are errors naming the choices. (evaluate.py and the spaCy factory:
their own test files.)"""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

import predict as predict_cli
import serve as serve_cli
from src.inference import SpanPredictor
from src.serving.onnx_backend import load_predictor
from src.serving.server import ServerSettings, create_app

TEXTS = ["John Smith lives in New York .", "Apple hired Mary Jones yesterday in Paris and Berlin ."]
LABELS = ["PER", "LOC", "ORG"]
LOW = 0.001  # nearly every span passes: the two precisions are compared span by span


def all_scores(predictor: SpanPredictor) -> dict[tuple, float]:
    found = predictor.predict(TEXTS, LABELS, threshold=LOW, flat_ner=False, multi_label=True)
    return {(k, e["start"], e["end"], e["label"]): e["score"] for k, entities in enumerate(found) for e in entities}


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_reduced_precision_casts_the_weights_and_scores_stay_close_to_fp32(tiny_model_dir, precision, dtype):
    full = SpanPredictor.from_pretrained(tiny_model_dir)
    reduced = SpanPredictor.from_pretrained(tiny_model_dir, precision=precision)
    assert (full.backend.precision, reduced.backend.precision) == ("fp32", precision)
    assert {p.dtype for p in reduced.backend.model.parameters()} == {dtype}
    expected, got = all_scores(full), all_scores(reduced)
    assert len(expected) > 50  # many spans compared, not a handful
    shared = expected.keys() & got.keys()
    assert len(shared) >= 0.95 * len(expected)  # only spans within rounding of the threshold may differ
    for key in shared:
        assert got[key] == pytest.approx(expected[key], abs=0.03), key
        assert isinstance(got[key], float)


def test_bad_precision_is_an_error_naming_the_choices(tiny_model_dir):
    with pytest.raises(ValueError, match=r"precision must be one of \['bf16', 'fp16', 'fp32'\].*'int8'"):
        SpanPredictor.from_pretrained(tiny_model_dir, precision="int8")
    with pytest.raises(ValueError, match="precision must be one of"):
        load_predictor(tiny_model_dir, backend="torch", precision="float32")


def test_predict_cli_takes_precision_per_backend(tiny_model_dir, capsys):
    text = "Angela Merkel visited Berlin and the U.N. ."
    assert predict_cli.main([str(tiny_model_dir), "--precision", "bf16", "--labels", "PER,LOC,ORG",
                             "--text", text]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["text"] == text and isinstance(row["entities"], list)
    with pytest.raises(SystemExit) as exit_info:
        predict_cli.main([str(tiny_model_dir), "--backend", "onnx", "--precision", "bf16", "--labels", "PER",
                          "--text", text])
    assert exit_info.value.code == 2
    assert "--precision bf16 does not go with --backend onnx (choose from fp32, int8)" in capsys.readouterr().err


def test_serve_cli_refuses_a_precision_of_the_other_backend(tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve_cli.main([str(tiny_model_dir), "--precision", "int8"])
    assert exit_info.value.code == 2
    assert "--precision int8 does not go with --backend torch (choose from fp32, bf16, fp16)" in capsys.readouterr().err


def test_server_app_serves_bf16_and_reports_it(tiny_model_dir):
    predictor = load_predictor(tiny_model_dir, backend="torch", precision="bf16")
    expected = SpanPredictor.from_pretrained(tiny_model_dir, precision="bf16").predict(TEXTS, LABELS)
    with TestClient(create_app(predictor, ServerSettings(), model_name="tiny")) as client:
        assert client.get("/info").json()["precision"] == "bf16"
        answer = client.post("/predict", json={"texts": TEXTS, "labels": LABELS})
    assert answer.status_code == 200
    assert answer.json()["entities"] == expected
