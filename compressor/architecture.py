"""Encoder structure from module structure: layers, attention projections, FFN, head counts.

Compression methods that change a model's shape (layer copy, layer dropping, head and FFN
pruning) need to know where an encoder keeps its layers and, inside one layer, which
:class:`torch.nn.Linear` modules are the attention query/key/value/output projections and the
two FFN layers. This module finds them from the module tree and the config, so strategies never
hard-code one architecture's attribute names:

- the layer list is the outermost :class:`torch.nn.ModuleList` of ``L`` same-typed modules,
  ``L`` read from the config (:func:`find_layer_list`);
- inside a layer, the parts are matched against the relative module names of the known
  encoder families (:data:`ATTENTION_NAMES`, :data:`FFN_NAMES`), and checked by shape
  (query/key/value map ``hidden -> heads * head_size``, the output projection maps it back,
  the FFN maps ``hidden -> intermediate -> hidden``).

Supported and tested on tiny random models: BERT, RoBERTa, XLM-R, ELECTRA, MPNet, DistilBERT
and DeBERTa-v2 (CamemBERT and Data2VecText share RoBERTa's modules). An architecture whose
layer list or parts are not found fails with :class:`~compressor.errors.StageError` naming the
model class and what is missing.

Heavy module only through its callers: it imports torch lazily, so importing it is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import StageError

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

LAYER_COUNT_ATTRS = ("num_hidden_layers", "n_layers", "num_layers")
"""Config attributes naming the encoder depth, in the order they are looked up."""

HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads")
"""Config attributes naming the number of attention heads per layer."""

HIDDEN_SIZE_ATTRS = ("hidden_size", "dim", "d_model")
"""Config attributes naming the hidden (model) width."""

INTERMEDIATE_SIZE_ATTRS = ("intermediate_size", "hidden_dim", "ffn_dim")
"""Config attributes naming the FFN intermediate width."""

_LAYER_LIST_NAMES = {"layer", "layers", "h", "block", "blocks"}

ATTENTION_NAMES: dict[str, tuple[str, ...]] = {
    "query": ("attention.self.query", "attention.attn.q", "attention.q_lin", "attention.self.query_proj"),
    "key": ("attention.self.key", "attention.attn.k", "attention.k_lin", "attention.self.key_proj"),
    "value": ("attention.self.value", "attention.attn.v", "attention.v_lin", "attention.self.value_proj"),
    "output": ("attention.output.dense", "attention.attn.o", "attention.out_lin"),
}
"""Relative names (inside one layer) of the attention projections, per known family:
BERT/RoBERTa/ELECTRA, MPNet, DistilBERT, DeBERTa-v2."""

EXTRA_HEAD_PROJECTIONS = ("pos_key_proj", "pos_query_proj")
"""Per-head projections besides Q/K/V that live beside the query (DeBERTa-v2's relative
position projections when ``share_att_key`` is false): pruned with the heads."""

FFN_NAMES: dict[str, tuple[str, ...]] = {
    "intermediate": ("intermediate.dense", "ffn.lin1"),
    "output": ("output.dense", "ffn.lin2"),
}
"""Relative names (inside one layer) of the FFN's two Linear layers."""

HEAD_ATTRS = ("num_attention_heads", "n_heads")
"""Attributes of an attention module holding its current number of heads."""

HEAD_DIM_ATTRS = ("all_head_size", "dim")
"""Attributes of an attention module holding ``heads * head_size``."""


@dataclass(frozen=True)
class LayerList:
    """Where a model keeps its encoder layers.

    :param path: dotted module path of the :class:`~torch.nn.ModuleList`, e.g.
        ``"bert.encoder.layer"`` or ``"distilbert.transformer.layer"``.
    :param count: number of layers ``L``.
    :param config_attr: config attribute holding ``L`` (e.g. ``"num_hidden_layers"``).
    """

    path: str
    count: int
    config_attr: str


def config_int(config: Any, attrs: tuple[str, ...]) -> tuple[str, int] | None:
    """``(attribute, value)`` of the first of ``attrs`` that is a positive int in ``config``."""
    for attr in attrs:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return attr, value
    return None


def layer_count(config: Any) -> tuple[str, int]:
    """Return ``(attribute name, value)`` of the config's encoder depth.

    :raises StageError: when none of :data:`LAYER_COUNT_ATTRS` is a positive integer.
    """
    found = config_int(config, LAYER_COUNT_ATTRS)
    if found is None:
        raise StageError(
            f"{type(config).__name__} has no layer count",
            expected=f"one of the config attributes {list(LAYER_COUNT_ATTRS)}",
        )
    return found


