"""End to end: `train.py` on a tiny config writes every promised output, and bad input fails cleanly."""

from __future__ import annotations

import json

import pytest

import train
from src.model import SpanModel

from .conftest import tiny_records, write_jsonl


def tiny_config(tmp_path, tiny_backbone, tiny_data, **overrides) -> str:
    config = {
        "token_encoder": tiny_backbone, "type_encoder": tiny_backbone, "max_span_length": 4,
        "linear_hidden_size": 16, "train_file": str(tiny_data["train"]),
        "validation_file": str(tiny_data["validation"]), "test_file": str(tiny_data["test"]),
        "output_dir": str(tmp_path / "run"), "max_steps": 12, "eval_steps": 5, "logging_steps": 4,
        "per_device_train_batch_size": 2, "learning_rate": 1e-3, "save_total_limit": 2, "disable_tqdm": True,
        **overrides,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_train_writes_all_outputs(tmp_path, tiny_backbone, tiny_data):
    assert train.main([tiny_config(tmp_path, tiny_backbone, tiny_data)]) == 0
    run = tmp_path / "run"
    for name in ("run.log", "config.json", "best", "final", "test_results.json"):
        assert (run / name).exists(), name
    # Evaluations at 5, 10 and 12; two newest kept (the best's source may add one).
    checkpoints = sorted(p.name for p in run.glob("checkpoint-*"))
    assert "checkpoint-12" in checkpoints and 2 <= len(checkpoints) <= 3
    results = json.loads((run / "test_results.json").read_text())
    metrics = results["test_metrics"]
    records = tiny_records()
    assert results["final_step"] == 12
    assert metrics["num_examples"] == len(records)
    assert metrics["num_gold_entities"] == sum(len(r["token_spans"]) for r in records)
    for key in ("loss", "precision", "recall", "f1", "accuracy", "macro_f1", "per_type"):
        assert key in metrics, key
    assert set(metrics["per_type"]) >= {"PER", "LOC", "ORG"}
    assert results["config"]["max_steps"] == 12
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["threshold"] == 0.5 and resolved["max_span_length"] == 4
    log = (run / "run.log").read_text()
    assert "Starting training for 12 steps..." in log and "Step 12/12 - loss:" in log
    assert "Effective batch size: 2" in log
    first = log.splitlines()[0]
    assert first[4] == "-" and first[19:29] == " - INFO - ", first  # 2025-10-29 14:30:15 - INFO - ...
    model = SpanModel.from_pretrained(run / "best")
    assert model.config.max_span_length == 4


def test_two_runs_with_the_same_seed_agree(tmp_path, tiny_backbone, tiny_data):
    results = []
    for name in ("a", "b"):
        cfg = tiny_config(tmp_path, tiny_backbone, tiny_data, output_dir=str(tmp_path / name), max_steps=6,
                          eval_steps=6, do_predict=True)
        assert train.main([cfg]) == 0
        results.append(json.loads((tmp_path / name / "test_results.json").read_text())["test_metrics"])
    assert results[0] == results[1]


def test_bad_jsonl_fails_naming_file_and_line(tmp_path, tiny_backbone, tiny_data, capsys):
    bad = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in tiny_records()]
    lines[2] = lines[2].replace('"end": 4', '"end": 40')
    bad.write_text("\n".join(lines) + "\n")
    code = train.main([tiny_config(tmp_path, tiny_backbone, tiny_data, train_file=str(bad))])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:3:" in err
    assert not (tmp_path / "run").exists()  # nothing written for a run that could not start


def test_bad_config_key_exits_with_message(tmp_path, tiny_backbone, tiny_data, capsys):
    assert train.main([tiny_config(tmp_path, tiny_backbone, tiny_data), "--max_stepz", "3"]) == 2
    assert "unknown key 'max_stepz'" in capsys.readouterr().err


def test_missing_backbone_exits_with_message(tmp_path, tiny_data, capsys):
    cfg = tiny_config(tmp_path, str(tmp_path / "nowhere"), tiny_data)
    assert train.main([cfg]) == 2
    assert "Could not load the encoder" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_test_config_runs_on_embedded_defaults(tmp_path):
    """The README's main job, shortened: embedded backbone + demo corpus, no file paths, no network."""
    code = train.main(["configs/quick_test.json", "--output_dir", str(tmp_path / "q"), "--max_steps", "4",
                       "--eval_steps", "4", "--disable_tqdm", "true"])
    assert code == 0
    results = json.loads((tmp_path / "q" / "test_results.json").read_text())
    assert results["test_metrics"]["num_examples"] == 239


def test_text_annotation_format_trains(tmp_path, tiny_backbone):
    data = {s: write_jsonl(tmp_path / f"{s}.jsonl", tiny_records()) for s in ("train", "validation", "test")}
    cfg = tiny_config(tmp_path, tiny_backbone, data, annotation_format="text", max_steps=4, eval_steps=4)
    assert train.main([cfg]) == 0
    metrics = json.loads((tmp_path / "run" / "test_results.json").read_text())["test_metrics"]
    assert metrics["num_gold_entities"] == 11


