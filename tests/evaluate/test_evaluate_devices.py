"""Which devices each artifact is measured on, decided on CPU with CUDA availability faked;
plugin backends found by format; registration errors."""

from __future__ import annotations

import types

import pytest

from compressor.artifact import Artifact
from compressor.errors import CompressorError, PluginError
from compressor.evaluate import backends as B
from compressor.evaluate.backends import (
    OnnxRuntimeBackend,
    PyTorchBackend,
    backend_for,
    evaluation_devices,
)
from compressor.hookspecs import hookimpl
from compressor.plugins import Plugins


def _art(fmt: str = "pytorch") -> Artifact:
    return Artifact(name="m", path="/nonexistent", format=fmt)


class CpuOnly(PyTorchBackend):
    name = "cpu-only"
    formats = ("pytorch-cpu-only",)
    devices = ("cpu",)


class CudaOnly(PyTorchBackend):
    name = "cuda-only"
    formats = ("pytorch-cuda-only",)
    devices = ("cuda",)


@pytest.mark.parametrize("cls", [PyTorchBackend, OnnxRuntimeBackend])
def test_auto_adds_cuda_only_where_present(cls):
    assert evaluation_devices("auto", cls, _art(), cuda_available=False) == ["cpu"]
    assert evaluation_devices("auto", cls, _art(), cuda_available=True) == ["cpu", "cuda"]
    assert evaluation_devices("cpu", cls, _art(), cuda_available=True) == ["cpu"]
    assert evaluation_devices("cuda", cls, _art(), cuda_available=True) == ["cuda"]
    with pytest.raises(CompressorError, match="cannot use a CUDA device"):
        evaluation_devices("cuda", cls, _art(), cuda_available=False)


def test_availability_is_asked_per_runtime(monkeypatch):
    # torch sees a GPU but onnxruntime has no CUDA provider (CPU-only onnxruntime wheel)
    monkeypatch.setattr(B, "torch_cuda_available", lambda: True)
    monkeypatch.setattr(B, "ort_cuda_available", lambda: False)
    assert evaluation_devices("auto", PyTorchBackend, _art()) == ["cpu", "cuda"]
    assert evaluation_devices("auto", OnnxRuntimeBackend, _art("onnx")) == ["cpu"]
    monkeypatch.setattr(B, "ort_cuda_available", lambda: True)
    assert evaluation_devices("auto", OnnxRuntimeBackend, _art("onnx")) == ["cpu", "cuda"]


def test_this_machine_without_gpu_measures_on_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert evaluation_devices("auto", PyTorchBackend, _art()) == ["cpu"]


def test_backend_device_support_limits_the_plan():
    assert evaluation_devices("auto", CpuOnly, _art(), cuda_available=True) == ["cpu"]
    assert evaluation_devices("auto", CudaOnly, _art(), cuda_available=True) == ["cuda"]
    with pytest.raises(CompressorError, match="no CUDA device is usable"):
        evaluation_devices("auto", CudaOnly, _art(), cuda_available=False)
    with pytest.raises(CompressorError, match="runs on"):
        evaluation_devices("cuda", CpuOnly, _art(), cuda_available=True)
    with pytest.raises(CompressorError, match="unknown evaluation device"):
        evaluation_devices("tpu", PyTorchBackend, _art())


def test_onnx_on_cuda_asks_for_the_cuda_provider(make_artifact, tmp_path, monkeypatch):
    """The CUDA branch of OnnxRuntimeBackend.load, with ONNX Runtime's session faked: it
    falls back to the CPU silently, as ONNX Runtime does without a usable GPU build."""
    import onnxruntime

    art = make_artifact("baseline")
    (art.path / "model.onnx").write_bytes(b"")
    seen = {}

    class FakeSession:
        def __init__(self, path, sess_options=None, providers=None):
            seen.update(path=path, providers=providers, threads=sess_options.intra_op_num_threads)

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    with pytest.raises(CompressorError, match="did not use CUDAExecutionProvider"):
        OnnxRuntimeBackend.load(_onnx(art), task_type="text-classification", threads=1, device="cuda")
    assert seen["providers"] == ["CUDAExecutionProvider"] and seen["threads"] == 1


def _onnx(art: Artifact) -> Artifact:
    return Artifact(name=art.name, path=art.path, format="onnx")


