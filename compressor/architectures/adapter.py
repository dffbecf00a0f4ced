"""The architecture adapter: which modules of an encoder play which role.

Compression methods that change a model's shape (layer copy and dropping, head and FFN
pruning, unstructured pruning of the encoder's Linear weights) work on *roles*, not on one
architecture's attribute names. An :class:`ArchitectureAdapter` maps one model family
(matched by ``config.model_type``) onto those roles, declaratively, as optimum's
``NormalizedConfig`` and peft's target-module table do:

- the layer stack (the :class:`torch.nn.ModuleList` of layers, relative to the base model),
  and whether its layers are shared (ALBERT runs one layer group ``L`` times);
- the query/key/value projections: three Linear modules, or one fused Linear whose output
  rows hold q, k and v (:attr:`~ArchitectureAdapter.qkv`, laid out ``"blocks"``
  ``[q heads | k heads | v heads]`` as ModernBERT's ``Wqkv``, or ``"per-head"``
  ``[q0 k0 v0 | q1 k1 v1 | ...]`` as DeBERTa v1's ``in_proj``), plus per-head bias vectors
  (DeBERTa v1's ``q_bias``/``v_bias``) and further per-head projections;
- the attention output projection (its input columns are the heads' outputs);
- the FFN's input and output projections (a GLU input holds ``2 * I`` rows: ModernBERT's
  ``Wi``; a Llama-style gated MLP has a separate gate Linear, ``gate_proj``, whose ``I`` rows
  go with those of ``up_proj``), and further FFNs of the same layer (MobileBERT's stacked
  FFNs);
- heads and head size, and grouped key/value heads (EuroBERT's ``num_key_value_heads``: each
  key/value head serves a group of consecutive query heads, so heads are removed a whole
  group at a time);
- what must change in the config when layers are removed or copied (per-layer lists such as
  ModernBERT's ``layer_types`` or Longformer's ``attention_window``), and which students are
  valid (ModernBERT's starts at layer 0);
- what it cannot do, per role, with the reason (:meth:`ArchitectureAdapter.refusals`), so
  recipe validation refuses a method before any training.

Roles (:data:`ROLES`) are what strategies declare they need (``Strategy.requires_roles``);
the core knows no compression method by name.

Heavy libraries (torch) are imported inside the functions that need them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import StageError
from .families import config_size

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

ROLES: dict[str, str] = {
    "layers": "remove or copy whole encoder layers (layer dropping, a shallower student)",
    "heads": "remove attention heads (the q/k/v rows and attention-output columns of a head)",
    "ffn": "remove FFN neurons (rows of the FFN input projection, columns of its output)",
    "weights": "the encoder layers' Linear weights (unstructured pruning, sparsity summary)",
    "onnx": "export the model to ONNX with torch.onnx",
}
"""Roles an adapter maps, with what a strategy needing each does to the model."""

LAYER_COUNT_ATTRS = ("num_hidden_layers", "n_layers", "num_layers")
"""Config attributes naming the encoder depth, in the order they are looked up where
optimum's normalized config does not name it (:func:`layer_count`)."""

HEAD_COUNT_ATTRS = ("num_attention_heads", "n_heads")
"""Config attributes naming the number of attention heads per layer (where optimum's
normalized config does not name it)."""

HIDDEN_SIZE_ATTRS = ("hidden_size", "dim", "d_model")
"""Config attributes naming the hidden (model) width (where optimum's normalized config
does not name it)."""

INTERMEDIATE_SIZE_ATTRS = ("intermediate_size", "hidden_dim", "ffn_dim")
"""Config attributes naming the FFN intermediate width."""

QKV_LAYOUTS = ("blocks", "per-head")
"""Row layouts of a fused query/key/value Linear (see the module docs)."""


@dataclass(frozen=True)
class LayerList:
    """Where a model keeps its encoder layers.

    :param path: dotted module path of the :class:`~torch.nn.ModuleList` from the model root,
        e.g. ``"bert.encoder.layer"`` or ``"distilbert.transformer.layer"``.
    :param count: number of layers the model runs, ``L`` (the config's depth).
    :param config_attr: config attribute holding ``L`` (e.g. ``"num_hidden_layers"``).
    :param shared: the list holds one shared layer run ``L`` times (ALBERT), not ``L`` layers.
    """

    path: str
    count: int
    config_attr: str
    shared: bool = False


