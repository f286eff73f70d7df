"""Letter-case features: the classes, the same ids from pre-split words and raw text, a model that reads them
(zero at the start, case-sensitive once trained), save/load, the optimizer group, prediction and ONNX export."""

from __future__ import annotations

import pytest
import torch

from src.args import TrainingArgs
from src.casing import (
    CASE_LOWER,
    CASE_MIXED,
    CASE_NONE,
    CASE_SINGLE_UPPER,
    CASE_TITLE,
    CASE_UNCASED,
    CASE_UPPER,
    NUM_CASE_CLASSES,
    case_class,
)
from src.collator import InBatchDataCollator, encode_windows, model_inputs
from src.config import SpanModelConfig
from src.inference import SpanPredictor
from src.model import CASE_WEIGHTS_NAME, SpanModel
from src.trainer import build_optimizer

from .conftest import tiny_records


@pytest.mark.parametrize(("piece", "expected"), [
    ("obama", CASE_LOWER), ("Ob", CASE_TITLE), ("OBAMA", CASE_UPPER), ("U", CASE_SINGLE_UPPER),
    ("cDNA", CASE_MIXED), ("McD", CASE_MIXED), ("1990", CASE_UNCASED), ("-", CASE_UNCASED), ("日本", CASE_UNCASED),
    ("Zürich", CASE_TITLE), ("ÉTÉ", CASE_UPPER), ("", CASE_UNCASED),
])
def test_case_class(piece, expected):
    assert case_class(piece) == expected


@pytest.fixture(scope="module")
def case_model(tiny_backbone) -> SpanModel:
    torch.manual_seed(0)
    config = SpanModelConfig(token_encoder=tiny_backbone, type_encoder=tiny_backbone, max_span_length=4,
                             linear_hidden_size=16, dropout=0.0, case_features=True)
    return SpanModel.from_config(config).eval()


def collator(model: SpanModel, annotation_format: str, **kwargs) -> InBatchDataCollator:
    return InBatchDataCollator(model.token_tokenizer, model.type_tokenizer, annotation_format=annotation_format,
                               max_seq_length=64, max_span_length=4, label_set=["PER", "LOC", "ORG"], **kwargs)


def test_words_and_raw_text_give_the_same_case_ids(case_model):
    records = tiny_records()
    by_words = collator(case_model, "tokens")(list(enumerate(records)))
    by_text = collator(case_model, "text")(list(enumerate(records)))
    torch.testing.assert_close(by_words["input_ids"], by_text["input_ids"])  # the same subwords...
    torch.testing.assert_close(by_words["case_ids"], by_text["case_ids"])  # ...get the same classes
    tokens = case_model.token_tokenizer.convert_ids_to_tokens(by_words["input_ids"][5])
    ids = by_words["case_ids"][5].tolist()
    # "Angela Merkel visited Berlin and the U.N. ." ; special tokens and padding are CASE_NONE
    assert (tokens[0], ids[0]) == ("[CLS]", CASE_NONE)
    assert ids[tokens.index("angela")] == CASE_TITLE and ids[tokens.index("visited")] == CASE_LOWER
    assert ids[tokens.index("u")] == CASE_SINGLE_UPPER and ids[tokens.index(".")] == CASE_UNCASED
    assert all(i == CASE_NONE for i, m in zip(ids, by_words["attention_mask"][5].tolist(), strict=True) if not m)


def test_windows_carry_case_ids_for_every_window(case_model):
    text = "Angela Merkel visited Berlin and the U.N. . " * 20
    windows = encode_windows(case_model.token_tokenizer, [text], annotation_format="text", max_seq_length=32,
                             stride=8)
    assert len(windows.window_example) > 3
    assert windows.case_ids.shape == windows.input_ids.shape
    for n, encoding in enumerate(windows.encodings):
        tokens = encoding.tokens
        ids = windows.case_ids[n].tolist()
        assert all(ids[p] == CASE_TITLE for p, t in enumerate(tokens) if t in ("angela", "merkel", "berlin"))
        assert all(ids[p] == CASE_LOWER for p, t in enumerate(tokens) if t in ("visited", "and", "the"))


