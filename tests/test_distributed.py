"""Two CPU processes (torchrun, gloo): sharded epochs, one writer, and evaluation that scores every example once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from src.collator import InBatchDataCollator, gold_spans
from src.evaluation import evaluate_records
from src.model import SpanModel

from .conftest import REPO_ROOT
from .training_runs import LABELS, eval_records, launch, read_json, subprocess_env, write_run_config

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, tiny_backbone):
    """One torchrun launch of 2 CPU processes: the shard probe, then 8 training steps of train.py.

    7 training examples in batches of 2 on 2 processes make 2 steps per epoch, so every evaluation (every 4 steps)
    falls on the last, padded batch of an epoch; with 7 evaluation examples the last evaluation batch is padded too.
    """
    folder = tmp_path_factory.mktemp("distributed")
    config = write_run_config(folder, tiny_backbone, max_steps=8, eval_steps=4, logging_steps=2)
    done = launch([*TORCHRUN, "tests/distributed_launch.py", str(folder), str(config)], timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return folder, config


def test_each_process_draws_its_own_shard_of_every_epoch(two_process_run):
    folder, _ = two_process_run
    ranks = [{int(k): v for k, v in read_json(folder / f"rank{r}.json").items()} for r in (0, 1)]
    for num_examples, padding in ((8, 0), (7, 1)):  # 7 examples in batches of 2 x 2 processes: one repeated
        for epoch in (0, 1):
            drawn = [ranks[r][num_examples]["epochs"][epoch] for r in (0, 1)]
            assert len(drawn[0]) == len(drawn[1]) == (num_examples + padding) // 2
            assert set(drawn[0]) | set(drawn[1]) == set(range(num_examples))
            assert len(set(drawn[0]) & set(drawn[1])) == padding
        for r in (0, 1):
            first, second = ranks[r][num_examples]["epochs"]
            assert first != second  # reshuffled every epoch
            # A resumed run that skips the first batch of epoch 1 continues exactly where the full epoch would.
            assert ranks[r][num_examples]["resumed_epoch_1_after_1_batch"] == second[2:]


def test_two_process_training_writes_once_and_scores_every_example_once(two_process_run):
    folder, config = two_process_run
    out = folder / "out"

    # One writer: one set of files, every log line once.
    assert sorted(p.name for p in out.iterdir()) == [
        "best", "checkpoint-4", "checkpoint-8", "config.json", "final", "run.log", "test_results.json"
    ]
    state_files = sorted(p.name for p in (out / "checkpoint-8" / "training_state").iterdir())
    assert state_files == ["custom_checkpoint_0.pkl", "optimizer.bin", "random_states_0.pkl", "random_states_1.pkl"]
    messages = [line.split(" - ", 2)[2] for line in (out / "run.log").read_text().splitlines() if " - INFO - " in line]
    assert "processes: 2" in messages[1]
    assert len(messages) == len(set(messages)), "run.log holds duplicated lines"
    assert [int(m.group(1)) for m in map(re.compile(r"Step (\d+)/8 ").match, messages) if m] == [2, 4, 6, 8]
    assert sum(m.startswith("Evaluation at step") for m in messages) == 2
    state = read_json(out / "checkpoint-8" / "trainer_state.json")
    assert state["num_processes"] == 2 and state["train_batch_size"] == 4

    # Every example and every gold entity scored exactly once, in validation and in test.
    records = eval_records()
    num_gold = sum(len(gold_spans(r, "tokens")) for r in records)
    results = read_json(out / "test_results.json")
    test_metrics = results["test_metrics"]
    assert (test_metrics["num_examples"], test_metrics["num_gold_entities"]) == (len(records), num_gold)
    for step in (4, 8):
        eval_metrics = read_json(out / f"checkpoint-{step}" / "eval_results.json")["eval_metrics"]
        assert (eval_metrics["num_examples"], eval_metrics["num_gold_entities"]) == (len(records), num_gold)
    assert results["model"] == "best"

    # The same numbers as one process scoring the saved best/ model.
    model = SpanModel.from_pretrained(out / "best")
    cfg = json.loads(config.read_text())
    collator = InBatchDataCollator(
        model.token_tokenizer, model.type_tokenizer, annotation_format="tokens", max_seq_length=cfg["max_seq_length"],
        max_span_length=model.config.max_span_length, label_set=LABELS,
    )
    single, _ = evaluate_records(model, records, collator, batch_size=2, threshold=cfg["threshold"], flat_ner=True)
    assert single["num_predicted_entities"] > 0, "the comparison is only meaningful with some predictions"
    # The loss is left out: src/evaluation.py averages batch losses, and the batch Accelerate pads with a repeated
    # example counts that example twice (0.823 against 0.858 here), so it differs by design until that is changed.
    assert {k: v for k, v in test_metrics.items() if k != "loss"} == {k: v for k, v in single.items() if k != "loss"}


def torchrun_command() -> str:
    """The `torchrun` script of this Python's environment (it ships with torch), else the one on PATH."""
    beside = Path(sys.executable).with_name("torchrun")
    found = str(beside) if beside.is_file() else shutil.which("torchrun")
    assert found, "torchrun not found beside the Python executable or on PATH"
    return found


def test_plain_torchrun_on_cpu_trains_two_processes(tmp_path, tiny_backbone):
    """`torchrun --nproc_per_node 2 train.py CONFIG.json` as docs/training.md prints it, with no use_cpu key."""
    config_path = write_run_config(tmp_path, tiny_backbone, max_steps=2, eval_steps=2)
    config = json.loads(config_path.read_text())
    del config["use_cpu"]
    config_path.write_text(json.dumps(config))
    # A session of its own, so that a timeout kills the workers too and nothing is left running.
    proc = subprocess.Popen([torchrun_command(), "--nproc_per_node", "2", "train.py", str(config_path)],
                            cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError("torchrun did not finish within 240 s: " + stderr[-3000:]) from None
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "best", "checkpoint-2", "config.json", "final", "run.log", "test_results.json"
    ]
    assert read_json(out / "config.json")["use_cpu"] is False
    messages = [line.split(" - ", 2)[2] for line in (out / "run.log").read_text().splitlines() if " - INFO - " in line]
    assert "Device: cpu" in messages[1] and "processes: 2" in messages[1]
    assert len(messages) == len(set(messages)), "run.log holds duplicated lines"
    state = read_json(out / "checkpoint-2" / "trainer_state.json")
    assert state["num_processes"] == 2
    records = eval_records()
    metrics = read_json(out / "test_results.json")["test_metrics"]
    assert (metrics["num_examples"], metrics["num_gold_entities"]) == (
        len(records), sum(len(gold_spans(r, "tokens")) for r in records))
