"""Prediction on raw text: windows over long texts, exact character offsets, per-text label sets, the type cache,
saved decoding settings (inference.json) and the predict.py command line."""

from __future__ import annotations

import json
import random

import pytest
import torch

import predict as predict_cli
from src.collator import InBatchDataCollator, default_stride, encode_windows
from src.config import SpanModelConfig
from src.decoding import merge_windows
from src.inference import (
    InferenceConfig,
    SpanPredictor,
    TextQuery,
    load_inference_config,
    predict,
    save_inference_config,
)
from src.model import SpanModel

from .conftest import make_record
from .span_stub import WordSpotter

FILLER = ["alpha", "Zürich", "naïve", "日本語", "émigré", "the", "U.S.", "co-operate", "x", "Ωmega", "😀", "tabs"]
SEPARATORS = [" ", "  ", "\t", "\n", " \t\n ", "\u00a0", "   "]


@pytest.fixture(scope="module")
def tiny_model(tiny_backbone) -> SpanModel:
    torch.manual_seed(0)
    config = SpanModelConfig(token_encoder=tiny_backbone, type_encoder=tiny_backbone, max_span_length=4,
                             linear_hidden_size=16, dropout=0.0, type_descriptions={"LOC": "location"})
    return SpanModel.from_config(config).eval()


def messy_text(num_words: int, *, targets: dict[int, str], seed: int = 0) -> tuple[str, list[tuple[int, int]]]:
    """Words joined by assorted whitespace; returns the text and the (start, end) offsets of the target words."""
    rng = random.Random(seed)
    parts, offsets, position = [], [], 0
    for k in range(num_words):
        word = targets.get(k, rng.choice(FILLER))
        if k:
            separator = rng.choice(SEPARATORS)
            parts.append(separator)
            position += len(separator)
        if k in targets:
            offsets.append((position, position + len(word)))
        parts.append(word)
        position += len(word)
    return "".join(parts), offsets


# ----------------------------------------------------------------------------------------------- windowing


@pytest.mark.parametrize("annotation_format", ["tokens", "text"])
def test_windows_cover_every_word_span_and_mark_no_cut_word(tiny_model, annotation_format):
    rng = random.Random(1)
    tokens = [rng.choice(["Zanzibarization", "of", "U.S.", "naïve", "co-operate", "x", "Ωmega"]) for _ in range(60)]
    record = make_record(0, tokens, [])
    tokenizer = tiny_model.token_tokenizer
    stride = default_stride(tokenizer, max_seq_length=16, max_span_length=4)
    source = record["tokens"] if annotation_format == "tokens" else record["text"]
    windows = encode_windows(tokenizer, [source], annotation_format=annotation_format, max_seq_length=16,
                             stride=stride)
    assert len(windows.alignments) > 5  # the example really is split
    # Word boundaries in units, from the whole example tokenised at once.
    whole = tokenizer(source, is_split_into_words=annotation_format == "tokens", add_special_tokens=False,
                      return_offsets_mapping=True)
    word_ids = whole.word_ids()
    units = [(w, w + 1) for w in word_ids] if annotation_format == "tokens" else whole["offset_mapping"]
    firsts = {units[p][0]: p for p in range(len(word_ids)) if p == 0 or word_ids[p - 1] != word_ids[p]}
    lasts = {units[p][1]: p for p in range(len(word_ids)) if p + 1 == len(word_ids) or word_ids[p + 1] != word_ids[p]}
    for alignment in windows.alignments:  # no window marks a boundary inside a word it holds only partly
        assert set(alignment.start_of) <= set(firsts) and set(alignment.end_of) <= set(lasts)
    for start, first in firsts.items():  # every span of up to `stride` subwords is a legal span of some window
        for end, last in lasts.items():
            if 0 <= last - first < stride:
                assert any(a.to_subwords(start, end) is not None for a in windows.alignments), (start, end)


def test_windowed_collator_equals_truncating_collator_on_short_examples(tiny_model):
    from .conftest import tiny_records

    records = tiny_records()
    kwargs = dict(annotation_format="tokens", max_seq_length=32, max_span_length=4, label_set=["LOC", "ORG", "PER"])
    plain = InBatchDataCollator(tiny_model.token_tokenizer, tiny_model.type_tokenizer, **kwargs)
    windowed = plain.with_windows()
    assert windowed.stride is not None and windowed.with_windows() is windowed
    a, b = plain(list(enumerate(records))), windowed(list(enumerate(records)))
    for key in ("input_ids", "attention_mask", "start_mask", "end_mask", "start_labels", "end_labels", "span_labels"):
        assert torch.equal(a[key], b[key]), key
    assert a["alignments"] == b["alignments"] and b["window_example"] == list(range(len(records)))


