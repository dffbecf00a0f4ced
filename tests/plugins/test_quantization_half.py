"""``quantize.half`` on every CPU kind, with the CPU faked through ``COMPRESSOR_CPUINFO``, and
the conformance kit's handling of :class:`compressor.HardwareUnsupported`.

With faked AMX flags the strategy picks bfloat16 and the run is a real computation: PyTorch's
bf16 kernels work on any x86 CPU, only slower without AMX / AVX-512 BF16. No GPU is assumed:
CUDA is hidden, so a GPU host takes the CPU path too.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

import compressor
from compressor import testing
from compressor.artifact import Artifact
from compressor.errors import CompressorError, HardwareUnsupported, StageError
from compressor.plugins import get_plugins
from compressor.strategy import StageContext
from compressor_quantization import plugin as qplugin
from test_quantization_hardware import fake_cpu


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    """Decide on the CPU path on any host (the pipeline and the strategy ask torch)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _context(tmp_path: Path, stage: str = "half") -> StageContext:
    out, work = tmp_path / stage / "model", tmp_path / stage / "work"
    out.mkdir(parents=True)
    work.mkdir(parents=True)
    return StageContext(
        stage_name=stage, output_dir=out, work_dir=work, data=testing.tiny_task_data(16, 8), seed=0,
        logger=logging.getLogger("compressor.tests"), progress=False, plugins=get_plugins(),
    )


@pytest.mark.parametrize("cpu", ["xeon-sapphirerapids-amx", "epyc-genoa-avx512bf16"])
def test_faked_bf16_cpu_picks_bfloat16_and_runs_in_a_recipe(cpu, tmp_path, monkeypatch):
    import torch
    from safetensors import safe_open

    fake = fake_cpu(monkeypatch, tmp_path, cpu)
    # calibration_s 0: the evaluator's 1024^3 bf16 matmul-peak calibration takes ~20 s where
    # bf16 is emulated (AVX2); the model itself is measured in bf16 all the same
    result = testing.check_runs_in_recipe(
        "quantize.half", {}, "bert", tmp_path / "run", evaluation={"calibration_s": 0}
    )
    art = result.artifacts["under-test"]
    flag = "amx_bf16" if "amx" in cpu else "avx512_bf16"
    assert art.lineage.extra["dtype"] == "bfloat16"
    assert flag in art.lineage.extra["reason"] and f"COMPRESSOR_CPUINFO={fake}" in art.lineage.extra["reason"]
    with safe_open(str(art.path / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    (record,) = [r for r in result.results if r["model"] == "under-test"]
    assert record["backend"] == "pytorch-half" and record["device"] == "cpu" and record["precision"] == "bf16"


@pytest.mark.parametrize("cpu", ["epyc-milan-avx2", "xeon-skylake-avx512", "xeon-cascadelake-vnni", "graviton3-arm64"])
def test_cpu_without_bf16_refuses_with_a_clear_error(cpu, tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, cpu)
    model = testing.tiny_model("bert", tmp_path / "tiny")
    with pytest.raises(HardwareUnsupported) as info:
        qplugin.Half().apply(Artifact(name="baseline", path=model), qplugin.HalfConfig(), _context(tmp_path))
    err = info.value
    assert isinstance(err, StageError) and err.key == "config.dtype"
    assert "bfloat16 needs a CPU with AMX-BF16 or AVX-512 BF16" in err.message
    assert "quantize.ort-dynamic" in err.hint
    assert not any((tmp_path / "half" / "model").iterdir())  # nothing half-written


def test_float16_on_a_cpu_is_refused_even_with_amx(tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, "xeon-sapphirerapids-amx")
    model = testing.tiny_model("bert", tmp_path / "tiny")
    with pytest.raises(HardwareUnsupported, match="float16 needs a CUDA GPU"):
        qplugin.Half().apply(
            Artifact(name="baseline", path=model), qplugin.HalfConfig(dtype="float16"), _context(tmp_path)
        )


def test_the_refusal_ends_the_run_as_itself_and_the_manifest_names_it(tmp_path, monkeypatch):
    """The pipeline re-raises the strategy's own exception: the cause needs no string matching."""
    fake_cpu(monkeypatch, tmp_path, "epyc-milan-avx2")
    with pytest.raises(pytest.skip.Exception):
        testing.check_runs_in_recipe("quantize.half", {}, "bert", tmp_path)
    with pytest.raises(HardwareUnsupported) as info:
        compressor.run(tmp_path / "conformance.yaml", run_dir=tmp_path / "again", progress=False)
    assert testing.hardware_refusal(info.value) is info.value
    manifest = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["failed_stage"] == "under-test"
    assert manifest["error"].startswith("HardwareUnsupported: config.dtype: bfloat16 needs")


def test_the_kit_skips_with_the_reason_on_an_avx2_only_cpu(tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, "epyc-milan-avx2")
    with pytest.raises(pytest.skip.Exception, match=r"^quantize\.half: bfloat16 needs a CPU with AMX-BF16"):
        testing.check_runs_in_recipe("quantize.half", {}, "electra", tmp_path)


@pytest.mark.parametrize("cpu", ["epyc-milan-avx2", "xeon-sapphirerapids-amx"])
def test_clear_errors_sees_the_input_error_before_the_hardware(cpu, tmp_path, monkeypatch):
    fake_cpu(monkeypatch, tmp_path, cpu)
    err = testing.check_clear_errors("quantize.half", {}, tmp_path)
    assert not isinstance(err, HardwareUnsupported) and "cannot load artifact 'broken'" in err.message


# --- the kit's hardware helpers, on any strategy ----------------------------------------------


def _refused() -> HardwareUnsupported:
    return HardwareUnsupported("needs AMX tiles", key="config.kernel")


def test_hardware_refusal_follows_explicit_causes_only():
    refused = _refused()
    assert testing.hardware_refusal(refused) is refused
    try:
        try:
            raise refused
        except HardwareUnsupported as exc:
            raise RuntimeError("stage 'x' failed") from exc
    except RuntimeError as wrapped:
        assert testing.hardware_refusal(wrapped) is refused
    try:
        try:
            raise refused
        except HardwareUnsupported:
            raise KeyError("a bug in a hook while handling it")  # implicit __context__ only
    except KeyError as bug:
        assert testing.hardware_refusal(bug) is None
    assert testing.hardware_refusal(StageError("bad input")) is None
    assert testing.hardware_refusal(None) is None


def test_skip_on_unsupported_hardware_skips_refusals_and_passes_the_rest():
    with pytest.raises(pytest.skip.Exception, match=r"^my\.strategy: needs AMX tiles$"):
        with testing.skip_on_unsupported_hardware("my.strategy"):
            raise _refused()
    with pytest.raises(StageError, match="bad input"):
        with testing.skip_on_unsupported_hardware("my.strategy"):
            raise StageError("bad input")
    with pytest.raises(AssertionError):
        with testing.skip_on_unsupported_hardware("my.strategy"):
            raise AssertionError("a failed check stays a failure")


def test_hardware_unsupported_is_public_and_a_stage_error():
    assert compressor.HardwareUnsupported is HardwareUnsupported and "HardwareUnsupported" in compressor.__all__
    assert issubclass(HardwareUnsupported, StageError) and issubclass(HardwareUnsupported, CompressorError)
    assert {"hardware_refusal", "skip_on_unsupported_hardware"} <= set(testing.__all__)
