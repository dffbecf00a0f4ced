"""What the machine can do: CPU instruction-set flags, the ONNX Runtime int8 preset and int8
settings (weight type, per-channel, ``reduce_range``) and the half-precision dtype they call
for. Plain Python (no torch, no onnxruntime), so it is cheap and testable with faked features.

The CPU is read by the core's :mod:`compressor.hardware`, whose one seam for faking it is
``COMPRESSOR_CPUINFO`` (:data:`CPUINFO_ENV`): set it to a file in ``/proc/cpuinfo`` format and
:func:`cpu_flags` and :func:`machine` describe that CPU instead of this one (tests write one
per CPU kind; a user can prepare a model for another machine the same way)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from compressor.errors import HardwareUnsupported, StageError
from compressor.hardware import (
    CPUINFO_ENV,
    PROC_CPUINFO,
    architecture,
    cpu_flags,
    cpu_flags_source,
    faked_cpuinfo,
)

__all__ = [
    "BF16_CPU_FLAGS", "CPUINFO_ENV", "ORT_PRESETS", "SATURATING_PRESETS", "Int8Settings",
    "choose_half_dtype", "choose_int8_settings", "choose_ort_preset", "cpu_flags",
    "cpu_flags_source", "faked_cpuinfo", "host_preset", "machine",
]

#: ONNX Runtime int8 presets: the instruction set whose int8 kernels ONNX Runtime's MLAS picks
#: (``onnxruntime/core/mlas/lib/platform.cpp``), in the order :func:`choose_ort_preset` tries
#: them. The names of optimum's ``AutoQuantizationConfig`` presets, plus ``avx_vnni`` (AVX2
#: CPUs with AVX-VNNI, e.g. Alder Lake), whose kernels do not saturate.
ORT_PRESETS = ("avx512_vnni", "avx512", "avx_vnni", "avx2", "arm64")

#: Presets whose u8 x s8 kernels multiply with ``VPMADDUBSW``, which adds two u8 x s8 products
#: into a saturating 16-bit sum: 255 x 127 x 2 = 64770 does not fit in 32767, so large
#: activations meeting large weights are clipped. 7-bit weights (``reduce_range``) keep the sum
#: at 255 x 64 x 2 = 32640. ONNX Runtime's quantization docs ("When and why do I need to try
#: U8U8?", "When to use reduce-range and per-channel quantization?",
#: https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html) advise
#: ``reduce_range`` there; VNNI (``VPDPBUSD``, 32-bit sums), AMX and ARM kernels do not saturate.
SATURATING_PRESETS = frozenset({"avx2", "avx512"})

#: ONNX Runtime ``QuantType`` names of the weight types a recipe may name.
WEIGHT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}

#: Why each preset gets its settings (the lineage's ``int8_settings.reason``).
_ISA_REASONS = {
    "avx2": "AVX2 without VNNI: ONNX Runtime's u8s8 kernels use VPMADDUBSW, whose 16-bit sums "
    "can saturate (ORT quantization docs; issue 6004)",
    "avx512": "AVX-512 without VNNI: ONNX Runtime's u8s8 kernels use VPMADDUBSW, whose 16-bit "
    "sums can saturate (ORT quantization docs; issue 5849)",
    "avx_vnni": "AVX-VNNI: VPDPBUSD adds u8s8 products in 32 bits, no saturation (ORT "
    "quantization docs: not needed with VNNI)",
    "avx512_vnni": "AVX-512 VNNI (AMX int8 where present): 32-bit sums, no saturation (ORT "
    "quantization docs: not needed with VNNI)",
    "arm64": "ARM64: ONNX Runtime's NEON/dot-product kernels do not saturate (ORT quantization "
    "docs: no such issue on ARM)",
}


#: CPU flags that give PyTorch fast bf16 matrix multiplies (oneDNN): AMX tiles or AVX-512 BF16.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

def machine() -> str:
    """The CPU architecture lower-cased (``x86_64``, ``aarch64``, ``arm64``); with
    ``COMPRESSOR_CPUINFO`` set, the faked CPU's (:func:`compressor.hardware.architecture`).

    :raises CompressorError: if ``COMPRESSOR_CPUINFO`` names an unreadable file.
    """
    return architecture()


def host_preset() -> str | None:
    """The preset of the CPU this process runs on, read from ``/proc/cpuinfo`` even when
    ``COMPRESSOR_CPUINFO`` describes another CPU: the kernels ONNX Runtime runs here, which
    the saturation check measures. ``None`` where no preset fits or the file is missing.
    """
    import platform

    try:
        return choose_ort_preset(cpu_flags(PROC_CPUINFO), platform.machine().lower())
    except HardwareUnsupported:
        return None


def choose_ort_preset(flags: Iterable[str], arch: str) -> str:
    """The ONNX Runtime int8 preset for a CPU: the instruction set whose int8 kernels ONNX
    Runtime's MLAS runs there (``platform.cpp`` takes the last that applies of AVX2, AVX-VNNI,
    AVX-512 core, AVX-512 VNNI, AMX; AMX CPUs have AVX-512 VNNI too):

    - ARM64 (``aarch64``/``arm64``): ``arm64``;
    - x86 with AVX-512 VNNI (``avx512_vnni``, int8 dot products; AMX CPUs too): ``avx512_vnni``;
    - x86 with AVX-512 (``avx512f`` and ``avx512bw``) without VNNI: ``avx512``;
    - x86 with AVX2 and AVX-VNNI (``avx_vnni``): ``avx_vnni``;
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
    if {"avx2", "avx_vnni"} <= flags:
        return "avx_vnni"
    if "avx2" in flags:
        return "avx2"
    raise HardwareUnsupported(
        f"no ONNX Runtime int8 preset fits this CPU ({arch}; neither AVX2, AVX-512 nor ARM64)",
        key="config.preset",
        expected=f"one of {list(ORT_PRESETS)} named in the recipe",
        hint="int8 kernels would be slower than fp32 here; name a preset only if you know "
        "the target machine differs",
    )


