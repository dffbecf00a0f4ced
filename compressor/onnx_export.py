"""ONNX export, graph optimisation and inference sessions, shared by every plugin that writes
an ONNX artifact and by the evaluator.

Built on the libraries themselves, with no optimum in between:

- export with :func:`torch.onnx.export`, so any architecture torch can trace works, not only
  the model types in an exporter registry;
- graph fusion with ONNX Runtime's transformer optimizer
  (``onnxruntime.transformers.optimizer``) where it knows the model type, plain ONNX Runtime
  graph optimisation otherwise;
- inference with :class:`onnxruntime.InferenceSession`.

Two exporters, chosen by ``exporter``:

- ``"torchscript"`` (``dynamo=False``) traces the model with eager attention. ONNX Runtime's
  optimizer recognises the eager attention subgraph of BERT-like encoders and fuses it into
  one ``Attention`` node (plus ``SkipLayerNormalization`` and ``BiasGelu``), the fast CPU
  path;
- ``"dynamo"`` (``torch.export``) covers what tracing cannot, but its graph keeps attention
  unfused (ONNX Runtime 1.32 fuses only the normalisations and GELU in it);
- ``"auto"`` tries TorchScript, checks the graph at two input shapes other than the traced
  one, and falls back to dynamo when tracing fails or the graph does not generalise.

Head-pruned models: ONNX Runtime's attention fusion takes one head count, and its width
(heads x head size), for the whole graph. When every layer keeps the same count, attention is
fused with that count and the pruned width; when layers keep different counts, attention is
left unfused and every other fusion applies (:func:`optimize_onnx`, :func:`attention_fusion`).

An ONNX artifact folder holds ``model.onnx`` (:data:`ONNX_FILE`), ``config.json`` and the
tokenizer. Its graph takes the tokenizer's inputs (``input_ids``, ``attention_mask``, and
``token_type_ids`` where the model uses them), int64, shape ``(batch, sequence)``, and
returns ``logits`` (float32), both axes dynamic.
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CompressorError, StageError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

ONNX_FILE = "model.onnx"
"""File name of the graph inside an ONNX artifact."""

#: Hugging Face model types whose graphs ONNX Runtime's transformer optimizer fuses with its
#: ``bert`` fusions (the same map optimum used).
ORT_OPTIMIZER_MODEL_TYPES = {
    t: "bert"
    for t in (
        "albert", "bert", "camembert", "data2vec-text", "deberta", "deberta-v2", "distilbert",
        "electra", "ernie", "mpnet", "roberta", "roformer", "xlm-roberta", "xlm-roberta-xl",
    )
}

#: Optimisation levels, as optimum named them: ``O1`` basic ONNX Runtime graph
#: optimisations; ``O2`` extended ones plus the transformer fusions; ``O3`` adds the GELU
#: approximation (FastGelu); ``O4`` adds fp16 weights (GPU only).
OPTIMIZATION_LEVELS = ("O1", "O2", "O3", "O4")

#: ONNX Runtime's fused (contrib) operators counted in an optimised graph.
FUSED_OPERATORS = (
    "Attention", "MultiHeadAttention", "EmbedLayerNormalization", "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization", "LayerNormalization", "SimplifiedLayerNormalization",
    "BiasGelu", "FastGelu", "Gelu", "GemmFastGelu", "RotaryEmbedding",
)

#: Operator types that mark a graph as int8: ONNX Runtime's integer kernels (dynamic
#: quantization's QOperator form) and the QuantizeLinear/DequantizeLinear pairs of static QDQ
#: graphs (ONNX Runtime runs the QDQ node groups as int8 kernels).
INT8_OPERATORS = frozenset({
    "MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
    "QAttention", "QLinearConv", "ConvInteger", "DynamicQuantizeLinear", "QGemm", "QLinearAdd",
    "QLinearMul", "QuantizeLinear", "DequantizeLinear",
})

_SAMPLE_TEXTS = (
    ["a short sentence", "a somewhat longer sentence, with a comma and more words in it"],
    ["one"],
    ["three texts of", "different lengths make padding", "and a third one that is the longest of all"],
)
"""Dummy inputs: the first batch is traced, the other two check the dynamic axes."""


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote.

    :param onnx_file: the graph (``out_dir/model.onnx``).
    :param exporter: ``"torchscript"`` or ``"dynamo"``: the exporter that produced it.
    :param opset: the default-domain opset of the graph.
    :param input_names: graph inputs, in order.
    :param num_heads: attention heads per layer when every layer has the same number
        (what the Attention fusion needs), else ``None``.
    :param hidden_size: the model width (features per token between layers).
    :param notes: why ``"auto"`` fell back, when it did.
    :param head_counts: attention heads of each layer module, as the model has them now
        (after head pruning); ``None`` when no architecture layout finds the attention.
    :param head_size: features per attention head; ``None`` as for ``head_counts``.
    :param attention_note: why the attention cannot be fused (layers with different head
        counts, or head counts unknown); ``None`` when it can.
    """

    onnx_file: Path
    exporter: str
    opset: int | None
    input_names: list[str]
    num_heads: int | None = None
    hidden_size: int = 0
    notes: list[str] = field(default_factory=list)
    head_counts: list[int] | None = None
    head_size: int | None = None
    attention_note: str | None = None

    @property
    def attention_hidden_size(self) -> int:
        """Output width of each of the query, key and value projections, ``num_heads *
        head_size``: what ONNX Runtime's optimizer calls ``hidden_size`` (the model width
        before head pruning, less after); 0 when ``num_heads`` is ``None``."""
        if self.num_heads is None or not self.head_size:
            return 0
        return self.num_heads * self.head_size


