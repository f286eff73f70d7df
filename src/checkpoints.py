"""The run folder on disk: the output-dir guard, atomic folder writes, checkpoint listing, rotation and recovery.

Atomic single-file writes are generic and live in src/atomic_files.py.

Every folder a run publishes (`checkpoint-<step>/`, `best/`, `final/`) is written under a hidden temporary name and
renamed into place, so a run killed at any moment leaves the previous complete folder readable.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from .atomic_files import TMP_SUFFIX

CHECKPOINT_PREFIX = "checkpoint-"
STATE_NAME = "trainer_state.json"
TRAINING_STATE_DIR = "training_state"
EVAL_RESULTS_NAME = "eval_results.json"
TRACKING_DIR = "runs"
# What a run writes into output_dir (and what overwrite_output_dir clears); checkpoint-* folders come on top.
RUN_FILES = ("config.json", "run.log", "test_results.json")
RUN_FOLDERS = ("best", "final", TRACKING_DIR)
# Hidden leftovers of an interrupted write: `.<name>.tmp` (being written), `.<name>.old` (being replaced),
# `.<name>.deleted` (being removed by rotation).
OLD_SUFFIX, DELETED_SUFFIX = ".old", ".deleted"  # TMP_SUFFIX comes from src.atomic_files


class OutputDirError(RuntimeError):
    """The output folder holds an earlier run and neither overwrite nor resume was asked for."""


def check_output_dir(output_dir: str | Path, *, overwrite: bool, resume: str | None) -> None:
    """Refuse to start in a non-empty output_dir unless overwrite_output_dir or resume_from_checkpoint is set."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output_dir '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite and not resume:
        raise OutputDirError(
            f"output_dir '{out}' already exists and is not empty. Nothing was changed. To continue that run, set "
            "\"resume_from_checkpoint\": \"latest\" (or a checkpoint path; on the command line "
            "--resume_from_checkpoint latest); to start a new run there, set \"overwrite_output_dir\": true "
            "(--overwrite_output_dir true), which removes the earlier run's checkpoints and results; or choose "
            "another output_dir."
        )


def clear_previous_run(output_dir: Path) -> None:
    """Remove what an earlier run wrote (so its checkpoints and best/ cannot mix with the new run); keep the rest."""
    if not output_dir.is_dir():
        return
    for path in output_dir.iterdir():
        leftover = path.name.startswith(".") and path.name.endswith((TMP_SUFFIX, OLD_SUFFIX, DELETED_SUFFIX))
        if leftover and path.is_file():
            path.unlink()
        elif leftover or (path.is_dir() and (path.name in RUN_FOLDERS or checkpoint_step(path) is not None)):
            remove_folder(path)
        elif path.is_file() and path.name in RUN_FILES:
            path.unlink()


def recover_interrupted_writes(output_dir: Path) -> None:
    """Clean up after a run killed while writing: drop partial folders, put back a folder killed mid-replace."""
    if not output_dir.is_dir():
        return
    for path in sorted(output_dir.glob(".*")):
        name = path.name[1:]
        if path.is_file():
            if name.endswith(TMP_SUFFIX):
                path.unlink()  # a JSON file whose write was cut short
        elif name.endswith(OLD_SUFFIX) and not (output_dir / name[: -len(OLD_SUFFIX)]).exists():
            os.replace(path, output_dir / name[: -len(OLD_SUFFIX)])  # killed between the two renames of a replace
        elif name.endswith((TMP_SUFFIX, OLD_SUFFIX, DELETED_SUFFIX)):
            shutil.rmtree(path, ignore_errors=True)


def checkpoint_step(path: Path) -> int | None:
    """The step of a `checkpoint-<step>` folder name, else None."""
    suffix = path.name[len(CHECKPOINT_PREFIX):]
    return int(suffix) if path.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() else None


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first (temporary folders of an interrupted save excluded)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [p for p in out.iterdir() if p.is_dir() and checkpoint_step(p) is not None and (p / STATE_NAME).is_file()]
    return sorted(found, key=checkpoint_step)


def resolve_checkpoint(output_dir: str | Path, resume: str) -> Path:
    """'latest' -> the newest complete checkpoint in output_dir; else the given folder, which must be complete."""
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir)
        if not checkpoints:
            raise FileNotFoundError(f"resume_from_checkpoint='latest': no complete checkpoint in '{output_dir}'")
        return checkpoints[-1]
    path = Path(resume)
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(f"resume_from_checkpoint: '{path}' is not a complete checkpoint (no {STATE_NAME})")
    return path


def rotation_victims(checkpoints: list[Path], *, limit: int | None, keep_step: int | None) -> list[Path]:
    """Checkpoints (oldest first) to delete so at most `limit` remain, never the one of `keep_step` (best/'s source).

    The newest checkpoint always stays, so with limit=1 and an older best the two of them are kept.
    """
    if limit is None:
        return []
    kept = [p for p in checkpoints if checkpoint_step(p) == keep_step]
    others = [p for p in checkpoints if checkpoint_step(p) != keep_step]
    newest_is_kept = bool(checkpoints) and checkpoints[-1] in kept
    room = max(limit - len(kept), 0 if newest_is_kept else 1)
    return others[: max(len(others) - room, 0)]


def remove_folder(path: Path) -> None:
    """Delete a folder by first renaming it to a hidden name, so a kill mid-delete never leaves a partial one."""
    hidden = path.parent / (path.name if path.name.startswith(".") else f".{path.name}{DELETED_SUFFIX}")
    if hidden != path:
        shutil.rmtree(hidden, ignore_errors=True)
        os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


@contextmanager
def atomic_directory(final: Path, *, is_main_process: bool = True, accelerator=None):
    """Yield a temporary sibling folder and rename it to `final` only once everything inside was written.

    All processes enter (they may write into the folder, e.g. per-process RNG states); only the main process
    creates, renames and cleans up. A crash at any moment leaves the old `final` or the new one, never a
    half-written folder under that name; `recover_interrupted_writes` handles the hidden leftovers.
    """
    tmp = final.parent / f".{final.name}{TMP_SUFFIX}"
    old = final.parent / f".{final.name}{OLD_SUFFIX}"
    if is_main_process:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    if accelerator is not None:
        accelerator.wait_for_everyone()
    try:
        yield tmp
        if accelerator is not None:
            accelerator.wait_for_everyone()
    except BaseException:
        if is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if is_main_process:
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()


def read_saved_step(model_dir: Path) -> int | None:
    """The training step recorded in a model folder's eval_results.json (None when absent)."""
    path = model_dir / EVAL_RESULTS_NAME
    return json.loads(path.read_text(encoding="utf-8")).get("step") if path.is_file() else None


def copy_model_files(checkpoint: Path, target: Path) -> None:
    """Copy a checkpoint's model folder (everything but the training state) into `target`.

    Files are hard-linked where the file system allows: checkpoint files are never changed in place (only
    replaced by renames or deleted), so a link stays valid after rotation removes the checkpoint.
    """

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(checkpoint, target, dirs_exist_ok=True, copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns(STATE_NAME, TRAINING_STATE_DIR))
