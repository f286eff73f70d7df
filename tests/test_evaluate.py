"""Evaluation: evaluate.py reproduces a training run's test metrics, long examples are scored whole (windows),
re-decoding collected candidates equals decoding at each threshold, and threshold tuning (curve, per type, saving)."""

from __future__ import annotations

import json

import pytest
import torch

import evaluate as evaluate_cli
from src.collator import InBatchDataCollator
from src.evaluation import (
    CandidateResult,
    collect_record_candidates,
    evaluate_records,
    make_eval_loader,
    run_inference,
    search_thresholds,
    select_spans,
)
from src.inference import load_inference_config
from src.model import SpanModel

from .conftest import make_record, tiny_records, write_jsonl
from .span_stub import WordSpotter
from .training_runs import read_json, single_thread_fresh_accelerate, train_in_process, write_run_config

RESULT_KEYS = {"tool", "model", "labels", "threshold", "per_type_thresholds", "flat_ner", "annotation_format",
               "settings", "data", "metrics"}  # shared with scripts/evaluate_gliner.py (tests/test_gliner.py)


@pytest.fixture(scope="module")
def trained_run(tiny_backbone, tmp_path_factory):
    """A finished tiny training run: its folder (config.json, out/best, out/test_results.json, data files)."""
    folder = tmp_path_factory.mktemp("run")
    assert train_in_process(write_run_config(folder, tiny_backbone)) == 0
    return folder


def collator_for(model: SpanModel, annotation_format: str, labels: list[str], max_seq_length: int = 32):
    return InBatchDataCollator(model.token_tokenizer, model.type_tokenizer, annotation_format=annotation_format,
                               max_seq_length=max_seq_length, max_span_length=model.config.max_span_length,
                               label_set=labels)


# ----------------------------------------------------------------------------------------------- evaluate.py


def test_evaluate_cli_reproduces_the_training_test_metrics(trained_run, tmp_path):
    expected = read_json(trained_run / "out" / "test_results.json")["test_metrics"]
    assert expected["num_predicted_entities"] > 0, "the comparison should involve predictions"
    out = tmp_path / "results.json"
    with single_thread_fresh_accelerate():  # the run scored with one thread too: same float order
        code = evaluate_cli.main([str(trained_run / "out" / "best"), "--data", str(trained_run / "test.jsonl"),
                                  "--output", str(out)])
    assert code == 0
    results = read_json(out)
    assert set(results) == RESULT_KEYS
    assert results["metrics"] == expected
    assert results["threshold"] == 0.05 and results["settings"]["max_seq_length"] == 32  # from the run's config


def test_evaluate_cli_scores_in_bf16(trained_run, tmp_path):
    out = tmp_path / "results.json"
    code = evaluate_cli.main([str(trained_run / "out" / "best"), "--data", str(trained_run / "test.jsonl"),
                              "--precision", "bf16", "--output", str(out)])
    assert code == 0
    full = read_json(trained_run / "out" / "test_results.json")["test_metrics"]
    metrics = read_json(out)["metrics"]
    assert metrics["num_gold_entities"] == full["num_gold_entities"]  # every gold entity scored
    assert metrics["num_predicted_entities"] > 0 and abs(metrics["f1"] - full["f1"]) <= 0.1


def test_tune_threshold_saves_inference_json_and_evaluation_then_uses_it(trained_run, tmp_path):
    best = trained_run / "out" / "best"
    out = tmp_path / "tuned.json"
    with single_thread_fresh_accelerate():
        code = evaluate_cli.main([str(best), "--tune-threshold", str(trained_run / "validation.jsonl"), "--per-type",
                                  "--save-threshold", "--data", str(trained_run / "test.jsonl"), "--output", str(out)])
    assert code == 0
    tuned = read_json(out)
    search = tuned["threshold_search"]
    assert [p["threshold"] for p in search["curve"]] == pytest.approx([0.05 * k for k in range(1, 20)])
    assert search["f1"] >= max(p["f1"] for p in search["curve"])
    saved = load_inference_config(best)
    assert (saved.threshold, saved.per_type_thresholds) == (tuned["threshold"], tuned["per_type_thresholds"])
    assert set(saved.per_type_thresholds) == {"LOC", "ORG", "PER"}
    with single_thread_fresh_accelerate():  # later runs default to the saved thresholds
        assert evaluate_cli.main([str(best), "--data", str(trained_run / "test.jsonl"), "--output",
                                  str(tmp_path / "again.json")]) == 0
    assert read_json(tmp_path / "again.json")["metrics"] == tuned["metrics"]
    (best / "inference.json").unlink()