#: Model types whose ``max_position_embeddings`` includes the padding offset: their position
#: ids start after ``pad_token_id`` (the RoBERTa family, MPNet), so 2 positions are unusable.
POSITION_OFFSET_TYPES = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer", "data2vec-text",
})


def max_input_length(config: Any, tokenizer: Any = None) -> int | None:
    """Longest input, in tokens (special tokens included), that a model accepts.

    The smaller of ``config.max_position_embeddings`` (less 2 for
    :data:`POSITION_OFFSET_TYPES`) and the tokenizer's ``model_max_length`` (when set to a
    real limit). Longer inputs fail in the position embeddings (ONNX Runtime: "cannot
    broadcast 64 by 128" in the embeddings' ``Add``; PyTorch: an index error).

    :param config: a ``transformers.PretrainedConfig``, the mapping of a ``config.json``, or
        a model folder holding one.
    :param tokenizer: the model's tokenizer, or ``None``.
    :returns: the limit, or ``None`` when neither gives one (no ``max_position_embeddings``,
        no tokenizer limit).
    :raises CompressorError: when a folder's ``config.json`` is missing or not JSON.
    """
    if isinstance(config, (str, Path)):
        config = _read_config(Path(config))
    if isinstance(config, dict):
        mpe, model_type = config.get("max_position_embeddings"), config.get("model_type", "")
    else:
        mpe, model_type = getattr(config, "max_position_embeddings", None), getattr(config, "model_type", "")
    limits: list[int] = []
    if isinstance(mpe, int) and not isinstance(mpe, bool) and mpe > 0:
        limits.append(mpe - 2 if model_type in POSITION_OFFSET_TYPES else mpe)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    return min(limits) if limits else None


def capped_length(requested: int, config: Any, tokenizer: Any = None) -> int:
    """``requested`` tokens, at most the model's :func:`max_input_length`: the truncation (or
    padding) length of inputs fed to a model whose recipe asked for ``requested``.

    :param requested: tokens the recipe asked for.
    :param config: as :func:`max_input_length`.
    :param tokenizer: as :func:`max_input_length`.
    :returns: tokens, at most ``requested``.
    :raises CompressorError: as :func:`max_input_length`.
    """
    limit = max_input_length(config, tokenizer)
    return min(requested, limit) if limit else requested


