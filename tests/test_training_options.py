"""Run options end to end: the output-dir guard and overwrite, trackers, mixed precision, accumulation, workers."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from .training_runs import read_json, train_in_process, tree_snapshot, write_run_config


def test_output_dir_guard_refuses_and_touches_nothing(tmp_path, tiny_backbone, capsys):
    config = write_run_config(tmp_path, tiny_backbone, max_steps=2, eval_steps=2)
    out = tmp_path / "out"
    (out / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3}')
    (out / "notes.txt").write_text("my notes")
    before = tree_snapshot(out)

    assert train_in_process(config) == 2
    error = capsys.readouterr().err
    assert "not empty" in error and '"overwrite_output_dir": true' in error and '"resume_from_checkpoint"' in error
    assert tree_snapshot(out) == before

    # overwrite_output_dir starts afresh: the earlier run's checkpoints go, files that are not a run's stay.
    assert train_in_process(config, "--overwrite_output_dir", "true") == 0
    assert not (out / "checkpoint-3").exists() and (out / "notes.txt").read_text() == "my notes"
    assert read_json(out / "test_results.json")["final_step"] == 2


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_missing_tracker_is_a_clear_error_before_anything_is_written(tmp_path, tiny_backbone, capsys):
    config = write_run_config(tmp_path, tiny_backbone, report_to=["tensorboard"])
    assert train_in_process(config) == 2
    assert "pip install tensorboard" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed")
def test_tensorboard_receives_loss_learning_rate_temperature_and_metrics(tmp_path, tiny_backbone):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = write_run_config(tmp_path, tiny_backbone, max_steps=4, eval_steps=2, report_to=["tensorboard"])
    assert train_in_process(config) == 0
    events = EventAccumulator(str(tmp_path / "out" / "runs" / "span-ner")).Reload()  # runs/<run_name>
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/temperature", "eval/f1", "eval/loss"} <= tags


def test_bf16_accumulation_clipping_and_loader_workers_on_cpu(tmp_path, tiny_backbone):
    config = write_run_config(
        tmp_path, tiny_backbone, bf16=True, gradient_accumulation_steps=2, max_grad_norm=0.5,
        dataloader_num_workers=1, max_steps=4, eval_steps=4,
    )
    assert train_in_process(config) == 0
    log = (tmp_path / "out" / "run.log").read_text()
    assert "mixed precision: bf16" in log
    assert "Effective batch size: 4 (2 per device x 1 processes x 2 accumulation steps)" in log
    state = read_json(tmp_path / "out" / "checkpoint-4" / "trainer_state.json")
    # 7 examples in batches of 2: 4 steps of 2 batches use the 4 batches of epoch 0 and 4 of epoch 1.
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 4)
    assert math.isfinite(read_json(tmp_path / "out" / "test_results.json")["test_metrics"]["loss"])


def test_fp16_on_cpu_is_refused(tmp_path, tiny_backbone, capsys):
    config = write_run_config(tmp_path, tiny_backbone, fp16=True)
    assert train_in_process(config) == 2
    assert "'fp16' needs a GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_type_embeddings_keeps_only_the_type_word_embeddings_fixed(tmp_path, tiny_backbone, freeze):
    from src.model import SpanModel

    config = write_run_config(tmp_path, tiny_backbone, max_steps=3, eval_steps=3, freeze_type_embeddings=freeze)
    assert train_in_process(config) == 0
    initial = SpanModel.from_config(SpanModel.from_pretrained(tmp_path / "out" / "final").config)
    trained = SpanModel.from_pretrained(tmp_path / "out" / "final")
    word_embeddings = "embeddings.word_embeddings.weight"
    for encoder in ("type_encoder", "token_encoder"):
        before = dict(getattr(initial, encoder).named_parameters())
        after = dict(getattr(trained, encoder).named_parameters())
        frozen = freeze and encoder == "type_encoder"
        assert torch.equal(before[word_embeddings], after[word_embeddings]) is frozen, encoder
        assert not torch.equal(before["encoder.layer.0.attention.self.query.weight"],
                               after["encoder.layer.0.attention.self.query.weight"]), encoder
    total = sum(p.numel() for p in trained.parameters())
    fixed = trained.type_encoder.get_input_embeddings().weight.numel() if freeze else 0
    assert f"span head), {total - fixed:,} trained" in (tmp_path / "out" / "run.log").read_text()