def test_backend_for_finds_plugin_formats_and_names_the_known_ones():
    from compressor.plugins import get_plugins

    assert backend_for(_art()) is PyTorchBackend  # the core's own, without a registry
    assert backend_for(_art("onnx")) is OnnxRuntimeBackend
    registry = {**get_plugins().backends, "pytorch-cpu-only": CpuOnly}
    # the core's backends come from its default plugin, like any plugin's
    assert registry["pytorch"] is PyTorchBackend and registry["onnx"] is OnnxRuntimeBackend
    assert backend_for(_art("pytorch-cpu-only"), registry) is CpuOnly
    with pytest.raises(CompressorError, match="no evaluation backend") as info:
        backend_for(_art("tflite"), registry)
    assert "pytorch-cpu-only" in str(info.value) and "onnx" in str(info.value)


def _backend_plugin(*classes):
    mod = types.ModuleType("backend_plugin")

    @hookimpl
    def compressor_register_backends(register):
        for cls in classes:
            register(cls)

    mod.compressor_register_backends = compressor_register_backends
    return mod


def test_backend_registration_errors():
    plugins = Plugins().load(entry_points_enabled=False, extra=[("a", _backend_plugin(CpuOnly))])
    # the core's backends register through its default plugin, the plugin's beside them
    assert plugins.backends == {"pytorch": PyTorchBackend, "onnx": OnnxRuntimeBackend, "pytorch-cpu-only": CpuOnly}
    assert plugins.infos["a"].backends == ["pytorch-cpu-only"]
    assert plugins.infos["compressor.evaluate.builtin"].backends == ["pytorch", "onnx"]
    with pytest.raises(PluginError, match="registered twice"):
        Plugins().load(entry_points_enabled=False, extra=[("a", _backend_plugin(CpuOnly)), ("b", _backend_plugin(CpuOnly))])

    class Hijack(PyTorchBackend):
        formats = ("pytorch",)

    with pytest.raises(PluginError, match="core's own backend"):
        Plugins().load(entry_points_enabled=False, extra=[("h", _backend_plugin(Hijack))])
    with pytest.raises(PluginError, match="not a Backend subclass"):
        Plugins().load(entry_points_enabled=False, extra=[("x", _backend_plugin(object))])


# --- the evaluator is given its registries ----------------------------------------------------


class OldStyle(PyTorchBackend):
    """A plugin backend written before ``load`` took ``task``: looks the task up by name."""

    name = "old-style"
    formats = ("pytorch-old-style",)
    calls: list[dict] = []

    @classmethod
    def load(cls, artifact, *, task_type, threads, device="cpu"):
        cls.calls.append({"task_type": task_type})
        return super().load(artifact, task_type=task_type, threads=threads, device=device)


class NewStyle(PyTorchBackend):
    name = "new-style"
    formats = ("pytorch-new-style",)
    calls: list[dict] = []

    @classmethod
    def load(cls, artifact, *, task_type, threads, device="cpu", task=None):
        cls.calls.append({"task_type": task_type, "task": task})
        return super().load(artifact, task_type=task_type, threads=threads, device=device, task=task)


def test_the_evaluator_passes_its_task_and_never_reaches_the_plugin_manager(
    make_artifact, task_data, fast_settings, monkeypatch
):
    import compressor.plugins
    from compressor.evaluate import evaluate_artifacts
    from compressor.tasks import using_tasks
    from compressor.tasks.classification import TextClassification

    def no_plugin_manager(**kwargs):
        raise AssertionError("the evaluator must not reach the process-wide plugins")

    monkeypatch.setattr(compressor.plugins, "get_plugins", no_plugin_manager)

    class Labelled(TextClassification):  # a plugin's task: only in the registry passed
        name = "labelled"

    task = Labelled()
    task_data.type = "labelled"
    base = make_artifact("new")
    old = Artifact(name="old", path=base.path, format="pytorch-old-style", lineage=base.lineage)
    new = Artifact(name="new", path=base.path, format="pytorch-new-style", lineage=base.lineage)
    OldStyle.calls.clear()
    NewStyle.calls.clear()
    settings = fast_settings.model_copy(update={"latency": False, "device": "cpu"})
    records = evaluate_artifacts(
        [new], task_data, settings, progress=False,
        backends={"pytorch-new-style": NewStyle}, tasks={"labelled": task},
    )
    assert NewStyle.calls == [{"task_type": "labelled", "task": task}]
    assert records[0]["task_type"] == "labelled" and records[0]["accuracy"]["n"] > 0
    # an old-style backend gets the name alone; it finds the task in the open scope
    with pytest.raises(CompressorError, match="unknown task type 'labelled'"):
        evaluate_artifacts([old], task_data, settings, progress=False,
                           backends={"pytorch-old-style": OldStyle}, tasks={"labelled": task})
    with using_tasks({"labelled": task}):
        evaluate_artifacts([old], task_data, settings, progress=False, backends={"pytorch-old-style": OldStyle})
    assert OldStyle.calls == [{"task_type": "labelled"}] * 2