def _read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a model folder.

    :raises CompressorError: when it is missing or not a JSON object.
    """
    import json

    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompressorError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    if not isinstance(data, dict):
        raise CompressorError(f"{folder / 'config.json'} is not a JSON object")
    return data


def auto_model_class(task_type: str) -> Any:
    """The transformers Auto class of the task's head (:attr:`compressor.tasks.Task.auto_model`).

    :param task_type: a registered task's name.
    """
    from .tasks import get_task

    return get_task(task_type).auto_class()


DEFAULT_OUTPUTS: dict[str, tuple[str, ...]] = {"logits": ("batch",)}
"""Graph outputs of a sequence classifier: name -> its dynamic axes."""


def task_outputs(task_type: str) -> dict[str, tuple[str, ...]]:
    """The graph outputs of the task's head: name -> dynamic axes
    (:attr:`compressor.tasks.Task.onnx_outputs`)."""
    from .tasks import get_task

    return dict(get_task(task_type).onnx_outputs)


def load_for_export(source: Path, task_type: str) -> Any:
    """The PyTorch model of ``source`` in fp32 with eager attention, on CPU, in eval mode.

    Eager attention exports as the MatMul/Softmax subgraph ONNX Runtime's optimizer fuses;
    it computes what SDPA computes. Pruned shapes are rebuilt from the structure file.

    :raises StageError: when the folder does not load.
    """
    import torch

    from .structure import load_pretrained

    try:
        model = load_pretrained(
            auto_model_class(task_type), source, dtype=torch.float32, attn_implementation="eager"
        )
    except (OSError, ValueError, KeyError, TypeError, CompressorError) as exc:
        raise StageError(f"cannot load {source} for ONNX export: {type(exc).__name__}: {exc}") from exc
    return model.eval()


def _sample_inputs(model: Any, tokenizer: Any, texts: list[str]) -> dict[str, Any]:
    """Tokenised ``texts`` as int64 tensors, keyed in the order of ``model.forward``'s
    parameters (the TorchScript exporter binds input names by position)."""
    import torch

    limit = max_input_length(getattr(model, "config", None), tokenizer)
    length = min(64, limit) if limit else 64
    enc = tokenizer(texts, padding=True, truncation=True, max_length=length, return_tensors="pt")
    order = [p for p in inspect.signature(model.forward).parameters if p in enc]
    return {k: enc[k].to(torch.int64) for k in order}


def _export_torchscript(
    model: Any, inputs: dict[str, Any], out: Path, opset: int | None, outputs: dict[str, tuple[str, ...]]
) -> None:
    import warnings

    import torch

    names = list(inputs)
    # The tracer warns that Python conditions on shapes (transformers' mask code) become
    # constants, and torch that the TorchScript exporter is legacy: the first is checked
    # (``export_module`` runs the graph at other shapes), the second is the point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*advanced indexing.*")
        torch.onnx.export(
            model,
            (dict(inputs),),
            str(out),
            dynamo=False,
            input_names=names,
            output_names=list(outputs),
            dynamic_axes={
                **{k: {0: "batch", 1: "sequence"} for k in names},
                **{k: dict(enumerate(axes)) for k, axes in outputs.items()},
            },
            opset_version=opset or 17,
            do_constant_folding=True,
        )


def _export_dynamo(
    model: Any, inputs: dict[str, Any], out: Path, opset: int | None, outputs: dict[str, tuple[str, ...]]
) -> None:
    import torch

    batch, sequence = torch.export.Dim("batch", min=1), torch.export.Dim("sequence", min=2)
    program = torch.onnx.export(
        model,
        (),
        kwargs=dict(inputs),
        dynamo=True,
        dynamic_shapes={k: {0: batch, 1: sequence} for k in inputs},
        input_names=list(inputs),
        output_names=list(outputs),
        opset_version=opset,
        optimize=True,
        verbose=False,
    )
    program.save(str(out))


def session(onnx_file: Path, *, threads: int = 0, device: str = "cpu") -> Any:
    """An :class:`onnxruntime.InferenceSession` over ``onnx_file``.

    :param threads: intra-op threads (0: ONNX Runtime's default); inter-op is 1, sequential.
    :param device: ``"cpu"`` or ``"cuda"`` (``CUDAExecutionProvider``).
    :raises CompressorError: when ONNX Runtime cannot load the graph, or did not take the
        requested provider (it falls back to CPU silently).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    provider = ORT_PROVIDERS[device]
    try:
        sess = ort.InferenceSession(str(onnx_file), sess_options=options, providers=[provider])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise CompressorError(f"ONNX Runtime cannot load {onnx_file}: {exc}") from exc
    if sess.get_providers()[0] != provider:
        raise CompressorError(
            f"ONNX Runtime did not use {provider} for {onnx_file} (got {sess.get_providers()})",
            hint="install onnxruntime-gpu matching the CUDA version, or evaluate on cpu",
        )
    return sess


ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
"""ONNX Runtime execution provider used on each device."""


def run_logits(sess: Any, batch: dict[str, "np.ndarray"]) -> "np.ndarray":
    """The ``logits`` output of ``sess`` on ``batch``, as float32.

    Only the inputs the graph declares are fed (a graph without ``token_type_ids`` ignores
    them); the rest of ``batch`` is ignored.

    :param batch: int64 arrays ``(batch, sequence)`` keyed by input name.
    :returns: ``(batch, num_labels)`` (``(batch, sequence, vocab)`` for masked-lm).
    """
    import numpy as np

    names = [i.name for i in sess.get_inputs()]
    outputs = [o.name for o in sess.get_outputs()]
    feed = {k: np.asarray(batch[k], dtype=np.int64) for k in names if k in batch}
    out = sess.run(["logits"] if "logits" in outputs else outputs[:1], feed)[0]
    return np.asarray(out, dtype=np.float32)


def _max_diff(
    model: Any, onnx_file: Path, tokenizer: Any, batches: list[list[str]], outputs: list[str]
) -> float:
    """Largest |difference| between the graph's and PyTorch's ``outputs`` on ``batches``."""
    import numpy as np
    import torch

    sess = session(onnx_file, threads=1)
    names = [i.name for i in sess.get_inputs()]
    worst = 0.0
    for texts in batches:
        inputs = _sample_inputs(model, tokenizer, texts)
        with torch.inference_mode():
            out = model(**inputs)
        feed = {k: v.numpy() for k, v in inputs.items() if k in names}
        got_all = sess.run(outputs, feed)
        for name, got in zip(outputs, got_all):
            ref = out[name].float().numpy()
            if got.shape != ref.shape:
                return float("inf")
            worst = max(worst, float(np.abs(np.asarray(got, dtype=np.float32) - ref).max()))
    return worst


def export_onnx(
    source: Path,
    out_dir: Path,
    *,
    task_type: str,
    exporter: str = "auto",
    opset: int | None = None,
    tolerance: float = 1e-3,
) -> ExportResult:
    """Export the PyTorch model folder ``source`` to ``out_dir/model.onnx`` (+ ``config.json``).

    The model is loaded by :func:`load_for_export`; the dummy inputs come from its own
    tokenizer. Batch and sequence axes are dynamic.

    :param source: a ``save_pretrained`` folder with its tokenizer.
    :param out_dir: created if needed.
    :param task_type: selects the head (:func:`auto_model_class`).
    :param exporter: ``"auto"``, ``"torchscript"`` or ``"dynamo"`` (see the module docs).
    :param opset: ONNX opset; ``None``: 17 for TorchScript, the exporter's default for dynamo.
    :param tolerance: with ``"auto"``, the largest max |logit difference| against PyTorch
        at the two check shapes that keeps the TorchScript graph.
    :returns: an :class:`ExportResult`.
    :raises StageError: when the model does not load or the export fails.
    """
    import onnx
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_for_export(source, task_type)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise StageError(f"{source} has no loadable tokenizer: {exc}") from exc
    out = out_dir / ONNX_FILE
    used, notes = export_module(
        model, tokenizer, out, exporter=exporter, opset=opset, tolerance=tolerance,
        outputs=task_outputs(task_type),
    )
    shutil.copyfile(Path(source) / "config.json", out_dir / "config.json")
    proto = onnx.load(str(out), load_external_data=False)
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    counts, head_size, hidden, note = _attention_shape(model)
    uniform = counts[0] if counts and len(set(counts)) == 1 else None
    return ExportResult(
        out, used, version, [i.name for i in proto.graph.input], uniform, hidden, notes,
        head_counts=counts, head_size=head_size, attention_note=note,
    )


def _attention_shape(model: Any) -> tuple[list[int] | None, int | None, int, str | None]:
    """``(heads of each layer module, head size, model width, why attention cannot be fused)``
    of an encoder; the head counts and size are ``None`` where no layout finds them."""
    from .architectures import encoder_layout, head_counts

    try:
        layout = encoder_layout(model)
        counts = list(head_counts(model, layout))
    except CompressorError:  # an architecture the layout does not know: no head count
        width = int(getattr(model.config, "hidden_size", 0) or 0)
        return None, None, width, (
            f"the attention heads of {type(model).__name__} are not known (no architecture "
            "layout finds its attention): attention left unfused"
        )
    note = None
    if not counts or layout.head_size <= 0:
        note = f"{type(model).__name__} has no attention heads the layout can count: attention left unfused"
    elif len(set(counts)) > 1:
        note = (
            f"layers keep different head counts {counts} (after head pruning): attention left "
            "unfused, since ONNX Runtime's attention fusion takes one head count for the whole "
            "graph; the other fusions apply"
        )
    return counts, (layout.head_size or None), layout.hidden_size, note


def export_module(
    model: Any,
    tokenizer: Any,
    out_file: Path,
    *,
    exporter: str = "auto",
    opset: int | None = None,
    tolerance: float = 1e-3,
    outputs: dict[str, tuple[str, ...]] | None = None,
) -> tuple[str, list[str]]:
    """Export an in-memory PyTorch model to ``out_file``.

    For models that exist only in memory (a plugin's rewritten modules); a saved folder goes
    through :func:`export_onnx`. Dummy inputs come from ``tokenizer``.

    :param model: in eval mode, on CPU, fp32.
    :param exporter: ``"auto"``, ``"torchscript"`` or ``"dynamo"`` (see the module docs).
    :param outputs: the forward outputs to keep, name -> dynamic axes (default
        :data:`DEFAULT_OUTPUTS`, ``logits``; :func:`task_outputs` gives a task's).
    :returns: ``(exporter used, notes)``: ``notes`` say why ``"auto"`` fell back.
    :raises StageError: when every exporter tried fails.
    """
    outputs = dict(outputs or DEFAULT_OUTPUTS)
    inputs = _sample_inputs(model, tokenizer, _SAMPLE_TEXTS[0])
    order = {"auto": ["torchscript", "dynamo"], "torchscript": ["torchscript"], "dynamo": ["dynamo"]}[exporter]
    notes: list[str] = []
    for name in order:
        try:
            (_export_torchscript if name == "torchscript" else _export_dynamo)(
                model, inputs, out_file, opset, outputs
            )
        except Exception as exc:  # noqa: BLE001 - exporters raise many types
            notes.append(f"{name} export failed: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        if exporter == "auto" and name == "torchscript":
            try:
                diff = _max_diff(model, out_file, tokenizer, list(_SAMPLE_TEXTS[1:]), list(outputs))
            except Exception as exc:  # noqa: BLE001 - a traced graph that fails at other shapes
                notes.append(
                    f"the TorchScript graph fails at other input shapes ({type(exc).__name__}: "
                    f"{str(exc)[:200]}): traced shapes baked in"
                )
                continue
            if not diff <= tolerance:
                notes.append(
                    f"the TorchScript graph differs from PyTorch at other input shapes "
                    f"(max |logit diff| {diff:.3g}): traced shapes baked in"
                )
                continue
        return name, notes
    raise StageError(
        f"torch.onnx could not export {type(model).__name__}: " + "; ".join(notes),
        hint="try exporter: dynamo or exporter: torchscript explicitly, or another opset",
    )


def optimize_onnx(
    onnx_file: Path,
    out_file: Path,
    *,
    model_type: str,
    level: str,
    num_heads: int | None,
    hidden_size: int,
    for_gpu: bool = False,
) -> dict[str, int]:
    """Optimise a graph with ONNX Runtime and save it to ``out_file``.

    - model types in :data:`ORT_OPTIMIZER_MODEL_TYPES`: ``onnxruntime.transformers.optimizer``
      with its ``bert`` fusions (``Attention``, ``SkipLayerNormalization``, ``BiasGelu``;
      ``EmbedLayerNormalization`` stays off, ONNX Runtime's quantizer cannot handle it);
      ``O3`` also approximates GELU (``FastGelu``), ``O4`` also casts to fp16;
    - other model types: ONNX Runtime's own graph optimisations only.

    Whether attention was fused, and why not: :func:`attention_fusion`.

    :param model_type: ``config.model_type``.
    :param level: one of :data:`OPTIMIZATION_LEVELS`; ``O4`` (fp16) needs ``for_gpu``.
    :param num_heads: heads per layer (:attr:`ExportResult.num_heads`); ``None`` (layers
        with different head counts after pruning, or heads unknown) leaves attention
        unfused, since ONNX Runtime's attention fusion takes one head count for the whole
        graph; every other fusion of the level still applies.
    :param hidden_size: with ``num_heads``, the output width of each query/key/value
        projection, ``num_heads * head size`` (:attr:`ExportResult.attention_hidden_size`;
        the model width for a model whose heads were not pruned); ignored when
        ``num_heads`` is ``None``.
    :returns: counts of the fused operators in the result (:func:`fused_operators`).
    :raises ValueError: when ``num_heads`` is not positive or ``hidden_size`` is not a
        positive multiple of it.
    :raises StageError: when ONNX Runtime fails on the graph.
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    if num_heads is not None and not (num_heads > 0 and hidden_size > 0 and hidden_size % num_heads == 0):
        raise ValueError(
            f"attention fusion needs num_heads > 0 and hidden_size a positive multiple of it "
            f"(num_heads * head size), got num_heads={num_heads}, hidden_size={hidden_size}"
        )
    ort_type = ORT_OPTIMIZER_MODEL_TYPES.get(model_type)
    basic = level == "O1" or ort_type is None
    try:
        if basic:
            opt = optimizer.optimize_model(
                str(onnx_file), model_type="bert", opt_level=1 if level == "O1" else 2,
                use_gpu=for_gpu, only_onnxruntime=True,
            )
        else:
            options = FusionOptions(ort_type)
            options.enable_embed_layer_norm = False
            options.enable_gelu_approximation = level in ("O3", "O4")
            options.enable_attention = num_heads is not None
            # ONNX Runtime's BertOnnxModel takes (0, 0), "detect", or a head count with its
            # width; anything else fails an assertion.
            heads, width = (num_heads, hidden_size) if num_heads is not None else (0, 0)
            with _quiet_width_warning():
                opt = optimizer.optimize_model(
                    str(onnx_file), model_type=ort_type, num_heads=heads, hidden_size=width,
                    # opt_level 0: the Python fusions only. ONNX Runtime's own extended
                    # optimisations, run first at a higher level, rewrite the attention
                    # subgraph so that the Attention fusion no longer matches; a session
                    # applies them anyway.
                    optimization_options=options, opt_level=0, use_gpu=for_gpu,
                )
            if level == "O4":
                opt.convert_float_to_float16(keep_io_types=True)
        opt.save_model_to_file(str(out_file))
    except Exception as exc:  # noqa: BLE001 - the optimizer raises bare Exceptions
        raise StageError(
            f"ONNX Runtime graph optimisation {level} failed: {type(exc).__name__}: {exc}",
            key="config.optimization",
            hint="try a lower level (O1), or leave optimization unset",
        ) from exc
    return fused_operators(out_file)


class _DropWidthWarning:
    """A logging filter dropping ONNX Runtime's "Input hidden size (48) is not same as weight
    matrix dimension of q,k,v (64)" warning, which every fused layer of a head-pruned model
    gets: the fused ``Attention`` takes a model width other than its heads' width."""

    def filter(self, record: Any) -> bool:
        return "is not same as weight matrix dimension" not in record.getMessage()


@contextlib.contextmanager
def _quiet_width_warning() -> Iterator[None]:
    """Silence :class:`_DropWidthWarning`'s message while ONNX Runtime fuses attention."""
    import logging

    # the optimizer puts its own folder on sys.path and imports its modules top-level
    logs = [logging.getLogger(n) for n in ("fusion_attention", "onnxruntime.transformers.fusion_attention")]
    drop = _DropWidthWarning()
    for log in logs:
        log.addFilter(drop)
    try:
        yield
    finally:
        for log in logs:
            log.removeFilter(drop)


def attention_fusion(
    exported: ExportResult, fused: dict[str, int], *, level: str | None, model_type: str
) -> dict[str, Any]:
    """Whether the optimised graph has fused attention, and why not: for the lineage.

    :param exported: the export the graph came from (its head counts).
    :param fused: what :func:`optimize_onnx` returned (``{}`` when not optimised).
    :param level: the optimisation level applied, ``None`` or ``"none"`` for none.
    :param model_type: ``config.model_type``.
    :returns: ``{"fused": bool, "nodes": fused attention nodes, "heads_per_layer": list or
        None, "reason": why not fused, or None}``.
    """
    nodes = fused.get("Attention", 0) + fused.get("MultiHeadAttention", 0)
    reason = None
    if not nodes:
        if level in (None, "none"):
            reason = "no graph optimisation: attention is fused from optimization O2 on"
        elif level == "O1":
            reason = "optimization O1 runs ONNX Runtime's basic optimisations only: attention is fused from O2 on"
        elif model_type not in ORT_OPTIMIZER_MODEL_TYPES:
            reason = (
                f"ONNX Runtime's transformer optimizer does not know model type {model_type!r}: "
                "plain ONNX Runtime graph optimisation, attention unfused"
            )
        elif exported.attention_note:
            reason = exported.attention_note
        else:
            reason = (
                f"ONNX Runtime's optimizer matched no attention subgraph in the "
                f"{exported.exporter} graph"
                + (" (the dynamo exporter's attention is not one it fuses)" if exported.exporter == "dynamo" else "")
            )
    return {"fused": bool(nodes), "nodes": nodes, "heads_per_layer": exported.head_counts, "reason": reason}


def fused_operators(onnx_file: Path) -> dict[str, int]:
    """Counts of ONNX Runtime's fused operators (:data:`FUSED_OPERATORS`) in a graph.

    :returns: operator type -> node count, types absent from the graph left out.
    """
    return {op: n for op, n in op_counts(onnx_file).items() if op in FUSED_OPERATORS}


def op_counts(onnx_file: Path) -> dict[str, int]:
    """Number of nodes per operator type in a graph (weights not loaded)."""
    from collections import Counter

    import onnx

    proto = onnx.load(str(onnx_file), load_external_data=False)
    return dict(Counter(n.op_type for n in proto.graph.node))


def save_onnx(proto_or_file: Any, out_file: Path) -> None:
    """Save a graph as one self-contained file (weights inside while under 2 GB).

    :param proto_or_file: an ``onnx.ModelProto`` or the path of a graph to copy.
    """
    import onnx

    proto = onnx.load(str(proto_or_file)) if isinstance(proto_or_file, (str, Path)) else proto_or_file
    large = proto.ByteSize() > 2_000_000_000
    with tempfile.TemporaryDirectory(dir=Path(out_file).parent) as tmp:
        tmp_file = Path(tmp) / Path(out_file).name
        onnx.save(proto, str(tmp_file), save_as_external_data=large)
        for f in Path(tmp).iterdir():
            f.replace(Path(out_file).parent / f.name)