@dataclass(frozen=True)
class EncoderLayout:
    """Where the parts of each encoder layer live (relative names are the same in every layer).

    :param model_class: the model's class name (for messages).
    :param model_type: ``config.model_type`` (``"bert"``, ``"deberta-v2"``...).
    :param layers: the :class:`LayerList`.
    :param query: relative name of the query projection inside a layer (``None`` when fused).
    :param key: relative name of the key projection (``None`` when fused).
    :param value: relative name of the value projection (``None`` when fused).
    :param attn_output: relative name of the attention output projection
        (``heads * head_size -> hidden``).
    :param attention_module: relative name of the module holding the head-count attributes.
    :param ffn_intermediate: relative name of the FFN's first Linear (``hidden -> I``, or
        ``hidden -> 2I`` for a GLU).
    :param ffn_output: relative name of the FFN's second Linear (``I -> hidden``).
    :param num_heads: heads per layer in the config (before any pruning).
    :param head_size: features per head.
    :param hidden_size: model width.
    :param intermediate_size: FFN width in the config (before any pruning).
    :param extra_head_projections: relative names of further Linear modules whose output rows
        are grouped by head (DeBERTa's relative-position projections), pruned with the heads.
    :param qkv: relative name of a fused query/key/value Linear, or ``None``.
    :param qkv_layout: its row layout, one of :data:`QKV_LAYOUTS`.
    :param head_vectors: relative names of 1-D parameters of ``heads * head_size`` entries
        (DeBERTa v1's ``attention.self.q_bias``), pruned with the heads.
    :param head_count_attrs: attributes of the attention module holding its head count.
    :param head_width_attrs: attributes of the attention module holding
        ``heads * head_size``.
    :param ffn_glu: the FFN input is a GLU: rows ``[0, I)`` the values, ``[I, 2I)`` the gates.
    :param extra_ffns: ``(input, output)`` relative names of further FFNs in each layer
        (MobileBERT), pruned like the first.
    :param ffn_gate: relative name of the separate gate Linear of a gated FFN (``hidden -> I``,
        Llama-style ``mlp.gate_proj``; its rows are pruned with those of
        :attr:`ffn_intermediate`), or ``None``.
    :param num_kv_heads: key/value heads per layer in the config when they are grouped
        (fewer than :attr:`num_heads`, each serving :attr:`kv_group` consecutive query
        heads); 0 when every query head has its own key and value head.
    """

    model_class: str
    model_type: str
    layers: LayerList
    query: str | None
    key: str | None
    value: str | None
    attn_output: str
    attention_module: str
    ffn_intermediate: str
    ffn_output: str
    num_heads: int
    head_size: int
    hidden_size: int
    intermediate_size: int
    extra_head_projections: tuple[str, ...] = field(default=())
    qkv: str | None = None
    qkv_layout: str = "blocks"
    head_vectors: tuple[str, ...] = ()
    head_count_attrs: tuple[str, ...] = ("num_attention_heads", "n_heads")
    head_width_attrs: tuple[str, ...] = ("all_head_size", "dim")
    ffn_glu: bool = False
    extra_ffns: tuple[tuple[str, str], ...] = ()
    ffn_gate: str | None = None
    num_kv_heads: int = 0

    @property
    def grouped_kv(self) -> bool:
        """Whether key/value heads are shared by groups of query heads (grouped-query
        attention: :attr:`num_kv_heads` below :attr:`num_heads`)."""
        return 0 < self.num_kv_heads < self.num_heads

    @property
    def kv_group(self) -> int:
        """Query heads per key/value head (1 without grouped key/value heads)."""
        return self.num_heads // self.num_kv_heads if self.grouped_kv else 1

    @property
    def head_projections(self) -> tuple[str, ...]:
        """Relative names of the separate Linear modules whose output rows are grouped by query
        head (the fused :attr:`qkv` is not among them; nor are the key and value projections
        when they are grouped: :attr:`kv_projections`)."""
        kv = (None, None) if self.grouped_kv else (self.key, self.value)
        return tuple(p for p in (self.query, *kv, *self.extra_head_projections) if p)

    @property
    def kv_projections(self) -> tuple[str, ...]:
        """Relative names of grouped key and value projections (output rows grouped by
        key/value head); empty without grouped key/value heads."""
        return tuple(p for p in (self.key, self.value) if p) if self.grouped_kv else ()

    @property
    def ffn_units(self) -> tuple[tuple[str, str], ...]:
        """``(input, output)`` relative names of every FFN of a layer, the main one first."""
        return ((self.ffn_intermediate, self.ffn_output), *self.extra_ffns)


