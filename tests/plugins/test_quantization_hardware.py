"""Preset and dtype decisions from faked CPU features (no real hardware needed)."""

from __future__ import annotations

import pytest

from compressor.errors import StageError
from compressor_quantization.hardware import choose_half_dtype, choose_ort_preset, cpu_flags

XEON_SPR = "fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_int8"


def _cpuinfo(tmp_path, flags_line: str, key: str = "flags"):
    p = tmp_path / "cpuinfo"
    p.write_text(f"processor\t: 0\nmodel name\t: Fake CPU\n{key}\t\t: {flags_line}\n\nprocessor\t: 1\n")
    return p


def test_cpu_flags_reads_x86_and_arm_files(tmp_path):
    assert {"avx2", "avx512_vnni", "amx_bf16"} <= cpu_flags(_cpuinfo(tmp_path, XEON_SPR))
    assert cpu_flags(_cpuinfo(tmp_path, "fp asimd asimddp", key="Features")) == {"fp", "asimd", "asimddp"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    "flags, arch, preset",
    [
        (XEON_SPR.split(), "x86_64", "avx512_vnni"),
        (["avx2", "avx512f", "avx512bw"], "x86_64", "avx512"),
        (["avx2", "avx512f"], "x86_64", "avx2"),  # AVX-512 without BW: no avx512 preset
        (["sse4_2", "avx2"], "x86_64", "avx2"),
        (["asimd"], "aarch64", "arm64"),
        ([], "arm64", "arm64"),
    ],
)
def test_ort_preset_follows_cpu_features(flags, arch, preset):
    assert choose_ort_preset(flags, arch) == preset


def test_ort_preset_refuses_cpu_without_int8_simd():
    with pytest.raises(StageError, match="no ONNX Runtime int8 preset"):
        choose_ort_preset(["sse4_2", "avx"], "x86_64")


def test_half_dtype_decisions():
    assert choose_half_dtype("auto", device="cuda", flags=[]) == "float16"
    assert choose_half_dtype("auto", device="cpu", flags=["amx_bf16"]) == "bfloat16"
    assert choose_half_dtype("auto", device="cpu", flags=["avx512_bf16"]) == "bfloat16"
    assert choose_half_dtype("bfloat16", device="cuda", flags=[], cuda_bf16=True) == "bfloat16"
    with pytest.raises(StageError, match="AMX-BF16 or AVX-512 BF16"):
        choose_half_dtype("auto", device="cpu", flags=["avx2", "avx512f"])
    with pytest.raises(StageError, match="float16 needs a CUDA GPU"):
        choose_half_dtype("float16", device="cpu", flags=["amx_bf16"])
