"""GLiNER interoperability: scripts/evaluate_gliner.py on a tiny random GLiNER model built offline (same scoring
and schema as evaluate.py), and conversion between the project's JSONL and GLiNER's training format."""

from __future__ import annotations

import json
import sys
import warnings

import pytest

from conll_dataset_formatter import main as formatter_main
from src import json_formats
from src.data import read_jsonl
from src.metrics import compute_metrics

from .conftest import REPO_ROOT, make_record, tiny_records, write_jsonl
from .test_evaluate import RESULT_KEYS
from .test_suite import EXPECTED_TABLE, check_expected, spot_paris, write_two_dataset_suite

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import evaluate_gliner  # noqa: E402


@pytest.fixture(scope="module")
def gliner_model(gliner_dir):
    return evaluate_gliner.load_gliner(str(gliner_dir))


def long_record() -> dict:
    words = ["Obama", "visited", "the", "U.S.", "embassy", "in", "Paris", "yesterday", "."]
    tokens = [words[k % len(words)] for k in range(120)]
    return make_record(99, tokens, [(3, 4, "LOC"), (114, 115, "PER")])


# ----------------------------------------------------------------------------------------------- the script


def test_script_runs_offline_and_scores_its_predictions_with_the_project_metrics(gliner_dir, tmp_path):
    records = tiny_records()
    data = write_jsonl(tmp_path / "test.jsonl", records)
    out, predictions = tmp_path / "results.json", tmp_path / "predictions.jsonl"
    code = evaluate_gliner.main([str(gliner_dir), "--data", str(data), "--threshold", "0.45", "--output", str(out),
                                 "--predictions", str(predictions), "--label-map", '{"PER": "person"}'])
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results) == RESULT_KEYS and results["flat_ner"] is True
    assert results["settings"]["label_prompts"] == ["LOC", "ORG", "person"]
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    predicted = [[(s["start"], s["end"], s["label"]) for s in row["spans"]] for row in rows]
    assert sum(map(len, predicted)) > 0
    for record, spans in zip(records, predicted, strict=True):
        assert all(0 <= s < e <= len(record["tokens"]) for s, e, _ in spans)
        assert {label for _, _, label in spans} <= {"LOC", "ORG", "PER"}
    gold = [[(s["start"], s["end"], s["label"]) for s in r["token_spans"]] for r in records]
    expected = compute_metrics(gold, predicted)
    for key in ("precision", "recall", "f1", "macro_f1", "per_type", "num_predicted_entities", "true_positives"):
        assert results["metrics"][key] == expected[key], key


@pytest.mark.parametrize("annotation_format", ["tokens", "text"])
def test_gold_fed_as_predictions_scores_one(annotation_format):
    records = tiny_records() + [long_record()]
    gold = [[(s["start"], s["end"], s["label"], 1.0) for s in r["token_spans"]] for r in records]
    units = evaluate_gliner.to_annotation_units(records, gold, annotation_format)
    metrics = evaluate_gliner.score(records, units, annotation_format)
    assert (metrics["f1"], metrics["accuracy"], metrics["num_gold_entities"]) == (1.0, 1.0, 13)
    relabelled = [[(s, e, "OTHER" if label == "LOC" else label, p) for s, e, label, p in spans] for spans in units]
    assert evaluate_gliner.score(records, relabelled, annotation_format)["f1"] < 1.0


def test_records_own_words_are_fed_so_u_s_stays_one_word(gliner_model, monkeypatch):
    seen = []
    original = gliner_model.prepare_base_input
    monkeypatch.setattr(gliner_model, "prepare_base_input", lambda words: seen.extend(words) or original(words))
    record = make_record(0, ["The", "U.S.", "and", "the", "U.N.", "agreed", "."], [(1, 2, "LOC"), (4, 5, "ORG")])
    evaluate_gliner.predict_gliner(gliner_model, [record], ["LOC", "ORG"], threshold=0.5)
    assert seen == [record["tokens"]]