@dataclass(frozen=True)
class Int8Settings:
    """What ONNX Runtime int8 quantisation runs with, and why (the lineage's ``int8_settings``).

    :param preset: the instruction set the settings are for (:data:`ORT_PRESETS`).
    :param weight_type: ``QInt8`` (u8s8 kernels) or ``QUInt8`` (u8u8).
    :param activation_type: ``QUInt8`` (asymmetric; what dynamic quantisation computes).
    :param per_channel: one weight scale per output channel.
    :param reduce_range: 7-bit weights ([-64, 64] signed, [0, 127] unsigned).
    :param chosen_by: ``"auto (cpu flags ...)"``, ``"recipe (preset ...)"``, plus the keys the
        recipe set itself.
    :param reason: why, in words, with the sources.
    """

    preset: str
    weight_type: str
    activation_type: str
    per_channel: bool
    reduce_range: bool
    chosen_by: str
    reason: str

    def summary(self) -> str:
        """One readable line: ``int8 u8s8 (avx2), per-channel, reduce_range on (7-bit weights);
        chosen by <chosen_by>: <reason>``."""
        weights = "s8" if self.weight_type == "QInt8" else "u8"
        acts = "u8" if self.activation_type == "QUInt8" else "s8"
        rr = "reduce_range on (7-bit weights)" if self.reduce_range else "reduce_range off (8-bit weights)"
        grain = "per-channel" if self.per_channel else "per-tensor"
        return f"int8 {acts}{weights} ({self.preset}), {grain}, {rr}; chosen by {self.chosen_by}: {self.reason}"

    def record(self) -> dict[str, Any]:
        """The lineage record: the fields plus :meth:`summary`."""
        return {
            "preset": self.preset,
            "weight_type": self.weight_type,
            "activation_type": self.activation_type,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "chosen_by": self.chosen_by,
            "reason": self.reason,
            "summary": self.summary(),
        }

    def with_reduce_range(self, why: str) -> "Int8Settings":
        """These settings with ``reduce_range`` on, ``why`` added to the reason."""
        return replace(
            self, reduce_range=True, chosen_by=f"{self.chosen_by}; reduce_range by the saturation check",
            reason=f"{self.reason}; {why}",
        )


