"""PyTorch dynamic int8 (``torch.ao.quantization.quantize_dynamic``): apply, save, reload.

``torch.ao.quantization`` is deprecated: torch 2.11 removed its PT2E half, and its eager half
(``quantize_dynamic``, the qconfigs, ``torch.ao.nn.quantized.dynamic.Linear``) is announced to
go too. Every use below goes through :func:`torch_ao_api`, which names the missing callable,
the torch release and the replacement instead of failing with a bare ``ImportError``
(docs/quantization.md, "PyTorch dynamic int8: torch.ao or torchao").
"""

from __future__ import annotations

import importlib
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


#: the torch.ao names this module uses, each resolved by :func:`torch_ao_api`
TORCH_AO_API = (
    "torch.ao.quantization.quantize_dynamic",
    "torch.ao.quantization.default_dynamic_qconfig",
    "torch.ao.quantization.per_channel_dynamic_qconfig",
    "torch.ao.nn.quantized.dynamic.Linear",
)

#: where ``quantize.dynamic-int8`` goes when torch drops ``torch.ao.quantization``
REPLACEMENT = (
    "torchao's int8 dynamic-activation / int8-weight path "
    "(torchao.quantization.quantize_(model, Int8DynamicActivationInt8WeightConfig())), or in this "
    "project the ONNX Runtime dynamic int8 strategy quantize.ort-dynamic; until then install a torch "
    "release that still has it (pyproject.toml's range; docs/quantization.md, 'PyTorch dynamic "
    "int8: torch.ao or torchao')"
)


def torch_ao_api() -> dict[str, Any]:
    """The ``torch.ao`` callables and classes ``quantize.dynamic-int8`` uses, by dotted name.

    :raises StageError: when this torch lacks one of :data:`TORCH_AO_API`, naming it, the
        torch release and :data:`REPLACEMENT`.
    """
    import torch

    found: dict[str, Any] = {}
    with warnings.catch_warnings():  # importing torch.ao.quantization warns "moves to torchao"
        warnings.simplefilter("ignore")
        for dotted in TORCH_AO_API:
            module_name, _, attr = dotted.rpartition(".")
            try:
                found[dotted] = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise StageError(
                    f"torch {torch.__version__} has no {dotted} ({type(exc).__name__}: {exc}); "
                    "quantize.dynamic-int8 and its pytorch-dynamic-int8 backend need it",
                    hint=f"replacement: {REPLACEMENT}",
                ) from exc
    return found


def lookup_linears(model: Any) -> list[str] | None:
    """The ``nn.Linear`` modules of ``model`` whose ``forward`` a forward pass never calls.

    Some encoders use a Linear's weight as a lookup table (LayoutLMv3's relative-position
    biases index ``rel_pos_bias.weight``); a quantised Linear has no such weight, so these
    stay in float. Found by one forward pass on ``model.dummy_inputs`` (transformers' own
    example batch) with a pre-forward hook on every Linear.

    :returns: their qualified names, sorted; ``None`` when the model cannot run its dummy
        inputs (then every Linear is quantised, as before).
    """
    import torch

    called: set[str] = set()
    linears = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=name: called.add(n)) for name, m in linears.items()]
    try:
        inputs = getattr(model, "dummy_inputs", None)
        if not isinstance(inputs, dict):
            return None
        with torch.no_grad():
            model(**inputs)
    except Exception:  # noqa: BLE001 - a model that needs other inputs: no probe
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(set(linears) - called)


def quantize_linear_layers(model: Any, *, per_channel: bool, keep_float: list[str] | None = None) -> Any:
    """``quantize_dynamic`` of the ``nn.Linear`` layers of ``model`` to int8 weights.

    :param model: an fp32 ``nn.Module`` in eval mode (CPU).
    :param per_channel: one scale per output channel (``per_channel_dynamic_qconfig``)
        instead of one per tensor (``default_dynamic_qconfig``).
    :param keep_float: qualified names of Linear layers left in float (see
        :func:`lookup_linears`); ``None`` or empty: every Linear is quantised.
    :returns: the quantised copy (the input model is left unchanged).
    """
    import torch

    api = torch_ao_api()
    qconfig = api["torch.ao.quantization.per_channel_dynamic_qconfig" if per_channel
                  else "torch.ao.quantization.default_dynamic_qconfig"]
    spec: dict[Any, Any] = {torch.nn.Linear: qconfig}
    if keep_float:
        skip = set(keep_float)
        spec = {name: qconfig for name, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and name not in skip}
    # "moves to torchao" deprecation notices; torch 2.14 also warns that quantized tensor
    # creation (torch.quantize_per_channel, used by the packing) is deprecated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return api["torch.ao.quantization.quantize_dynamic"](model, spec, dtype=torch.qint8, inplace=False)


def count_parameters(model: Any) -> int:
    """Float parameter elements plus packed int8 weight and bias elements of quantised
    Linear layers (which ``model.parameters()`` does not list)."""
    QLinear = torch_ao_api()["torch.ao.nn.quantized.dynamic.Linear"]

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
    model = quantize_linear_layers(
        model, per_channel=bool(settings.get("per_channel", True)), keep_float=settings.get("float_linear") or None
    )
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

    QLinear = torch_ao_api()["torch.ao.nn.quantized.dynamic.Linear"]
    model = context.load_model(artifact, _auto_class(context.data.type), dtype=torch.float32).eval()
    tokenizer = context.load_tokenizer(artifact)
    out = Path(context.output_dir)
    # a pruned input's shapes (per-layer heads, FFN widths): load_quantized rebuilds them
    # before quantising, as compressor.structure.load_pretrained does for float models
    modules, attributes = structure_diff(model)
    if modules or attributes:
        write_structure(out, modules, attributes)
    keep_float = lookup_linears(model) or []
    if keep_float:
        context.logger.info("%s: Linear layers used as lookup tables stay in float: %s",
                            context.stage_name, ", ".join(keep_float))
    quantized = quantize_linear_layers(model, per_channel=config.per_channel, keep_float=keep_float)
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
        "float_linear": keep_float,
        "engine": torch.backends.quantized.engine,
        "torch": torch.__version__,
    }
    (out / QUANTIZATION_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    context.logger.info("%s: %d Linear layers quantised to int8", context.stage_name, n_quantized)
    extra = {"quantized_modules": n_quantized, "engine": settings["engine"], "per_channel": config.per_channel,
             "float_linear": keep_float}
    return context.new_artifact(artifact, strategy.name, config, format=FORMAT_DYNAMIC_INT8, extra=extra)
