"""Accuracy-controlled int8: keep the most sensitive node groups of an encoder in float until
the paired bootstrap bound of the int8 loss is at or above ``-max_loss``.

What it does, for one float ONNX graph about to be quantised (after export, optimisation and
ONNX Runtime's pre-processing) and one way to quantise it (``quantize(nodes_to_exclude,
out_file)``, dynamic or static alike):

1. **Groups** (:func:`node_groups`). The quantisable nodes are grouped per encoder layer:
   ``qkv`` (the query/key/value projections and the attention products, or the fused
   ``Attention`` node), ``attention_output``, ``ffn_in`` (intermediate), ``ffn_out`` (output
   dense), plus ``embeddings`` (the ``Gather`` lookups) and ``head`` (pooler and classifier).
   Names come from the node names torch.onnx writes (``/bert/encoder/layer.3/output/dense/
   MatMul``, ``/model/layers.0/mlp/Wo/MatMul``), from the dynamo exporter's module scopes
   (``pkg.torch.onnx.name_scopes``) or from weight names; where a node has none (ONNX Runtime's
   fused ``Attention_0``), its layer comes from graph position (the first named node
   downstream) and its kind from its operator or its place among the layer's weighted nodes.
2. **Check** the all-int8 graph: when its bound already holds, nothing is kept in float.
3. **Rank** the groups, as NNCF's ``quantize_with_accuracy_control`` does (its
   ``LogitsBasedRanker``, after OpenVINO POT's AccuracyAwareQuantization): on the
   ``ranking_subset_size`` validation examples whose outputs deviate most from fp32 under
   all-int8 (NNCF's ``select_subset``; POT's default subset is 300), each group alone is
   kept in float and the remaining deviation is measured; the group whose reversion leaves
   the smallest deviation is the most sensitive. Why this measure:

   - *keep one group in float* rather than *quantise one group only*: the search that
     follows reverts groups from the all-int8 graph, so the question it needs answered is
     "what does reverting this group buy, everything else quantised", interactions
     included; a group measured alone on a float graph answers another question;
   - *output deviation* (normalised MSE, NNCF's ``normalized_mse``) rather than the metric
     on the subset: it is continuous (on a few hundred examples most groups would tie on a
     whole number of flipped predictions), needs no labels, and reads any task's outputs
     (logits, start/end logits, per-token tags, embeddings).
4. **Search**: groups are kept in float one at a time, in rank order, each time
   re-quantising and scoring the whole validation split, until the lower bound of the paired
   bootstrap interval of (int8 - input) on the task's headline metric, in points, is at or
   above ``-max_loss`` (``confidence=None``: the point difference, labelled as such). Intel
   Neural Compressor's accuracy-aware tuning also falls operators back to fp32 until its
   ``tolerable_loss`` holds, and on BERT its fallbacks land on the FFN output projection
   (``Intel/bert-base-uncased-mrpc-int8-static`` keeps only ``layer.9.output.dense`` in
   fp32), where Bondarenko et al. (EMNLP 2021, "Understanding and Overcoming the Challenges
   of Efficient Transformer Quantization") found structured activation outliers.

   Unlike NNCF and Intel Neural Compressor, the acceptance test is the bound of the paired
   bootstrap (Koehn 2004; the evaluator's :func:`compressor.evaluate.stats.paired_bootstrap`,
   passed in as ``bootstrap``), not a point value. Groups are not re-ranked between steps as
   NNCF does after a step that made things worse (each re-ranking costs one quantisation per
   remaining group). The bound is checked after every step on the same examples, so the
   interval's coverage holds per look, not for the search as a whole; the test split, which
   nothing here reads, gives the figure of the chosen graph.

Which examples decide: the bound is computed on the *whole* validation split, the ranking
subset included. The ranking reads outputs only (no label), and only orders the groups;
acceptance is decided by the bound on every example, so holding the ranking examples out would
widen the interval (fewer examples) and keep more groups in float for no protection the design
lacks: choices are made on the validation split, and the test split, which nothing here reads,
gives the unbiased figure of the chosen model (DESIGN.md, "Accepting a compressed model").

The all-float graph is never a result: keeping every group in float reproduces the input, whose
paired difference is identically zero, so it would "pass" while certifying nothing about int8.
When no graph with at least one quantised group passes, the record says so
(:attr:`AccuracyControlResult.certified` false, :attr:`~AccuracyControlResult.reason`), and
:meth:`AccuracyControlResult.raise_if_uncertified` raises :class:`compressor.errors.StageError`
(exit status 2).

Entry point: :func:`accuracy_controlled_int8`; scoring through the core's ONNX Runtime backend
and the task's own per-example statistics: :class:`OnnxTaskScorer`.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from compressor.errors import StageError

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

    from compressor.task import TaskData
    from compressor.tasks.base import Metric, Scored

#: Group kinds, in the order groups are listed within a layer.
LAYER_KINDS = ("qkv", "attention_output", "ffn_in", "ffn_out", "other")

#: Operator types whose nodes carry a layer's weights (position fallback, kinds by order).
WEIGHTED_OPS = frozenset({"MatMul", "Gemm", "Attention", "MultiHeadAttention", "Conv", "FusedMatMul"})

# Tokens of node paths (lower case, split on . / _ : - and spaces).
_LAYER_WORDS = frozenset({"layer", "layers", "block", "blocks", "h"})
_EMBEDDING_WORDS = frozenset({"embeddings", "embedding", "embed", "embeddinglayernorm", "wte", "wpe"})
_HEAD_WORDS = frozenset({"pooler", "classifier", "qa", "head", "lm", "cls", "predictions", "score"})
_ATTENTION_WORDS = frozenset({"attention", "attn", "self", "selfattention", "mha", "sa"})
_ATTENTION_OUT_WORDS = frozenset({"output", "o", "wo", "out", "dense", "layernorm"})
_FFN_OUT_WORDS = frozenset({"output", "wo", "lin2", "fc2", "down"})
_FFN_IN_WORDS = frozenset({"intermediate", "wi", "lin1", "fc1", "up", "gate", "ffn", "mlp", "feed"})
_SPLIT = re.compile(r"[./_:\-\s]+")


@dataclass(frozen=True)
class NodeGroup:
    """Nodes of the graph that are kept in float together.

    :param name: ``"embeddings"``, ``"layer.<i>.<kind>"``, ``"head"``, ``"other"`` or, in a
        graph with no layer to be found, ``"node:<node name>"``.
    :param kind: ``"embeddings"``, one of :data:`LAYER_KINDS`, ``"head"`` or ``"node"``.
    :param layer: the 0-based encoder layer, or ``None`` outside the layers.
    :param nodes: the graph's node names, in graph order.
    :param aliases: the names ONNX Runtime's dynamic quantisation gives the group's ``Gemm``
        nodes when it rewrites them into ``MatMul`` (``<name>_MatMul``, ``<name>_Transpose``)
        before reading ``nodes_to_exclude``.
    """

    name: str
    kind: str
    layer: int | None
    nodes: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    @property
    def nodes_to_exclude(self) -> list[str]:
        """What to give ONNX Runtime's ``nodes_to_exclude``: :attr:`nodes` and
        :attr:`aliases` (it ignores names no node has)."""
        return [*self.nodes, *self.aliases]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "layer": self.layer, "nodes": list(self.nodes)}


# --- grouping ------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return [t for t in _SPLIT.split(text.lower()) if t]


def _scope_path(node: Any) -> str | None:
    """The innermost module path the dynamo exporter recorded (``pkg.torch.onnx.name_scopes``:
    ``['', 'bert', ..., 'bert.encoder.layer.0.output.dense', 'linear_5']``), if any."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(scopes, list) and len(scopes) >= 2:
                return str(scopes[-2])
    return None


