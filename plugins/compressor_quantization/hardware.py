"""What the machine can do: CPU instruction-set flags, the ONNX Runtime int8 preset and the
half-precision dtype they call for. Plain Python (no torch), so it is cheap and testable with
faked features.

The one seam for faking the CPU is :data:`CPUINFO_ENV`: set ``COMPRESSOR_CPUINFO`` to a file
in ``/proc/cpuinfo`` format and :func:`cpu_flags` and :func:`machine` describe that CPU
instead of this one (tests write one per CPU kind; a user can prepare a model for another
machine the same way)."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path

from compressor.errors import CompressorError, HardwareUnsupported, StageError

#: ONNX Runtime int8 presets (named as optimum's ``AutoQuantizationConfig`` named them), best first.
ORT_PRESETS = ("avx512_vnni", "avx512", "avx2", "arm64")

#: CPU flags that give PyTorch fast bf16 matrix multiplies (oneDNN): AMX tiles or AVX-512 BF16.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

#: Environment variable naming a file in ``/proc/cpuinfo`` format read instead of the real one.
CPUINFO_ENV = "COMPRESSOR_CPUINFO"

_PROC_CPUINFO = "/proc/cpuinfo"


def faked_cpuinfo() -> Path | None:
    """The file named by ``COMPRESSOR_CPUINFO`` (:data:`CPUINFO_ENV`), or ``None`` when unset."""
    value = os.environ.get(CPUINFO_ENV, "").strip()
    return Path(value) if value else None


def _first_processor(cpuinfo: str | Path) -> dict[str, str]:
    """``key -> value`` of the first processor block of a cpuinfo file (keys lower-cased).

    :raises OSError: if the file cannot be read.
    """
    fields: dict[str, str] = {}
    for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            if fields.get("flags") or fields.get("features"):
                break  # the end of the first processor that listed its flags
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _read_faked(path: Path) -> dict[str, str]:
    """The first processor of the ``COMPRESSOR_CPUINFO`` file.

    :raises CompressorError: if it cannot be read or lists neither ``flags`` nor ``Features``
        (a typo in the variable would otherwise pass for a CPU with no features).
    """
    try:
        fields = _first_processor(path)
    except OSError as exc:
        raise CompressorError(
            f"{CPUINFO_ENV}={path}: cannot read it: {exc}", hint=f"unset {CPUINFO_ENV} to read {_PROC_CPUINFO}"
        ) from exc
    if "flags" not in fields and "features" not in fields:
        raise CompressorError(
            f"{CPUINFO_ENV}={path} has no 'flags' (x86) or 'Features' (ARM) line",
            expected="a file in /proc/cpuinfo format",
        )
    return fields


def cpu_flags(cpuinfo: str | Path | None = None) -> frozenset[str]:
    """Instruction-set flags of the first CPU listed in ``/proc/cpuinfo`` (Linux).

    :param cpuinfo: the file to read; unset: the file named by ``COMPRESSOR_CPUINFO``
        (:data:`CPUINFO_ENV`) when it is set, else ``/proc/cpuinfo``.
    :returns: lower-case flag names (``avx2``, ``avx512_vnni``, ``amx_bf16``...); on ARM the
        ``Features`` line (``asimd``, ``asimddp``...); empty where the file does not exist.
    :raises CompressorError: if ``COMPRESSOR_CPUINFO`` names a file that cannot be read or
        lists no flags.
    """
    if cpuinfo is None:
        faked = faked_cpuinfo()
        if faked is not None:
            return _flags(_read_faked(faked))
        cpuinfo = _PROC_CPUINFO
    try:
        return _flags(_first_processor(cpuinfo))
    except OSError:
        return frozenset()


def _flags(fields: dict[str, str]) -> frozenset[str]:
    return frozenset((fields.get("flags") or fields.get("features", "")).lower().split())


def cpu_flags_source() -> str:
    """Where :func:`cpu_flags` reads by default, for lineage records: ``/proc/cpuinfo`` or
    ``COMPRESSOR_CPUINFO=<file>``."""
    faked = faked_cpuinfo()
    return f"{CPUINFO_ENV}={faked}" if faked is not None else _PROC_CPUINFO


def machine() -> str:
    """``platform.machine()`` lower-cased (``x86_64``, ``aarch64``, ``arm64``).

    With ``COMPRESSOR_CPUINFO`` set, the faked CPU's architecture instead: ``x86_64`` for a
    file with a ``flags`` line, ``aarch64`` for one with a ``Features`` line.

    :raises CompressorError: if ``COMPRESSOR_CPUINFO`` names an unreadable file.
    """
    faked = faked_cpuinfo()
    if faked is not None:
        return "x86_64" if "flags" in _read_faked(faked) else "aarch64"
    return platform.machine().lower()


def choose_ort_preset(flags: Iterable[str], arch: str) -> str:
    """The ONNX Runtime int8 preset for a CPU (see ``ort.PRESET_TYPES``).

    - ARM64 (``aarch64``/``arm64``): ``arm64``;
    - x86 with AVX-512 VNNI (``avx512_vnni``, int8 dot products): ``avx512_vnni``;
    - x86 with AVX-512 (``avx512f`` and ``avx512bw``): ``avx512``;
    - x86 with AVX2: ``avx2``.

    :param flags: CPU flags (:func:`cpu_flags`).
    :param arch: machine architecture (:func:`machine`).
    :returns: one of :data:`ORT_PRESETS`.
    :raises HardwareUnsupported: for a CPU with none of these (no fast int8 kernels).
    """
    flags = set(flags)
    if arch in ("aarch64", "arm64", "armv8l"):
        return "arm64"
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if {"avx512f", "avx512bw"} <= flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2"
    raise HardwareUnsupported(
        f"no ONNX Runtime int8 preset fits this CPU ({arch}; neither AVX2, AVX-512 nor ARM64)",
        key="config.preset",
        expected=f"one of {list(ORT_PRESETS)} named in the recipe",
        hint="int8 kernels would be slower than fp32 here; name a preset only if you know "
        "the target machine differs",
    )


def choose_half_dtype(requested: str, *, device: str, flags: Iterable[str], cuda_bf16: bool = False) -> str:
    """The half-precision dtype for ``quantize.half``.

    - ``auto``: ``float16`` on CUDA; ``bfloat16`` on a CPU with AMX-BF16 or AVX-512 BF16;
    - ``float16``: needs CUDA (CPU fp16 matrix multiplies are slow or emulated);
    - ``bfloat16``: a CPU with AMX-BF16 or AVX-512 BF16, or a CUDA GPU with bf16 support.

    :param requested: ``"auto"``, ``"float16"`` or ``"bfloat16"``.
    :param device: ``"cuda"`` where a GPU is used, else ``"cpu"``.
    :param flags: CPU flags (:func:`cpu_flags`).
    :param cuda_bf16: whether the GPU supports bf16 (``torch.cuda.is_bf16_supported()``).
    :returns: ``"float16"`` or ``"bfloat16"``.
    :raises HardwareUnsupported: where the hardware has neither, with what it lacks.
    :raises StageError: for an unknown ``requested``.
    """
    cpu_bf16 = sorted(set(flags) & set(BF16_CPU_FLAGS))
    if requested == "auto":
        if device == "cuda":
            return "float16"
        requested = "bfloat16"
    if requested == "float16":
        if device == "cuda":
            return "float16"
        raise HardwareUnsupported(
            "float16 needs a CUDA GPU; this run has none (CPU fp16 matrix multiplies are "
            "emulated and slower than fp32)",
            key="config.dtype",
            hint="use dtype: bfloat16 on a CPU with AMX or AVX-512 BF16, or run on a GPU",
        )
    if requested == "bfloat16":
        if device == "cuda" and cuda_bf16:
            return "bfloat16"
        if cpu_bf16:
            return "bfloat16"
        raise HardwareUnsupported(
            "bfloat16 needs a CPU with AMX-BF16 or AVX-512 BF16 (flags amx_bf16 / avx512_bf16) "
            "or a GPU with bf16 support; this machine has neither",
            key="config.dtype",
            hint="on this CPU use an int8 strategy (quantize.ort-dynamic) instead",
        )
    raise StageError(f"unknown dtype {requested!r}", key="config.dtype", expected="auto | float16 | bfloat16")
