"""The core's architecture adapters, registered as a plugin (``compressor.architectures.builtin``).

One small class per encoder family; the module docstring of
:mod:`compressor.architectures.adapter` says what each attribute means. The compatibility
table (docs/architectures.md) is generated from these declarations and checked by
``tests/core/test_architectures_matrix.py``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from ..errors import StageError
from ..hookspecs import hookimpl
from .adapter import ArchitectureAdapter, EncoderLayout

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


class BertAdapter(ArchitectureAdapter):
    """BERT and the families that kept its module names (``encoder.layer.N.attention.self.query``
    ...): RoBERTa, XLM-R, CamemBERT, Data2VecText, ELECTRA, ERNIE, RoFormer, Megatron-BERT,
    RemBERT, RoCBert, XLM-R XL, RoBERTa-PreLayerNorm, X-MOD, MRA, YOSO."""

    model_types = (
        "bert", "roberta", "xlm-roberta", "camembert", "data2vec-text", "electra", "ernie",
        "roformer", "megatron-bert", "rembert", "roc_bert", "xlm-roberta-xl",
        "roberta-prelayernorm", "xmod", "mra", "yoso",
    )
    family = "BERT-like"


class BigBirdAdapter(ArchitectureAdapter):
    """BigBird (Zaheer et al. 2020): BERT's modules; block-sparse attention keeps per-head
    shapes in the attention module."""

    model_types = ("big_bird",)
    family = "BigBird"


class NystromformerAdapter(ArchitectureAdapter):
    """Nystromformer: BERT's modules; a depthwise convolution over the values has one channel
    per head when ``conv_kernel_size`` is set."""

    model_types = ("nystromformer",)
    family = "Nystromformer"

    def refusals(self, config: Any) -> dict[str, str]:
        out = super().refusals(config)
        if getattr(config, "conv_kernel_size", None):
            out["heads"] = (
                "its value convolution (conv_kernel_size) has one channel per head, sized from "
                "the config for every layer"
            )
        return out


class MPNetAdapter(ArchitectureAdapter):
    """MPNet (Song et al. 2020)."""

    model_types = ("mpnet",)
    family = "MPNet"
    query, key, value = "attention.attn.q", "attention.attn.k", "attention.attn.v"
    attn_output = "attention.attn.o"
    attention_module = "attention.attn"
    refused: ClassVar[dict[str, str]] = {
        "heads": "MPNet adds one relative-position bias with a slot per head (computed once for "
        "all layers) to every layer's attention scores; removing heads breaks it. Prune FFN "
        "neurons or layers of MPNet instead.",
    }


class DistilBertAdapter(ArchitectureAdapter):
    """DistilBERT (Sanh et al. 2019): ``transformer.layer``, ``q_lin``/``ffn.lin1``, ``n_heads``."""

    model_types = ("distilbert",)
    family = "DistilBERT"
    layers = "transformer.layer"
    layer_count_attr = "n_layers"
    query, key, value = "attention.q_lin", "attention.k_lin", "attention.v_lin"
    attn_output = "attention.out_lin"
    attention_module = "attention"
    head_count_attrs = ("n_heads",)
    head_width_attrs = ("dim",)
    ffn_intermediate, ffn_output = "ffn.lin1", "ffn.lin2"
    heads_attr, hidden_attr, intermediate_attr = "n_heads", "dim", "hidden_dim"


class DebertaV2Adapter(ArchitectureAdapter):
    """DeBERTa-v2/v3 (He et al. 2021): separate projections plus per-head relative-position
    projections when ``share_att_key`` is false."""

    model_types = ("deberta-v2",)
    family = "DeBERTa-v2"
    query, key, value = "attention.self.query_proj", "attention.self.key_proj", "attention.self.value_proj"
    extra_head_projections = ("attention.self.pos_key_proj", "attention.self.pos_query_proj")


class DebertaAdapter(ArchitectureAdapter):
    """DeBERTa v1: one fused ``in_proj`` whose rows are ``[q_h k_h v_h]`` per head, plus the
    per-head ``q_bias``/``v_bias`` vectors and relative-position projections."""

    model_types = ("deberta",)
    family = "DeBERTa"
    query = key = value = None
    qkv = "attention.self.in_proj"
    qkv_layout = "per-head"
    head_vectors = ("attention.self.q_bias", "attention.self.v_bias")
    extra_head_projections = ("attention.self.pos_proj", "attention.self.pos_q_proj")

    def refusals(self, config: Any) -> dict[str, str]:
        out = super().refusals(config)
        if getattr(config, "talking_head", False):
            out["heads"] = "talking-head attention mixes all heads through head x head projections"
        return out


class ModernBertAdapter(ArchitectureAdapter):
    """ModernBERT (Warner et al. 2024): fused ``attn.Wqkv`` (``[q | k | v]`` blocks), GLU FFN
    (``mlp.Wi`` with ``2I`` rows, ``mlp.Wo``), per-layer ``layer_types``, and a layer 0
    without attention pre-norm."""

    model_types = ("modernbert",)
    family = "ModernBERT"
    layers = "layers"
    query = key = value = None
    qkv = "attn.Wqkv"
    qkv_layout = "blocks"
    attn_output = "attn.Wo"
    attention_module = "attn"
    head_count_attrs = ()
    head_width_attrs = ()
    head_size_attrs = ("head_dim",)
    ffn_intermediate, ffn_output = "mlp.Wi", "mlp.Wo"
    ffn_glu = True
    per_layer_config = ("layer_types",)

    def check_student_layers(self, config: Any, layers: list[int]) -> None:
        """ModernBERT's student must start with teacher layer 0: layer 0 has no attention
        pre-norm (its input is the normalised embedding output), so no other layer can take
        its place. Each copied layer keeps its attention type through ``layer_types``.

        :raises StageError: when ``layers`` does not start with 0.
        """
        if layers and layers[0] != 0:
            raise StageError(
                f"{type(config).__name__}: the student's first layer must be teacher layer 0, "
                f"got layers {layers}: layer 0 of this architecture has no attention pre-norm "
                "(its input is the normalised embedding output), so no other layer can take its place",
                key="layers",
                hint="start the layer list with 0 ('every-other', 'uniform' and 'first-k' all do)",
            )


class LlamaStyleAdapter(ArchitectureAdapter):
    """Encoders built from Llama-style blocks: EuroBERT (Boizard et al. 2025), GTE's new
    architecture (``gte``, Zhang et al. 2024), NomicBERT (Nussbaum et al. 2024) and
    UltraBERT (``ultrabert``).

    Each layer of ``layers`` has ``self_attn`` with separate ``q_proj``/``k_proj``/``v_proj``
    and an ``o_proj`` output, and a gated MLP ``mlp.down_proj(act(mlp.gate_proj(x)) *
    mlp.up_proj(x))`` pruned as one FFN unit (neuron ``j`` is row ``j`` of ``gate_proj`` and
    of ``up_proj`` and column ``j`` of ``down_proj``). Rotary position embeddings are computed
    once per model from the head size and are left untouched (heads keep their size). Where
    the config has fewer ``num_key_value_heads`` than heads (EuroBERT), each key/value head
    serves a group of consecutive query heads, and a head is removed with its whole group.
    The attention modules reshape by head size (``view(..., -1, head_dim)``), so they hold no
    head count to update.

    The next encoder of this shape is one registration: a subclass naming its
    ``model_types`` (and any module path that differs).
    """

    model_types = ("eurobert", "gte", "nomic_bert", "ultrabert")
    family = "Llama-style (rotary, gated MLP)"
    layers = "layers"
    query, key, value = "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"
    attn_output = "self_attn.o_proj"
    attention_module = "self_attn"
    head_count_attrs = ()
    head_width_attrs = ()
    head_size_attrs = ("head_dim",)
    ffn_intermediate, ffn_output = "mlp.up_proj", "mlp.down_proj"
    ffn_gate = "mlp.gate_proj"
    kv_heads_attr = "num_key_value_heads"
    per_layer_config = ("layer_types",)


class EsmcAdapter(LlamaStyleAdapter):
    """ESM C (EvolutionaryScale 2024), a protein language model of Llama-style blocks whose
    query and key projections are each followed by a LayerNorm over all heads together
    (``self_attn.q_norm``/``k_norm``): removing a head would change every other head's
    normalisation, so heads are refused; layers and FFN neurons are pruned as in
    :class:`LlamaStyleAdapter`."""

    model_types = ("esmc",)
    family = "ESM C (Llama-style, normalised q/k)"
    refused: ClassVar[dict[str, str]] = {
        "heads": "its query and key LayerNorms (self_attn.q_norm, k_norm) normalise all heads "
        "together, so removing a head changes the others",
    }


class JinaEmbeddingsV3Adapter(LlamaStyleAdapter):
    """Jina embeddings v3 (Sturua et al. 2024): Llama-style attention (``self_attn.q_proj``
    ... ``o_proj``, rotary) with a plain two-Linear MLP (``mlp.fc1``, ``mlp.fc2``, no gate)."""

    model_types = ("jina_embeddings_v3",)
    family = "Jina embeddings v3"
    ffn_intermediate, ffn_output = "mlp.fc1", "mlp.fc2"
    ffn_gate = None


class LiltAdapter(ArchitectureAdapter):
    """LiLT (Wang et al. 2022): BERT's text stream beside a layout stream whose attention
    (``attention.self.layout_query``/``layout_key``/``layout_value``) has per-head rows of
    ``head_size / channel_shrink_ratio`` features and shares the text stream's attention
    scores."""

    model_types = ("lilt",)
    family = "LiLT"
    refused: ClassVar[dict[str, str]] = {
        "heads": "its layout attention (layout_query/key/value) has rows per head of "
        "head_size / channel_shrink_ratio and shares the text heads' scores: head removal "
        "would have to cut it too",
    }


class LayoutLMv3Adapter(ArchitectureAdapter):
    """LayoutLMv3 (Huang et al. 2022): BERT's modules, plus 1-D and 2-D relative-position
    biases (``encoder.rel_pos_bias``, ``rel_pos_x_bias``, ``rel_pos_y_bias``) shared by every
    layer, with one output per attention head."""

    model_types = ("layoutlmv3",)
    family = "LayoutLMv3"
    refused: ClassVar[dict[str, str]] = {
        "heads": "its relative-position biases (encoder.rel_pos_bias, rel_pos_x_bias, "
        "rel_pos_y_bias) give every layer one bias per head from one shared table: removing "
        "heads from one layer would have to cut the table for that layer alone",
    }


class TapasAdapter(ArchitectureAdapter):
    """TAPAS (Herzig et al. 2020): BERT's modules; its ``token_type_ids`` carry seven
    table-structure ids per token (shape ``(batch, sequence, 7)``)."""

    model_types = ("tapas",)
    family = "TAPAS"
    refused: ClassVar[dict[str, str]] = {
        "onnx": "its token_type_ids hold seven table-structure ids per token (batch, sequence, 7): "
        "the exporter's text inputs (batch, sequence) fail to trace (checked on transformers 5.25)",
    }


class AlbertAdapter(ArchitectureAdapter):
    """ALBERT (Lan et al. 2020): one layer group whose layer runs ``num_hidden_layers`` times.

    Layers are repeats of the shared layer: a shallower model (layer dropping, a student)
    runs fewer repeats of the same weights; head and FFN pruning act on the shared layer.
    """

    model_types = ("albert",)
    family = "ALBERT"
    layers = "encoder.albert_layer_groups.0.albert_layers"
    shared_layers = True
    query, key, value = "attention.query", "attention.key", "attention.value"
    attn_output = "attention.dense"
    attention_module = "attention"
    ffn_intermediate, ffn_output = "ffn", "ffn_output"

    def refusals(self, config: Any) -> dict[str, str]:
        out = super().refusals(config)
        groups, inner = getattr(config, "num_hidden_groups", 1), getattr(config, "inner_group_num", 1)
        if groups != 1 or inner != 1:
            why = (
                f"num_hidden_groups={groups}, inner_group_num={inner}: only one shared layer "
                "(1 group of 1 layer, as every released ALBERT) is supported"
            )
            out.update({"layers": why, "heads": why, "ffn": why, "weights": why})
        return out


class LongformerAdapter(ArchitectureAdapter):
    """Longformer (Beltagy et al. 2020): BERT's modules plus global-attention projections;
    ``attention_window`` may list one window per layer."""

    model_types = ("longformer",)
    family = "Longformer"
    extra_head_projections = (
        "attention.self.query_global", "attention.self.key_global", "attention.self.value_global",
    )
    head_count_attrs = ("num_heads",)
    head_width_attrs = ()
    per_layer_config = ("attention_window",)
    refused: ClassVar[dict[str, str]] = {
        "heads": "Longformer's attention reshapes its output to the input width (embed_dim), "
        "so a layer cannot have fewer heads than hidden_size / head_dim",
        "onnx": "torch.onnx exports neither its traced sliding-window attention (the graph "
        "fails at other sequence lengths) nor through torch.export (data-dependent shapes)",
    }


class MobileBertAdapter(ArchitectureAdapter):
    """MobileBERT (Sun et al. 2020): attention on the bottleneck width (``true_hidden_size``,
    head size ``true_hidden_size / heads``), ``num_feedforward_networks`` stacked FFNs per
    layer (``intermediate``/``output`` then ``ffn.N``), all pruned as FFNs."""

    model_types = ("mobilebert",)
    family = "MobileBERT"

    def layout(self, model: "nn.Module") -> EncoderLayout:
        layout = super().layout(model)
        n = int(getattr(model.config, "num_feedforward_networks", 1) or 1)
        extra = tuple((f"ffn.{i}.intermediate.dense", f"ffn.{i}.output.dense") for i in range(n - 1))
        return dataclasses.replace(layout, extra_ffns=extra)


class FNetAdapter(ArchitectureAdapter):
    """FNet (Lee-Thorp et al. 2022): token mixing by a Fourier transform, no attention."""

    model_types = ("fnet",)
    family = "FNet"
    query = key = value = None
    attn_output = ""
    attention_module = ""
    refused: ClassVar[dict[str, str]] = {
        "heads": "FNet mixes tokens with a Fourier transform: it has no attention heads",
    }


class ConvBertAdapter(ArchitectureAdapter):
    """ConvBERT (Jiang et al. 2020): BERT's modules; attention heads share the layer with
    span-based dynamic convolution heads."""

    model_types = ("convbert",)
    family = "ConvBERT"
    refused: ClassVar[dict[str, str]] = {
        "heads": "its span-based dynamic convolution has kernels per head sized from the config "
        "(conv_kernel_layer), which head removal would have to cut too",
    }

    def refusals(self, config: Any) -> dict[str, str]:
        out = super().refusals(config)
        if getattr(config, "num_groups", 1) != 1:
            out["ffn"] = f"num_groups={config.num_groups}: the FFN is a grouped linear layer"
        return out


class IBertAdapter(ArchitectureAdapter):
    """I-BERT (Kim et al. 2021): BERT's layout with integer-only quantised modules
    (``QuantLinear``, not :class:`torch.nn.Linear`)."""

    model_types = ("ibert",)
    family = "I-BERT"
    _why = "its projections are I-BERT QuantLinear modules (integer-only arithmetic), not torch.nn.Linear"
    refused: ClassVar[dict[str, str]] = {"heads": _why, "ffn": _why, "weights": _why}


class SqueezeBertAdapter(ArchitectureAdapter):
    """SqueezeBERT (Iandola et al. 2020): grouped 1x1 convolutions instead of Linear layers."""

    model_types = ("squeezebert",)
    family = "SqueezeBERT"
    layers = "encoder.layers"
    query, key, value = "attention.query", "attention.key", "attention.value"
    attn_output = "post_attention.conv1d"
    attention_module = "attention"
    ffn_intermediate, ffn_output = "intermediate.conv1d", "output.conv1d"
    _why = "its projections are grouped 1x1 Conv1d modules, not torch.nn.Linear"
    refused: ClassVar[dict[str, str]] = {"heads": _why, "ffn": _why, "weights": _why}


BUILTIN_ADAPTERS: tuple[ArchitectureAdapter, ...] = (
    BertAdapter(), BigBirdAdapter(), NystromformerAdapter(), MPNetAdapter(), DistilBertAdapter(),
    DebertaV2Adapter(), DebertaAdapter(), ModernBertAdapter(), LlamaStyleAdapter(), EsmcAdapter(),
    JinaEmbeddingsV3Adapter(), LiltAdapter(), LayoutLMv3Adapter(), TapasAdapter(), AlbertAdapter(),
    LongformerAdapter(),
    MobileBertAdapter(), FNetAdapter(), ConvBertAdapter(), IBertAdapter(), SqueezeBertAdapter(),
)
"""One instance of each built-in adapter, in registration order."""


@hookimpl
def compressor_register_architectures(register: Callable[[Any], None]) -> None:
    """Register the built-in adapters (:data:`BUILTIN_ADAPTERS`)."""
    for adapter in BUILTIN_ADAPTERS:
        register(adapter)