def test_long_sentence_is_cut_into_chunks_instead_of_truncated(gliner_model):
    record = long_record()
    chunks = evaluate_gliner.word_chunks(gliner_model, record["tokens"], prompt_subwords=10)
    assert chunks[0][0] == 0 and chunks[-1][1] == 120 and len(chunks) >= 3
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:], strict=False))
    assert all(end - begin <= gliner_model.config.max_len for begin, end in chunks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [spans], splits = evaluate_gliner.predict_gliner(gliner_model, [record], ["LOC", "PER"], threshold=0.3)
    assert not [w for w in caught if "truncated" in str(w.message)]
    assert splits["split_sentences"] == 1 and max(end for _, end, _, _ in spans) > 100


def test_large_label_sets_are_split_into_groups_that_fit(gliner_model):
    labels = [f"kind of entity number {k}" for k in range(40)]
    groups = evaluate_gliner.label_groups(gliner_model, labels)
    limit = evaluate_gliner.sequence_limit(gliner_model)
    assert len(groups) > 1 and [label for group in groups for label in group] == labels
    assert all(evaluate_gliner.prompt_length(gliner_model, group) <= limit // 2 for group in groups)
    [spans], splits = evaluate_gliner.predict_gliner(gliner_model, [tiny_records()[0]], labels, threshold=0.3)
    assert splits["label_groups"] == len(groups) and {label for *_, label, _ in spans} <= set(labels)
    assert [len(g) for g in evaluate_gliner.label_groups(gliner_model, labels[:5], max_group_size=2)] == [2, 2, 1]


# ----------------------------------------------------------------------------------------------- conversion


def test_records_to_gliner_and_back_round_trip():
    records = tiny_records()
    items = json_formats.records_to_gliner(records)
    assert items[0] == {"tokenized_text": ["John", "Smith", "lives", "in", "New", "York", "."],
                        "ner": [[0, 1, "PER"], [4, 5, "LOC"]]}
    back, dropped = json_formats.gliner_to_records(items)
    assert back == records and dropped == 0
    assert json_formats.records_to_gliner(back) == items


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_formatter_converts_both_ways_through_json_and_jsonl(tmp_path, suffix, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", tiny_records())
    target = tmp_path / f"gliner{suffix}"
    assert formatter_main(["--to-gliner", str(source), "--output", str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert text.startswith("[") == (suffix == ".json")
    assert formatter_main(["--from-gliner", str(target), "--output", str(tmp_path / "back.jsonl")]) == 0
    assert read_jsonl(tmp_path / "back.jsonl") == read_jsonl(source)
    assert "sentences: 6  entities: 11" in capsys.readouterr().out


def test_from_gliner_drops_duplicates_and_names_bad_items(tmp_path, capsys):
    good = {"tokenized_text": ["Ada", "Lovelace", "wrote"], "ner": [[0, 1, "person"], [0, 1, "person"]]}
    records, dropped = json_formats.gliner_to_records([good, {"tokenized_text": ["x"], "ner": []}])
    assert dropped == 1 and records[0]["token_spans"] == [{"start": 0, "end": 2, "label": "person"}]
    assert records[0]["char_spans"] == [{"start": 0, "end": 12, "label": "person"}] and records[1]["id"] == "1"
    bad_items = {
        '{"tokenized_text": ["a"], "ner": [[0, 1, "X"]]}': "item 1: ner[0] [0, 1, 'X'] lies outside the 1 words",
        '{"tokenized_text": [""], "ner": []}': "item 1: tokenized_text[0] '' must be a non-empty string",
        '{"tokens": ["a"]}': "item 1: expected an object with 'tokenized_text' and 'ner'",
        '{"tokenized_text": ["a"], "ner": [[0, "0", "X"]]}': "item 1: ner[0] must be [start, end_inclusive, label]",
    }
    for line, message in bad_items.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(good) + "\n" + line + "\n", encoding="utf-8")
        assert formatter_main(["--from-gliner", str(path), "--output", str(tmp_path / "o.jsonl")]) == 1
        assert f"{path}: {message}" in capsys.readouterr().err
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(good) + "\n{\n", encoding="utf-8")
    assert formatter_main(["--from-gliner", str(path), "--output", str(tmp_path / "o.jsonl")]) == 1
    assert f"{path}:2: invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_from_gliner_replaces_whitespace_in_words_and_applies_the_label_map(tmp_path, capsys):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"tokenized_text": ["New York", "is", "big"], "ner": [[0, 0, "LOC"]]}) + "\n")
    out = tmp_path / "o.jsonl"
    assert formatter_main(["--from-gliner", str(path), "--output", str(out), "--label-map", '{"LOC": "city"}']) == 0
    [record] = read_jsonl(out)
    assert record["tokens"] == ["New\u00b7York", "is", "big"] and record["token_spans"][0]["label"] == "city"
    assert "format: gliner  duplicate spans dropped: 0  whitespace tokens replaced: 1" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- --suite


def test_suite_scores_gliner_on_the_same_gold_with_the_same_code(gliner_dir, tmp_path, monkeypatch, capsys):
    suite = write_two_dataset_suite(tmp_path)
    monkeypatch.setattr(evaluate_gliner, "predict_gliner",
                        lambda model, records, labels, **kwargs: (spot_paris(records, labels), {"label_groups": 1}))
    out = tmp_path / "stub.json"
    assert evaluate_gliner.main([str(gliner_dir), "--suite", str(suite), "--output", str(out)]) == 0
    assert EXPECTED_TABLE in capsys.readouterr().out  # the numbers evaluate.py --suite gives for these predictions
    results = json.loads(out.read_text())
    check_expected(results)
    assert results["tool"] == "scripts/evaluate_gliner.py" and results["settings"]["splits"]["news"] == {
        "label_groups": 1}


def test_suite_runs_the_tiny_gliner_and_scores_what_it_predicted(gliner_dir, tmp_path, monkeypatch, capsys):
    suite = write_two_dataset_suite(tmp_path)
    seen, real = [], evaluate_gliner.predict_gliner

    def recording(model, records, labels, **kwargs):
        predictions, splits = real(model, records, labels, **kwargs)
        seen.append((records, predictions))
        return predictions, splits

    monkeypatch.setattr(evaluate_gliner, "predict_gliner", recording)
    out = tmp_path / "results.json"
    assert evaluate_gliner.main([str(gliner_dir), "--suite", str(suite), "--threshold", "0.3", "--output",
                                 str(out)]) == 0
    assert "average: unweighted mean over the 2 datasets" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert sum(len(spans) for _, predictions in seen for spans in predictions) > 0, "should involve predictions"
    for name, (records, predictions) in zip(("news", "bench"), seen, strict=True):
        gold = [[(s["start"], s["end"], s["label"]) for s in r["token_spans"]] for r in records]
        expected = compute_metrics(gold, [[span[:3] for span in spans] for spans in predictions])
        for key in ("precision", "recall", "f1", "per_type", "num_gold_entities", "num_predicted_entities"):
            assert results["datasets"][name][key] == expected[key], (name, key)
    assert [entry["num_gold_entities"] for entry in results["datasets"].values()] == [3, 5]
    with pytest.raises(SystemExit) as caught:
        evaluate_gliner.main([str(gliner_dir), "--suite", str(suite), "--data", "x.jsonl"])
    assert caught.value.code == 2