def test_windowed_collator_labels_a_gold_span_past_the_window_and_loses_nothing(tiny_model):
    tokens = ["filler"] * 40 + ["New", "York"]
    record = make_record(0, tokens, [(40, 42, "LOC")])
    collator = InBatchDataCollator(tiny_model.token_tokenizer, tiny_model.type_tokenizer, annotation_format="tokens",
                                   max_seq_length=16, max_span_length=4, label_set=["LOC"])
    assert collator([(0, record)])["lost"] == {"truncated": 1}
    batch = collator.with_windows()([(0, record)])
    assert batch["lost"] == {} and batch["window_example"] == [0] * len(batch["alignments"])
    labelled = [n for n in range(len(batch["alignments"])) if batch["span_labels"][n].any()]
    assert labelled and all(batch["alignments"][n].to_subwords(40, 42) for n in labelled)


def test_merge_windows_keeps_each_span_from_the_window_where_it_is_most_central():
    bounds = [(0, 20), (10, 30), (20, 40)]
    windows = [
        [(2, 3, 0, 0.9, 0.9), (12, 13, 0, 0.8, 0.8), (18, 19, 1, 0.7, 0.7)],  # 12-13 and 18-19 also in window 1
        [(12, 13, 0, 0.6, 0.6), (18, 19, 1, 0.5, 0.5), (25, 26, 0, 0.4, 0.4)],
        [(25, 26, 0, 0.3, 0.3), (38, 39, 1, 0.2, 0.2)],
    ]
    merged = merge_windows(windows, bounds)
    # 2-3: window 0 only. 12-13: margin 12 in w0 (text start is no edge, right 7) vs 2 in w1 -> w0 (score 0.8).
    # 18-19: margin 1 in w0 vs 8 in w1 -> w1. 25-26: 4 in w1 vs 5 in w2 (its right is the text end) -> w2.
    assert merged == [(2, 3, 0, 0.9, 0.9), (12, 13, 0, 0.8, 0.8), (18, 19, 1, 0.5, 0.5), (25, 26, 0, 0.3, 0.3),
                      (38, 39, 1, 0.2, 0.2)]
    # A span owned by a window where it did not pass the threshold is not taken from another window.
    assert (18, 19, 1, 0.7, 0.7) not in merge_windows([windows[0], [], windows[2]], bounds)
    assert merge_windows([[(1, 2, 0, 0.5, 0.5)]], [(0, 9)]) == [(1, 2, 0, 0.5, 0.5)]


# ----------------------------------------------------------------------------------------------- predict


def test_entity_near_the_end_of_an_8000_word_text_is_found_with_exact_offsets(tiny_model):
    spotter = WordSpotter(tiny_model, word="Zanzibar", label="LOC")
    text, offsets = messy_text(8000, targets={3000: "Zanzibar", 7990: "Zanzibar"})
    predictor = SpanPredictor(spotter, max_seq_length=64)
    [entities] = predictor.predict([text], ["PER", "LOC"], batch_size=16)
    assert [(e["start"], e["end"], e["label"], e["text"]) for e in entities] == [
        (start, end, "LOC", "Zanzibar") for start, end in offsets
    ]
    assert all(e["score"] > 0.99 for e in entities)


def test_offsets_are_exact_with_odd_whitespace_and_unicode(tiny_model):
    spotter = WordSpotter(tiny_model, word="Zanzibar", label="LOC")
    texts = [" \tZanzibar\n\nnaïve  Zanzibar\u00a0日本語 Zanzibar ", "Ωmega\t😀 Zanzibar.", "no target here", ""]
    found = predict(spotter, texts, ["LOC"])
    for text, entities in zip(texts, found, strict=True):
        expected, at = [], text.find("Zanzibar")
        while at >= 0:
            expected.append((at, at + len("Zanzibar")))
            at = text.find("Zanzibar", at + 1)
        assert [(e["start"], e["end"]) for e in entities] == expected, text
        assert all(text[e["start"] : e["end"]] == e["text"] == "Zanzibar" for e in entities)


