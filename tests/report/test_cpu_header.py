"""The CPU's instruction sets and kernels in the manifest, the records and every report
header (Markdown, HTML, model card); compare refuses to rank figures from CPUs with
different instruction sets. The CPU is faked with COMPRESSOR_CPUINFO, so an AMX machine and
an AVX2-only machine are tested on any host."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compressor.errors import CompressorError
from compressor.hardware import (
    CPUINFO_ENV,
    cpu_facts,
    describe_instruction_sets,
    instruction_sets,
    kernel_info,
)
from compressor.report import compare_runs, render_model_card, write_report

_BASE = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology cpuid pni "
    "pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand"
)
#: name -> (model name, flags line), as Linux prints them.
CPUS = {
    "avx2": ("AMD EPYC 7R13 Processor",
             f"{_BASE} bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb sha_ni"),
    "amx": ("Intel(R) Xeon(R) Platinum 8488C",
            f"{_BASE} bmi1 avx2 smep bmi2 erms avx512f avx512dq avx512cd avx512bw avx512vl "
            "avx_vnni avx512_bf16 avx512_vnni avx512_fp16 amx_bf16 amx_tile amx_int8"),
}
GRAVITON3 = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
             "jscvt fcma lrcpc dcpop sha3 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm "
             "ssbs svei8mm svebf16 i8mm bf16 dgh rng")


def fake_cpu(monkeypatch: pytest.MonkeyPatch, folder: Path, cpu: str) -> Path:
    """Point COMPRESSOR_CPUINFO at a two-processor cpuinfo of ``cpu`` ("avx2", "amx", "arm")."""
    if cpu == "arm":
        block = "processor\t: {n}\nBogoMIPS\t: 2100.00\nFeatures\t: " + GRAVITON3 + "\nCPU part\t: 0xd40\n"
    else:
        model, flags = CPUS[cpu]
        block = f"processor\t: {{n}}\nvendor_id\t: X\nmodel name\t: {model}\nflags\t\t: {flags}\n"
    path = folder / f"cpuinfo-{cpu}"
    path.write_text("\n".join(block.format(n=n) for n in range(2)), encoding="utf-8")
    monkeypatch.setenv(CPUINFO_ENV, str(path))
    return path


def test_instruction_sets_of_each_kind_of_cpu(tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, "amx")
    assert instruction_sets() == ["avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16",
                                  "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"]
    facts = cpu_facts()
    assert facts["cpu_model"] == "Intel(R) Xeon(R) Platinum 8488C" and facts["machine"] == "x86_64"
    assert facts["cpu_flags_source"] == f"{CPUINFO_ENV}={tmp_path / 'cpuinfo-amx'}"
    fake_cpu(monkeypatch, tmp_path, "avx2")
    assert instruction_sets() == ["avx2"]
    assert describe_instruction_sets(["avx2"], "x86_64") == (
        "AVX2; without AVX-VNNI, AVX-512 F, AVX-512 VNNI, AVX-512 BF16, AVX-512 FP16, AMX")
    fake_cpu(monkeypatch, tmp_path, "arm")
    assert cpu_facts()["machine"] == "aarch64"
    assert instruction_sets() == ["asimd", "asimddp", "i8mm", "bf16", "sve"]
    assert describe_instruction_sets(instruction_sets(), "aarch64") == (
        "ASIMD, dotprod, I8MM, BF16, SVE; without SVE2")


def test_an_unreadable_faked_cpuinfo_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(CPUINFO_ENV, str(tmp_path / "nope"))
    with pytest.raises(CompressorError, match="cannot read"):
        instruction_sets()
    (tmp_path / "empty").write_text("processor : 0\n")
    monkeypatch.setenv(CPUINFO_ENV, str(tmp_path / "empty"))
    with pytest.raises(CompressorError, match="no 'flags'"):
        cpu_facts()


def test_kernels_are_what_torch_and_onnxruntime_report():
    import onnxruntime
    import torch

    info = kernel_info()
    assert info["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert (info["onednn"] is not None) == torch.backends.mkldnn.is_available()
    assert info["onnxruntime_device"] == onnxruntime.get_device()
    assert info["onnxruntime_providers"] == onnxruntime.get_available_providers()


def test_manifest_and_evaluator_record_the_faked_cpu(tmp_path, monkeypatch):
    from compressor.evaluate.evaluator import _machine
    from compressor.manifest import hardware

    fake_cpu(monkeypatch, tmp_path, "amx")
    hw = hardware()
    assert "amx_int8" in hw["instruction_sets"] and hw["cpu_model"].endswith("8488C")
    assert hw["kernels"]["torch_cpu_capability"] and hw["cpu_flags_source"].startswith(CPUINFO_ENV)
    machine = _machine("cpu")
    assert machine.instruction_sets == hw["instruction_sets"]
    assert machine.kernels.torch_cpu_capability == hw["kernels"]["torch_cpu_capability"]


def _on(results, machine):
    """The records as if measured on ``machine`` (the evaluator's Machine for a faked CPU)."""
    out = []
    for r in results:
        r = r.model_copy(deep=True)
        r.machine = machine.model_copy(update={"load_avg_1m": r.machine.load_avg_1m})
        out.append(r)
    return out


@pytest.mark.parametrize("cpu, shown, absent", [
    ("amx", "AVX2, AVX-VNNI, AVX-512 F, AVX-512 VNNI, AVX-512 BF16, AVX-512 FP16, AMX tile, "
            "AMX int8, AMX bf16", "without"),
    ("avx2", "AVX2; without AVX-VNNI, AVX-512 F, AVX-512 VNNI, AVX-512 BF16, AVX-512 FP16, AMX",
     "AMX int8"),
])
def test_every_header_shows_the_instruction_sets(tmp_path, monkeypatch, results, artifacts, cpu,
                                                 shown, absent):
    from compressor.evaluate.evaluator import _machine
    from compressor.manifest import hardware

    fake_cpu(monkeypatch, tmp_path, cpu)
    records = _on(results, _machine("cpu"))
    manifest = {"hardware": hardware()}
    md = write_report(tmp_path / "run", records, title="t", manifest=manifest).read_text()
    fact = next(l for l in md.splitlines() if l.startswith("- **CPU instruction sets**"))
    assert fact.startswith(f"- **CPU instruction sets**: {shown}") and absent not in fact
    assert f"read from {CPUINFO_ENV}=" in fact  # a faked CPU says so
    kernels = next(l for l in md.splitlines() if l.startswith("- **Kernels**"))
    assert f"ATen {records[0].machine.kernels.torch_cpu_capability}" in kernels
    html = (tmp_path / "run" / "report.html").read_text()
    assert f"<li><strong>CPU instruction sets</strong>: {shown}" in html
    card = render_model_card(artifacts["student"], [records[1]], artifacts=artifacts)
    assert f"- **CPU instruction sets**: {shown}" in card
    # the manifest alone is enough for records written before instruction sets were recorded
    for r in records:
        r.machine.instruction_sets = r.machine.kernels = None
    old = write_report(tmp_path / "old", records, title="t", manifest=manifest).read_text()
    assert f"- **CPU instruction sets**: {shown}" in old


def test_compare_refuses_runs_from_cpus_with_different_instruction_sets(tmp_path, monkeypatch, results):
    from compressor.evaluate.evaluator import _machine

    runs = {}
    for cpu in ("avx2", "amx"):
        fake_cpu(monkeypatch, tmp_path, cpu)
        records = _on(results, _machine("cpu"))
        for r in records:  # one CPU model name, as cloud VMs often report: only the sets differ
            r.machine.cpu_model = "Cloud CPU"
        folder = tmp_path / cpu
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps([r.to_json() for r in records]))
        (folder / "manifest.json").write_text(json.dumps({"run": cpu}))
        runs[cpu] = folder
    with pytest.raises(CompressorError, match="different conditions") as info:
        compare_runs([runs["avx2"], runs["amx"]])
    assert "AVX2)" in str(info.value) and "AMX int8" in str(info.value)
    assert "instruction sets" in info.value.hint
    mixed = compare_runs([runs["avx2"], runs["amx"]], allow_mixed=True, output=tmp_path / "out")
    assert list(mixed.groups) == [
        f"cpu, {results[0].threads} threads, Cloud CPU (AVX2)",
        f"cpu, {results[0].threads} threads, Cloud CPU (AVX2+AVX-VNNI+AVX-512 F+AVX-512 VNNI+"
        "AVX-512 BF16+AVX-512 FP16+AMX tile+AMX int8+AMX bf16)",
    ]
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "- **CPU instruction sets** (run avx2): AVX2; without" in md
    assert "- **CPU instruction sets** (run amx): AVX2, AVX-VNNI" in md
    # the same sets: one group
    shutil.copytree(runs["amx"], tmp_path / "amx2")
    assert len(compare_runs([runs["amx"], tmp_path / "amx2"]).groups) == 1
