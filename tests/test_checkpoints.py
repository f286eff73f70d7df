"""Checkpoint folders: atomic writes, what an interrupted save leaves behind, recovery, and rotation around best/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from accelerate import Accelerator

from src.checkpoints import (
    atomic_directory,
    list_checkpoints,
    read_saved_step,
    recover_interrupted_writes,
    resolve_checkpoint,
    rotation_victims,
)
from src.model import SpanModel
from src.trainer import SpanTrainer

from .training_runs import read_json, train_in_process, write_run_config


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("limit", "keep_step", "deleted"),
    [
        (None, 10, []),
        (1, 10, [20]),  # best's source and the newest stay, even over the limit
        (1, 30, [10, 20]),  # best is the newest: one is enough
        (2, 10, [20]),
        (2, None, [10]),  # no best yet (do_eval off)
        (3, 10, []),
    ],
)
def test_rotation_keeps_best_source_and_newest(limit, keep_step, deleted):
    checkpoints = [Path(f"run/checkpoint-{step}") for step in (10, 20, 30)]
    victims = rotation_victims(checkpoints, limit=limit, keep_step=keep_step)
    assert victims == [Path(f"run/checkpoint-{step}") for step in deleted]


def test_atomic_directory_keeps_the_old_folder_when_writing_fails(tmp_path):
    final = tmp_path / "best"
    final.mkdir()
    (final / "model.pt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_directory(final) as tmp:
        (tmp / "model.pt").write_text("new, half written")
        raise RuntimeError("disk full")
    assert names(tmp_path) == ["best"] and (final / "model.pt").read_text() == "old"
    with atomic_directory(final) as tmp:
        (tmp / "model.pt").write_text("new")
    assert names(tmp_path) == ["best"] and (final / "model.pt").read_text() == "new"


def test_recovery_after_a_kill_mid_write(tmp_path):
    # Killed between the two renames that replace best/: only the hidden previous version is left.
    (tmp_path / ".best.old").mkdir()
    (tmp_path / ".best.old" / "model.pt").write_text("previous best")
    (tmp_path / ".best.tmp").mkdir()  # its replacement, whose rename never happened
    # Killed after final/ was replaced but before the old one was removed.
    for name in ("final", ".final.old"):
        (tmp_path / name).mkdir()
    (tmp_path / "final" / "model.pt").write_text("new final")
    # Killed while writing a checkpoint, while rotation deleted one, and while writing a JSON file.
    (tmp_path / ".checkpoint-4.tmp" / "training_state").mkdir(parents=True)
    (tmp_path / ".checkpoint-1.deleted").mkdir()
    (tmp_path / ".config.json.tmp").write_text("{")
    (tmp_path / ".gitignore").write_text("*\n")  # not ours: left alone
    recover_interrupted_writes(tmp_path)
    assert names(tmp_path) == [".gitignore", "best", "final"]
    assert (tmp_path / "best" / "model.pt").read_text() == "previous best"
    assert (tmp_path / "final" / "model.pt").read_text() == "new final"


def test_interrupted_checkpoint_save_leaves_previous_checkpoint_usable(tmp_path, tiny_backbone, monkeypatch):
    config = write_run_config(tmp_path, tiny_backbone, max_steps=4, eval_steps=2)
    out = tmp_path / "out"
    real_save_state, calls = Accelerator.save_state, []

    def save_state_then_fail(self, output_dir=None, **kwargs):
        calls.append(output_dir)
        real_save_state(self, output_dir, **kwargs)
        if len(calls) == 2:  # checkpoint-4: model, optimizer and RNG files are written, trainer_state.json is not
            raise OSError("No space left on device")

    monkeypatch.setattr(Accelerator, "save_state", save_state_then_fail)
    with pytest.raises(OSError, match="No space left"):
        train_in_process(config)
    monkeypatch.undo()

    assert ".checkpoint-4.tmp" in calls[1]  # it really was writing checkpoint-4 when it failed
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2"]
    assert resolve_checkpoint(out, "latest") == out / "checkpoint-2"
    assert not any("checkpoint-4" in name for name in names(out))
    SpanModel.from_pretrained(out / "checkpoint-2")  # loads on its own

    # What a SIGKILL at the worst moments would leave: a partial checkpoint-4 and no best/ yet for step 2.
    shutil.copytree(out / "checkpoint-2", out / ".checkpoint-4.tmp")
    (out / ".checkpoint-4.tmp" / "trainer_state.json").unlink()
    shutil.rmtree(out / "best")
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2"]

    assert train_in_process(config, "--resume_from_checkpoint", "latest") == 0
    assert names(out) == ["best", "checkpoint-2", "checkpoint-4", "config.json", "final", "run.log",
                          "test_results.json"]
    assert "best/ restored from" in (out / "run.log").read_text()
    results = read_json(out / "test_results.json")
    assert results["final_step"] == 4 and read_saved_step(out / "best") == results["best_step"]


def test_save_total_limit_1_keeps_best_source_and_newest(tmp_path, tiny_backbone, monkeypatch):
    config = write_run_config(tmp_path, tiny_backbone, max_steps=6, eval_steps=2, save_total_limit=1)
    out = tmp_path / "out"
    scripted_f1 = {2: 0.5, 4: 0.2, 6: 0.3}  # best at step 2, then two worse evaluations
    real_evaluate, real_checkpoint, kept = SpanTrainer.evaluate, SpanTrainer._checkpoint, {}

    def evaluate(self, split, threshold=None):
        metrics = real_evaluate(self, split)
        if split == "validation":
            metrics["f1"] = scripted_f1[self.global_step]
        return metrics

    def checkpoint(self):
        real_checkpoint(self)
        kept[self.global_step] = [p.name for p in list_checkpoints(out)]

    monkeypatch.setattr(SpanTrainer, "evaluate", evaluate)
    monkeypatch.setattr(SpanTrainer, "_checkpoint", checkpoint)
    assert train_in_process(config) == 0
    assert kept == {2: ["checkpoint-2"], 4: ["checkpoint-2", "checkpoint-4"], 6: ["checkpoint-2", "checkpoint-6"]}
    assert read_saved_step(out / "best") == 2
    assert read_json(out / "test_results.json")["best_step"] == 2


@pytest.mark.parametrize(("metric", "extra", "best"), [("loss", [], 4), ("loss", ["--greater_is_better", "true"], 6),
                                                       ("f1", [], 6)])
def test_best_model_follows_the_metric_direction(tmp_path, tiny_backbone, monkeypatch, metric, extra, best):
    config = write_run_config(tmp_path, tiny_backbone, max_steps=6, eval_steps=2, metric_for_best_model=metric)
    scripted = {2: 0.5, 4: 0.2, 6: 0.7}  # lowest at step 4, highest at step 6
    real_evaluate = SpanTrainer.evaluate

    def evaluate(self, split, threshold=None):
        metrics = real_evaluate(self, split)
        if split == "validation":
            metrics[metric] = scripted[self.global_step]
        return metrics

    monkeypatch.setattr(SpanTrainer, "evaluate", evaluate)
    assert train_in_process(config, *extra) == 0
    assert read_json(tmp_path / "out" / "test_results.json")["best_step"] == best
    assert read_saved_step(tmp_path / "out" / "best") == best