def test_predictions_do_not_depend_on_other_texts_or_label_sets(tiny_model):
    texts = ["John Smith lives in New York .", "Apple hired Mary Jones yesterday in Paris and Berlin .",
             "Nothing to see here"]
    predictor = SpanPredictor(tiny_model)
    alone = predictor.predict([texts[1]], ["PER", "LOC"], threshold=0.3)[0]
    assert alone, "the random model should predict something at this threshold"
    crowd = predictor.predict(texts, [["ORG"], ["PER", "LOC"], ["a much longer label text", "PER", "MISC"]],
                              threshold=0.3, batch_size=2)
    shared = predict(tiny_model, list(reversed(texts)), ["LOC", "X", "PER"], threshold=0.3, batch_size=3)[1]
    def spans(entities):
        return [(e["start"], e["end"], e["label"]) for e in entities]

    for other in (crowd[1], shared):
        assert spans(other) == spans(alone)
        assert [e["score"] for e in other] == pytest.approx([e["score"] for e in alone], abs=1e-5)
    assert {e["label"] for e in crowd[0]} <= {"ORG"} and {e["label"] for e in crowd[2]} <= {"PER", "MISC",
                                                                                           "a much longer label text"}


def test_type_embeddings_are_computed_once_per_label_in_chunks(tiny_model, monkeypatch):
    calls = []
    original = tiny_model.encode_types
    monkeypatch.setattr(tiny_model, "encode_types", lambda ids, mask: calls.append(len(ids)) or original(ids, mask))
    labels = [f"type {k}" for k in range(1000)]
    predictor = SpanPredictor(tiny_model, type_batch_size=256)
    predictor.predict(["John Smith lives in New York .", "Paris"], labels, threshold=0.9)
    assert calls == [256, 256, 256, 232]
    predictor.predict(["Another text"], [labels[:10] + ["type new"]], threshold=0.9)
    assert calls[4:] == [1]


def test_saved_type_description_is_what_the_type_encoder_reads(tiny_model):
    predictor = SpanPredictor(tiny_model)
    torch.testing.assert_close(predictor.type_embeddings(["LOC"]), predictor.type_embeddings(["location"]))
    assert not torch.allclose(predictor.type_embeddings(["LOC"]), predictor.type_embeddings(["PER"]))


def test_inference_config_round_trip_and_default_threshold(tiny_model, tmp_path):
    assert load_inference_config(tmp_path) == InferenceConfig()
    config = InferenceConfig(threshold=0.3, per_type_thresholds={"LOC": 0.2}, flat_ner=False)
    save_inference_config(tmp_path, config)
    assert load_inference_config(tmp_path) == config
    assert config.thresholds_for(["PER", "LOC"]) == [0.3, 0.2]
    (tmp_path / "inference.json").write_text('{"threshold": 1.5}')
    with pytest.raises(ValueError, match="inference.json"):
        load_inference_config(tmp_path)
    (tmp_path / "inference.json").write_text('{"threshold": 0.5, "extra": 1}')
    with pytest.raises(ValueError, match="extra"):
        load_inference_config(tmp_path)
    # A saved threshold is the default of a predictor loaded from the folder.
    tiny_model.save_pretrained(tmp_path / "model")
    text = ["Apple hired Mary Jones yesterday in Paris and Berlin ."]
    save_inference_config(tmp_path / "model", InferenceConfig(threshold=0.3))
    low = predict(tmp_path / "model", text, ["PER", "LOC"])[0]
    save_inference_config(tmp_path / "model", InferenceConfig(threshold=0.99))
    high = predict(tmp_path / "model", text, ["PER", "LOC"])[0]
    assert low == predict(tiny_model, text, ["PER", "LOC"], threshold=0.3)[0] and low and not high


def test_bad_label_arguments_are_errors(tiny_model):
    with pytest.raises(ValueError, match="2 label lists for 3 texts"):
        predict(tiny_model, ["a", "b", "c"], [["PER"], ["LOC"]])
    with pytest.raises(TypeError):
        predict(tiny_model, ["a"], "PER")
    assert predict(tiny_model, ["a b"], []) == [[]]


# ----------------------------------------------------------------------------------------------- predict.py