def _layer_of(tokens: Sequence[str]) -> tuple[int | None, list[str]]:
    """``(layer index, tokens after it)`` from a token list: ``layer 3`` / ``layers 3``."""
    for i in range(len(tokens) - 1):
        if tokens[i] in _LAYER_WORDS and tokens[i + 1].isdigit():
            return int(tokens[i + 1]), list(tokens[i + 2:])
    return None, list(tokens)


def _kind_in_layer(tokens: Sequence[str]) -> str | None:
    """The group kind of a node inside a layer from the tokens after the layer index."""
    words = set(tokens)
    if words & _ATTENTION_WORDS:
        # a post-LN layer norm after attention (BERT's attention.output.LayerNorm, MPNet's
        # attention.LayerNorm, DistilBERT's sa_layer_norm) goes with the output projection; a
        # pre-LN one (ModernBERT's attn_norm) with q/k/v
        post_norm = "layernorm" in words or {"sa", "norm"} <= words
        return "attention_output" if words & _ATTENTION_OUT_WORDS or post_norm else "qkv"
    if words & _FFN_OUT_WORDS:
        return "ffn_out"
    if words & _FFN_IN_WORDS:
        return "ffn_in"
    return None


@dataclass
class _Node:
    index: int
    name: str
    op_type: str
    weighted: bool
    layer: int | None = None
    kind: str | None = None  # "embeddings", "head", a layer kind, or None (unknown yet)


def _float_types(model: Any) -> dict[str, bool]:
    """Tensor name -> whether its element type is floating point, where the graph says or
    ONNX's shape inference finds out (a graph not run through ONNX Runtime's symbolic shape
    inference carries no types: shape arithmetic is then told apart by inference)."""
    import onnx
    from onnx import TensorProto

    if not model.graph.value_info:
        # a help here, not a requirement: without types every node of the wanted kinds counts
        with contextlib.suppress(Exception):
            model = onnx.shape_inference.infer_shapes(model)
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    out: dict[str, bool] = {}
    for vi in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            out[vi.name] = vi.type.tensor_type.elem_type in floats
    for init in model.graph.initializer:
        out[init.name] = init.data_type in floats
    return out


