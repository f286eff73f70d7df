"""Document context: documents kept by the formatter, neighbours attached, context read but never labelled."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer

from src.collator import InBatchDataCollator
from src.config import resolve_model_name_or_path
from src.conll import convert_document, parse_conll_lines
from src.context import attach_document_context, fit_context
from src.data import DataValidationError, read_jsonl
from src.evaluation import evaluate_records

from .conftest import make_record, write_jsonl
from .span_stub import WordSpotter
from .training_runs import read_json, single_thread_fresh_accelerate, train_in_process, write_run_config


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_name_or_path("all-MiniLM-L6-v2"))


def doc_record(idx: int, tokens: list[str], spans, doc_id: str | None, sentence_index: int | None) -> dict:
    record = make_record(idx, tokens, spans)
    if doc_id is not None:
        record["doc_id"] = doc_id
        if sentence_index is not None:
            record["sentence_index"] = sentence_index
    return record


def document() -> list[dict]:
    """Two documents (given out of order) and one record without a document."""
    return [
        doc_record(0, ["Paris", "won", "."], [(0, 1, "ORG")], "d1", 1),
        doc_record(1, ["Rain", "in", "Paris", "today"], [(2, 3, "LOC")], "d1", 0),
        doc_record(2, ["Paris", "fans", "cheered", "Paris"], [(0, 1, "ORG"), (3, 4, "ORG")], "d1", 2),
        doc_record(3, ["Alone", "here"], [], None, None),
        doc_record(4, ["Other", "document"], [], "d2", 0),
    ]


def test_formatter_keeps_docstart_documents_as_doc_id_and_sentence_index():
    lines = ["-DOCSTART- -X- O O", "", "EU NNP B-NP B-ORG", "rejects VBZ B-VP O", "", "Peter NNP B-NP B-PER", "",
             "-DOCSTART- -X- O O", "", "Bonn NNP B-NP B-LOC", ""]
    records = convert_document(parse_conll_lines(lines), scheme="iob2").records
    assert [(r["doc_id"], r["sentence_index"]) for r in records] == [("0", 0), ("0", 1), ("1", 0)]
    without = convert_document(parse_conll_lines(["EU B-ORG", "", "Bonn B-LOC"]), scheme="iob2").records
    assert all("doc_id" not in r and "sentence_index" not in r for r in without)  # absent: no document


def test_validator_keeps_document_fields_and_names_bad_ones(tmp_path):
    good = doc_record(0, ["a"], [], "d", 3)
    assert read_jsonl(write_jsonl(tmp_path / "good.jsonl", [good]))[0] == good
    bad_cases = [(dict(good, doc_id=""), "'doc_id' must be a non-empty string"),
                 (dict(good, sentence_index=-1), "'sentence_index' must be an integer >= 0"),
                 ({k: v for k, v in good.items() if k != "doc_id"}, "'sentence_index' needs a 'doc_id'")]
    for record, message in bad_cases:
        path = write_jsonl(tmp_path / "bad.jsonl", [good, record])
        with pytest.raises(DataValidationError, match=f"bad.jsonl:2: .*{message}"):
            read_jsonl(path)


def test_neighbours_come_from_the_same_document_in_sentence_order():
    records = document()
    out = attach_document_context(records, max_words=5)
    assert out[1]["left_context"] == [] and out[1]["right_context"] == ["Paris", "won", ".", "Paris", "fans"]
    assert out[0]["left_context"] == ["Rain", "in", "Paris", "today"]
    assert out[0]["right_context"] == ["Paris", "fans", "cheered", "Paris"]
    assert out[2]["left_context"] == ["Paris", "today", "Paris", "won", "."]  # the nearest 5 words
    assert "left_context" not in out[3] and out[4]["left_context"] == out[4]["right_context"] == []
    assert "left_context" not in records[0]  # the gold records are not changed
    twice = [records[0], dict(records[1], sentence_index=1)]
    with pytest.raises(ValueError, match="records '0' and '1' both are sentence 1 of document 'd1'"):
        attach_document_context(twice, max_words=5)


def test_fit_context_alternates_sides_nearest_first():
    # left words nearest last, right words nearest first; subword counts
    assert fit_context([1, 1, 1], [1, 1, 1], budget=4) == (2, 2)
    assert fit_context([1], [2, 2, 2], budget=5) == (1, 2)  # left runs out, right takes the rest
    assert fit_context([5, 1], [1], budget=2) == (1, 1)  # a word that does not fit ends its side
    assert fit_context([1, 1], [], budget=0) == (0, 0)


def test_context_is_read_but_gets_no_labels_and_no_span_boundaries(tokenizer):
    records = attach_document_context(document(), max_words=50)
    plain = InBatchDataCollator(tokenizer, tokenizer, annotation_format="tokens", max_seq_length=64,
                                max_span_length=4, label_set=["LOC", "ORG"])
    with_context = InBatchDataCollator(tokenizer, tokenizer, annotation_format="tokens", max_seq_length=64,
                                       max_span_length=4, label_set=["LOC", "ORG"], context_size=40)
    for record in records:
        a, b = plain([(0, record)]), with_context([(0, record)])
        words = record.get("left_context", []) + record["tokens"] + record.get("right_context", [])
        assert b["input_ids"][0].tolist() == tokenizer(words, is_split_into_words=True)["input_ids"]  # all fits
        # The sentence's own subwords carry exactly the labels and boundaries they carry without context.
        shift = int(b["start_mask"][0].nonzero()[0]) - int(a["start_mask"][0].nonzero()[0]) if record["tokens"] else 0
        own = slice(1, int(a["attention_mask"][0].sum()) - 1)
        moved = slice(own.start + shift, own.stop + shift)
        assert torch.equal(b["start_mask"][0, moved], a["start_mask"][0, own])
        assert torch.equal(b["end_mask"][0, moved], a["end_mask"][0, own])
        assert torch.equal(b["span_labels"][0][:, moved], a["span_labels"][0][:, own])
        assert int(b["start_mask"].sum()) == int(a["start_mask"].sum())  # nothing outside the sentence
        assert int(b["span_labels"].sum()) == int(a["span_labels"].sum()) == len(record["token_spans"])
        assert b["alignments"][0].to_units(*b["alignments"][0].to_subwords(0, len(record["tokens"]))) == (
            0, len(record["tokens"]))


def test_context_respects_the_window_and_the_budget(tokenizer):
    long_left = {"tokens": ["Paris"], "left_context": ["word"] * 100, "right_context": ["word"] * 100,
                 "token_spans": [{"start": 0, "end": 1, "label": "LOC"}]}
    for context_size, max_seq_length in ((10, 64), (500, 32)):
        collator = InBatchDataCollator(tokenizer, tokenizer, annotation_format="tokens",
                                       max_seq_length=max_seq_length, max_span_length=4, context_size=context_size)
        batch = collator([(0, long_left)])
        length = int(batch["attention_mask"].sum())
        assert length == min(1 + context_size, max_seq_length - 2) + 2  # [CLS] context+sentence [SEP]
        assert batch["lost"] == {} and int(batch["span_labels"].sum()) == 1


def test_evaluation_with_context_scores_each_sentence_and_gold_entity_once(tiny_model):
    # "Paris" as ORG everywhere the spotter may look; the context holds many more "Paris" than the sentences' gold.
    records = attach_document_context(
        [dict(r, token_spans=[s for s in r["token_spans"] if s["label"] == "ORG"],
              char_spans=[s for s in r["char_spans"] if s["label"] == "ORG"]) for r in document()], max_words=50)
    records[1] = dict(records[1], token_spans=[], char_spans=[])  # "Paris" in sentence 0 is a LOC: not gold here
    spotter = WordSpotter(tiny_model, word="Paris", label="ORG")
    collator = InBatchDataCollator(tiny_model.token_tokenizer, tiny_model.type_tokenizer, annotation_format="tokens",
                                   max_seq_length=64, max_span_length=4, label_set=["ORG"], context_size=40)
    metrics, result = evaluate_records(spotter, records, collator, batch_size=2, threshold=0.5, flat_ner=True)
    predicted = [[tuple(s[:3]) for s in spans] for spans in result.predictions]
    assert predicted[0] == [(0, 1, "ORG")] and predicted[2] == [(0, 1, "ORG"), (3, 4, "ORG")]
    assert predicted[1] == [(2, 3, "ORG")]  # its own word, not a neighbour's
    assert predicted[3] == predicted[4] == []
    assert metrics["num_gold_entities"] == 3 and metrics["num_predicted_entities"] == 4
    assert metrics["precision"] == 0.75 and metrics["recall"] == 1.0


def test_random_model_with_context_predicts_only_inside_the_sentence(tiny_model):
    records = attach_document_context(document(), max_words=50)
    collator = InBatchDataCollator(tiny_model.token_tokenizer, tiny_model.type_tokenizer, annotation_format="tokens",
                                   max_seq_length=64, max_span_length=4, label_set=["LOC", "ORG"], context_size=40)
    _, result = evaluate_records(tiny_model, records, collator, batch_size=2, threshold=0.01, flat_ner=False)
    assert sum(len(spans) for spans in result.predictions) > len(records)  # the low threshold predicts plenty
    for record, spans in zip(records, result.predictions, strict=True):
        assert all(0 <= start < end <= len(record["tokens"]) for start, end, *_ in spans)


def test_training_and_evaluate_cli_with_context(tiny_backbone, tmp_path):
    import evaluate as evaluate_cli

    config = write_run_config(tmp_path, tiny_backbone, context_size=8, max_steps=2, eval_steps=2)
    for split in ("train", "validation", "test"):  # one document per file, sentences in file order
        path = tmp_path / f"{split}.jsonl"
        records = [dict(r, doc_id="doc", sentence_index=k) for k, r in enumerate(read_jsonl(path))]
        write_jsonl(path, records)
    assert train_in_process(config) == 0
    out = tmp_path / "out"
    assert read_json(out / "config.json")["context_size"] == 8
    with single_thread_fresh_accelerate():  # the run scored with one thread too: same float order
        code = evaluate_cli.main([str(out / "best"), "--data", str(tmp_path / "test.jsonl"),
                                  "--output", str(tmp_path / "eval.json")])
    assert code == 0
    scored = json.loads((tmp_path / "eval.json").read_text())
    assert scored["settings"]["context_size"] == 8  # read from the run's config.json
    assert scored["metrics"] == read_json(out / "test_results.json")["test_metrics"]
    # The same model scored without context reads other inputs, so its scores differ: the check above can fail.
    with single_thread_fresh_accelerate():
        code = evaluate_cli.main([str(out / "best"), "--data", str(tmp_path / "test.jsonl"), "--context-size", "0",
                                  "--output", str(tmp_path / "plain.json")])
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert code == 0 and plain["metrics"]["loss"] != scored["metrics"]["loss"]