@pytest.fixture(scope="module")
def saved_model(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "model"
    tiny_model.save_pretrained(folder)
    save_inference_config(folder, InferenceConfig(threshold=0.3))
    return folder


def test_predict_cli_text_and_files(saved_model, tmp_path, capsys):
    text = "Apple hired Mary Jones yesterday in Paris ."
    assert predict_cli.main([str(saved_model), "--labels", "PER, LOC", "--text", text]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["text"] == text and row["entities"] == predict(saved_model, [text], ["PER", "LOC"])[0]
    (tmp_path / "docs.txt").write_text(f"{text}\n\nsecond  document\there\n", encoding="utf-8")
    assert predict_cli.main([str(saved_model), "--labels", "PER", "--input", str(tmp_path / "docs.txt"),
                             "--output", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == [text, "", "second  document\there"]
    (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": "Paris", "labels": ["LOC"]}\n{"text": "x"}\n')
    assert predict_cli.main([str(saved_model), "--labels", "PER", "--input", str(tmp_path / "docs.jsonl")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["id"] == "a" and "id" not in rows[1] and {e["label"] for e in rows[0]["entities"]} <= {"LOC"}


def test_predict_cli_errors(saved_model, tmp_path, capsys):
    assert predict_cli.main([str(tmp_path / "nowhere"), "--labels", "PER", "--text", "x"]) == 1
    assert "nowhere: not a saved model folder" in capsys.readouterr().err
    assert predict_cli.main([str(saved_model), "--labels", "PER", "--input", str(tmp_path / "missing.txt")]) == 1
    assert "missing.txt: no such input file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n')
    assert predict_cli.main([str(saved_model), "--labels", "PER", "--input", str(bad)]) == 1
    assert f"{bad}:2: expected an object with a string field 'text'" in capsys.readouterr().err
    bad.write_text('{"text": "fine"}\n{"text": \n')
    assert predict_cli.main([str(saved_model), "--labels", "PER", "--input", str(bad)]) == 1
    assert f"{bad}:2: invalid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        predict_cli.main([str(saved_model), "--text", "no labels given"])
    assert exit_info.value.code == 2


def test_mixed_queries_in_one_batch_equal_each_query_alone(tiny_model):
    """One batch of texts with their own labels, thresholds, flat/nested and multi_label: each result equals the
    text predicted on its own with the same settings (scores up to padding rounding)."""
    predictor = SpanPredictor(tiny_model)
    texts = ["John Smith lives in New York .", "Apple hired Mary Jones yesterday in Paris and Berlin .",
             "Angela Merkel visited Berlin and the U.N. .", "Nothing to see here"]
    settings = [(["PER", "LOC"], 0.3, True, False), (["LOC", "ORG", "PER"], 0.2, False, True),
                (["ORG", "LOC"], 0.25, True, True), (["MISC"], 0.6, False, False)]
    queries = [q for text, (labels, threshold, flat, multi) in zip(texts, settings, strict=True)
               for q in predictor.queries(text, labels, threshold=threshold, flat_ner=flat, multi_label=multi)]
    together = predictor.run(queries, batch_size=4)
    for text, (labels, threshold, flat, multi), found in zip(texts, settings, together, strict=True):
        [alone] = predictor.predict([text], labels, threshold=threshold, flat_ner=flat, multi_label=multi)
        assert [(e["start"], e["end"], e["label"]) for e in found] == [(e["start"], e["end"], e["label"])
                                                                        for e in alone]
        assert [e["score"] for e in found] == pytest.approx([e["score"] for e in alone], abs=1e-5)
    shared_spans = [(e["start"], e["end"]) for e in together[1]]
    assert len(set(shared_spans)) < len(shared_spans)  # multi_label gave a span two types
    assert sum(map(len, together)) > 5


def test_queries_reject_bad_arguments(tiny_model):
    predictor = SpanPredictor(tiny_model)
    with pytest.raises(TypeError, match="texts must be strings"):
        predictor.queries(["ok", 3], ["PER"])
    with pytest.raises(ValueError, match="threshold"):
        predictor.queries("ok", ["PER"], threshold=1.5)
    with pytest.raises(TypeError, match="multi_label"):
        predictor.queries("ok", ["PER"], multi_label="yes")
    assert predictor.queries("ok", [["PER", "LOC", "PER"]]) == [
        TextQuery("ok", ("PER", "LOC"), (0.5, 0.5), flat_ner=True, multi_label=False)
    ]