def node_groups(graph: "Path | str | Any", op_types: Iterable[str]) -> list[NodeGroup]:
    """Group the nodes of ``graph`` that ONNX Runtime may quantise.

    A node belongs to a group when its operator is in ``op_types`` (``Gemm`` counts when
    ``MatMul`` does: dynamic quantisation rewrites it into one), it has a name (ONNX
    Runtime's ``nodes_to_exclude`` matches names) and its data input is not known to be an
    integer tensor (shape arithmetic is never quantised).

    Where it goes, first rule that applies:

    - its *names*: the dynamo exporter's module scope, else the node name, then (when these
      give no kind) the names of its initializer inputs; tokens split on ``. / _ : -``.
      ``layer.N`` / ``layers.N`` give the layer; inside a layer the words after it give the
      kind (attention words with ``output``/``o``/``Wo``/``out``/``dense``:
      ``attention_output``, other attention words: ``qkv``; ``output``/``Wo``/``lin2``/
      ``fc2``/``down``: ``ffn_out``; ``intermediate``/``Wi``/``lin1``/``fc1``/``up``/
      ``ffn``/``mlp``: ``ffn_in``); outside a layer, ``embeddings``-like words give
      ``embeddings`` and ``pooler``/``classifier``/``qa_outputs``/``head`` give ``head``;
    - its *operator*: a fused ``Attention`` / ``MultiHeadAttention`` is ``qkv``, an
      ``EmbedLayerNormalization`` is ``embeddings``;
    - a ``Gather`` of a weight table outside the layers is ``embeddings`` (MPNet's
      ``relative_attention_bias``);
    - *graph position*, for a node with no layer in its names: after the last node named
      with a layer, the head; a ``Gather`` before the first one, embeddings; otherwise the
      layer, and when it has none the kind, of the first node named with a layer downstream
      (ONNX Runtime's ``Attention_0`` feeds ``layer.0/attention/output/dense``; a ``MatMul_7``
      feeds its bias ``Add`` ``layer.1/output/dense/Add``), else upstream. In a layer none of
      whose weighted nodes got a kind so (names like ``layer.1/MatMul_3``), kinds go by
      order: the last three weighted nodes are attention output, FFN in and FFN out, those
      before them q/k/v (a standard post- or pre-LN encoder layer);
    - anything else inside a layer is ``layer.N.other``, outside ``other``. When no node has
      a layer at all, every node is its own group ``node:<name>``.

    :param graph: an ONNX file or a loaded ``onnx.ModelProto`` (external data is not read).
    :param op_types: the operator types the quantiser is given (``op_types_to_quantize``).
    :returns: groups with at least one node: ``embeddings``, then each layer's ``qkv``,
        ``attention_output``, ``ffn_in``, ``ffn_out``, ``other`` by layer index, then
        ``head`` and ``other``.
    """
    import onnx

    model = graph if hasattr(graph, "graph") else onnx.load(str(graph), load_external_data=False)
    wanted = set(op_types)
    if "MatMul" in wanted:
        wanted.add("Gemm")
    floats = _float_types(model)
    initializers = {i.name for i in model.graph.initializer}
    all_nodes = list(model.graph.node)
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(all_nodes):
        for t in n.output:
            producer[t] = i
        for t in n.input:
            consumers.setdefault(t, []).append(i)

    named: dict[int, tuple[int, list[str]]] = {}  # node index -> (layer, tokens after it)
    for i, n in enumerate(all_nodes):
        layer, rest = _layer_of(_tokens(_scope_path(n) or n.name))
        if layer is not None:
            named[i] = (layer, rest)

    nodes: list[_Node] = []
    for i, n in enumerate(all_nodes):
        if n.op_type not in wanted or not n.name:
            continue
        if n.input and floats.get(n.input[0]) is False:
            continue
        weights = [t for t in n.input if t in initializers]
        fused = n.op_type in ("Attention", "MultiHeadAttention")
        node = _Node(i, n.name, n.op_type, weighted=fused or (n.op_type in WEIGHTED_OPS and bool(weights)))
        for path in (_scope_path(n) or n.name, *weights):
            tokens = _tokens(path)
            layer, rest = _layer_of(tokens)
            if layer is not None:
                node.layer = node.layer if node.layer is not None else layer
                kind = _kind_in_layer(rest)
                if kind is not None:
                    node.kind = kind
                    break
            elif node.layer is None and set(tokens) & _EMBEDDING_WORDS:
                node.kind = "embeddings"
                break
            elif node.layer is None and set(tokens) & _HEAD_WORDS:
                node.kind = "head"
                break
        if node.kind is None and fused:
            node.kind = "qkv"
        if node.kind is None and n.op_type == "EmbedLayerNormalization":
            node.kind = "embeddings"
        if node.layer is None and node.kind is None and n.op_type == "Gather" and n.input and n.input[0] in initializers:
            node.kind = "embeddings"  # a table lookup outside the layers (MPNet's relative_attention_bias)
        nodes.append(node)

    if not named:
        return [NodeGroup(f"node:{n.name}", "node", None, (n.name,), _aliases(n)) for n in nodes]

    first, last = min(named), max(named)
    for node in nodes:
        if node.layer is not None or node.kind in ("embeddings", "head"):
            continue
        if node.index > last:
            node.kind = "head"
        elif node.index < first and node.op_type == "Gather":
            node.kind = "embeddings"
        else:
            near = _nearest_named(node.index, all_nodes, producer, consumers, named)
            if near is not None:
                node.layer = near[0]
                node.kind = node.kind or _kind_in_layer(near[1])
    _kinds_by_order(nodes)

    groups: dict[tuple[int, int, int], list[_Node]] = {}
    for node in nodes:
        if node.layer is not None:
            kind = node.kind if node.kind in LAYER_KINDS else "other"
            key = (1, node.layer, LAYER_KINDS.index(kind))
        elif node.kind == "embeddings":
            key = (0, 0, 0)
        elif node.kind == "head":
            key = (2, 0, 0)
        else:
            key = (3, 0, 0)
        groups.setdefault(key, []).append(node)
    out = []
    for key in sorted(groups):
        section, layer, kind_index = key
        members = groups[key]
        names = tuple(m.name for m in members)
        aliases = tuple(a for m in members for a in _aliases(m))
        if section == 1:
            kind = LAYER_KINDS[kind_index]
            out.append(NodeGroup(f"layer.{layer}.{kind}", kind, layer, names, aliases))
        else:
            kind = ("embeddings", "", "head", "other")[section]
            out.append(NodeGroup(kind, kind, None, names, aliases))
    return out