def test_evaluate_cli_errors(trained_run, tmp_path, capsys):
    assert evaluate_cli.main([str(tmp_path / "nowhere"), "--data", str(trained_run / "test.jsonl")]) == 1
    assert "nowhere: not a saved model folder" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(tiny_records()[0]) + "\n{oops\n", encoding="utf-8")
    assert evaluate_cli.main([str(trained_run / "out" / "best"), "--data", str(bad)]) == 1
    assert f"{bad}:2: invalid JSON" in capsys.readouterr().err
    for argv in (["--threshold", "0.4", "--tune-threshold", "v.jsonl"], ["--data", "x.jsonl", "--save-threshold"], []):
        with pytest.raises(SystemExit) as exit_info:
            evaluate_cli.main([str(trained_run / "out" / "best"), *argv])
        assert exit_info.value.code == 2


# ----------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("annotation_format", ["tokens", "text"])
def test_entity_at_the_end_of_a_sentence_longer_than_the_window_is_scored(tiny_model, annotation_format):
    spotter = WordSpotter(tiny_model, word="Zanzibar", label="LOC")
    filler = ["some", "naïve", "U.S.", "filler", "co-operate", "words"]
    tokens = [filler[k % len(filler)] for k in range(120)]
    tokens[60], tokens[119] = "Zanzibar", "Zanzibar"
    records = [make_record(0, tokens, [(60, 61, "LOC"), (119, 120, "LOC")]),
               make_record(1, ["Zanzibar", "is", "short"], [(0, 1, "LOC")])]
    collator = collator_for(spotter, annotation_format, ["LOC", "PER"], max_seq_length=24)
    metrics, result = evaluate_records(spotter, records, collator, batch_size=4, threshold=0.5, flat_ner=True)
    assert (metrics["precision"], metrics["recall"], metrics["num_gold_entities"]) == (1.0, 1.0, 3)
    units = [tuple(s[:3]) for s in result.predictions[0]]
    if annotation_format == "tokens":
        assert units == [(60, 61, "LOC"), (119, 120, "LOC")]
    else:
        assert [records[0]["text"][s:e] for s, e, _ in units] == ["Zanzibar", "Zanzibar"]
    # Without windows (the training collator truncates) the entity at the end is lost: the check above can fail.
    truncated = run_inference(spotter, make_eval_loader(records, collator, 4), num_examples=2, threshold=0.5,
                              flat_ner=True, compute_loss=False)
    assert len(truncated.predictions[0]) < 2


@pytest.mark.parametrize("flat_ner", [True, False])
def test_redecoding_collected_candidates_equals_decoding_at_each_threshold(tiny_model, flat_ner):
    records = tiny_records()
    collator = collator_for(tiny_model, "tokens", ["LOC", "ORG", "PER"])
    collected = collect_record_candidates(tiny_model, records, collator, batch_size=4, min_threshold=0.05)
    seen = 0
    for threshold in (0.1, 0.3, 0.5, [0.2, 0.6, 0.4]):
        direct = run_inference(tiny_model, make_eval_loader(records, collator.with_windows(), 4),
                               num_examples=len(records), threshold=threshold, flat_ner=flat_ner).predictions
        assert select_spans(collected, threshold=threshold, flat_ner=flat_ner) == direct
        seen += sum(map(len, direct))
    assert seen > 0


# ----------------------------------------------------------------------------------------------- tuning


