"""benchmarks/train_gliner.py: GLiNER trained with its own Trainer on a tiny random backbone, offline; bad input
and occupied output folders refused with messages that name the file."""

from __future__ import annotations

import json
import math
import sys

import pytest

from .conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import train_gliner  # noqa: E402

ITEMS = [
    {"tokenized_text": ["John", "Smith", "lives", "in", "New", "York", "."], "ner": [[0, 1, "person"],
                                                                                 [4, 5, "location"]]},
    {"tokenized_text": ["Apple", "hired", "Mary", "Jones"], "ner": [[0, 0, "organization"], [2, 3, "person"]]},
    {"tokenized_text": ["Nothing", "to", "see", "here"], "ner": []},
    {"tokenized_text": ["Aspirin", "causes", "headache"], "ner": [[0, 0, "chemical"], [2, 2, "disease"]]},
]


def write_items(path, items):
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def tiny_args(train_file, output, backbone, *extra):
    return ["--train", str(train_file), "--output", str(output), "--backbone", backbone, "--steps", "3",
            "--batch-size", "4", "--warmup-steps", "1", "--logging-steps", "1", "--max-width", "4", "--threads", "1",
            *extra]


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    """One 3-step run on the tiny backbone: (the output folder, the train file)."""
    folder = tmp_path_factory.mktemp("train_gliner")
    train_file = write_items(folder / "train.json", ITEMS * 3)
    output = folder / "model"
    assert train_gliner.main(tiny_args(train_file, output, tiny_backbone)) == 0
    return output, train_file


def test_three_steps_are_trained_logged_and_the_model_reloads_offline(trained, monkeypatch):
    output, _ = trained
    log = json.loads((output / "train_log.json").read_text())
    assert log["tool"] == train_gliner.TOOL_NAME and log["steps"] == 3
    assert [entry["step"] for entry in log["train_loss"]] == [1, 2, 3]
    assert all(math.isfinite(entry["loss"]) and entry["loss"] > 0 for entry in log["train_loss"])
    # linear warmup over 1 step, then linear decay to 0 at step 3; Trainer logs the rate each update used
    assert [e["head_lr"] for e in log["train_loss"]] == pytest.approx([0.0, 1e-3, 5e-4])
    assert [e["encoder_lr"] for e in log["train_loss"]] == pytest.approx([0.0, 5e-5, 2.5e-5])
    # wall_time_s is rounded to 1 ms, so on a fast run (0.4 s) 3 / wall_time_s may differ by about 0.1%
    wall = log["wall_time_s"]
    assert wall > 0 and 3 / (wall + 5e-4) - 1e-4 <= log["steps_per_second"] <= 3 / max(wall - 5e-4, 1e-9) + 1e-4
    assert log["settings"]["train_items"] == 12 and log["settings"]["batch_size"] == 4
    assert not list(output.parent.glob(".model.partial"))

    from gliner import GLiNER

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = GLiNER.from_pretrained(str(output), local_files_only=True)
    assert type(model).__name__ == "UniEncoderSpanGLiNER"
    assert (model.config.span_mode, model.config.max_width, model.config.max_types) == ("markerV0", 4, 25)
    entities = model.predict_entities("Mary Jones visited Paris", ["person", "location"], threshold=0.0)
    assert entities and all(e["label"] in {"person", "location"} for e in entities)


def test_evaluate_gliner_scores_the_trained_folder(trained, tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import evaluate_gliner

    from src.corpus_formats import read_corpus
    from src.data import write_jsonl

    output, train_file = trained
    data = tmp_path / "test.jsonl"
    write_jsonl(data, read_corpus(train_file, format="gliner").records)
    results = tmp_path / "results.json"
    assert evaluate_gliner.main([str(output), "--data", str(data), "--output", str(results)]) == 0
    metrics = json.loads(results.read_text())["metrics"]
    assert metrics["num_gold_entities"] == 18


def test_overwrite_replaces_an_earlier_run_with_the_same_seeded_result(trained, tiny_backbone, tmp_path):
    output, train_file = trained
    first = json.loads((output / "train_log.json").read_text())["train_loss"]
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "train_log.json").write_text((output / "train_log.json").read_text())
    (copy / "stale.bin").write_text("old")
    assert train_gliner.main(tiny_args(train_file, copy, tiny_backbone, "--overwrite")) == 0
    again = json.loads((copy / "train_log.json").read_text())["train_loss"]
    assert [e["loss"] for e in again] == pytest.approx([e["loss"] for e in first], rel=1e-4)
    assert not (copy / "stale.bin").exists() and (copy / "model.safetensors").is_file()


def test_occupied_output_folders_are_refused(trained, tiny_backbone, tmp_path, capsys):
    _, train_file = trained
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert train_gliner.main(tiny_args(train_file, other, tiny_backbone)) == 1
    assert "not empty" in capsys.readouterr().err
    assert train_gliner.main(tiny_args(train_file, other, tiny_backbone, "--overwrite")) == 1
    assert "replaces only a folder written by" in capsys.readouterr().err
    assert (other / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such gliner file"),
    ("[{\"tokenized_text\": [\"a\"], \"ner\": []},", "invalid JSON"),
    (json.dumps([]), "no items"),
    (json.dumps(ITEMS[:2] + [{"tokenized_text": ["a", "b"], "ner": [[0, 2, "x"]]}]), "item 2: ner[0]"),
    (json.dumps(ITEMS[:1] + [{"tokens": ["a"]}]), "item 1: expected an object with 'tokenized_text'"),
])
def test_bad_training_files_are_named(tmp_path, capsys, content, message):
    train_file = tmp_path / "train.json"
    if content is not None:
        train_file.write_text(content)
    assert train_gliner.main(["--train", str(train_file), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(train_file) in err and message in err
    assert not (tmp_path / "out").exists()
