"""The output of a generation run: JSONL appended chunk by chunk, each chunk durable once its manifest entry is.

Beside `DATA.jsonl` the manifest `DATA.jsonl.manifest.json` records the settings (teacher, labels, thresholds,
input fingerprint, ...), and after each chunk the documents, records and bytes done, written atomically and
fsynced. A restarted run with the same settings truncates the output to the last recorded chunk and goes on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic_files import fsync_folder, write_json_atomic

MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_VERSION = 1


class OutputError(RuntimeError):
    """The output file belongs to another run (other settings, or not written by annotate.py)."""


@dataclass
class Progress:
    """How far a run got: complete chunks, the input documents they cover, records and bytes written."""

    chunks: int = 0
    documents: int = 0
    records: int = 0
    bytes: int = 0
    complete: bool = False
    stats: dict[str, int] = field(default_factory=dict)


def manifest_path(output: Path) -> Path:
    """Where the manifest of `output` lives."""
    return output.with_name(output.name + MANIFEST_SUFFIX)


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def read_manifest(output: Path) -> dict | None:
    """The manifest of `output`, or None when there is none."""
    path = manifest_path(output)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OutputError(f"{path}: not a readable manifest ({error}); rerun with --overwrite to start again") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise OutputError(f"{path}: not a version-{MANIFEST_VERSION} annotate.py manifest; use --overwrite")
    return manifest


def check_resumable(output: Path, settings: dict, *, overwrite: bool) -> Progress:
    """The progress to resume from (zero for a fresh run); OutputError when `output` is another run's.

    Changes nothing on disk, so every process of a distributed run may call it.
    """
    manifest = None if overwrite else read_manifest(output)
    if manifest is None:
        if not overwrite and output.is_file() and output.stat().st_size > 0:
            raise OutputError(f"{output} exists, is not empty and has no {MANIFEST_SUFFIX} (it was not written by "
                              "annotate.py): nothing was changed; choose another --output or pass --overwrite")
        if output.exists() and not output.is_file():
            raise OutputError(f"{output} exists and is not a file")
        return Progress()
    old = manifest.get("settings", {})
    differing = sorted(key for key in set(old) | set(settings) if old.get(key) != settings.get(key))
    if differing:
        details = "; ".join(f"{key}: {_short(old.get(key))} -> {_short(settings.get(key))}" for key in differing)
        raise OutputError(f"{output} was written by annotate.py with other settings ({details}); nothing was changed. "
                          "Rerun with the same command to resume it, pass --overwrite to start again, or choose "
                          "another --output")
    progress = Progress(**manifest["progress"])
    size = output.stat().st_size if output.is_file() else -1
    if size < progress.bytes:
        raise OutputError(f"{output} holds {max(size, 0)} bytes but its manifest records {progress.bytes} complete "
                          "ones: the file was changed by something else; pass --overwrite to start again")
    return progress


class ResumableWriter:
    """Appends complete chunks to the output and records each one in the manifest (only one process writes)."""

    def __init__(self, output: Path, settings: dict, info: dict, *, overwrite: bool) -> None:
        self.output, self.settings, self.info = Path(output), settings, info
        self.progress = check_resumable(self.output, settings, overwrite=overwrite)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
        self._fd = os.open(self.output, flags, 0o666)
        # Whatever follows the last recorded chunk was cut off by a kill (or is a chunk whose record was lost):
        # it is dropped and written again, identically.
        os.ftruncate(self._fd, self.progress.bytes)
        os.lseek(self._fd, self.progress.bytes, os.SEEK_SET)
        os.fsync(self._fd)
        self._write_manifest()

    def write_chunk(self, data: bytes, *, documents: int, stats: dict[str, int]) -> None:
        """Append one chunk's lines, flush them to disk, then record the chunk in the manifest."""
        view = memoryview(data)
        while view:  # one write call for the whole chunk in practice; the loop only guards short writes
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)
        p = self.progress
        p.chunks, p.documents, p.bytes = p.chunks + 1, p.documents + documents, p.bytes + len(data)
        p.records += stats.get("records", 0)
        p.stats = {key: p.stats.get(key, 0) + stats.get(key, 0) for key in sorted(set(p.stats) | set(stats))}
        self._write_manifest()

    def finish(self) -> Progress:
        """Mark the run complete and close the output."""
        self.progress.complete = True
        self._write_manifest()
        self.close()
        return self.progress

    def close(self) -> None:
        """Close the output file (the manifest already says what in it is complete)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            fsync_folder(self.output.parent)

    def _write_manifest(self) -> None:
        manifest = {"tool": "annotate.py", "version": MANIFEST_VERSION, "output": self.output.name,
                    "settings": self.settings, "info": self.info, "progress": asdict(self.progress)}
        write_json_atomic(manifest_path(self.output), manifest, durable=True)
