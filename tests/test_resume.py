"""A run killed with SIGKILL after a checkpoint and resumed with "latest" ends exactly like an uninterrupted run."""

from __future__ import annotations

import os
import signal
import time

import torch

from .training_runs import model_tensors, read_json, start_training, train_in_process, write_run_config


def kill_after_first_checkpoint(config, out, *, timeout: float = 120.0) -> None:
    """Start train.py, SIGKILL it as soon as its first checkpoint is complete, and wait for it to die."""
    process = start_training(config, "--output_dir", str(out))
    deadline = time.monotonic() + timeout
    try:
        while not any(out.glob("checkpoint-*/trainer_state.json")):
            assert process.poll() is None, f"training ended before its first checkpoint:\n{process.stderr.read()}"
            assert time.monotonic() < deadline, "no checkpoint within the timeout"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
        process.stderr.close()


def test_killed_and_resumed_run_matches_uninterrupted_run(tmp_path, tiny_backbone):
    # 7 examples in batches of 2 make 4 batches per epoch; with 3 accumulation steps an epoch holds one full update
    # and one of a single batch, so the data position cannot be derived from the step alone. Dropout is on, so the
    # RNG states matter too.
    config = write_run_config(tmp_path, tiny_backbone, gradient_accumulation_steps=3, max_steps=21, eval_steps=7,
                              logging_steps=7, dropout=0.1)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert train_in_process(config, "--output_dir", str(reference)) == 0

    kill_after_first_checkpoint(config, resumed)
    assert not (resumed / "final").exists() and not (resumed / "test_results.json").exists(), "killed too late"
    assert train_in_process(config, "--output_dir", str(resumed), "--resume_from_checkpoint", "latest") == 0
    log = (resumed / "run.log").read_text()
    assert "Resumed from" in log and "at step 21 " not in log.split("Resumed from", 1)[1].splitlines()[0]

    ref_results, res_results = read_json(reference / "test_results.json"), read_json(resumed / "test_results.json")
    assert res_results["test_metrics"] == ref_results["test_metrics"]
    assert (res_results["best_step"], res_results["final_step"]) == (ref_results["best_step"], 21)
    ref_state = read_json(reference / "checkpoint-21" / "trainer_state.json")
    res_state = read_json(resumed / "checkpoint-21" / "trainer_state.json")
    assert res_state == ref_state  # step, data position, best, and the logged losses and metrics of every step
    for folder in ("final", "best"):
        ref_weights, res_weights = model_tensors(reference / folder), model_tensors(resumed / folder)
        assert ref_weights.keys() == res_weights.keys()
        assert all(torch.equal(ref_weights[k], res_weights[k]) for k in ref_weights), f"{folder}/ weights differ"