def find_layer_list(model: "nn.Module") -> LayerList:
    """Find the encoder's layer list in ``model``.

    :param model: a Hugging Face model with a ``config``.
    :returns: the :class:`LayerList`: the outermost ``nn.ModuleList`` of ``L`` same-typed
        modules, ``L`` read from the config (names ending in ``layer``/``layers`` win ties).
    :raises StageError: naming the model class when the config has no layer count, or no
        (or more than one) matching module list exists.
    """
    from torch import nn

    cls = type(model).__name__
    config = getattr(model, "config", None)
    if config is None:
        raise StageError(f"{cls} has no config; cannot tell how many layers it has")
    attr, count = layer_count(config)
    candidates: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != count:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        if any(name.startswith(c + ".") for c in candidates):
            continue  # nested inside a list already found
        candidates.append(name)
    if len(candidates) > 1:
        named = [c for c in candidates if c.rsplit(".", 1)[-1] in _LAYER_LIST_NAMES]
        if len(named) == 1:
            candidates = named
    if not candidates:
        raise StageError(
            f"cannot find the encoder layers of {cls}: no torch.nn.ModuleList of "
            f"{count} same-typed layers ({attr}={count})",
            hint="this architecture is not supported yet (compressor.architecture)",
        )
    if len(candidates) > 1:
        raise StageError(
            f"cannot tell which module list of {cls} holds the encoder layers: {candidates}",
            hint="this architecture is not supported yet (compressor.architecture)",
        )
    return LayerList(path=candidates[0], count=count, config_attr=attr)


@dataclass(frozen=True)
class EncoderLayout:
    """Where the parts of each encoder layer live (relative names are the same in every layer).

    :param model_class: the model's class name (for messages).
    :param model_type: ``config.model_type`` (``"bert"``, ``"deberta-v2"``...).
    :param layers: the :class:`LayerList`.
    :param query: relative name of the query projection inside a layer.
    :param key: relative name of the key projection.
    :param value: relative name of the value projection.
    :param attn_output: relative name of the attention output projection
        (``heads * head_size -> hidden``).
    :param extra_head_projections: relative names of further per-head projections
        (DeBERTa-v2's ``pos_key_proj``/``pos_query_proj``), pruned with the heads.
    :param attention_module: relative name of the module holding the head-count attribute.
    :param ffn_intermediate: relative name of the FFN's first Linear (``hidden -> I``).
    :param ffn_output: relative name of the FFN's second Linear (``I -> hidden``).
    :param num_heads: heads per layer in the config (before any pruning).
    :param head_size: features per head.
    :param hidden_size: model width.
    :param intermediate_size: FFN width in the config (before any pruning).
    """

    model_class: str
    model_type: str
    layers: LayerList
    query: str
    key: str
    value: str
    attn_output: str
    attention_module: str
    ffn_intermediate: str
    ffn_output: str
    num_heads: int
    head_size: int
    hidden_size: int
    intermediate_size: int
    extra_head_projections: tuple[str, ...] = field(default=())

    @property
    def head_projections(self) -> tuple[str, ...]:
        """Relative names of every projection whose output features are grouped by head."""
        return (self.query, self.key, self.value, *self.extra_head_projections)


def get_module(root: "nn.Module", path: str) -> "nn.Module":
    """``root.get_submodule(path)`` (``""`` is ``root``)."""
    return root.get_submodule(path) if path else root


def set_module(root: "nn.Module", path: str, module: "nn.Module") -> None:
    """Replace the submodule at dotted ``path`` of ``root`` by ``module``."""
    parent, _, name = path.rpartition(".")
    setattr(get_module(root, parent), name, module)


def encoder_layout(model: "nn.Module") -> EncoderLayout:
    """Find the layer list and, inside the layers, the attention and FFN Linear modules.

    :param model: a Hugging Face encoder (base model or with a task head).
    :returns: the :class:`EncoderLayout`.
    :raises StageError: naming the model class and the missing parts when the layer list,
        the config's head count or hidden size, or a projection is not found (the message
        lists the Linear modules found in layer 0).
    """
    from torch import nn

    cls = type(model).__name__
    layers = find_layer_list(model)
    config = model.config
    heads = config_int(config, HEAD_COUNT_ATTRS)
    hidden = config_int(config, HIDDEN_SIZE_ATTRS)
    inter = config_int(config, INTERMEDIATE_SIZE_ATTRS)
    missing_cfg = [
        what
        for what, value, attrs in (
            ("head count", heads, HEAD_COUNT_ATTRS),
            ("hidden size", hidden, HIDDEN_SIZE_ATTRS),
            ("FFN width", inter, INTERMEDIATE_SIZE_ATTRS),
        )
        if value is None
    ]
    if missing_cfg:
        raise StageError(
            f"{cls} ({getattr(config, 'model_type', '?')}): the config has no "
            f"{', '.join(missing_cfg)}",
            expected=f"config attributes among {list(HEAD_COUNT_ATTRS + HIDDEN_SIZE_ATTRS + INTERMEDIATE_SIZE_ATTRS)}",
            hint="this architecture is not supported yet (compressor.architecture)",
        )
    layer0 = get_module(model, layers.path)[0]
    linears = {n: m for n, m in layer0.named_modules() if isinstance(m, nn.Linear)}
    parts: dict[str, str] = {}
    for role, names in (*ATTENTION_NAMES.items(), *(("ffn_" + k, v) for k, v in FFN_NAMES.items())):
        hit = next((n for n in names if n in linears), None)
        if hit is not None:
            parts[role] = hit
    missing = [r for r in ("query", "key", "value", "output", "ffn_intermediate", "ffn_output") if r not in parts]
    if missing:
        raise StageError(
            f"{cls} ({getattr(config, 'model_type', '?')}) is not a supported encoder: no "
            f"{', '.join(missing)} Linear found in its layers (Linear modules of layer 0: "
            f"{sorted(linears)})",
            hint="supported: BERT, RoBERTa, XLM-R, ELECTRA, MPNet, DistilBERT, DeBERTa-v2 "
            "(see compressor.architecture)",
        )
    attention_module = parts["query"].rpartition(".")[0]
    extra = tuple(
        f"{attention_module}.{n}" for n in EXTRA_HEAD_PROJECTIONS if f"{attention_module}.{n}" in linears
    )
    head_size = getattr(config, "attention_head_size", None)
    if not isinstance(head_size, int) or head_size <= 0:
        head_size = hidden[1] // heads[1]
    return EncoderLayout(
        model_class=cls,
        model_type=str(getattr(config, "model_type", "")),
        layers=layers,
        query=parts["query"],
        key=parts["key"],
        value=parts["value"],
        attn_output=parts["output"],
        attention_module=attention_module,
        ffn_intermediate=parts["ffn_intermediate"],
        ffn_output=parts["ffn_output"],
        num_heads=heads[1],
        head_size=head_size,
        hidden_size=hidden[1],
        intermediate_size=inter[1],
        extra_head_projections=extra,
    )


