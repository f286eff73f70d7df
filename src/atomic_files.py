"""Atomic file writes: a temporary sibling file renamed over the target, so readers never see a partial file.

Generic helpers with no knowledge of runs or checkpoints; `durable=True` also fsyncs the file and its folder, so
a write that returned survives a crash of the machine, not only of the process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"  # `.<name>.tmp`: a file being written (see src/checkpoints.recover_interrupted_writes)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk; a no-op where folders cannot be opened."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write `data` to `path` through `.<name>.tmp` and a rename; missing parent folders are created.

    An existing file at `path` is only replaced once the new one is complete. With `durable` the new file and the
    rename are flushed to disk before returning.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_SUFFIX}")
    with tmp.open("wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_folder(path.parent)


def write_json_atomic(path: Path, data: dict, *, durable: bool = False) -> None:
    """Write JSON (indented, UTF-8, trailing newline) atomically; see `write_bytes_atomic`."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    write_bytes_atomic(Path(path), text.encode("utf-8"), durable=durable)
