"""PyTorch dynamic int8 (``torch.ao.quantization.quantize_dynamic``): apply, save, reload."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor.errors import CompressorError, StageError
from compressor.structure import apply_structure, has_structure, read_structure, structure_diff, write_structure

from .backends import FORMAT_DYNAMIC_INT8, QUANTIZATION_FILE, STATE_DICT_FILE

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

    from .plugin import DynamicInt8Config


def _auto_class(task_type: str) -> Any:
    from compressor.tasks import get_task

    return get_task(task_type).auto_class()


def quantize_linear_layers(model: Any, *, per_channel: bool) -> Any:
    """``quantize_dynamic`` of every ``nn.Linear`` of ``model`` to int8 weights.

    :param model: an fp32 ``nn.Module`` in eval mode (CPU).
    :param per_channel: one scale per output channel (``per_channel_dynamic_qconfig``)
        instead of one per tensor (``default_dynamic_qconfig``).
    :returns: the quantised copy (the input model is left unchanged).
    """
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    with warnings.catch_warnings():  # "moves to torchao" deprecation notices
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear: qconfig}, dtype=torch.qint8, inplace=False
        )


def count_parameters(model: Any) -> int:
    """Float parameter elements plus packed int8 weight and bias elements of quantised
    Linear layers (which ``model.parameters()`` does not list)."""
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, QLinear):
            weight, bias = module._weight_bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return int(total)


def load_quantized(path: Path, *, task_type: str) -> Any:
    """Rebuild a model saved by :func:`run_dynamic_int8`.

    :raises CompressorError: if the files are missing or the state dict does not match.
    """
    import torch
    from transformers import AutoConfig

    try:
        settings = json.loads((path / QUANTIZATION_FILE).read_text(encoding="utf-8"))
        config = AutoConfig.from_pretrained(path)
        state = torch.load(path / STATE_DICT_FILE, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise CompressorError(
            f"cannot load the {FORMAT_DYNAMIC_INT8} model at {path}: {exc}",
            hint=f"the folder needs config.json, {QUANTIZATION_FILE} and {STATE_DICT_FILE}",
        ) from exc
    engine = settings.get("engine")
    if engine and engine in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = engine
    model = _auto_class(task_type).from_config(config).eval()
    if has_structure(path):  # pruned shapes, as the quantised input had them
        apply_structure(model, read_structure(path))
    model = quantize_linear_layers(model, per_channel=bool(settings.get("per_channel", True)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CompressorError(f"the quantised state dict at {path} does not fit its config: {exc}") from exc
    return model.eval()


def run_dynamic_int8(
    strategy: "Strategy", artifact: "Artifact", config: "DynamicInt8Config", context: "StageContext"
) -> "Artifact":
    """Quantise and save; see :class:`~.plugin.DynamicInt8`."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as QLinear

    model = context.load_model(artifact, _auto_class(context.data.type), dtype=torch.float32).eval()
    tokenizer = context.load_tokenizer(artifact)
    out = Path(context.output_dir)
    # a pruned input's shapes (per-layer heads, FFN widths): load_quantized rebuilds them
    # before quantising, as compressor.structure.load_pretrained does for float models
    modules, attributes = structure_diff(model)
    if modules or attributes:
        write_structure(out, modules, attributes)
    quantized = quantize_linear_layers(model, per_channel=config.per_channel)
    n_quantized = sum(isinstance(m, QLinear) for m in quantized.modules())
    if n_quantized == 0:
        raise StageError(f"artifact {artifact.name!r} has no nn.Linear layer to quantise")
    torch.save(quantized.state_dict(), out / STATE_DICT_FILE)
    model.config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    settings = {
        "method": "torch.ao.quantization.quantize_dynamic",
        "modules": ["torch.nn.Linear"],
        "dtype": "qint8",
        "per_channel": config.per_channel,
        "engine": torch.backends.quantized.engine,
        "torch": torch.__version__,
    }
    (out / QUANTIZATION_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    context.logger.info("%s: %d Linear layers quantised to int8", context.stage_name, n_quantized)
    extra = {"quantized_modules": n_quantized, "engine": settings["engine"], "per_channel": config.per_channel}
    return context.new_artifact(artifact, strategy.name, config, format=FORMAT_DYNAMIC_INT8, extra=extra)
