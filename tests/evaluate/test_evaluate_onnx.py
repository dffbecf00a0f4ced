import math

import numpy as np
import pytest

from compressor.artifact import Artifact, Lineage
from compressor.errors import CompressorError
from compressor.evaluate import evaluate_artifact

pytest.importorskip("onnxruntime")


@pytest.fixture
def onnx_pair(make_artifact, tmp_path):
    """A tiny PyTorch artifact and its ONNX export (torch.onnx, the core's exporter)."""
    from transformers import AutoTokenizer

    from compressor.onnx_export import export_onnx

    pt = make_artifact("baseline")
    out = tmp_path / "onnx"
    export_onnx(pt.path, out, task_type="text-classification")
    AutoTokenizer.from_pretrained(pt.path).save_pretrained(out)
    art = Artifact(name="onnx", path=out, format="onnx",
                   lineage=Lineage(stage="onnx", strategy="export.onnx", parent="baseline",
                                   reference="baseline"))
    art.save()
    return pt, art


def test_onnx_artifact_evaluates_like_its_pytorch_source(onnx_pair, task_data, fast_settings):
    import onnx

    pt, art = onnx_pair
    res_pt = evaluate_artifact(pt, task_data, fast_settings, progress=False)
    res_ox = evaluate_artifact(art, task_data, fast_settings, progress=False)
    assert res_ox["format"] == "onnx" and res_ox["backend"] == "onnxruntime"
    assert res_ox["accuracy"]["accuracy"] == pytest.approx(res_pt["accuracy"]["accuracy"])
    assert res_ox["accuracy"]["f1"] == pytest.approx(res_pt["accuracy"]["f1"])
    onnx_file = next(art.path.glob("*.onnx"))
    proto = onnx.load(str(onnx_file), load_external_data=False)
    assert res_ox["size"]["params"] == sum(math.prod(i.dims) for i in proto.graph.initializer)
    assert res_ox["size"]["disk_bytes"] == art.size_bytes() > 0
    assert res_ox["latency_inputs"] == res_pt["latency_inputs"]
    for e in res_ox["latency"]:
        assert e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"] and e["runs"] >= fast_settings.min_runs


def test_onnx_logits_match_pytorch(onnx_pair, task_data):
    from compressor.evaluate.backends import OnnxRuntimeBackend, PyTorchBackend

    pt, art = onnx_pair
    texts = task_data.split("test")["text"][:8]
    a = PyTorchBackend.load(pt, task_type="text-classification", threads=1)
    b = OnnxRuntimeBackend.load(art, task_type="text-classification", threads=1)
    la = a.predict_logits(a.encode(texts, padding=True, max_length=64))
    lb = b.predict_logits(b.encode(texts, padding=True, max_length=64))
    assert lb.dtype == np.float32 and lb.shape == (8, 2)
    np.testing.assert_allclose(la, lb, rtol=1e-3, atol=1e-3)


def test_onnx_needs_exactly_one_model_file(onnx_pair, task_data, fast_settings):
    _, art = onnx_pair
    (art.path / "extra.onnx").write_bytes(b"")
    with pytest.raises(CompressorError, match="exactly one"):
        evaluate_artifact(art, task_data, fast_settings, progress=False)