def choose_int8_settings(
    preset: str,
    *,
    weight_type: str = "auto",
    per_channel: bool | str = "auto",
    reduce_range: bool | str = "auto",
    chosen_by: str = "recipe",
) -> Int8Settings:
    """The ONNX Runtime int8 settings for a preset, as ONNX Runtime's quantization docs advise.

    ``auto`` values:

    - weights: ``QInt8`` (u8s8) everywhere: the fast kernels on every ISA (VPMADDUBSW on
      AVX2/AVX-512, VPDPBUSD on VNNI, AMX tiles, ARM dot products); ``quantize_static``'s
      docstring (onnxruntime 1.32) advises u8 activations and s8 weights on x86 with or without
      VNNI. ``uint8`` (u8u8) has no saturation but runs slower kernels on AVX2 (measured in
      docs/quantization.md).
    - ``per_channel``: on. ORT's docs: per-channel "can improve the accuracy for models whose
      weight ranges are large"; measured here (docs/tasks.md), per-tensor cost the MPNet NER
      teacher 24 F1 points and the MiniLM QA student 4.4 EM, per-channel 3.8 and 1.5.
    - ``reduce_range``: on for s8 per-channel weights on AVX2 and AVX-512 without VNNI
      (:data:`SATURATING_PRESETS`): ORT's FAQ, "Reduce-range will quantize the weights to 7
      bits. It is designed for the U8S8 format on AVX2 and AVX512 (non-VNNI) machines to
      mitigate saturation issues. This is not needed on machines supporting VNNI", and "on
      AVX2 and AVX512 machines, you will generally need to enable reduce-range as well if
      per-channel is enabled". Off with VNNI, AMX and on ARM64 (no saturation), for u8 weights
      (u8u8 kernels widen to 16 bits first), and for per-tensor weights (7 bits for a whole
      tensor cost resolution; the saturation check re-quantises with it when it helps).

    An explicit value (``True``/``False``, ``int8``/``uint8``) is kept as the recipe gives it.

    :param preset: one of :data:`ORT_PRESETS`.
    :param weight_type: ``"auto"``, ``"int8"`` or ``"uint8"``.
    :param per_channel: ``"auto"`` or a bool.
    :param reduce_range: ``"auto"`` or a bool.
    :param chosen_by: how the preset was chosen (``"auto (cpu flags ...)"``, ``"recipe (preset
        avx2)"``); the keys the recipe set are appended.
    :raises StageError: for an unknown preset or weight type.
    """
    if preset not in _ISA_REASONS:
        raise StageError(f"unknown int8 preset {preset!r}", key="config.preset", expected=" | ".join(ORT_PRESETS))
    if weight_type != "auto" and weight_type not in WEIGHT_TYPES:
        raise StageError(
            f"unknown weight type {weight_type!r}", key="config.weight_type", expected="auto | int8 | uint8"
        )
    explicit = [
        f"{key} {value}".lower()
        for key, value in (("weight_type", weight_type), ("per_channel", per_channel), ("reduce_range", reduce_range))
        if value != "auto"
    ]
    wtype = WEIGHT_TYPES.get(weight_type, "QInt8")
    channel = True if per_channel == "auto" else bool(per_channel)
    saturates = preset in SATURATING_PRESETS and wtype == "QInt8"
    reason = _ISA_REASONS[preset]
    if reduce_range != "auto":
        rr = bool(reduce_range)
        if rr and not saturates:
            reason += "; reduce_range set by the recipe although these kernels do not saturate"
        elif saturates and not rr:
            reason += "; reduce_range off by the recipe: the saturation check watches for clipped sums"
    else:
        rr = saturates and channel
        if preset in SATURATING_PRESETS and wtype == "QUInt8":
            reason += "; u8 weights run the u8u8 kernels, which widen to 16 bits and do not saturate"
        elif saturates and not channel:
            reason += (
                "; per-tensor weights keep 8 bits (7 would cost resolution; the saturation check "
                "re-quantises with reduce_range when that helps)"
            )
        elif rr:
            reason += "; so reduce_range (7-bit weights: 255 x 64 x 2 < 32767), with per-channel weights as ORT advises"
    if explicit:
        chosen_by = f"{chosen_by}; recipe sets {', '.join(explicit)}"
    return Int8Settings(
        preset=preset, weight_type=wtype, activation_type="QUInt8", per_channel=channel,
        reduce_range=rr, chosen_by=chosen_by, reason=reason,
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
