"""The CPU the figures were measured on: its model, the instruction sets that decide how fast
matrix products run, and the kernels PyTorch (ATen/oneDNN) and ONNX Runtime say they use.

The same recipe measured 3.9x on an AVX2-only machine and 5.7x on one with AMX: int8 and
bf16 kernels exist only where the CPU has VNNI, AVX-512 BF16 or AMX. The manifest, every
evaluation record and every report header carry these facts, and ``compressor compare``
refuses to rank figures from CPUs with different instruction sets together.

Flags come from the first processor of ``/proc/cpuinfo``; set ``COMPRESSOR_CPUINFO``
(:data:`CPUINFO_ENV`) to a file in that format to describe another CPU instead (tests fake an
AMX or an AVX2-only machine this way; the quantization plugin reads the same variable). The
records then say where the flags came from (:func:`cpu_flags_source`).

Plain Python: torch and onnxruntime are imported only by :func:`kernel_info`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import CompressorError

#: Environment variable naming a file in ``/proc/cpuinfo`` format read instead of the real one.
CPUINFO_ENV = "COMPRESSOR_CPUINFO"

PROC_CPUINFO = "/proc/cpuinfo"

#: x86 ``flags`` that decide matrix-product speed: (cpuinfo flag, label), oldest first.
X86_INSTRUCTION_SETS: tuple[tuple[str, str], ...] = (
    ("avx2", "AVX2"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512f", "AVX-512 F"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx512_bf16", "AVX-512 BF16"),
    ("avx512_fp16", "AVX-512 FP16"),
    ("amx_tile", "AMX tile"),
    ("amx_int8", "AMX int8"),
    ("amx_bf16", "AMX bf16"),
)

#: ARM ``Features`` that decide matrix-product speed: (cpuinfo feature, label).
ARM_INSTRUCTION_SETS: tuple[tuple[str, str], ...] = (
    ("asimd", "ASIMD"),
    ("asimddp", "dotprod"),
    ("i8mm", "I8MM"),
    ("bf16", "BF16"),
    ("sve", "SVE"),
    ("sve2", "SVE2"),
)

_LABELS = dict(X86_INSTRUCTION_SETS + ARM_INSTRUCTION_SETS)


def faked_cpuinfo() -> Path | None:
    """The file named by ``COMPRESSOR_CPUINFO`` (:data:`CPUINFO_ENV`), or ``None`` when unset."""
    value = os.environ.get(CPUINFO_ENV, "").strip()
    return Path(value) if value else None


def read_cpuinfo(path: str | Path) -> dict[str, str]:
    """``key -> value`` of the first processor block of a cpuinfo file (keys lower-cased).

    :raises OSError: if the file cannot be read.
    """
    fields: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            if fields.get("flags") or fields.get("features"):
                break  # the end of the first processor that listed its flags
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpuinfo_fields() -> dict[str, str]:
    """The first processor of ``/proc/cpuinfo`` (or of the ``COMPRESSOR_CPUINFO`` file).

    :returns: lower-case key -> value (``model name``, ``flags`` on x86, ``features`` on
        ARM...); empty where ``/proc/cpuinfo`` does not exist (not Linux).
    :raises CompressorError: if ``COMPRESSOR_CPUINFO`` names a file that cannot be read or
        that lists neither ``flags`` nor ``Features`` (a typo would otherwise pass for a CPU
        without any instruction set).
    """
    faked = faked_cpuinfo()
    if faked is None:
        try:
            return read_cpuinfo(Path(PROC_CPUINFO))
        except OSError:
            return {}
    try:
        fields = read_cpuinfo(faked)
    except OSError as exc:
        raise CompressorError(
            f"{CPUINFO_ENV}={faked}: cannot read it: {exc}",
            hint=f"unset {CPUINFO_ENV} to read {PROC_CPUINFO}",
        ) from exc
    if "flags" not in fields and "features" not in fields:
        raise CompressorError(
            f"{CPUINFO_ENV}={faked} has no 'flags' (x86) or 'Features' (ARM) line",
            expected="a file in /proc/cpuinfo format",
        )
    return fields


def cpu_flags(cpuinfo: str | Path | None = None) -> frozenset[str]:
    """Instruction-set flags of the first CPU listed in a cpuinfo file.

    :param cpuinfo: the file to read; unset: :func:`cpuinfo_fields` (``COMPRESSOR_CPUINFO``
        when it is set, else ``/proc/cpuinfo``).
    :returns: lower-case flag names (``avx2``, ``avx512_vnni``, ``amx_bf16``...); on ARM the
        ``Features`` line (``asimd``, ``asimddp``...); empty where the file does not exist.
    :raises CompressorError: if ``COMPRESSOR_CPUINFO`` names a file that cannot be read or
        lists no flags.
    """
    if cpuinfo is None:
        fields = cpuinfo_fields()
    else:
        try:
            fields = read_cpuinfo(cpuinfo)
        except OSError:
            return frozenset()
    return frozenset((fields.get("flags") or fields.get("features", "")).lower().split())


def cpu_flags_source() -> str:
    """Where the CPU facts are read: ``/proc/cpuinfo`` or ``COMPRESSOR_CPUINFO=<file>``."""
    faked = faked_cpuinfo()
    return f"{CPUINFO_ENV}={faked}" if faked is not None else PROC_CPUINFO


def cpu_model() -> str:
    """The CPU's model name: ``model name`` of cpuinfo (the faked file's when
    ``COMPRESSOR_CPUINFO`` is set), else ``platform.processor()`` or the architecture.

    :raises CompressorError: for an unreadable ``COMPRESSOR_CPUINFO`` file.
    """
    fields = cpuinfo_fields()
    return fields.get("model name") or platform.processor() or platform.machine()


def architecture() -> str:
    """``platform.machine()`` lower-cased (``x86_64``, ``aarch64``); with
    ``COMPRESSOR_CPUINFO`` set, the faked CPU's: ``x86_64`` for a file with a ``flags`` line,
    ``aarch64`` for one with ``Features``.

    :raises CompressorError: for an unreadable ``COMPRESSOR_CPUINFO`` file.
    """
    if faked_cpuinfo() is not None:
        return "x86_64" if "flags" in cpuinfo_fields() else "aarch64"
    return platform.machine().lower()


def _is_arm(arch: str) -> bool:
    return arch.startswith(("aarch64", "arm"))


def relevant_instruction_sets(arch: str) -> tuple[tuple[str, str], ...]:
    """The (flag, label) pairs reported for an architecture (:data:`X86_INSTRUCTION_SETS` or
    :data:`ARM_INSTRUCTION_SETS`; none for others)."""
    if _is_arm(arch):
        return ARM_INSTRUCTION_SETS
    if arch in ("x86_64", "amd64", "i386", "i686", "x86"):
        return X86_INSTRUCTION_SETS
    return ()


def instruction_sets(flags: Iterable[str] | None = None, arch: str | None = None) -> list[str]:
    """The instruction sets of :func:`relevant_instruction_sets` the CPU has, as cpuinfo
    names them (``avx2``, ``avx512_vnni``, ``amx_int8``, ``asimddp``...), in table order.

    :param flags: the CPU's flags; default: :func:`cpuinfo_fields`'s ``flags`` or ``features``.
    :param arch: the architecture; default: :func:`architecture`.
    :raises CompressorError: for an unreadable ``COMPRESSOR_CPUINFO`` file.
    """
    if flags is None:
        fields = cpuinfo_fields()
        flags = (fields.get("flags") or fields.get("features") or "").lower().split()
    have = set(flags)
    return [name for name, _ in relevant_instruction_sets(arch or architecture()) if name in have]


def label(name: str) -> str:
    """Display label of an instruction-set flag (``avx512_vnni`` -> ``AVX-512 VNNI``)."""
    return _LABELS.get(name, name)


def describe_instruction_sets(names: Iterable[str], arch: str | None) -> str:
    """``"AVX2, AVX-512 F; without AVX-512 VNNI, AMX ..."``: what the CPU has and, of the sets
    that give faster int8/bf16 kernels, what it lacks (AMX counted once).

    :param names: instruction sets present (cpuinfo names, :func:`instruction_sets`).
    :param arch: the architecture (``x86_64``, ``aarch64``); ``None`` guesses from ``names``.
    """
    names = list(names)
    if arch is None:
        arm = {n for n, _ in ARM_INSTRUCTION_SETS}
        arch = "aarch64" if names and all(n in arm for n in names) else "x86_64"
    table = relevant_instruction_sets(arch)
    if not table:
        return ", ".join(label(n) for n in names) or f"none tracked on {arch}"
    have = ", ".join(label(n) for n in names) or "none of " + ", ".join(label(n) for n, _ in table)
    missing = [n for n, _ in table if n not in names]
    if not names or not missing:
        return have
    shown: list[str] = []
    for n in missing:
        text = "AMX" if n.startswith("amx_") and not any(m.startswith("amx_") for m in names) else label(n)
        if text not in shown:
            shown.append(text)
    return f"{have}; without {', '.join(shown)}"


def kernel_info() -> dict[str, Any]:
    """What the runtimes report about their CPU kernels (each ``None`` where not known).

    :returns: ``{"torch", "torch_cpu_capability"`` (the ISA ATen dispatched to, from
        ``torch.backends.cpu.get_cpu_capability()``: ``"AVX2"``, ``"AVX512"``...),
        ``"onednn"`` (oneDNN version when ``torch.backends.mkldnn.is_available()``, else
        ``None``), ``"onnxruntime"`` (version), ``"onnxruntime_device"``
        (``onnxruntime.get_device()``), ``"onnxruntime_providers"``
        (``get_available_providers()``), ``"onnxruntime_build"``
        (``get_build_info()``)``}``. ONNX Runtime's MLAS picks its kernels from the CPU
        flags at run time and does not say which.
    """
    import re

    info: dict[str, Any] = dict.fromkeys(
        ("torch", "torch_cpu_capability", "onednn", "onnxruntime", "onnxruntime_device",
         "onnxruntime_providers", "onnxruntime_build")
    )
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if torch.backends.mkldnn.is_available():
            found = re.search(r"(?:MKL-DNN|oneDNN) v([0-9][0-9.]*)", torch.__config__.show())
            info["onednn"] = found.group(1) if found else "available"
    except Exception:  # noqa: BLE001 - an old or unusual torch build: unknown
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_device"] = onnxruntime.get_device()
        info["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
        build = getattr(onnxruntime, "get_build_info", None)
        info["onnxruntime_build"] = build() if build is not None else None
    except Exception:  # noqa: BLE001 - not installed or not importable: unknown
        pass
    return info


def cpu_facts() -> dict[str, Any]:
    """The CPU of this machine as the manifest and the records hold it.

    :returns: ``{"cpu_model", "machine", "instruction_sets": [cpuinfo names] or None where
        no cpuinfo lists the flags (not Linux), "cpu_flags_source"}``.
    :raises CompressorError: for an unreadable ``COMPRESSOR_CPUINFO`` file.
    """
    arch = architecture()
    fields = cpuinfo_fields()
    flags = fields.get("flags") or fields.get("features")
    return {
        "cpu_model": fields.get("model name") or platform.processor() or platform.machine(),
        "machine": arch,
        "instruction_sets": instruction_sets(flags.lower().split(), arch) if flags else None,
        "cpu_flags_source": cpu_flags_source(),
    }