def _aliases(node: _Node) -> tuple[str, ...]:
    """Names dynamic quantisation gives a ``Gemm`` it rewrites into ``MatMul`` (+ ``Add``,
    + ``Transpose`` of a non-constant B) before it reads ``nodes_to_exclude``
    (``ONNXModel.replace_gemm_with_matmul``, onnxruntime 1.32)."""
    return (f"{node.name}_MatMul", f"{node.name}_Transpose") if node.op_type == "Gemm" else ()


def _nearest_named(
    start: int, nodes: list[Any], producer: dict[str, int], consumers: dict[str, list[int]],
    named: dict[int, tuple[int, list[str]]], limit: int = 64,
) -> tuple[int, list[str]] | None:
    """``(layer, tokens after it)`` of the first node named with a layer downstream of
    ``start`` (breadth first, at most ``limit`` nodes), else upstream."""
    for direction in ("down", "up"):
        seen = {start}
        frontier = [start]
        while frontier and len(seen) <= limit:
            nxt = []
            for i in frontier:
                if direction == "down":
                    near = [j for t in nodes[i].output for j in consumers.get(t, [])]
                else:
                    near = [producer[t] for t in nodes[i].input if t in producer]
                for j in near:
                    if j in seen:
                        continue
                    if j in named:
                        return named[j]
                    seen.add(j)
                    nxt.append(j)
            frontier = nxt
    return None


def _kinds_by_order(nodes: list[_Node]) -> None:
    """Kinds by position for a layer whose weighted nodes got no kind from names or
    neighbours (a fused ``Attention`` aside): the last three are attention output, FFN in and
    FFN out, those before them q/k/v. A layer where some got one keeps the rest ``other``."""
    by_layer: dict[int, list[_Node]] = {}
    for node in nodes:
        if node.layer is not None and node.weighted:
            by_layer.setdefault(node.layer, []).append(node)
    for members in by_layer.values():
        if all(m.kind is not None for m in members):
            continue
        if any(m.kind is not None and m.op_type not in ("Attention", "MultiHeadAttention") for m in members):
            continue
        members.sort(key=lambda m: m.index)
        for m, kind in zip(reversed(members), ("ffn_out", "ffn_in", "attention_output")):
            if m.kind is None:
                m.kind = kind
        for m in members:
            if m.kind is None:
                m.kind = "qkv"


# --- scoring -------------------------------------------------------------------------------