def layer_modules(model: "nn.Module", layout: EncoderLayout) -> list["nn.Module"]:
    """The encoder layers of ``model`` as a list (layer ``i`` at index ``i``)."""
    return list(get_module(model, layout.layers.path))


def layer_path(layout: EncoderLayout, index: int, relative: str = "") -> str:
    """Dotted path of layer ``index`` (or of ``relative`` inside it) from the model root."""
    base = f"{layout.layers.path}.{index}"
    return f"{base}.{relative}" if relative else base


def head_counts(model: "nn.Module", layout: EncoderLayout | None = None) -> list[int]:
    """Current number of attention heads of each layer.

    Read from the query projection's output features divided by the head size, so it is
    right after any head pruning.

    :returns: one int per layer.
    """
    layout = layout or encoder_layout(model)
    return [
        get_module(layer, layout.query).out_features // layout.head_size
        for layer in layer_modules(model, layout)
    ]


def ffn_widths(model: "nn.Module", layout: EncoderLayout | None = None) -> list[int]:
    """Current FFN intermediate width (neurons) of each layer."""
    layout = layout or encoder_layout(model)
    return [get_module(layer, layout.ffn_intermediate).out_features for layer in layer_modules(model, layout)]


def original_head_indices(model: "nn.Module", layer: int, current_heads: int, num_heads: int) -> list[int]:
    """Original head indices (as in ``config.pruned_heads``) of the heads a layer still has.

    transformers numbers heads in ``prune_heads`` and ``config.pruned_heads`` by their index
    in the unpruned layer; after pruning, head ``j`` of the layer is the ``j``-th head not in
    ``config.pruned_heads[layer]``.

    :returns: ``current_heads`` indices in ``[0, num_heads)``, ascending.
    """
    pruned = set((getattr(model.config, "pruned_heads", None) or {}).get(layer, []))
    kept = [h for h in range(num_heads) if h not in pruned]
    if len(kept) != current_heads:  # heads removed without config.pruned_heads (structure file)
        return list(range(current_heads))
    return kept


def sparsity_summary(model: "nn.Module", layout: EncoderLayout | None = None) -> dict[str, Any]:
    """Zeros in the encoder layers' Linear weights, overall and per layer.

    :param model: a PyTorch encoder.
    :param layout: its layout (found when ``None``).
    :returns: ``{"linear_weights", "linear_zeros", "linear_sparsity" (fraction in [0, 1]),
        "per_layer": [fraction per layer]}``; only ``weight`` matrices of the
        :class:`~torch.nn.Linear` modules inside the encoder layers count (biases,
        embeddings, norms and the task head excluded: they are what unstructured pruning
        leaves dense).
    """
    import torch
    from torch import nn

    layout = layout or encoder_layout(model)
    per_layer: list[float] = []
    total = zeros = 0
    with torch.no_grad():
        for layer in layer_modules(model, layout):
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

    :returns: ``{"layers": L, "heads": [per layer], "heads_total", "heads_config":
        heads per layer in the config, "ffn_widths": [per layer], "ffn_config":
        intermediate size in the config, "sparsity": fraction of zeros in the encoder
        layers' Linear weights, "sparsity_per_layer": [per layer], "linear_weights":
        their element count, "zero_weights": how many are exactly zero}``.
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
    }
