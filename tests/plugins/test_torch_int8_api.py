"""The torch.ao API that ``quantize.dynamic-int8`` stands on, checked on a tiny Linear model.

``torch.ao.quantization`` is deprecated (torch 2.11 removed its PT2E half). When a torch
release drops or breaks the eager dynamic path, these tests fail first, with one message that
names the missing or broken callable, the torch release and the replacement, rather than as an
``ImportError`` deep inside a strategy test. What to do then: docs/quantization.md, "PyTorch
dynamic int8: torch.ao or torchao".
"""

from __future__ import annotations

import io
from contextlib import contextmanager

import pytest
import torch
from compressor_quantization import torch_int8

from compressor.errors import StageError


@contextmanager
def _loudly(what: str):
    """Turn any failure inside into one message naming the API, the torch release and the
    replacement."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - reported below as a test failure with the story
        failure = f"{what} failed ({type(exc).__name__}: {exc})"
    else:
        return
    pytest.fail(  # outside the except block: no chained traceback in front of the message
        f"\n{'=' * 78}\nquantize.dynamic-int8 is broken on torch {torch.__version__}: {failure}.\n"
        f"It uses {', '.join(torch_int8.TORCH_AO_API)}.\nReplacement: {torch_int8.REPLACEMENT}.\n{'=' * 78}",
        pytrace=False,
    )


def _api() -> dict:
    try:
        return torch_int8.torch_ao_api()
    except StageError as exc:
        missing = str(exc)
    pytest.fail(f"\n{'=' * 78}\n{missing}\n{'=' * 78}", pytrace=False)


def _tiny(seed: int):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()


def test_the_torch_ao_names_exist_and_are_what_the_strategy_expects():
    api = _api()
    assert set(api) == set(torch_int8.TORCH_AO_API)
    with _loudly("the torch.ao names' types"):
        assert callable(api["torch.ao.quantization.quantize_dynamic"])
        for name in ("default_dynamic_qconfig", "per_channel_dynamic_qconfig"):
            qconfig = api[f"torch.ao.quantization.{name}"]
            assert callable(qconfig.activation) and callable(qconfig.weight), name
        qlinear = api["torch.ao.nn.quantized.dynamic.Linear"]
        assert isinstance(qlinear, type) and issubclass(qlinear, torch.nn.Module)
        assert hasattr(qlinear, "_weight_bias")  # count_parameters reads the packed weights
        assert torch.backends.quantized.engine in torch.backends.quantized.supported_engines


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_dynamic_int8_of_a_tiny_linear_model_runs_saves_and_reloads(per_channel, tmp_path):
    qlinear = _api()["torch.ao.nn.quantized.dynamic.Linear"]
    model = _tiny(0)
    x = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
    with _loudly(f"quantize_dynamic ({'per-channel' if per_channel else 'per-tensor'}) on a tiny Linear"):
        quantized = torch_int8.quantize_linear_layers(model, per_channel=per_channel)
        layers = [m for m in quantized.modules() if isinstance(m, qlinear)]
        assert len(layers) == 2, f"expected 2 dynamic int8 Linear layers, got {quantized}"
        assert type(model[0]) is torch.nn.Linear and type(model[2]) is torch.nn.Linear  # input left fp32
        scheme = layers[0].weight().qscheme()
        assert scheme == (torch.per_channel_affine if per_channel else torch.per_tensor_affine), scheme
        with torch.inference_mode():
            got = quantized(x)
        assert got.dtype == torch.float32 and got.shape == ref.shape
        assert (got - ref).abs().max() <= 0.05 * ref.abs().max() + 1e-3, "int8 output far from fp32"
        # the artifact's round trip: state dict through torch.load(weights_only=True) into a
        # freshly quantised model of other weights, as load_quantized does
        buf = io.BytesIO()
        torch.save(quantized.state_dict(), buf)
        buf.seek(0)
        state = torch.load(buf, map_location="cpu", weights_only=True)
        other = torch_int8.quantize_linear_layers(_tiny(7), per_channel=per_channel)
        other.load_state_dict(state, strict=True)
        with torch.inference_mode():
            assert torch.equal(other(x), got), "reloaded int8 model predicts differently"
        fp32_params = sum(p.numel() for p in model.parameters())
        assert torch_int8.count_parameters(quantized) == fp32_params


def test_a_missing_torch_ao_name_fails_with_the_api_and_the_replacement(monkeypatch):
    """What a user sees when torch drops the API: a StageError, not an ImportError."""
    import torch.ao.quantization as tq

    monkeypatch.delattr(tq, "quantize_dynamic")
    with pytest.raises(StageError) as info:
        torch_int8.quantize_linear_layers(_tiny(0), per_channel=True)
    message = str(info.value)
    assert f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic" in message
    assert "Int8DynamicActivationInt8WeightConfig" in message and "quantize.ort-dynamic" in message