class GraphScorer(Protocol):
    """What :func:`accuracy_controlled_int8` needs to measure a graph (see
    :class:`OnnxTaskScorer`, which implements it with the core's public API)."""

    #: the task's headline metric (first of ``Task.metrics``): its ``name`` and ``label``
    headline: "Metric"
    #: name of the split scored, for the record
    split_name: str

    def score(self, graph: Path) -> "Scored":
        """The task's per-unit statistics of ``graph`` on the whole split (``Task.score``)."""

    def relate(self, scored: "Scored", reference: "Scored") -> None:
        """``Task.relate``: add what compares ``scored`` with the reference (in place)."""

    def metric_matrix(self, weights: "np.ndarray", scored: "Scored") -> dict[str, "np.ndarray"]:
        """``Task.metric_matrix`` of ``scored``: ``weights (B, n)`` -> ``{metric: (B,)}``,
        as fractions (``accuracy`` 0..1); points are 100 times these."""

    def outputs(self, graph: Path, rows: Sequence[int] | None = None) -> list["np.ndarray"]:
        """Every output of ``graph`` for each row of the split (``rows``: those rows only, in
        that order): one flat float64 vector per row, padding positions dropped. The inputs
        are the rows' ``Task.plain_text`` (a pair read jointly by a task head; a bare encoder,
        the sentence-embedding task's, sees the first sentence alone)."""

    def __len__(self) -> int:
        """Rows of the split (what :meth:`outputs` indexes)."""


class PairedBootstrap(Protocol):
    """The signature of :func:`compressor.evaluate.stats.paired_bootstrap`."""

    def __call__(
        self, metric_matrix: Callable[["np.ndarray"], dict[str, "np.ndarray"]], n: int, *,
        reference_matrix: Callable[["np.ndarray"], dict[str, "np.ndarray"]] | None = None,
        resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
    ) -> dict[str, Any]: ...


class OnnxTaskScorer:
    """Scores ONNX graphs on one split of the task the way the evaluator does: the core's
    :class:`~compressor.evaluate.backends.OnnxRuntimeBackend` over
    :func:`compressor.onnx_export.session`, the task's own :meth:`Task.score` and
    :meth:`Task.metric_matrix`, its headline metric first of :meth:`Task.metrics`.

    :param data: the run's task data (``context.data``).
    :param tokenizer: the model's tokenizer (``context.load_tokenizer(artifact)``).
    :param config_dir: a folder with the model's ``config.json`` (the head's label count, the
        position limit that truncates inputs).
    :param split: the split scored (default ``"validation"``).
    :param batch_size: examples per forward call.
    :param threads: ONNX Runtime intra-op threads (0: its default).
    :raises StageError: when the split is missing or empty, or the task is not evaluated.
    """

    def __init__(self, data: "TaskData", tokenizer: Any, config_dir: Path, *, split: str = "validation",
                 batch_size: int = 32, threads: int = 0) -> None:
        from transformers import AutoConfig

        task = data.task
        if not task.evaluated:
            raise StageError(f"task {data.type!r} has no quality metric: accuracy control needs one")
        try:
            rows = data.split(split)
        except KeyError as exc:
            raise StageError(str(exc.args[0]), hint="accuracy control scores the validation split") from None
        if len(rows) == 0:
            raise StageError(f"split {split!r} is empty: accuracy control has nothing to score")
        self.data = data
        self.task = task
        self.tokenizer = tokenizer
        self.config = AutoConfig.from_pretrained(config_dir)
        self.split_name = split
        self.rows: "datasets.Dataset" = rows
        self.headline = task.metrics(data)[0]
        self.batch_size = batch_size
        self.threads = threads
        self._plain: "datasets.Dataset | None" = None

    def __len__(self) -> int:
        return len(self.rows)

    def _backend(self, graph: Path) -> Any:
        from compressor.evaluate.backends import OnnxRuntimeBackend
        from compressor.onnx_export import session

        return OnnxRuntimeBackend(session(Path(graph), threads=self.threads), self.tokenizer, self.config, Path(graph))

    def score(self, graph: Path) -> "Scored":
        backend = self._backend(graph)
        try:
            return self.task.score(backend, self.rows, self.data, batch_size=self.batch_size)
        finally:
            backend.close()

    def relate(self, scored: "Scored", reference: "Scored") -> None:
        self.task.relate(scored, reference, self.data)

    def metric_matrix(self, weights: "np.ndarray", scored: "Scored") -> dict[str, "np.ndarray"]:
        return self.task.metric_matrix(weights, scored, self.data)

    def outputs(self, graph: Path, rows: Sequence[int] | None = None) -> list["np.ndarray"]:
        import numpy as np

        from compressor.tasks.base import predict_batches

        if self._plain is None:
            plain = self.task.plain_text(self.rows)
            if "text_pair" in plain.column_names and self.task.auto_model == "AutoModel":
                plain = plain.remove_columns("text_pair")  # an encoder without head embeds each sentence alone
            self._plain = plain
        split = self._plain if rows is None else self._plain.select(list(rows))
        backend = self._backend(graph)
        try:
            batches = predict_batches(backend, split, batch_size=self.batch_size, progress=False)
        finally:
            backend.close()
        out: list[np.ndarray] = []
        for batch, outputs in batches:
            mask = batch.get("attention_mask")
            size = len(next(iter(outputs.values())))
            for i in range(size):
                parts = []
                for name in sorted(outputs):
                    value = np.asarray(outputs[name][i], dtype=np.float64)
                    if mask is not None and value.ndim >= 1 and value.shape[0] == mask.shape[1]:
                        value = value[np.asarray(mask[i]).astype(bool)]
                    parts.append(value.ravel())
                out.append(np.concatenate(parts) if parts else np.zeros(0))
        return out


