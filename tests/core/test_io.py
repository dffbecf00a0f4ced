"""compressor.io: atomic writes (no torn file, no leftover temporary file)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from compressor.artifact import write_json_atomic as artifact_write_json
from compressor.io import write_bytes_atomic, write_json_atomic, write_text_atomic


def test_writes_whole_files_with_ordinary_permissions(tmp_path):
    write_text_atomic(tmp_path / "a" / "b.md", "héllo\n")
    assert (tmp_path / "a" / "b.md").read_text(encoding="utf-8") == "héllo\n"
    write_bytes_atomic(tmp_path / "c.png", b"\x89PNG")
    assert (tmp_path / "c.png").read_bytes() == b"\x89PNG"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "c.png").stat().st_mode) == 0o666 & ~umask


def test_json_is_byte_for_byte_the_artifact_writer(tmp_path):
    data = {"b": [1, 2.5, None], "a": "x", "p": tmp_path}
    write_json_atomic(tmp_path / "io.json", data)
    artifact_write_json(tmp_path / "artifact.json", data)
    assert (tmp_path / "io.json").read_bytes() == (tmp_path / "artifact.json").read_bytes()
    assert json.loads((tmp_path / "io.json").read_text())["p"] == str(tmp_path)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "report.md"
    write_text_atomic(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
