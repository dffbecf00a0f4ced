"""What the machine can do: CPU instruction-set flags, the ONNX Runtime int8 preset and the
half-precision dtype they call for. Plain Python (no torch), so it is cheap and testable with
faked features.

The CPU is read by the core's :mod:`compressor.hardware`, whose one seam for faking it is
``COMPRESSOR_CPUINFO`` (:data:`CPUINFO_ENV`): set it to a file in ``/proc/cpuinfo`` format and
:func:`cpu_flags` and :func:`machine` describe that CPU instead of this one (tests write one
per CPU kind; a user can prepare a model for another machine the same way)."""

from __future__ import annotations

from collections.abc import Iterable

from compressor.errors import HardwareUnsupported, StageError
from compressor.hardware import CPUINFO_ENV, architecture, cpu_flags, cpu_flags_source, faked_cpuinfo

__all__ = [
    "BF16_CPU_FLAGS", "CPUINFO_ENV", "ORT_PRESETS", "choose_half_dtype", "choose_ort_preset",
    "cpu_flags", "cpu_flags_source", "faked_cpuinfo", "machine",
]

#: ONNX Runtime int8 presets (named as optimum's ``AutoQuantizationConfig`` named them), best first.
ORT_PRESETS = ("avx512_vnni", "avx512", "avx2", "arm64")

#: CPU flags that give PyTorch fast bf16 matrix multiplies (oneDNN): AMX tiles or AVX-512 BF16.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

def machine() -> str:
    """The CPU architecture lower-cased (``x86_64``, ``aarch64``, ``arm64``); with
    ``COMPRESSOR_CPUINFO`` set, the faked CPU's (:func:`compressor.hardware.architecture`).

    :raises CompressorError: if ``COMPRESSOR_CPUINFO`` names an unreadable file.
    """
    return architecture()


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