def test_case_model_starts_as_the_backbone_and_learns_to_tell_case_apart(case_model, tiny_model):
    lower = collator(case_model, "tokens")([(0, {"tokens": ["john", "smith", "lives", "here"]})])
    title = collator(case_model, "tokens")([(0, {"tokens": ["John", "Smith", "lives", "here"]})])
    assert torch.equal(lower["input_ids"], title["input_ids"])  # the uncased tokenizer cannot tell them apart
    assert not torch.equal(lower["case_ids"], title["case_ids"])
    with torch.no_grad():
        states = [case_model.token_states(b["input_ids"], b["attention_mask"], b["case_ids"]) for b in (lower, title)]
        plain = case_model.token_encoder(input_ids=lower["input_ids"], attention_mask=lower["attention_mask"])
        torch.testing.assert_close(states[0], plain.last_hidden_state)  # zero case vectors: the backbone alone
        torch.testing.assert_close(states[0], states[1])
        case_model.case_embedding.weight[CASE_TITLE] = 1.0  # as if trained: title case now means something
        try:
            moved = case_model.token_states(title["input_ids"], title["attention_mask"], title["case_ids"])
            same = case_model.token_states(lower["input_ids"], lower["attention_mask"], lower["case_ids"])
        finally:
            case_model.case_embedding.weight.zero_()
    assert not torch.allclose(moved, states[1])
    torch.testing.assert_close(same, states[0])  # lower-case input has no title-case subword
    with pytest.raises(ValueError, match="case_ids"):
        case_model.token_states(lower["input_ids"], lower["attention_mask"])
    # a model without case features ignores case_ids
    assert "case_ids" in model_inputs(title, with_labels=False)
    with torch.no_grad():
        outs = [tiny_model(**model_inputs(b, with_labels=False)) for b in (lower, title)]
    torch.testing.assert_close(outs[0].span_logits, outs[1].span_logits)


def test_case_embedding_is_trained_at_the_head_rate(case_model):
    args = TrainingArgs(output_dir="unused", learning_rate=1e-5, head_learning_rate=1e-3)
    optimizer = build_optimizer(case_model, args)
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert rate[id(case_model.case_embedding.weight)] == 1e-3
    assert case_model.case_embedding.weight.shape == (NUM_CASE_CLASSES, case_model.token_encoder.config.hidden_size)


@pytest.fixture()
def saved_case_model(case_model, tmp_path):
    """`case_model` with random (as if trained) case vectors, saved to tmp_path / "model"."""
    with torch.no_grad():
        case_model.case_embedding.weight[1:] = torch.randn(NUM_CASE_CLASSES - 1, 32)
    try:
        case_model.save_pretrained(tmp_path / "model")
    finally:
        with torch.no_grad():
            case_model.case_embedding.weight.zero_()
    return tmp_path / "model"


def test_save_load_and_predict_read_case(saved_case_model):
    loaded = SpanModel.from_pretrained(saved_case_model)
    assert loaded.config.case_features
    assert loaded.case_embedding.weight[CASE_NONE].abs().sum() == 0
    assert loaded.case_embedding.weight[CASE_TITLE].abs().sum() > 0
    predictor = SpanPredictor(loaded)
    found = predictor.predict(["John Smith lives in Paris .", "john smith lives in paris ."], ["PER", "LOC"],
                              threshold=0.01)
    scores = [[e["score"] for e in entities] for entities in found]
    assert scores[0] and scores[0] != scores[1]  # same subwords, different case, different scores
    (saved_case_model / CASE_WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=CASE_WEIGHTS_NAME):
        SpanModel.from_pretrained(saved_case_model)


def test_onnx_export_of_a_case_model_equals_pytorch(saved_case_model, tmp_path):
    from src.serving.onnx_backend import load_onnx_predictor, read_manifest
    from src.serving.onnx_export import export_model

    export_model(saved_case_model, tmp_path / "onnx", quantize="int8")
    assert read_manifest(tmp_path / "onnx")["token_inputs"] == ["input_ids", "attention_mask", "case_ids"]
    texts = ["John Smith lives in Paris .", "john smith lives in paris .", "APPLE hired Mary in the U.S. ."]
    expected = SpanPredictor.from_pretrained(saved_case_model).predict(texts, ["PER", "LOC"], threshold=0.01)
    got = load_onnx_predictor(tmp_path / "onnx", precision="fp32").predict(texts, ["PER", "LOC"], threshold=0.01)
    int8 = load_onnx_predictor(tmp_path / "onnx").predict(texts, ["PER", "LOC"], threshold=0.01)  # row by row
    assert all(int8)
    assert [[(e["start"], e["end"], e["label"]) for e in t] for t in got] == \
        [[(e["start"], e["end"], e["label"]) for e in t] for t in expected]
    for a, b in zip(got, expected, strict=True):
        assert [e["score"] for e in a] == pytest.approx([e["score"] for e in b], abs=1e-4)