# --- the search ----------------------------------------------------------------------------


@dataclass
class Bound:
    """(int8 - input) on the headline metric, in points (100 x the metric's fraction):
    ``point`` on the whole split, ``low``/``high`` the paired bootstrap interval (``None``
    when comparing point values)."""

    point: float
    low: float | None
    high: float | None

    def passes(self, max_loss: float) -> bool:
        """Whether the bound (the lower end, or the point without an interval) is at or
        above ``-max_loss``."""
        value = self.low if self.low is not None else self.point
        return value >= -max_loss - 1e-9

    def to_json(self) -> dict[str, float | None]:
        return {"low": self.low, "point": self.point, "high": self.high}


@dataclass
class Step:
    """One graph tried by the search: the groups kept in float, its bound, whether it passed."""

    kept_float: list[str]
    bound: Bound
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return {"kept_float": list(self.kept_float), **self.bound.to_json(), "passed": self.passed}


@dataclass
class AccuracyControlResult:
    """What :func:`accuracy_controlled_int8` found (``to_json()`` for the lineage and card).

    :ivar certified: whether a graph with at least one quantised group met the bound.
    :ivar graph: that graph (in ``work_dir``), or ``None`` when not certified.
    :ivar kept_float: the groups kept in float, in the order they were added.
    :ivar nodes_to_exclude: the node names given to ONNX Runtime for them.
    :ivar bound: (int8 - input) of the chosen graph, or of the last one tried when not
        certified, in points.
    :ivar int8_bound: the same for the graph with every group quantised.
    :ivar criterion: ``"paired bootstrap lower bound"`` or ``"point difference (no interval)"``.
    :ivar quantizations: quantisations run (the all-int8 graph unless given, one per ranked
        group, one per step of the search that ranking did not already make).
    :ivar evaluations: whole-split scorings of a quantised graph.
    :ivar ranking: ``[(group name, remaining deviation)]``, most sensitive first; empty when
        the all-int8 graph passed.
    :ivar ranking_rows: the rows of the split the ranking used.
    :ivar steps: every graph whose bound was computed, in order.
    :ivar reason: why nothing was certified (``None`` when certified).
    """

    certified: bool
    graph: Path | None
    kept_float: list[NodeGroup]
    nodes_to_exclude: list[str]
    bound: Bound
    int8_bound: Bound
    criterion: str
    metric: str
    split: str
    units: int
    max_loss: float
    confidence: float | None
    resamples: int | None
    seed: int
    groups: list[NodeGroup]
    quantizations: int
    evaluations: int
    ranking: list[tuple[str, float]] = field(default_factory=list)
    ranking_rows: list[int] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (``lineage.extra["accuracy_control"]``)."""
        return {
            "certified": self.certified,
            "criterion": self.criterion,
            "metric": self.metric,
            "split": self.split,
            "units": self.units,
            "max_loss": self.max_loss,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "bound": self.bound.to_json(),
            "int8_bound": self.int8_bound.to_json(),
            "kept_float": [g.to_json() for g in self.kept_float],
            "nodes_to_exclude": list(self.nodes_to_exclude),
            "groups": len(self.groups),
            "quantizations": self.quantizations,
            "evaluations": self.evaluations,
            "ranking": {
                "measure": "normalized MSE of the outputs vs fp32, the group alone kept in float",
                "rows": len(self.ranking_rows),
                "order": [{"group": g, "deviation": d} for g, d in self.ranking],
            },
            "steps": [s.to_json() for s in self.steps],
            "reason": self.reason,
        }

    def raise_if_uncertified(self) -> None:
        """:raises StageError: (exit status 2) with :attr:`reason` when not certified."""
        if not self.certified:
            raise StageError(
                self.reason or "no int8 graph meets the loss bound",
                key="config.max_loss",
                hint="raise max_loss, score more validation examples (a tighter interval), or "
                "try per-channel weights, static calibration or quantisation-aware training",
            )


def normalized_mse(reference: "np.ndarray", approximate: "np.ndarray") -> float:
    """``||reference - approximate||^2 / ||reference||^2`` (NNCF's ``normalized_mse``) of one
    example's flat outputs; 0 for two empty vectors."""
    import numpy as np

    denom = float(np.dot(reference, reference))
    err = reference - approximate
    return float(np.dot(err, err)) / (denom if denom > 0 else 1.0)


def accuracy_controlled_int8(
    float_graph: Path,
    quantize: Callable[[list[str], Path], None],
    scorer: GraphScorer,
    *,
    op_types: Iterable[str],
    max_loss: float,
    confidence: float | None = 0.95,
    work_dir: Path,
    bootstrap: PairedBootstrap | None = None,
    resamples: int = 2000,
    seed: int = 0,
    ranking_subset_size: int = 300,
    int8_graph: Path | None = None,
    logger: logging.Logger | None = None,
) -> AccuracyControlResult:
    """Quantise ``float_graph``, keeping node groups in float, most sensitive first, until the
    int8 graph loses at most ``max_loss`` points of the task's headline metric by the
    paired bootstrap bound (see the module docstring for the method and its sources).

    Cost, for ``G`` groups (:func:`node_groups`; 50 on a 12-layer BERT): when the all-int8
    graph fails, ``1 + G`` quantisations and ``G`` runs over at most
    ``ranking_subset_size`` examples to rank, then one quantisation and one run over the
    validation split per step (the first step reuses the ranking's graph).

    :param float_graph: the float ONNX graph about to be quantised (pre-processed: symbolic
        shapes inferred); also the reference ("input") every int8 graph is compared with.
    :param quantize: ``quantize(nodes_to_exclude, out_file)`` writes the int8 graph of
        ``float_graph`` with those nodes left in float (``quantize_dynamic`` or
        ``quantize_static`` with ``nodes_to_exclude=``); called with ``[]`` first.
    :param scorer: scores a graph on the validation split (:class:`OnnxTaskScorer`).
    :param op_types: the operator types ``quantize`` quantises (``op_types_to_quantize``).
    :param max_loss: points (100 x the metric's fraction: accuracy points, F1 points, x100
        correlation) of the headline metric the int8 graph may lose vs the input, ``>= 0``.
    :param confidence: coverage of the paired bootstrap interval, in ``(0, 1)``; ``None``:
        compare the point difference only (the record says so).
    :param work_dir: scratch folder (created); the chosen graph is written there.
    :param bootstrap: :func:`compressor.evaluate.stats.paired_bootstrap` (required unless
        ``confidence`` is ``None``).
    :param resamples: bootstrap resamples; ``seed``: their seed (the same resamples for every
        graph tried).
    :param ranking_subset_size: examples the ranking reads: those whose all-int8 outputs
        deviate most from fp32.
    :param int8_graph: ``float_graph`` already quantised with nothing excluded, if the caller
        has it (saves one quantisation; it is read, never moved or deleted).
    :param logger: progress messages (default: this module's logger).
    :returns: the :class:`AccuracyControlResult`; not certified when no graph with a quantised
        group passes (call :meth:`~AccuracyControlResult.raise_if_uncertified`).
    :raises ValueError: for ``max_loss < 0``, a ``confidence`` outside ``(0, 1)``, no
        ``bootstrap`` with a confidence, or ``ranking_subset_size < 1``.
    :raises CompressorError: what ``scorer`` raises for a graph it cannot score; whatever
        ``quantize`` raises passes through.
    """
    import numpy as np

    log = logger or logging.getLogger(__name__)
    if max_loss < 0:
        raise ValueError(f"max_loss must be >= 0 points, got {max_loss}")
    if confidence is not None and not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1) or None, got {confidence}")
    if confidence is not None and bootstrap is None:
        raise ValueError("a confidence needs the paired bootstrap (compressor.evaluate.stats.paired_bootstrap)")
    if ranking_subset_size < 1:
        raise ValueError(f"ranking_subset_size must be >= 1, got {ranking_subset_size}")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    float_graph = Path(float_graph)
    metric = scorer.headline.name
    criterion = "paired bootstrap lower bound" if confidence is not None else "point difference (no interval)"
    groups = node_groups(float_graph, op_types)
    counts = {"quantizations": 0, "evaluations": 0}

    reference = scorer.score(float_graph)
    scorer.relate(reference, reference)  # as the evaluator does: the reference agrees with itself
    n = len(reference)

    def run_quantize(exclude: list[str], out: Path) -> Path:
        counts["quantizations"] += 1
        quantize(list(exclude), out)
        return out

    def bound_of(graph: Path) -> Bound:
        counts["evaluations"] += 1
        scored = scorer.score(graph)
        if len(scored) != n:
            raise StageError(f"the int8 graph was scored on {len(scored)} units, the input on {n}")
        scorer.relate(scored, reference)
        if confidence is None:
            ones = np.ones((1, n))
            diff = scorer.metric_matrix(ones, scored)[metric][0] - scorer.metric_matrix(ones, reference)[metric][0]
            return Bound(point=100.0 * float(diff), low=None, high=None)
        assert bootstrap is not None
        boot = bootstrap(
            lambda w: scorer.metric_matrix(w, scored), n,
            reference_matrix=lambda w: scorer.metric_matrix(w, reference),
            resamples=resamples, confidence=confidence, seed=seed,
        )
        d = boot["diff"][metric]
        return Bound(point=100.0 * d["value"], low=100.0 * d["low"], high=100.0 * d["high"])

    def describe(b: Bound) -> str:
        if b.low is None:
            return f"{b.point:+.2f} points (point difference)"
        return f"{b.point:+.2f} [{b.low:+.2f}, {b.high:+.2f}] points"

    def result(**kw: Any) -> AccuracyControlResult:
        return AccuracyControlResult(
            criterion=criterion, metric=metric, split=scorer.split_name, units=n, max_loss=max_loss,
            confidence=confidence, resamples=resamples if confidence is not None else None, seed=seed,
            groups=groups, quantizations=counts["quantizations"], evaluations=counts["evaluations"], **kw,
        )

    all_int8 = Path(int8_graph) if int8_graph is not None else run_quantize([], work_dir / "int8-all.onnx")
    int8_bound = bound_of(all_int8)
    steps = [Step([], int8_bound, int8_bound.passes(max_loss))]
    log.info("accuracy control: all %d node groups in int8: %s %s vs the input (max loss %s)",
             len(groups), metric, describe(int8_bound), max_loss)
    if steps[0].passed:
        return result(certified=True, graph=all_int8, kept_float=[], nodes_to_exclude=[], bound=int8_bound,
                      int8_bound=int8_bound, steps=steps)
    if len(groups) < 2:
        return result(
            certified=False, graph=None, kept_float=[], nodes_to_exclude=[], bound=int8_bound,
            int8_bound=int8_bound, steps=steps,
            reason=f"(int8 - input) {metric} of the int8 graph is {describe(int8_bound)}, below "
            f"-{max_loss}, and it has {len(groups)} node group(s): keeping it in float leaves nothing in int8",
        )

    # rank: the examples that deviate most under all-int8, each group alone kept in float
    ref_out = scorer.outputs(float_graph)
    int8_out = scorer.outputs(all_int8)
    errors = np.array([normalized_mse(r, q) for r, q in zip(ref_out, int8_out)])
    rows = sorted(np.argsort(-errors, kind="stable")[: min(ranking_subset_size, len(errors))].tolist())
    ref_rows = [ref_out[i] for i in rows]
    ranking: list[tuple[str, float]] = []
    best: tuple[float, Path] | None = None
    for k, group in enumerate(groups):
        path = run_quantize(group.nodes_to_exclude, work_dir / f"rank-{k}.onnx")
        approx = scorer.outputs(path, rows)
        deviation = float(np.mean([normalized_mse(r, a) for r, a in zip(ref_rows, approx)]))
        ranking.append((group.name, deviation))
        if best is None or deviation < best[0]:
            if best is not None:
                best[1].unlink(missing_ok=True)
            best = (deviation, path)
        else:
            path.unlink(missing_ok=True)
    order = sorted(range(len(groups)), key=lambda k: (ranking[k][1], k))
    ranking = [ranking[k] for k in order]
    ranked = [groups[k] for k in order]
    log.info("accuracy control: ranked %d groups on %d examples; most sensitive: %s",
             len(groups), len(rows), ", ".join(f"{g} ({d:.3g})" for g, d in ranking[:5]))

    kept: list[NodeGroup] = []
    last = int8_bound
    for count in range(1, len(ranked)):
        kept = ranked[:count]
        exclude = [name for g in kept for name in g.nodes_to_exclude]
        out = work_dir / f"step-{count}.onnx"
        if count == 1 and best is not None:
            shutil.move(str(best[1]), out)
        else:
            run_quantize(exclude, out)
        last = bound_of(out)
        passed = last.passes(max_loss)
        steps.append(Step([g.name for g in kept], last, passed))
        log.info("accuracy control: %d group(s) in float (+%s): %s %s", count, kept[-1].name, metric, describe(last))
        if passed:
            return result(certified=True, graph=out, kept_float=list(kept), nodes_to_exclude=exclude, bound=last,
                          int8_bound=int8_bound, ranking=ranking, ranking_rows=rows, steps=steps)
        out.unlink(missing_ok=True)
    worth = 100.0 / n
    return result(
        certified=False, graph=None, kept_float=list(kept),
        nodes_to_exclude=[name for g in kept for name in g.nodes_to_exclude],
        bound=last, int8_bound=int8_bound, ranking=ranking, ranking_rows=rows, steps=steps,
        reason=(
            f"no int8 graph meets the bound ({criterion} of (int8 - input) {metric} >= -{max_loss} points): "
            f"all int8 {describe(int8_bound)}; with {len(kept)} of {len(groups)} node groups in float "
            f"(only {ranked[-1].name} in int8) {describe(last)}. Keeping every group in float is the "
            f"input itself, not an int8 model. {n} {scorer.split_name} units (one unit is worth "
            f"about {worth:.2g} points of a per-example metric)"
        ),
    )


__all__ = [
    "LAYER_KINDS",
    "AccuracyControlResult",
    "Bound",
    "GraphScorer",
    "NodeGroup",
    "OnnxTaskScorer",
    "PairedBootstrap",
    "Step",
    "accuracy_controlled_int8",
    "node_groups",
    "normalized_mse",
]
