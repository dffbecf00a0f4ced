"""Adapter lookup and the layout functions compression methods call (heavy only inside).

:func:`adapter_for` finds the adapter of a model or config by ``config.model_type`` in the
registry passed (``Plugins.architectures``), else in the adapters in use: those of the plugins
whose :meth:`compressor.plugins.Plugins.scope` is open (a run opens its plugins' scope), else
the core's built-in ones (:mod:`compressor.architectures.builtin`). A type no adapter claims
gets :class:`~.adapter.NameMatchingAdapter`. This module never reaches the plugin manager.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import StageError
from .adapter import ArchitectureAdapter, EncoderLayout, LayerList, NameMatchingAdapter, get_module

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

FALLBACK = NameMatchingAdapter()
"""The adapter of model types no registered adapter claims."""

_IN_USE: ContextVar[Mapping[str, ArchitectureAdapter] | None] = ContextVar(
    "compressor_adapters_in_use", default=None
)
_BUILTIN: Mapping[str, ArchitectureAdapter] | None = None


def builtin_adapters() -> Mapping[str, ArchitectureAdapter]:
    """The core's own adapters (what :mod:`compressor.architectures.builtin` registers),
    ``config.model_type`` -> adapter; read-only, built once."""
    global _BUILTIN
    if _BUILTIN is None:
        from .builtin import compressor_register_architectures

        found: dict[str, ArchitectureAdapter] = {}

        def register(adapter: ArchitectureAdapter) -> None:
            for model_type in adapter.model_types:
                found.setdefault(model_type, adapter)

        compressor_register_architectures(register=register)
        _BUILTIN = MappingProxyType(found)
    return _BUILTIN


@contextmanager
def using_adapters(
    registry: Mapping[str, ArchitectureAdapter],
) -> Iterator[Mapping[str, ArchitectureAdapter]]:
    """Within the block (this thread or task), lookups without a registry search ``registry``.

    :meth:`compressor.plugins.Plugins.scope` opens it with the plugins' adapters; nested
    blocks restore the outer registry on exit.
    """
    token = _IN_USE.set(registry)
    try:
        yield registry
    finally:
        _IN_USE.reset(token)


def registered_adapters() -> dict[str, ArchitectureAdapter]:
    """``config.model_type`` -> adapter, for the adapters in use: the open
    :meth:`~compressor.plugins.Plugins.scope`'s, else the built-in ones."""
    return dict(_adapters(None))


def _adapters(registry: Mapping[str, ArchitectureAdapter] | None) -> Mapping[str, ArchitectureAdapter]:
    if registry is not None:
        return registry
    in_use = _IN_USE.get()
    return in_use if in_use is not None else builtin_adapters()


