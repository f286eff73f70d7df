"""src/atomic_files.py: atomic (and durable) single-file writes leave the complete old or new file, never a part."""

from __future__ import annotations

import json

import pytest

from src.atomic_files import write_bytes_atomic, write_json_atomic


def test_write_json_atomic_creates_folders_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "new" / "deeper" / "results.json"
    write_json_atomic(target, {"f1": 0.5, "label": "Zürich"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"f1": 0.5, "label": "Zürich"}
    write_json_atomic(target, {"f1": 0.75}, durable=True)
    assert json.loads(target.read_text(encoding="utf-8")) == {"f1": 0.75}
    assert [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "state.json"
    write_bytes_atomic(target, b"old\n")
    with pytest.raises(TypeError):
        write_json_atomic(target, {"not serialisable": object()})
    assert target.read_bytes() == b"old\n"
