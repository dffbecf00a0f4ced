"""Memory of inference: resident memory on CPU, allocated memory on CUDA.

CPU method (in the evaluating process, model by model; Linux):

- before loading a model, free memory is handed back to the OS (``gc.collect()`` then glibc
  ``malloc_trim(0)``) and the resident set size (``VmRSS`` of ``/proc/self/status``) is read;
- ``load_rss_mb`` = RSS after loading minus RSS before: the model's weights and runtime
  structures as they sit in memory;
- the kernel's peak-RSS mark is reset (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0),
  one forward call runs at the largest batch size and sequence length, and
  ``inference_peak_mb`` = peak RSS (``VmHWM``) minus RSS before the call: activations and
  workspace of one call;
- ``peak_rss_mb`` = ``load_rss_mb + inference_peak_mb``: what serving the model alone adds
  to a process.

Where ``clear_refs`` cannot be written (not Linux, restricted containers) the peak falls back
to psutil's RSS after the call, a lower bound; ``method`` records which was used. Models loaded
earlier stay resident, so the deltas isolate one model only as far as the allocator returns
freed memory; they are not a substitute for measuring a serving process on its own.

CUDA method (PyTorch): ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus the allocation before loading (ONNX Runtime's CUDA arena
is invisible to PyTorch and reported as ``None``).
"""

from __future__ import annotations

import ctypes
import gc
import re
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MB = 1e6


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def trim() -> None:
    """Collect garbage and return free heap pages to the OS (glibc ``malloc_trim``)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def rss_bytes() -> int:
    """Current resident set size of this process in bytes."""
    kb = _status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    import psutil

    return int(psutil.Process().memory_info().rss)


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process to the current RSS.

    :returns: ``True`` if reset (Linux ``clear_refs``), ``False`` if not possible here.
    """
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kb("VmHWM") is not None


def peak_rss_bytes() -> int:
    """Peak resident set size since the last :func:`reset_peak` (``VmHWM``), in bytes;
    the current RSS where the kernel does not report it."""
    kb = _status_kb("VmHWM")
    return kb * 1024 if kb is not None else rss_bytes()


class CpuMemoryProbe:
    """Measures one model's resident memory: call :meth:`before_load`, load the model,
    :meth:`after_load`, then :meth:`inference` with one call at the largest input."""

    def __init__(self) -> None:
        self._before = 0
        self._loaded = 0
        self.result: dict[str, Any] = {}

    def before_load(self) -> None:
        trim()
        self._before = rss_bytes()

    def after_load(self) -> None:
        self._loaded = rss_bytes()

    def inference(self, call: Any) -> dict[str, Any]:
        """Run ``call()`` once and record the peak.

        :returns: ``{"device": "cpu", "load_rss_mb", "inference_peak_mb", "peak_rss_mb",
            "method"}`` in MB (1e6 bytes).
        """
        trim()
        start = rss_bytes()
        exact = reset_peak()
        call()
        peak = peak_rss_bytes() if exact else max(rss_bytes(), start)
        load = max(0, self._loaded - self._before)
        extra = max(0, peak - start)
        self.result = {
            "device": "cpu",
            "load_rss_mb": load / MB,
            "inference_peak_mb": extra / MB,
            "peak_rss_mb": (load + extra) / MB,
            "method": "VmHWM after clear_refs" if exact else "RSS after the call (lower bound)",
        }
        return self.result


class CudaMemoryProbe:
    """Peak memory allocated by PyTorch on the GPU for one model (``torch.cuda`` counters).

    :param cuda: the ``torch.cuda`` module or a stand-in (tests fake CUDA).
    :param tracked: whether the backend allocates through PyTorch (``False`` for ONNX
        Runtime: the result then holds ``None`` values).
    """

    def __init__(self, cuda: Any = None, *, tracked: bool = True) -> None:
        if cuda is None:
            import torch

            cuda = torch.cuda
        self.cuda = cuda
        self.tracked = tracked
        self._before = 0
        self._loaded = 0

    def before_load(self) -> None:
        gc.collect()
        self.cuda.synchronize()
        self.cuda.empty_cache()
        self._before = int(self.cuda.memory_allocated())

    def after_load(self) -> None:
        self.cuda.synchronize()
        self._loaded = int(self.cuda.memory_allocated())

    def inference(self, call: Any) -> dict[str, Any]:
        """Run ``call()`` once; returns ``{"device": "cuda", "load_mb", "inference_peak_mb",
        "peak_gpu_mb", "method"}`` in MB (``None`` when not tracked)."""
        self.cuda.synchronize()
        start = int(self.cuda.memory_allocated())
        self.cuda.reset_peak_memory_stats()
        call()
        self.cuda.synchronize()
        peak = int(self.cuda.max_memory_allocated())
        if not self.tracked:
            return {"device": "cuda", "load_mb": None, "inference_peak_mb": None,
                    "peak_gpu_mb": None, "method": "not tracked (runtime outside PyTorch)"}
        load = max(0, self._loaded - self._before)
        extra = max(0, peak - start)
        return {
            "device": "cuda",
            "load_mb": load / MB,
            "inference_peak_mb": extra / MB,
            "peak_gpu_mb": (load + extra) / MB,
            "method": "torch.cuda.max_memory_allocated",
        }


def probe_for(device: str, runtime: str | None = None, cuda: Any = None) -> Any:
    """A :class:`CpuMemoryProbe` on CPU, a :class:`CudaMemoryProbe` on CUDA.

    :param runtime: the backend's :attr:`~compressor.evaluate.backends.Backend.runtime`; CUDA
        memory is tracked for ``"torch"`` only (``torch.cuda`` sees no other runtime's).
    """
    if device == "cuda":
        return CudaMemoryProbe(cuda, tracked=runtime in (None, "torch"))
    return CpuMemoryProbe()