def config_int(config: Any, attrs: tuple[str, ...]) -> tuple[str, int] | None:
    """``(attribute, value)`` of the first of ``attrs`` that is a positive int in ``config``."""
    for attr in attrs:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return attr, value
    return None


def layer_count(config: Any) -> tuple[str, int]:
    """Return ``(attribute name, value)`` of the config's encoder depth: the attribute
    optimum's normalized config names for the model type
    (:func:`~compressor.architectures.families.config_size`), else the first of
    :data:`LAYER_COUNT_ATTRS`.

    :raises StageError: when none of them is a positive integer.
    """
    found = config_size(config, "layers", LAYER_COUNT_ATTRS)
    if found is None:
        raise StageError(
            f"{type(config).__name__} has no layer count",
            expected=f"one of the config attributes {list(LAYER_COUNT_ATTRS)}",
        )
    return found


def get_module(root: "nn.Module", path: str) -> "nn.Module":
    """``root.get_submodule(path)`` (``""`` is ``root``)."""
    return root.get_submodule(path) if path else root


def set_module(root: "nn.Module", path: str, module: "nn.Module") -> None:
    """Replace the submodule at dotted ``path`` of ``root`` by ``module``."""
    parent, _, name = path.rpartition(".")
    setattr(get_module(root, parent), name, module)


def base_model_path(model: "nn.Module") -> str:
    """Dotted path of the base model inside ``model`` (``"bert"`` in a
    ``BertForSequenceClassification``; ``""`` when ``model`` is the base model)."""
    from torch import nn

    prefix = getattr(model, "base_model_prefix", "") or ""
    if prefix and isinstance(getattr(model, prefix, None), nn.Module):
        return prefix
    return ""


