"""Launchers: N processes asked for give one N-process run or a clear error before anything is written."""

from __future__ import annotations

import pytest
import torch

import src.trainer
from src.launch import LaunchError, check_process_count, launcher_world_size, needs_cpu_processes

from .training_runs import train_in_process, write_run_config

LAUNCHER_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


@pytest.fixture()
def no_launcher(monkeypatch):
    for key in LAUNCHER_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_world_size_from_the_launcher(no_launcher):
    assert launcher_world_size() == 1
    no_launcher.setenv("OMPI_COMM_WORLD_SIZE", "3")
    assert launcher_world_size() == 3
    no_launcher.setenv("WORLD_SIZE", "2")  # torchrun / accelerate launch
    assert launcher_world_size() == 2


@pytest.mark.parametrize(
    ("world_size", "has_accelerator", "use_cpu", "expected"),
    [(None, False, False, False), ("2", False, False, True), ("2", True, False, False), ("1", False, False, False),
     (None, True, True, True), ("2", True, True, True)],
)
def test_cpu_processes_when_a_launcher_starts_several_without_an_accelerator(
    no_launcher, world_size, has_accelerator, use_cpu, expected
):
    if world_size is not None:
        no_launcher.setenv("WORLD_SIZE", world_size)
    no_launcher.setattr(torch.accelerator, "is_available", lambda: has_accelerator)
    assert needs_cpu_processes(use_cpu) is expected


def test_process_count_mismatch_is_an_error(no_launcher):
    check_process_count(1, "cpu")
    no_launcher.setenv("WORLD_SIZE", "2")
    check_process_count(2, "cpu")
    with pytest.raises(LaunchError, match=r"started 2 processes but each of them set up a run of 1 process\(es\) on "
                                          r"mps: .*\"use_cpu\": true"):
        check_process_count(1, "mps")


def test_a_run_that_would_be_single_process_stops_before_writing(no_launcher, tmp_path, tiny_backbone, capsys):
    """WORLD_SIZE=2 while Accelerate sets up one process (as on a device type without multi-process support)."""
    config = write_run_config(tmp_path, tiny_backbone, use_cpu=False)
    no_launcher.setenv("WORLD_SIZE", "2")
    no_launcher.setattr(src.trainer, "needs_cpu_processes", lambda use_cpu: False)
    assert train_in_process(config) == 2
    assert "error: the launcher started 2 processes but each of them set up a run of 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
