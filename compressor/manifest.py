"""The run manifest: what ran, where, with which versions, and how each stage ended.

``manifest.json`` in the run directory is rewritten atomically after every change, so it is
readable whenever a run stops, crashes or is interrupted.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .io import write_json_atomic

MANIFEST_FILE = "manifest.json"

_PACKAGES = (
    "compressor",
    "torch",
    "transformers",
    "datasets",
    "accelerate",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "pydantic",
    "pluggy",
    "numpy",
    "scikit-learn",
)


def now() -> str:
    """Current UTC time, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions(extra: list[str] | None = None) -> dict[str, str | None]:
    """Installed version of each library the results depend on (``None`` if absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*_PACKAGES, *(extra or [])):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_sha(cwd: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the working directory's repository, or ``None``."""
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere;
    the ``COMPRESSOR_CPUINFO`` file's when set: :func:`compressor.hardware.cpu_model`)."""
    from .hardware import cpu_model as _cpu_model

    return _cpu_model()


def hardware() -> dict[str, Any]:
    """The machine: CPU model, architecture, instruction sets, where they were read, OS,
    logical CPUs available to this process, torch threads, GPU if any, and the kernels the
    runtimes report (:func:`compressor.hardware.kernel_info`).

    :returns: ``{"cpu_model", "machine", "instruction_sets": [cpuinfo names such as "avx2",
        "avx512_vnni", "amx_int8"], "cpu_flags_source", "os", "cpus_available",
        "torch_threads", "cuda", "kernels": {...}}``.
    :raises CompressorError: if ``COMPRESSOR_CPUINFO`` names an unreadable file.
    """
    from .hardware import cpu_facts, kernel_info

    info: dict[str, Any] = {
        **cpu_facts(),
        "os": platform.platform(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover
        pass
    info["kernels"] = kernel_info()
    return info


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest, or ``None`` if the run directory has none."""
    p = Path(run_dir) / MANIFEST_FILE
    if not p.exists():
        return None
    return json.loads(p.read_text(encoding="utf-8"))


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically."""
    write_json_atomic(Path(run_dir) / MANIFEST_FILE, manifest)