class ArchitectureAdapter:
    """How one encoder family's modules map onto the roles compression methods need.

    A subclass sets class attributes; the defaults describe BERT (``encoder.layer``,
    ``attention.self.query`` ...). Relative names are dotted module paths inside one layer;
    :attr:`layers` is relative to the base model (``model.base_model``). Register instances
    through the ``compressor_register_architectures`` hook.

    :cvar model_types: ``config.model_type`` values this adapter serves (required).
    :cvar family: display name (``"BERT"``) for tables and messages.
    :cvar layers: path of the layer ModuleList inside the base model.
    :cvar layer_count_attr: config attribute holding the depth ``L``.
    :cvar shared_layers: the list holds one layer run ``L`` times (ALBERT).
    :cvar query, key, value: separate projections (``None`` when :attr:`qkv` is set).
    :cvar qkv: a fused q/k/v Linear; :cvar qkv_layout: its row layout (:data:`QKV_LAYOUTS`).
    :cvar head_vectors: per-head 1-D parameters pruned with the heads.
    :cvar extra_head_projections: further per-head Linear modules, pruned with the heads
        where a layer has them.
    :cvar attn_output: the attention output projection.
    :cvar attention_module: the module holding the head-count attributes.
    :cvar head_count_attrs, head_width_attrs: its attributes updated when heads go.
    :cvar head_size_attrs: its attributes giving the head size (else hidden / heads).
    :cvar ffn_intermediate, ffn_output: the FFN; :cvar ffn_glu: a GLU input (``2I`` rows).
    :cvar ffn_gate: a separate gate Linear of a gated FFN (Llama-style ``mlp.gate_proj``).
    :cvar kv_heads_attr: config attribute holding the key/value head count where a family
        may group them (``num_key_value_heads``); ``None``: one key/value head per query head.
    :cvar extra_ffns: further ``(input, output)`` FFN pairs of a layer.
    :cvar heads_attr, hidden_attr, intermediate_attr: config attribute names.
    :cvar per_layer_config: config attributes that may hold one entry per layer; they follow
        the kept layers when layers are removed or copied.
    :cvar refused: role -> why this family cannot support it (see :data:`ROLES`).
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    family: ClassVar[str] = ""
    layers: ClassVar[str] = "encoder.layer"
    layer_count_attr: ClassVar[str] = "num_hidden_layers"
    shared_layers: ClassVar[bool] = False
    query: ClassVar[str | None] = "attention.self.query"
    key: ClassVar[str | None] = "attention.self.key"
    value: ClassVar[str | None] = "attention.self.value"
    qkv: ClassVar[str | None] = None
    qkv_layout: ClassVar[str] = "blocks"
    head_vectors: ClassVar[tuple[str, ...]] = ()
    extra_head_projections: ClassVar[tuple[str, ...]] = ()
    attn_output: ClassVar[str] = "attention.output.dense"
    attention_module: ClassVar[str] = "attention.self"
    head_count_attrs: ClassVar[tuple[str, ...]] = ("num_attention_heads",)
    head_width_attrs: ClassVar[tuple[str, ...]] = ("all_head_size",)
    head_size_attrs: ClassVar[tuple[str, ...]] = ("attention_head_size", "head_dim")
    ffn_intermediate: ClassVar[str] = "intermediate.dense"
    ffn_output: ClassVar[str] = "output.dense"
    ffn_glu: ClassVar[bool] = False
    extra_ffns: ClassVar[tuple[tuple[str, str], ...]] = ()
    ffn_gate: ClassVar[str | None] = None
    kv_heads_attr: ClassVar[str | None] = None
    heads_attr: ClassVar[str] = "num_attention_heads"
    hidden_attr: ClassVar[str] = "hidden_size"
    intermediate_attr: ClassVar[str] = "intermediate_size"
    per_layer_config: ClassVar[tuple[str, ...]] = ()
    refused: ClassVar[dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model_types={self.model_types!r})"

    # -- what it supports ------------------------------------------------------------------

    def refusals(self, config: Any) -> dict[str, str]:
        """Roles this family cannot support for ``config``, with the reason.

        Reads the config only (no weights), so recipe validation can ask before any
        training. Override to add config-dependent refusals (call ``super()``).

        :param config: a transformers config (or any object with its attributes).
        :returns: role (a key of :data:`ROLES`) -> one-sentence reason.
        """
        return dict(self.refused)

    def refusal(self, role: str, config: Any) -> str | None:
        """Why ``role`` is refused for ``config``, or ``None`` when it is supported."""
        return self.refusals(config).get(role)

    # -- config ------------------------------------------------------------------------------

    def depth(self, config: Any) -> int:
        """The number of layers the model runs, ``L``.

        :raises StageError: when the config has no positive int :attr:`layer_count_attr`.
        """
        found = config_int(config, (self.layer_count_attr,))
        if found is None:
            raise StageError(f"{type(config).__name__} has no layer count {self.layer_count_attr!r}")
        return found[1]

    def keep_layers(self, config: Any, kept: list[int]) -> None:
        """Update ``config`` in place for a model that keeps only layers ``kept`` (original
        indices, ascending): the depth, and each :attr:`per_layer_config` list of ``L``
        entries (lists of another length and scalars are left alone).
        """
        n = self.depth(config)
        setattr(config, self.layer_count_attr, len(kept))
        for attr in self.per_layer_config:
            value = getattr(config, attr, None)
            if isinstance(value, (list, tuple)) and len(value) == n:
                setattr(config, attr, type(value)(value[i] for i in kept))

    def check_student_layers(self, config: Any, layers: list[int]) -> None:
        """Refuse a choice of teacher layers this family cannot start a student from.

        :param config: the teacher's config.
        :param layers: teacher layer indices, one per student layer.
        :raises StageError: when the choice is invalid (the default accepts any).
        """

    # -- modules -----------------------------------------------------------------------------

    def layer_list(self, model: "nn.Module") -> LayerList:
        """The :class:`LayerList` of ``model``.

        :raises StageError: naming the model class when the list is not where this adapter
            says, or its length is not the config's depth.
        """
        from torch import nn

        base = base_model_path(model)
        path = f"{base}.{self.layers}" if base else self.layers
        try:
            found = get_module(model, path)
        except AttributeError:
            found = None
        cls = type(model).__name__
        if not isinstance(found, nn.ModuleList):
            raise StageError(
                f"{cls}: no layer list at {path!r} ({type(self).__name__} expects one)",
                hint="the model's modules differ from its model_type's; is config.model_type right?",
            )
        count = self.depth(model.config)
        if not self.shared_layers and len(found) != count:
            raise StageError(
                f"{cls}: {path!r} holds {len(found)} layers but "
                f"{self.layer_count_attr}={count}"
            )
        return LayerList(path=path, count=count, config_attr=self.layer_count_attr, shared=self.shared_layers)

    def head_size(self, config: Any, attention: "nn.Module") -> int:
        """Features per head: from the attention module (:attr:`head_size_attrs`), else
        ``hidden / heads`` of the config."""
        for attr in self.head_size_attrs:
            value = getattr(attention, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return int(getattr(config, self.hidden_attr)) // int(getattr(config, self.heads_attr))

    def layout(self, model: "nn.Module") -> EncoderLayout:
        """Where the parts of each layer of ``model`` live.

        :raises StageError: naming the model class and the missing parts when a module this
            adapter names is not in layer 0, or the config lacks a size.
        """
        layers = self.layer_list(model)
        config = model.config
        cls = type(model).__name__
        has_attention = bool(self.attn_output)
        sizes = {"head count": 0}
        for what, attr in (("head count", self.heads_attr), ("hidden size", self.hidden_attr),
                           ("FFN width", self.intermediate_attr)):
            if what == "head count" and not has_attention:
                continue
            found = config_int(config, (attr,))
            if found is None:
                raise StageError(f"{cls} ({getattr(config, 'model_type', '?')}): the config has no {what} {attr!r}")
            sizes[what] = found[1]
        layer0 = get_module(model, layers.path)[0]
        names = dict(layer0.named_modules())
        params = dict(layer0.named_parameters())
        wanted = [p for p in (self.query, self.key, self.value, self.qkv, self.attn_output,
                              self.attention_module, self.ffn_intermediate, self.ffn_output,
                              self.ffn_gate) if p]
        wanted += [p for pair in self.extra_ffns for p in pair]
        missing = [p for p in wanted if p not in names]
        missing += [p for p in self.head_vectors if p not in params]
        if missing:
            raise StageError(
                f"{cls} ({getattr(config, 'model_type', '?')}): {type(self).__name__} names "
                f"{missing} in its layers, which are not there",
                hint="the model's modules differ from its model_type's adapter",
            )
        attention = names[self.attention_module] if has_attention else None
        extra = tuple(p for p in self.extra_head_projections if p in names)
        kv_heads = self.kv_heads(config) if has_attention else 0
        return EncoderLayout(
            model_class=cls,
            model_type=str(getattr(config, "model_type", "")),
            layers=layers,
            query=self.query,
            key=self.key,
            value=self.value,
            attn_output=self.attn_output,
            attention_module=self.attention_module,
            ffn_intermediate=self.ffn_intermediate,
            ffn_output=self.ffn_output,
            num_heads=sizes["head count"],
            head_size=self.head_size(config, attention) if attention is not None else 0,
            hidden_size=sizes["hidden size"],
            intermediate_size=sizes["FFN width"],
            extra_head_projections=extra,
            qkv=self.qkv,
            qkv_layout=self.qkv_layout,
            head_vectors=self.head_vectors,
            head_count_attrs=self.head_count_attrs,
            head_width_attrs=self.head_width_attrs,
            ffn_glu=self.ffn_glu,
            extra_ffns=self.extra_ffns,
            ffn_gate=self.ffn_gate,
            num_kv_heads=kv_heads,
        )

    def kv_heads(self, config: Any) -> int:
        """Key/value heads per layer when the config groups them (fewer than the query
        heads), else 0.

        :raises StageError: when the config's key/value head count does not divide its head
            count (no grouping of query heads is possible).
        """
        if not self.kv_heads_attr:
            return 0
        found = config_int(config, (self.kv_heads_attr,))
        heads = config_int(config, (self.heads_attr,))
        if found is None or heads is None or found[1] >= heads[1]:
            return 0
        if heads[1] % found[1]:
            raise StageError(
                f"{type(config).__name__}: {self.heads_attr}={heads[1]} is not a multiple of "
                f"{self.kv_heads_attr}={found[1]}: query heads cannot be grouped by key/value head"
            )
        return found[1]


class NameMatchingAdapter(ArchitectureAdapter):
    """Fallback for a ``model_type`` no adapter claims: BERT-like naming, found by matching.

    The layer list is the outermost :class:`torch.nn.ModuleList` of ``L`` same-typed modules
    (``L`` from the config); inside a layer, the parts are matched against the module names
    of the BERT, MPNet, DistilBERT and DeBERTa-v2 families (:data:`ATTENTION_NAMES`,
    :data:`FFN_NAMES`). Refuses nothing up front (it cannot know before seeing the modules);
    a model whose parts are not found fails with a :class:`StageError` when a method runs.
    Not registered: :func:`compressor.architectures.adapter_for` returns it for unknown types.
    """

    family = "other (BERT-like names, matched)"
    _LAYER_LIST_NAMES = {"layer", "layers", "h", "block", "blocks"}

    ATTENTION_NAMES: ClassVar[dict[str, tuple[str, ...]]] = {
        "query": ("attention.self.query", "attention.attn.q", "attention.q_lin", "attention.self.query_proj"),
        "key": ("attention.self.key", "attention.attn.k", "attention.k_lin", "attention.self.key_proj"),
        "value": ("attention.self.value", "attention.attn.v", "attention.v_lin", "attention.self.value_proj"),
        "output": ("attention.output.dense", "attention.attn.o", "attention.out_lin"),
    }
    FFN_NAMES: ClassVar[dict[str, tuple[str, ...]]] = {
        "intermediate": ("intermediate.dense", "ffn.lin1"),
        "output": ("output.dense", "ffn.lin2"),
    }
    EXTRA_HEAD_PROJECTIONS: ClassVar[tuple[str, ...]] = ("pos_key_proj", "pos_query_proj")

    def layer_list(self, model: "nn.Module") -> LayerList:
        """The outermost ModuleList of ``L`` same-typed modules (names ending in ``layer`` or
        ``layers`` win ties).

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
            named = [c for c in candidates if c.rsplit(".", 1)[-1] in self._LAYER_LIST_NAMES]
            if len(named) == 1:
                candidates = named
        hint = "this architecture is not supported yet: register an adapter (docs/architectures.md)"
        if not candidates:
            raise StageError(
                f"cannot find the encoder layers of {cls}: no torch.nn.ModuleList of "
                f"{count} same-typed layers ({attr}={count})",
                hint=hint,
            )
        if len(candidates) > 1:
            raise StageError(
                f"cannot tell which module list of {cls} holds the encoder layers: {candidates}",
                hint=hint,
            )
        return LayerList(path=candidates[0], count=count, config_attr=attr)

    def depth(self, config: Any) -> int:
        return layer_count(config)[1]

    def keep_layers(self, config: Any, kept: list[int]) -> None:
        attr, n = layer_count(config)
        setattr(config, attr, len(kept))
        value = getattr(config, "layer_types", None)
        if isinstance(value, (list, tuple)) and len(value) == n:
            config.layer_types = [value[i] for i in kept]

    def layout(self, model: "nn.Module") -> EncoderLayout:
        from torch import nn

        cls = type(model).__name__
        layers = self.layer_list(model)
        config = model.config
        # optimum names the head count and width of the model types it covers; the tables
        # answer for the others, and for the FFN width (optimum does not name it)
        heads = config_size(config, "heads", HEAD_COUNT_ATTRS)
        hidden = config_size(config, "hidden", HIDDEN_SIZE_ATTRS)
        inter = config_int(config, INTERMEDIATE_SIZE_ATTRS)
        missing_cfg = [
            what
            for what, value in (("head count", heads), ("hidden size", hidden), ("FFN width", inter))
            if value is None
        ]
        if missing_cfg:
            raise StageError(
                f"{cls} ({getattr(config, 'model_type', '?')}): the config has no "
                f"{', '.join(missing_cfg)}",
                expected=f"config attributes among {list(HEAD_COUNT_ATTRS + HIDDEN_SIZE_ATTRS + INTERMEDIATE_SIZE_ATTRS)}",
                hint="this architecture is not supported yet: register an adapter (docs/architectures.md)",
            )
        layer0 = get_module(model, layers.path)[0]
        linears = {n: m for n, m in layer0.named_modules() if isinstance(m, nn.Linear)}
        parts: dict[str, str] = {}
        for role, names in (*self.ATTENTION_NAMES.items(), *(("ffn_" + k, v) for k, v in self.FFN_NAMES.items())):
            hit = next((n for n in names if n in linears), None)
            if hit is not None:
                parts[role] = hit
        missing = [r for r in ("query", "key", "value", "output", "ffn_intermediate", "ffn_output") if r not in parts]
        if missing:
            raise StageError(
                f"{cls} ({getattr(config, 'model_type', '?')}) is not a supported encoder: no "
                f"{', '.join(missing)} Linear found in its layers (Linear modules of layer 0: "
                f"{sorted(linears)})",
                hint="no adapter claims this model_type and its names are not BERT-like: "
                "register an adapter (docs/architectures.md lists the supported ones)",
            )
        attention_module = parts["query"].rpartition(".")[0]
        extra = tuple(
            f"{attention_module}.{n}" for n in self.EXTRA_HEAD_PROJECTIONS if f"{attention_module}.{n}" in linears
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
