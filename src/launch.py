"""What a launcher (torchrun, accelerate launch, mpirun) asked for, and the check that the run got it: N processes
asked for must give one N-process run, never N single-process runs writing into the same folder.
"""

from __future__ import annotations

import torch
from accelerate.utils import get_int_from_env

# The variables launchers set to the total number of processes (torchrun and accelerate: WORLD_SIZE; MPI flavours).
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


class LaunchError(RuntimeError):
    """The launcher's process count and the run's disagree."""


def launcher_world_size() -> int:
    """Processes the launcher started in all (1 without a launcher)."""
    return get_int_from_env(list(WORLD_SIZE_VARIABLES), 1)


def needs_cpu_processes(use_cpu: bool) -> bool:
    """Whether Accelerate must be told to use the CPU: when asked, or when a launcher started several processes on a
    machine without an accelerator (Accelerate goes multi-process on the CPU only when told, so each process would
    otherwise train alone)."""
    return use_cpu or (launcher_world_size() > 1 and not torch.accelerator.is_available())


def check_process_count(num_processes: int, device: str) -> None:
    """Raise LaunchError when the launcher started more processes than the run has (each would train alone)."""
    asked = launcher_world_size()
    if asked != num_processes:
        raise LaunchError(
            f"the launcher started {asked} processes but each of them set up a run of {num_processes} process(es) on "
            f"{device}: they would train independently and write into the same output_dir. Launch one process, or "
            "set \"use_cpu\": true to train on CPU processes (this device type has no multi-process support in "
            "Accelerate)"
        )