def adapter_for(
    model_or_config: Any, registry: Mapping[str, ArchitectureAdapter] | None = None
) -> ArchitectureAdapter:
    """The adapter of a model (or of its config).

    :param model_or_config: a model with a ``config``, or a config (anything with
        ``model_type``).
    :param registry: ``model_type`` -> adapter (``Plugins.architectures``); default: the
        adapters in use (:func:`registered_adapters`).
    :returns: the registered adapter, or :data:`FALLBACK` for an unknown or missing type.
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    adapters = _adapters(registry)
    if isinstance(model_type, str) and model_type in adapters:
        return adapters[model_type]
    return FALLBACK


def is_registered(model_type: str, registry: Mapping[str, ArchitectureAdapter] | None = None) -> bool:
    """Whether an adapter claims ``model_type``."""
    return model_type in _adapters(registry)


def find_layer_list(model: "nn.Module", registry: Mapping[str, ArchitectureAdapter] | None = None) -> LayerList:
    """Where ``model`` keeps its encoder layers.

    :param model: a Hugging Face model with a ``config``.
    :param registry: as :func:`adapter_for`.
    :returns: the :class:`LayerList` its adapter finds.
    :raises StageError: naming the model class when the layer list is not found.
    """
    return adapter_for(model, registry).layer_list(model)


def encoder_layout(
    model: "nn.Module", registry: Mapping[str, ArchitectureAdapter] | None = None
) -> EncoderLayout:
    """The layer list and, inside the layers, the attention and FFN modules of ``model``.

    :param model: a Hugging Face encoder (base model or with a task head).
    :param registry: as :func:`adapter_for`.
    :returns: the :class:`EncoderLayout`.
    :raises StageError: naming the model class and the missing parts when its adapter does
        not find them.
    """
    return adapter_for(model, registry).layout(model)


def refuse(model: "nn.Module", role: str, registry: Mapping[str, ArchitectureAdapter] | None = None) -> None:
    """Raise when ``model``'s adapter refuses ``role``.

    :raises StageError: with the adapter's reason.
    """
    reason = adapter_for(model, registry).refusal(role, model.config)
    if reason is not None:
        raise StageError(
            f"{type(model).__name__} ({getattr(model.config, 'model_type', '?')}) does not support "
            f"{role!r}: {reason}",
            hint="docs/architectures.md lists what each architecture supports",
        )


PROBED_ROLES = ("layers", "heads", "ffn", "weights")
"""Roles :func:`probe_roles` can check on a model built on the meta device (ONNX export
cannot be checked without running it)."""


def probe_roles(
    config: Mapping[str, Any],
    roles: Iterable[str],
    registry: Mapping[str, ArchitectureAdapter] | None = None,
) -> dict[str, str]:
    """Ask the model's adapter for each role on the model itself, built on the meta device.

    For a ``model_type`` no registered adapter claims, :data:`FALLBACK` can only tell
    whether it finds a role's modules by looking at them: this builds the model that
    ``config.json`` describes (a sequence classifier, else the base model) on PyTorch's meta
    device (no memory, no weights, no download), and asks the adapter for each role:

    - ``layers``: the layer list (:meth:`ArchitectureAdapter.layer_list`), a config with
      fewer layers (:meth:`ArchitectureAdapter.keep_layers`, as a student or a model with
      layers dropped has), and that model's parameters outside the layer list must have the
      teacher's shapes (ESM's contact head is sized by layers x heads: it has not);
    - ``heads``, ``ffn``, ``weights``: the attention and FFN modules
      (:meth:`ArchitectureAdapter.layout`).

    :param config: the model's ``config.json`` as a dict (with ``model_type``).
    :param roles: roles a recipe's stages need; those not in :data:`PROBED_ROLES` are not
        checked.
    :param registry: as :func:`adapter_for`.
    :returns: role -> why the adapter cannot serve it; empty when every probed role is
        found, or when transformers cannot build the model from the config (the run
        reports that when it loads the model).
    """
    import copy

    wanted = [r for r in PROBED_ROLES if r in set(roles)]
    model_type = config.get("model_type")
    if not wanted or not isinstance(model_type, str):
        return {}
    try:
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING

        if model_type not in CONFIG_MAPPING:
            return {}
        cfg = CONFIG_MAPPING[model_type].from_dict(dict(config))

        def build(c: Any) -> "nn.Module":
            with torch.device("meta"):
                try:
                    return AutoModelForSequenceClassification.from_config(c)
                except ValueError:  # no sequence-classification class: the base model
                    return AutoModel.from_config(c)

        model = build(cfg)
    except Exception:  # noqa: BLE001 - a config transformers cannot build: the run says why
        return {}
    adapter = adapter_for(cfg, registry)
    out: dict[str, str] = {}
    if "layers" in wanted:
        why = _probe_layers(adapter, model, cfg, build, copy.deepcopy)
        if why:
            out["layers"] = why
    if any(r in wanted for r in ("heads", "ffn", "weights")):
        try:
            adapter.layout(model)
        except StageError as exc:
            for role in ("heads", "ffn", "weights"):
                if role in wanted:
                    out[role] = exc.message
    return out


def _probe_layers(adapter: ArchitectureAdapter, model: Any, cfg: Any, build: Any, deepcopy: Any) -> str | None:
    """Why the ``layers`` role fails on ``model`` (built on the meta device), or ``None``."""
    try:
        layers = adapter.layer_list(model)
    except StageError as exc:
        return exc.message
    if layers.count < 2:
        return None
    shallow = deepcopy(cfg)
    try:
        adapter.keep_layers(shallow, list(range(layers.count - 1)))
        smaller = build(shallow)
    except Exception as exc:  # noqa: BLE001 - the config refuses another depth (Funnel)
        return f"a config with fewer layers fails: {type(exc).__name__}: {exc}"
    prefix = layers.path + "."
    theirs = {k: tuple(v.shape) for k, v in smaller.state_dict().items() if not k.startswith(prefix)}
    for key, value in model.state_dict().items():
        if key.startswith(prefix) or key not in theirs or theirs[key] == tuple(value.shape):
            continue
        return (
            f"{key} outside the layer list is sized by the depth ({tuple(value.shape)} with "
            f"{layers.count} layers, {theirs[key]} with {layers.count - 1}): a model with fewer "
            "layers cannot keep its weights"
        )
    return None


def layer_modules(model: "nn.Module", layout: EncoderLayout) -> list["nn.Module"]:
    """The distinct encoder layer modules of ``model`` (layer ``i`` at index ``i``; one
    module for ALBERT's shared layer)."""
    return list(get_module(model, layout.layers.path))


def layer_path(layout: EncoderLayout, index: int, relative: str = "") -> str:
    """Dotted path of layer ``index`` (or of ``relative`` inside it) from the model root."""
    base = f"{layout.layers.path}.{index}"
    return f"{base}.{relative}" if relative else base


def _heads_of(block: "nn.Module", layout: EncoderLayout) -> int:
    if not layout.attn_output:  # no attention (FNet)
        return 0
    if layout.qkv is not None:
        return get_module(block, layout.qkv).out_features // (3 * layout.head_size)
    return get_module(block, layout.attn_output).in_features // layout.head_size


def head_counts(model: "nn.Module", layout: EncoderLayout | None = None) -> list[int]:
    """Current number of attention heads of each distinct layer module.

    Read from the projections' shapes divided by the head size, so it is right after any
    head pruning.

    :returns: one int per layer module (:func:`layer_modules`).
    """
    layout = layout or encoder_layout(model)
    return [_heads_of(layer, layout) for layer in layer_modules(model, layout)]


def ffn_widths(model: "nn.Module", layout: EncoderLayout | None = None) -> list[int]:
    """Current FFN intermediate width (neurons) of each layer module's main FFN."""
    layout = layout or encoder_layout(model)
    return [get_module(layer, layout.ffn_output).in_features for layer in layer_modules(model, layout)]


def ffn_unit_widths(model: "nn.Module", layout: EncoderLayout | None = None) -> list[int]:
    """Current width of every FFN of every layer module, layer-major
    (:attr:`EncoderLayout.ffn_units` order inside a layer)."""
    layout = layout or encoder_layout(model)
    return [
        get_module(layer, out).in_features
        for layer in layer_modules(model, layout)
        for _, out in layout.ffn_units
    ]


def original_head_indices(model: "nn.Module", layer: int, current_heads: int, num_heads: int) -> list[int]:
    """Original head indices (as in ``config.pruned_heads``) of the heads a layer still has.

    :returns: ``current_heads`` indices in ``[0, num_heads)``, ascending.
    """
    pruned = set((getattr(model.config, "pruned_heads", None) or {}).get(layer, []))
    kept = [h for h in range(num_heads) if h not in pruned]
    if len(kept) != current_heads:  # heads removed without config.pruned_heads (structure file)
        return list(range(current_heads))
    return kept


def linear_weights(model: "nn.Module", layout: EncoderLayout | None = None) -> dict[str, "nn.Parameter"]:
    """``weight`` of every :class:`torch.nn.Linear` inside the encoder layer modules.

    :returns: state-dict-style name (``bert.encoder.layer.0.intermediate.dense.weight``) ->
        parameter, 2-D ``(out, in)``.
    """
    from torch import nn

    path = layout.layers.path if layout is not None else find_layer_list(model).path
    out: dict[str, nn.Parameter] = {}
    for i, layer in enumerate(get_module(model, path)):
        for name, m in layer.named_modules():
            if isinstance(m, nn.Linear):
                out[f"{path}.{i}.{name}.weight"] = m.weight
    return out


def sparsity_summary(model: "nn.Module", layout: EncoderLayout | None = None) -> dict[str, Any]:
    """Zeros in the encoder layers' Linear weights, overall and per layer.

    :param model: a PyTorch encoder.
    :param layout: its layout (when ``None``, only the layer list is looked up).
    :returns: ``{"linear_weights", "linear_zeros", "linear_sparsity" (fraction in [0, 1]),
        "per_layer": [fraction per layer module]}``; only ``weight`` matrices of the
        :class:`~torch.nn.Linear` modules inside the encoder layers count (biases,
        embeddings, norms and the task head excluded: they are what unstructured pruning
        leaves dense).
    """
    import torch
    from torch import nn

    path = layout.layers.path if layout is not None else find_layer_list(model).path
    per_layer: list[float] = []
    total = zeros = 0
    with torch.no_grad():
        for layer in get_module(model, path):
            n = z = 0
            for m in layer.modules():
                if isinstance(m, nn.Linear):
                    n += m.weight.numel()
                    z += int((m.weight == 0).sum())
            per_layer.append(z / n if n else 0.0)
            total += n
            zeros += z
    return {
        "linear_weights": total,
        "linear_zeros": zeros,
        "linear_sparsity": zeros / total if total else 0.0,
        "per_layer": per_layer,
    }


def structure_summary(model: "nn.Module") -> dict[str, Any]:
    """What a model's encoder looks like now: layers, heads and FFN widths, sparsity.

    :returns: ``{"layers": L (layers run), "heads": [per layer module], "heads_total",
        "heads_config": heads per layer in the config, "ffn_widths": [per layer module],
        "ffn_config": intermediate size in the config, "sparsity": fraction of zeros in the
        encoder layers' Linear weights, "sparsity_per_layer": [per layer module],
        "linear_weights": their element count, "zero_weights": how many are exactly zero,
        "shared_layers": whether one layer module runs ``L`` times (ALBERT)}``.
    :raises StageError: for an unsupported architecture (see :func:`encoder_layout`).
    """
    layout = encoder_layout(model)
    heads = head_counts(model, layout)
    sparsity = sparsity_summary(model, layout)
    return {
        "layers": layout.layers.count,
        "heads": heads,
        "heads_total": sum(heads),
        "heads_config": layout.num_heads,
        "ffn_widths": ffn_widths(model, layout),
        "ffn_config": layout.intermediate_size,
        "sparsity": sparsity["linear_sparsity"],
        "sparsity_per_layer": sparsity["per_layer"],
        "linear_weights": sparsity["linear_weights"],
        "zero_weights": sparsity["linear_zeros"],
        "shared_layers": layout.layers.shared,
    }