def test_search_thresholds_decodes_each_threshold_with_its_own_overlap_resolution():
    records = [make_record(0, ["a", "b", "c", "d"], [(0, 1, "LOC"), (2, 4, "PER")])]
    # (start, end_inclusive, type, score, level); type 0 = LOC, 1 = PER.
    candidates = [[(0, 0, 0, 0.9, 0.6), (2, 3, 1, 0.8, 0.4), (1, 1, 0, 0.7, 0.35), (0, 1, 1, 0.95, 0.45)]]
    result = CandidateResult(["LOC", "PER"], candidates, None)
    search = search_thresholds(records, result, annotation_format="tokens", flat_ner=True, grid=[0.3, 0.4, 0.5, 0.7])
    # 0.3: PER 0-1 (0.95) blocks LOC 0-0 and 1-1, PER 2-3 kept -> 1 of 2 right. 0.4: only PER 0-1 -> wrong.
    # 0.5: only LOC 0-0 -> right, recall 1/2. 0.7: nothing.
    assert [p["f1"] for p in search.curve] == pytest.approx([0.5, 0.0, 2 / 3, 0.0])
    assert (search.threshold, search.per_type_thresholds) == (0.5, None)


def test_per_type_search_improves_on_the_global_threshold():
    records = [make_record(0, ["a", "b", "c", "d"], [(0, 1, "LOC"), (2, 4, "PER")])]
    candidates = [[(0, 0, 0, 0.9, 0.6), (1, 1, 0, 0.7, 0.35), (2, 3, 1, 0.8, 0.38)]]
    result = CandidateResult(["LOC", "PER"], candidates, None)
    search = search_thresholds(records, result, annotation_format="tokens", flat_ner=True, grid=[0.3, 0.4, 0.5],
                               per_type=True)
    assert search.threshold == 0.3 and search.curve[0]["f1"] == pytest.approx(0.8)
    assert search.per_type_thresholds == {"LOC": 0.4, "PER": 0.3} and search.f1 == 1.0
    assert select_spans(result, threshold=[0.4, 0.3], flat_ner=True) == [[(0, 1, "LOC", 0.9), (2, 4, "PER", 0.8)]]


def test_evaluate_records_reports_loss_and_windows_in_batches(tiny_model):
    records = tiny_records() + [make_record(9, ["word"] * 80, [(70, 72, "PER")])]
    collator = collator_for(tiny_model, "tokens", ["LOC", "ORG", "PER"], max_seq_length=16)
    metrics, result = evaluate_records(tiny_model, records, collator, batch_size=3, threshold=0.5, flat_ner=True)
    assert metrics["num_examples"] == len(records) and metrics["num_gold_entities"] == 12
    assert metrics["loss"] is not None and metrics["loss"] > 0 and len(result.predictions) == len(records)


def test_text_format_data_file_round_trip(tiny_model, tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", tiny_records())
    from src.data import read_jsonl

    records = read_jsonl(path)
    collator = collator_for(tiny_model, "text", ["LOC", "ORG", "PER"])
    metrics, _ = evaluate_records(tiny_model, records, collator, batch_size=4, threshold=0.5, flat_ner=True)
    assert metrics["num_gold_entities"] == 11 and 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize(("flat_ner", "multi_label"), [(True, False), (False, False), (True, True), (False, True)])
def test_windowed_evaluation_equals_plain_decoding_when_every_example_fits(tiny_model, flat_ner, multi_label):
    from src.collator import model_inputs
    from src.decoding import decode_batch

    records = tiny_records()
    labels = ["LOC", "ORG", "PER"]
    collator = collator_for(tiny_model, "tokens", labels)
    _, result = evaluate_records(tiny_model, records, collator, batch_size=4, threshold=0.3, flat_ner=flat_ner,
                                 multi_label=multi_label)
    expected = []
    with torch.no_grad():
        for batch in make_eval_loader(records, collator, 4):
            out = tiny_model(**model_inputs(batch))
            decoded = decode_batch(out.start_logits, out.end_logits, out.span_logits, out.span_mask, threshold=0.3,
                                   flat_ner=flat_ner, type_mask=batch["type_mask"], multi_label=multi_label)
            for alignment, spans in zip(batch["alignments"], decoded, strict=True):
                expected.append([(*alignment.to_units(i, j), labels[c], score) for i, j, c, score in spans])
    assert result.predictions == expected and sum(map(len, expected)) > 0
    spans = [(k, s, e) for k, example in enumerate(expected) for s, e, _, _ in example]
    assert (len(set(spans)) < len(spans)) == multi_label  # several types on one span only with multi_label
