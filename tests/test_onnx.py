"""ONNX export and the ONNX Runtime backend: fp32 equals PyTorch (tensors and entities, also on CoNLL-2003 test
sentences), dynamic batch and sequence axes, the int8 graph, and clear errors for bad folders."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import export as export_cli
import predict as predict_cli
from src.inference import SpanPredictor
from src.model import SpanModel
from src.serving.onnx_backend import OnnxBackend, load_onnx_predictor, read_manifest
from src.serving.onnx_export import MANIFEST_NAME, export_model

from .conftest import SHARED_DATA

CONLL_TEST = SHARED_DATA / "conll2003" / "test.txt"
SENTENCES = ["John Smith lives in New York .", "Apple hired Mary Jones yesterday in Paris and Berlin .",
             "Angela Merkel visited Berlin and the U.N. .", "x", "Zürich naïve 日本語 co-operate 😀 U.S. tabs\tand"]
LABELS = ["PER", "LOC", "ORG", "a much longer label text"]


@pytest.fixture(scope="module")
def torch_predictor(tiny_model_dir) -> SpanPredictor:
    return SpanPredictor.from_pretrained(tiny_model_dir)


def spans(found):
    return [[(e["start"], e["end"], e["label"]) for e in entities] for entities in found]


def assert_same_predictions(onnx_found, torch_found, *, atol=1e-4):
    assert spans(onnx_found) == spans(torch_found)
    for a, b in zip(onnx_found, torch_found, strict=True):
        assert [e["score"] for e in a] == pytest.approx([e["score"] for e in b], abs=atol)


def test_fp32_tensors_equal_pytorch_for_new_batch_and_sequence_sizes(tiny_model_dir, tiny_onnx_dir):
    model = SpanModel.from_pretrained(tiny_model_dir)
    backend = OnnxBackend(tiny_onnx_dir, precision="fp32")
    torch_predictor = SpanPredictor(model)
    enc_types = model.type_tokenizer(["person", "location", "a much longer label text"], padding=True,
                                     return_tensors="pt")
    with torch.no_grad():
        type_torch = model.encode_types(enc_types["input_ids"], enc_types["attention_mask"])
    type_onnx = backend.encode_types(enc_types["input_ids"], enc_types["attention_mask"])
    torch.testing.assert_close(type_onnx, type_torch, atol=1e-5, rtol=1e-4)
    for texts in (SENTENCES, SENTENCES[:1], [" ".join(SENTENCES * 3)] * 7):  # batch 5, 1, 7; lengths up to 128
        enc = model.token_tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        start_mask = enc["attention_mask"].bool().clone()
        start_mask[:, 0] = False  # [CLS] is never a boundary
        end_mask = start_mask.clone()
        with torch.no_grad():
            expected = model.score(enc["input_ids"], enc["attention_mask"], start_mask, end_mask,
                                   type_embeddings=type_torch)
        got = backend.score(enc["input_ids"], enc["attention_mask"], start_mask, end_mask, type_embeddings=type_torch)
        torch.testing.assert_close(got.start_logits, expected.start_logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(got.end_logits, expected.end_logits, atol=1e-4, rtol=0)
        example, start, width = got.span_mask.nonzero(as_tuple=True)
        with torch.no_grad():
            torch.testing.assert_close(got.span_logits_at(example, start, width),
                                       expected.span_logits_at(example, start, width), atol=1e-4, rtol=0)
    assert torch_predictor.max_seq_length == load_onnx_predictor(tiny_onnx_dir).max_seq_length


def test_fp32_predictions_equal_pytorch_with_windows_and_label_sets(tiny_model_dir, tiny_onnx_dir):
    onnx_predictor = load_onnx_predictor(tiny_onnx_dir, precision="fp32", max_seq_length=32)
    windowed = SpanPredictor.from_pretrained(tiny_model_dir, max_seq_length=32)
    long_text = " ".join(SENTENCES * 6)  # several windows of 32 subwords
    texts = [*SENTENCES, long_text]
    for kwargs in ({}, {"flat_ner": False}, {"multi_label": True, "threshold": 0.25}):
        torch_found = windowed.predict(texts, LABELS, **kwargs)
        assert sum(map(len, torch_found)) > 5, "the tiny model should predict entities at these thresholds"
        assert_same_predictions(onnx_predictor.predict(texts, LABELS, **kwargs), torch_found)
    per_text = [LABELS[: 1 + k % 4] for k in range(len(texts))]
    assert_same_predictions(onnx_predictor.predict(texts, per_text), windowed.predict(texts, per_text))


@pytest.mark.slow
def test_fp32_equals_pytorch_on_conll2003_test_sentences(tiny_onnx_dir, torch_predictor):
    if not CONLL_TEST.is_file():
        pytest.skip(f"{CONLL_TEST} not found (../shared/data is absent)")
    from src.conll import convert_conll_file

    records = convert_conll_file(CONLL_TEST).records[:200]
    texts = [record["text"] for record in records]
    labels = ["PER", "ORG", "LOC", "MISC"]
    torch_found = torch_predictor.predict(texts, labels, batch_size=16)
    onnx_found = load_onnx_predictor(tiny_onnx_dir, precision="fp32").predict(texts, labels, batch_size=16)
    assert sum(map(len, torch_found)) > 50
    assert_same_predictions(onnx_found, torch_found)


def test_int8_graph_is_quantised_and_the_default(tiny_onnx_dir):
    manifest = read_manifest(tiny_onnx_dir)
    assert manifest["precision"] == "int8" and set(manifest["token_graphs"]) == {"fp32", "int8"}
    fp32 = tiny_onnx_dir / manifest["token_graphs"]["fp32"]
    int8 = tiny_onnx_dir / manifest["token_graphs"]["int8"]
    graph = onnx.load(str(int8)).graph
    ops = {node.op_type for node in graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    # Weights carry one scale per output channel (per_channel=True), not one per tensor.
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    weights = [node.input[1] for node in graph.node if node.op_type == "MatMulInteger" and node.input[1] in shapes]
    assert weights and all(len(shapes[w.removesuffix("_quantized") + "_scale"]) == 1 for w in weights)
    assert all(shapes[w.removesuffix("_quantized") + "_scale"][0] == shapes[w][1] > 1 for w in weights)
    assert manifest["int8"] == {"weights": "QInt8", "per_channel": True}
    assert manifest["attention"]["token_encoder"] == "eager"  # traced with plain attention (see use_plain_attention)
    assert int8.stat().st_size < 0.5 * fp32.stat().st_size
    predictor = load_onnx_predictor(tiny_onnx_dir)
    assert predictor.backend.precision == "int8"
    found = predictor.predict(SENTENCES, LABELS)
    assert all(0 <= e["start"] < e["end"] <= len(t) for t, es in zip(SENTENCES, found, strict=True) for e in es)


def test_int8_scores_of_a_text_do_not_depend_on_its_batch(tiny_onnx_dir):
    predictor = load_onnx_predictor(tiny_onnx_dir, precision="int8")
    alone = [predictor.predict([text], LABELS, threshold=0.01)[0] for text in SENTENCES]  # many entities to compare
    together = predictor.predict(SENTENCES + ["A much longer companion text " * 6], LABELS, threshold=0.01,
                                 batch_size=8)
    assert sum(map(len, alone)) > len(SENTENCES)
    assert together[: len(SENTENCES)] == alone  # scores equal exactly, not within a tolerance
    # The graph run on the padded batch at once would differ: the check above can fail.
    backend = predictor.backend
    enc = backend.token_tokenizer
    batch = enc([SENTENCES[0], "A much longer companion text " * 6], padding=True, return_tensors="pt")
    one = enc([SENTENCES[0]], return_tensors="pt")
    [padded, *_] = backend._run(backend.token_session, batch["input_ids"], batch["attention_mask"])
    [single, *_] = backend._run(backend.token_session, one["input_ids"], one["attention_mask"])
    n = one["input_ids"].shape[1]
    assert not np.array_equal(padded[0, :n], single[0])
    [rowwise, *_] = backend.token_states(batch["input_ids"], batch["attention_mask"])
    assert np.array_equal(rowwise[0, :n].numpy(), single[0])


def test_export_refuses_a_non_empty_output_and_bad_settings(tiny_model_dir, tiny_onnx_dir, tmp_path, capsys):
    with pytest.raises(FileExistsError, match="not empty"):
        export_model(tiny_model_dir, tiny_onnx_dir)
    with pytest.raises(ValueError, match="quantize"):
        export_model(tiny_model_dir, tmp_path / "out", quantize="int4")
    assert export_cli.main([str(tmp_path), "--output", str(tmp_path / "out")]) == 1
    assert "no config.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_backend_errors_name_the_file(tiny_model_dir, tiny_onnx_dir, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="export.json"):
        OnnxBackend(tiny_model_dir)
    with pytest.raises(ValueError, match="no 'fp16' token graph"):
        OnnxBackend(tiny_onnx_dir, precision="fp16")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST_NAME).write_text(json.dumps({"format_version": 1}))
    with pytest.raises(ValueError, match="missing key 'precision'"):
        read_manifest(broken)
    assert predict_cli.main([str(tiny_model_dir), "--backend", "onnx", "--labels", "PER", "--text", "hi"]) == 1
    assert "export.json" in capsys.readouterr().err


def test_predict_cli_onnx_backend_prints_the_torch_entities(tiny_model_dir, tiny_onnx_dir, capsys):
    text = "Angela Merkel visited Berlin and the U.N. ."
    assert predict_cli.main([str(tiny_model_dir), "--labels", "PER,LOC,ORG", "--text", text]) == 0
    torch_row = json.loads(capsys.readouterr().out)
    assert torch_row["entities"]  # threshold 0.3 from inference.json, copied into the export
    argv = [str(tiny_onnx_dir), "--backend", "onnx", "--precision", "fp32", "--labels", "PER,LOC,ORG", "--text", text]
    assert predict_cli.main(argv) == 0
    onnx_row = json.loads(capsys.readouterr().out)
    assert_same_predictions([onnx_row["entities"]], [torch_row["entities"]])
    assert predict_cli.main([str(tiny_onnx_dir), "--backend", "onnx", "--labels", "PER", "--text", text]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"text", "entities"}  # the int8 default runs too
    with pytest.raises(SystemExit) as exit_info:
        predict_cli.main([str(tiny_model_dir), "--precision", "int8", "--labels", "PER", "--text", text])
    assert exit_info.value.code == 2
