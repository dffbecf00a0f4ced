"""Atomic file writes: a reader never sees a half-written report, results file or manifest.

Each writer puts the whole content into a temporary file in the target's folder, then renames
it over the target (``os.replace``, atomic on POSIX and Windows). An interrupted write leaves
the old file (or none) and no temporary file. The file gets the permissions a plain
``open(path, "w")`` would give it (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.

Only the standard library is imported.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then
    ``os.replace``); the folder is created if missing.

    :param path: the file to write.
    :param data: its whole content.
    :raises OSError: if the folder cannot be created or written; the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_bytes_atomic`).

    :param path: the file to write.
    :param text: its whole content.
    :raises OSError: if the folder cannot be created or written.
    """
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (2 spaces, a final newline; values JSON cannot hold
    written with ``str``) to ``path`` atomically: the same bytes as
    :func:`compressor.artifact.write_json_atomic`.

    :param path: the file to write.
    :param data: JSON-serialisable data.
    :raises OSError: if the folder cannot be created or written.
    """
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
