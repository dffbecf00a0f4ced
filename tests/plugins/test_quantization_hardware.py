"""Preset and dtype decisions from faked CPU features: every CPU kind is tested on any host.

Each CPU below is a ``/proc/cpuinfo`` excerpt with the flag line of a real machine; tests
point ``COMPRESSOR_CPUINFO`` (the quantisation plugin's one hardware seam) at it, so the
host's own CPU (AVX2-only EPYC here, AVX-512/AMX Xeon elsewhere) never decides a result.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compressor.errors import CompressorError, HardwareUnsupported, StageError
from compressor_quantization import hardware
from compressor_quantization.hardware import (
    CPUINFO_ENV,
    SATURATING_PRESETS,
    choose_half_dtype,
    choose_int8_settings,
    choose_ort_preset,
    cpu_flags,
    cpu_flags_source,
    host_preset,
    machine,
)

_X86_BASE = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc "
    "cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt "
    "tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch"
)
_SKYLAKE_AVX512 = "avx512f avx512dq avx512cd avx512bw avx512vl"

#: name -> (``model name``, ``flags`` line); x86 flag lines as Linux prints them.
X86_CPUS: dict[str, tuple[str, str]] = {
    # Zen 3: AVX2 only, no AVX-512, no VNNI, no AMX, no bf16 (this project's CI machine)
    "epyc-milan-avx2": (
        "AMD EPYC 7R13 Processor",
        f"{_X86_BASE} extd_apicid cmp_legacy cr8_legacy sse4a misalignsse osvw topoext ssbd "
        "ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx "
        "smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr wbnoinvd "
        "arat umip pku ospke vaes vpclmulqdq rdpid fsrm",
    ),
    # Skylake-SP: AVX-512 F/BW without VNNI
    "xeon-skylake-avx512": (
        "Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz",
        f"{_X86_BASE} invpcid_single pti fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms "
        f"invpcid rtm mpx {_SKYLAKE_AVX512} rdseed adx smap clflushopt clwb xsaveopt xsavec "
        "xgetbv1 xsaves ida arat pku ospke",
    ),
    # Cascade Lake: AVX-512 with VNNI (int8 dot products), no bf16
    "xeon-cascadelake-vnni": (
        "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz",
        f"{_X86_BASE} invpcid_single pti fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid "
        f"mpx {_SKYLAKE_AVX512} rdseed adx smap clflushopt clwb xsaveopt xsavec xgetbv1 xsaves "
        "ida arat pku ospke avx512_vnni",
    ),
    # Sapphire Rapids: AMX (bf16 and int8 tiles), AVX-512 BF16/FP16, VNNI
    "xeon-sapphirerapids-amx": (
        "Intel(R) Xeon(R) Platinum 8488C",
        f"{_X86_BASE} cpuid_fault invpcid_single ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase "
        f"tsc_adjust bmi1 avx2 smep bmi2 erms invpcid {_SKYLAKE_AVX512} rdseed adx smap "
        "avx512ifma clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 "
        "wbnoinvd ida arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq "
        "avx512_vnni avx512_bitalg tme avx512_vpopcntdq rdpid cldemote movdiri movdir64b "
        "md_clear serialize amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities",
    ),
    # Alder Lake: AVX2 with AVX-VNNI (VEX-encoded int8 dot products), AVX-512 fused off
    "core-alderlake-avxvnni": (
        "12th Gen Intel(R) Core(TM) i7-12700H",
        f"{_X86_BASE} cpuid_fault epb ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust "
        "bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb intel_pt sha_ni "
        "xsaveopt xsavec xgetbv1 xsaves avx_vnni dtherm ida arat pln pts hwp umip pku ospke "
        "waitpkg gfni vaes vpclmulqdq rdpid movdiri movdir64b fsrm md_clear serialize",
    ),
    # Zen 4: AVX-512 BF16 and VNNI, no AMX
    "epyc-genoa-avx512bf16": (
        "AMD EPYC 9R14 96-Core Processor",
        f"{_X86_BASE} extd_apicid cmp_legacy cr8_legacy sse4a misalignsse osvw topoext fsgsbase "
        f"bmi1 avx2 smep bmi2 erms invpcid {_SKYLAKE_AVX512} rdseed adx smap avx512ifma "
        "clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero wbnoinvd arat "
        "avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg "
        "avx512_vpopcntdq rdpid fsrm",
    ),
}

#: Graviton3 (Neoverse V1) ``Features`` line.
GRAVITON3_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma "
    "lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg "
    "dcpodp svei8mm svebf16 i8mm bf16 dgh rng"
)

CPUS = [*X86_CPUS, "graviton3-arm64"]


def cpuinfo_text(cpu: str) -> str:
    """Two processors of ``/proc/cpuinfo`` for a CPU named in :data:`CPUS`."""
    if cpu == "graviton3-arm64":
        block = (
            "processor\t: {n}\nBogoMIPS\t: 2100.00\nFeatures\t: " + GRAVITON3_FEATURES + "\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\n"
            "CPU revision\t: 1\n"
        )
    else:
        model, flags = X86_CPUS[cpu]
        block = (
            "processor\t: {n}\nvendor_id\t: "
            + ("AuthenticAMD" if "EPYC" in model else "GenuineIntel")
            + f"\ncpu family\t: 6\nmodel name\t: {model}\nflags\t\t: {flags}\n"
            "bugs\t\t: spectre_v1 spectre_v2\nbogomips\t: 5000.00\n"
        )
    return "\n".join(block.format(n=n) for n in range(2))


def write_cpuinfo(folder: Path, cpu: str) -> Path:
    """Write :func:`cpuinfo_text` for ``cpu`` to ``folder/cpuinfo-<cpu>``."""
    path = Path(folder) / f"cpuinfo-{cpu}"
    path.write_text(cpuinfo_text(cpu), encoding="utf-8")
    return path


def fake_cpu(monkeypatch: pytest.MonkeyPatch, folder: Path, cpu: str) -> Path:
    """Make this process see ``cpu`` (the ``COMPRESSOR_CPUINFO`` seam)."""
    path = write_cpuinfo(folder, cpu)
    monkeypatch.setenv(CPUINFO_ENV, str(path))
    return path


#: What each CPU kind gets: ORT int8 preset, and the ``auto`` half dtype on CPU (None: refused).
EXPECTED = {
    "epyc-milan-avx2": ("avx2", None),
    "xeon-skylake-avx512": ("avx512", None),
    "xeon-cascadelake-vnni": ("avx512_vnni", None),
    "core-alderlake-avxvnni": ("avx_vnni", None),
    "xeon-sapphirerapids-amx": ("avx512_vnni", "bfloat16"),
    "epyc-genoa-avx512bf16": ("avx512_vnni", "bfloat16"),
    # ARM's own bf16 feature is not one of BF16_CPU_FLAGS: refused like any CPU without them
    "graviton3-arm64": ("arm64", None),
}


def test_cpu_flags_reads_x86_and_arm_files(tmp_path):
    spr = cpu_flags(write_cpuinfo(tmp_path, "xeon-sapphirerapids-amx"))
    assert {"avx2", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_bf16"} <= spr
    assert "bugs" not in spr and "spectre_v1" not in spr  # the next line is not part of it
    arm = cpu_flags(write_cpuinfo(tmp_path, "graviton3-arm64"))
    assert {"asimd", "asimddp", "bf16"} <= arm and len(arm) == len(GRAVITON3_FEATURES.split())
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("cpu", CPUS)
def test_each_cpu_kind_gets_its_preset_and_half_dtype(cpu, tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, cpu)
    preset, half = EXPECTED[cpu]
    flags = cpu_flags()
    assert machine() == ("aarch64" if cpu.endswith("arm64") else "x86_64")
    assert choose_ort_preset(flags, machine()) == preset
    if half is None:
        with pytest.raises(HardwareUnsupported, match="bfloat16 needs a CPU with AMX-BF16 or AVX-512 BF16") as info:
            choose_half_dtype("auto", device="cpu", flags=flags)
        assert info.value.key == "config.dtype" and "int8" in info.value.hint
    else:
        assert choose_half_dtype("auto", device="cpu", flags=flags) == half
        assert choose_half_dtype("bfloat16", device="cpu", flags=flags) == half
    # on every CPU: fp16 needs CUDA, and a CUDA run picks fp16
    with pytest.raises(HardwareUnsupported, match="float16 needs a CUDA GPU"):
        choose_half_dtype("float16", device="cpu", flags=flags)
    assert choose_half_dtype("auto", device="cuda", flags=flags) == "float16"


def test_the_seam_replaces_proc_cpuinfo_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv(CPUINFO_ENV, raising=False)
    assert cpu_flags() == cpu_flags("/proc/cpuinfo") and cpu_flags_source() == "/proc/cpuinfo"
    path = fake_cpu(monkeypatch, tmp_path, "epyc-milan-avx2")
    assert "avx2" in cpu_flags() and "avx512f" not in cpu_flags()
    assert cpu_flags_source() == f"{CPUINFO_ENV}={path}"
    # an explicit file still wins over the variable
    assert "amx_bf16" in cpu_flags(write_cpuinfo(tmp_path, "xeon-sapphirerapids-amx"))
    monkeypatch.setenv(CPUINFO_ENV, "")  # empty: not set
    assert cpu_flags() == cpu_flags("/proc/cpuinfo")


def test_a_broken_fake_is_an_error_not_a_cpu_without_features(tmp_path, monkeypatch):
    monkeypatch.setenv(CPUINFO_ENV, str(tmp_path / "typo"))
    with pytest.raises(CompressorError, match="COMPRESSOR_CPUINFO=.*typo: cannot read"):
        cpu_flags()
    with pytest.raises(CompressorError, match="cannot read"):
        machine()
    (tmp_path / "empty").write_text("processor\t: 0\nmodel name\t: nothing\n")
    monkeypatch.setenv(CPUINFO_ENV, str(tmp_path / "empty"))
    with pytest.raises(CompressorError, match="no 'flags' \\(x86\\) or 'Features' \\(ARM\\) line"):
        cpu_flags()


@pytest.mark.parametrize(
    "flags, arch, preset",
    [
        (X86_CPUS["xeon-sapphirerapids-amx"][1].split(), "x86_64", "avx512_vnni"),
        (["avx2", "avx512f", "avx512bw"], "x86_64", "avx512"),
        (["avx2", "avx512f"], "x86_64", "avx2"),  # AVX-512 without BW: no avx512 preset
        (["avx2", "avx_vnni"], "x86_64", "avx_vnni"),
        # MLAS takes AVX-512 core over AVX-VNNI, and AVX-512 VNNI over both
        (["avx2", "avx_vnni", "avx512f", "avx512bw"], "x86_64", "avx512"),
        (["avx2", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni"], "x86_64", "avx512_vnni"),
        (["sse4_2", "avx2"], "x86_64", "avx2"),
        (["asimd"], "aarch64", "arm64"),
        ([], "arm64", "arm64"),
    ],
)
def test_ort_preset_follows_cpu_features(flags, arch, preset):
    assert choose_ort_preset(flags, arch) == preset


def test_ort_preset_refuses_cpu_without_int8_simd():
    # Ivy Bridge-era flags: AVX but no AVX2
    with pytest.raises(HardwareUnsupported, match="no ONNX Runtime int8 preset") as info:
        choose_ort_preset(["sse4_2", "avx", "f16c"], "x86_64")
    assert isinstance(info.value, StageError) and info.value.key == "config.preset"


def test_half_dtype_decisions():
    assert choose_half_dtype("auto", device="cuda", flags=[]) == "float16"
    assert choose_half_dtype("auto", device="cpu", flags=["amx_bf16"]) == "bfloat16"
    assert choose_half_dtype("auto", device="cpu", flags=["avx512_bf16"]) == "bfloat16"
    assert choose_half_dtype("bfloat16", device="cuda", flags=[], cuda_bf16=True) == "bfloat16"
    with pytest.raises(HardwareUnsupported, match="AMX-BF16 or AVX-512 BF16"):
        choose_half_dtype("auto", device="cpu", flags=["avx2", "avx512f"])
    with pytest.raises(HardwareUnsupported, match="AMX-BF16 or AVX-512 BF16"):
        choose_half_dtype("bfloat16", device="cuda", flags=[], cuda_bf16=False)  # e.g. a T4
    with pytest.raises(HardwareUnsupported, match="float16 needs a CUDA GPU"):
        choose_half_dtype("float16", device="cpu", flags=["amx_bf16"])
    # a config error, not a hardware one: the kit must not skip it
    with pytest.raises(StageError, match="unknown dtype") as info:
        choose_half_dtype("int4", device="cpu", flags=["amx_bf16"])
    assert not isinstance(info.value, HardwareUnsupported)


#: What ``preset: auto`` runs with on each CPU kind, as ONNX Runtime's quantization docs advise
#: ("When to use reduce-range and per-channel quantization?"): (weight type, per-channel,
#: reduce_range). s8 per-channel weights everywhere; 7-bit weights only where the u8s8 kernels
#: use VPMADDUBSW (AVX2, AVX-512 without VNNI).
EXPECTED_INT8 = {
    "epyc-milan-avx2": ("QInt8", True, True),
    "xeon-skylake-avx512": ("QInt8", True, True),
    "xeon-cascadelake-vnni": ("QInt8", True, False),
    "core-alderlake-avxvnni": ("QInt8", True, False),
    "xeon-sapphirerapids-amx": ("QInt8", True, False),
    "epyc-genoa-avx512bf16": ("QInt8", True, False),
    "graviton3-arm64": ("QInt8", True, False),
}


@pytest.mark.parametrize("cpu", CPUS)
def test_each_cpu_kind_gets_the_int8_settings_ort_documents(cpu, tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, cpu)
    preset = choose_ort_preset(cpu_flags(), machine())
    settings = choose_int8_settings(preset, chosen_by="auto (test)")
    assert (settings.weight_type, settings.per_channel, settings.reduce_range) == EXPECTED_INT8[cpu]
    assert settings.activation_type == "QUInt8" and settings.preset == preset
    assert settings.reduce_range == (preset in SATURATING_PRESETS)
    # the reason names the ISA and the source, and the summary is one readable line
    assert settings.chosen_by == "auto (test)"
    assert ("VPMADDUBSW" in settings.reason) == settings.reduce_range
    assert "ORT quantization docs" in settings.reason
    if settings.reduce_range:
        assert "reduce_range (7-bit weights" in settings.reason and "issue" in settings.reason
    record = settings.record()
    assert set(record) == {
        "preset", "weight_type", "activation_type", "per_channel", "reduce_range", "chosen_by", "reason", "summary",
    }
    summary = record["summary"]
    assert "\n" not in summary and summary.startswith("int8 u8s8 (" + preset + "), per-channel, reduce_range ")
    assert ("7-bit" in summary) == settings.reduce_range


@pytest.mark.parametrize(
    "preset, given, expected",
    [
        # per-tensor weights on AVX2 keep 8 bits: 7 would cost resolution, the check watches
        ("avx2", {"per_channel": False}, ("QInt8", False, False)),
        # u8 weights run the u8u8 kernels: no saturation, no reduced range
        ("avx2", {"weight_type": "uint8"}, ("QUInt8", True, False)),
        ("avx512", {"weight_type": "uint8"}, ("QUInt8", True, False)),
        # explicit values are kept, wherever they lead
        ("avx2", {"reduce_range": False}, ("QInt8", True, False)),
        ("avx512_vnni", {"reduce_range": True}, ("QInt8", True, True)),
        ("arm64", {"weight_type": "int8", "per_channel": False}, ("QInt8", False, False)),
        ("avx2", {"per_channel": False, "reduce_range": True}, ("QInt8", False, True)),
    ],
)
def test_recipe_values_are_kept_and_recorded(preset, given, expected):
    settings = choose_int8_settings(preset, chosen_by="recipe (preset x)", **given)
    assert (settings.weight_type, settings.per_channel, settings.reduce_range) == expected
    named = ", ".join(f"{k} {v}".lower() for k, v in given.items())
    assert settings.chosen_by == f"recipe (preset x); recipe sets {named}"


def test_int8_settings_say_why_reduce_range_is_off_or_forced():
    assert "per-tensor weights keep 8 bits" in choose_int8_settings("avx512", per_channel=False).reason
    assert "u8u8 kernels" in choose_int8_settings("avx2", weight_type="uint8").reason
    assert "saturation check watches" in choose_int8_settings("avx2", reduce_range=False).reason
    assert "do not saturate" in choose_int8_settings("arm64", reduce_range=True).reason
    forced = choose_int8_settings("avx2", reduce_range=False).with_reduce_range("measured 0.4 and 0.03")
    assert forced.reduce_range and forced.chosen_by.endswith("reduce_range by the saturation check")
    assert forced.reason.endswith("measured 0.4 and 0.03") and "7-bit" in forced.summary()


def test_int8_settings_refuse_unknown_names():
    with pytest.raises(StageError, match="unknown int8 preset 'sse4'") as info:
        choose_int8_settings("sse4")
    assert info.value.key == "config.preset"
    with pytest.raises(StageError, match="unknown weight type 'int4'") as info:
        choose_int8_settings("avx2", weight_type="int4")
    assert info.value.key == "config.weight_type"


def test_host_preset_reads_this_machine_not_the_fake(tmp_path, monkeypatch):
    monkeypatch.delenv(CPUINFO_ENV, raising=False)
    real = host_preset()
    fake_cpu(monkeypatch, tmp_path, "graviton3-arm64" if real != "arm64" else "epyc-milan-avx2")
    assert host_preset() == real  # the kernels ONNX Runtime runs are this machine's
    assert real is None or real in hardware.ORT_PRESETS


def test_hardware_module_stays_light():
    assert hardware.__name__ == "compressor_quantization.hardware"
    import subprocess
    import sys

    code = "import sys, compressor_quantization.hardware; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
