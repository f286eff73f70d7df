"""Helpers for the tests that run training end to end: tiny data and configs, launches, and reading what a run wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from .conftest import REPO_ROOT, tiny_records, write_jsonl

LABELS = ["LOC", "ORG", "PER"]


def train_records() -> list[dict]:
    """Seven training records (an odd number, so the last batch is short), every one with an entity.

    A batch without any entity has no types for the in-batch type encoder, so training data here avoids it.
    """
    with_entities = [r for r in tiny_records() if r["token_spans"]]
    return with_entities + [dict(with_entities[0], id="10"), dict(with_entities[1], id="11")]


def eval_records() -> list[dict]:
    """Seven validation/test records (an odd number), one of them without entities."""
    records = tiny_records()
    return records + [dict(records[3], id="6")]


def write_run_config(folder: Path, backbone: str, **overrides) -> Path:
    """Write train/validation/test JSONL and a small training config into `folder`; returns the config path.

    The defaults train for a few seconds and, with the low threshold, predict some entities after a dozen steps.
    """
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "train.jsonl", train_records())
    write_jsonl(folder / "validation.jsonl", eval_records())
    write_jsonl(folder / "test.jsonl", eval_records())
    config = {
        "token_encoder": backbone, "type_encoder": backbone, "max_span_length": 4, "linear_hidden_size": 16,
        "train_file": str(folder / "train.jsonl"), "validation_file": str(folder / "validation.jsonl"),
        "test_file": str(folder / "test.jsonl"), "max_seq_length": 32, "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2, "learning_rate": 1e-3, "head_learning_rate": 1e-2, "threshold": 0.05,
        "max_steps": 12, "eval_steps": 4, "logging_steps": 2, "output_dir": str(folder / "out"), "use_cpu": True,
        "disable_tqdm": True, "save_total_limit": None,
    }
    config.update(overrides)
    path = folder / "config.json"
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    return path


def subprocess_env() -> dict[str, str]:
    """Environment for launched runs: offline, one thread per process (2 CPU cores; also fixes the float order)."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO_ROOT))
    return env


def launch(args: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command from the repository root and return it finished (output captured)."""
    return subprocess.run(args, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_training(config: Path, *overrides: str) -> subprocess.Popen:
    """Start `python train.py CONFIG` in the background (for tests that kill it)."""
    return subprocess.Popen([sys.executable, "train.py", str(config), *overrides], cwd=REPO_ROOT,
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@contextmanager
def single_thread_fresh_accelerate():
    """One torch thread and a fresh Accelerate state for an in-process run (Accelerate keeps process-wide state)."""
    from accelerate.state import AcceleratorState, GradientState

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    try:
        yield
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        torch.set_num_threads(threads)


def train_in_process(config: Path, *overrides: str) -> int:
    """Run `train.py CONFIG [--key value ...]` in this process; returns its exit status."""
    import train

    with single_thread_fresh_accelerate():
        return train.main([str(config), *overrides])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def model_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every saved weight of a model folder (span head and both encoders), keyed by file and name."""
    from safetensors.torch import load_file

    tensors = {f"head.{k}": v for k, v in load_file(model_dir / "span_head.safetensors").items()}
    for encoder in ("token_encoder", "type_encoder"):
        for file in sorted((model_dir / encoder).glob("*.safetensors")):
            tensors.update({f"{encoder}.{k}": v for k, v in load_file(file).items()})
    return tensors


def tree_snapshot(folder: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `folder` (folders as empty markers)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>") for p in folder.rglob("*")}
