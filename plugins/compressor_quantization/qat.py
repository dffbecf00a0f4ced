"""Quantization-aware training (``quantize.qat``): a short fine-tune of the fp32 model with
int8 fake quantisation in every ``nn.Linear``, distilled from the fp32 input, exported as a
QDQ int8 ONNX graph that ONNX Runtime runs with integer kernels.

The method (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference"; for BERT, Zafrir et al. 2019, "Q8BERT: Quantized 8Bit
BERT"):

- every ``nn.Linear`` (``y = x W^T + b``) becomes a :class:`FakeQuantLinear`: its input ``x``
  goes through an asymmetric per-tensor uint8 fake quantiser whose range comes from a min-max
  calibration pass and is then tracked by an exponential moving average of each training
  batch's min and max (or frozen); its weight, transposed to ``(in, out)``, through a
  symmetric int8 fake quantiser, one scale per output channel (or per tensor), recomputed
  from the weight at every step. 7-bit weights (``[-64, 64]``) where the preset's kernels
  can saturate (``reduce_range``, as :func:`~.hardware.choose_int8_settings` decides for
  ``quantize.ort-*``). Both are the core PyTorch operators
  ``torch.fake_quantize_per_tensor_affine`` / ``torch.fake_quantize_per_channel_affine``:
  quantise-dequantise in the forward pass, the straight-through estimator in the backward
  pass (gradients pass where the input is inside the range). No ``torch.ao.quantization``
  (deprecated), no compiled extension;
- the student trains through transformers' :class:`~transformers.Trainer` on
  ``alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos`` against the frozen fp32 input
  model: the soft-target KL with temperature over the task's soft targets (MSE for scores and
  embeddings), the head's own loss on the labels, the hidden-state cosine
  (:mod:`compressor.training.losses`, the losses of ``distill.distilbert``);
- ``torch.onnx`` exports the fake quantisers as ``QuantizeLinear``/``DequantizeLinear`` pairs;
  :func:`fold_weight_quantizers` then stores every quantised weight as an int8 initialiser
  feeding its ``DequantizeLinear`` (ONNX Runtime's QDQ format, a quarter of the fp32 size).
  ONNX Runtime fuses each ``DequantizeLinear -> MatMul`` group into an integer kernel
  (``MatMulIntegerToFloat``, ``QLinearMatMul``) when it loads the graph: :func:`ort_int8_kernels`
  counts them in the session's optimised graph, and the lineage records the counts.
"""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressor.errors import StageError

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext, Strategy

#: uint8 range of the activation quantisers (asymmetric, ONNX Runtime's activation type).
ACT_QMIN, ACT_QMAX = 0, 255
#: int8 range the weight quantisers are declared with (what ONNX's QuantizeLinear holds);
#: the symmetric scale keeps the values within ``[-WEIGHT_LEVELS, WEIGHT_LEVELS]``.
WEIGHT_QMIN, WEIGHT_QMAX = -128, 127
#: Largest |int8 weight| with 8-bit and with 7-bit (``reduce_range``) weights, as ONNX
#: Runtime's quantiser uses them.
WEIGHT_LEVELS = {False: 127, True: 64}
#: Batch keys that hold gold targets (class, score, tag ids; answer start and end tokens).
LABEL_KEYS = ("labels", "start_positions", "end_positions")
#: Integer kernels ONNX Runtime runs a QDQ node group as (what :func:`ort_int8_kernels` counts).
ORT_INT8_KERNELS = (
    "MatMulIntegerToFloat",
    "QLinearMatMul",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
    "QGemm",
    "QAttention",
    "QLinearAdd",
    "QLinearMul",
)
_EPS = 1e-8


class FakeQuantLinear(nn.Module):
    """An ``nn.Linear`` whose input and weight are fake-quantised to int8.

    ``y = DQ(Q_u8(x)) @ DQ(Q_s8(W^T)) + b``, computed in float: ``x`` is ``(..., in)`` float32,
    ``W`` ``(out, in)``, ``b`` ``(out,)``; ``y`` is ``(..., out)`` float32. The module keeps the
    original ``weight`` and ``bias`` parameters (same names, so checkpoints and the optimizer
    see the Linear's), plus the activation range buffers ``act_min`` / ``act_max`` (float32
    scalars, ``+inf``/``-inf`` until observed).

    Modes (:attr:`mode`): ``"calibrate"`` widens the range to every batch's min and max;
    ``"ema"`` (in training) moves it towards each batch's by ``1 - ema_decay``; ``"frozen"``
    keeps it. :meth:`freeze` fixes the weight scales too (for export).

    :param linear: the Linear replaced.
    :param per_channel: one weight scale per output channel (else one per tensor).
    :param reduce_range: 7-bit weights (``[-64, 64]``).
    :param ema_decay: ``0 < d < 1``.
    """

    def __init__(
        self,
        linear: nn.Linear,
        *,
        per_channel: bool,
        reduce_range: bool,
        ema_decay: float,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.per_channel = per_channel
        self.levels = WEIGHT_LEVELS[reduce_range]
        self.ema_decay = ema_decay
        self.mode = "calibrate"
        self.register_buffer("act_min", torch.tensor(float("inf")))
        self.register_buffer("act_max", torch.tensor(float("-inf")))
        self._frozen: dict[str, torch.Tensor] | None = None

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"per_channel={self.per_channel}, levels={self.levels}, mode={self.mode}"
        )

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.detach().amin().float(), x.detach().amax().float()
        if self.mode == "calibrate" or not bool(torch.isfinite(self.act_min)):
            self.act_min.copy_(torch.minimum(self.act_min, lo))
            self.act_max.copy_(torch.maximum(self.act_max, hi))
        else:
            d = self.ema_decay
            self.act_min.mul_(d).add_((1 - d) * lo)
            self.act_max.mul_(d).add_((1 - d) * hi)

    def activation_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)`` of the input quantiser: float32 and int32 scalars; the
        range always holds 0 (ONNX Runtime's convention), an unobserved range is ``[0, 1]``."""
        lo = torch.clamp(
            torch.nan_to_num(self.act_min, posinf=0.0, neginf=0.0), max=0.0
        )
        hi = torch.clamp(
            torch.nan_to_num(self.act_max, posinf=1.0, neginf=1.0), min=0.0
        )
        scale = torch.clamp((hi - lo) / (ACT_QMAX - ACT_QMIN), min=_EPS)
        zero = torch.clamp(torch.round(ACT_QMIN - lo / scale), ACT_QMIN, ACT_QMAX).to(
            torch.int32
        )
        return scale.float(), zero

    def weight_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, zero_point)`` of ``W^T`` (``(in, out)``): per channel ``(out,)`` float32 and
        int32 tensors, per tensor scalars; symmetric (zero point 0)."""
        wt = self.weight.detach().t()
        amax = wt.abs().amax(dim=0) if self.per_channel else wt.abs().amax()
        scale = torch.clamp(amax.float() / self.levels, min=_EPS)
        return scale, torch.zeros_like(scale, dtype=torch.int32)

    def freeze(self) -> None:
        """Fix every scale (for export: the graph gets constants) and stop observing."""
        a_scale, a_zero = self.activation_qparams()
        w_scale, w_zero = self.weight_qparams()
        # per-tensor: Python numbers (the scalar overload, which torch.export also traces);
        # per-channel: constant tensors
        self._frozen = {
            "a_scale": float(a_scale),
            "a_zero": int(a_zero),
            "w_scale": w_scale if self.per_channel else float(w_scale),
            "w_zero": w_zero if self.per_channel else int(w_zero),
        }
        self.mode = "frozen"

    def unfreeze(self, mode: str) -> None:
        """Undo :meth:`freeze`, continuing in ``mode``."""
        self._frozen = None
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., in)`` float -> ``(..., out)`` float32; observes ``x`` first in
        ``calibrate`` mode, and in ``ema`` mode while training."""
        a_scale: Any
        a_zero: Any
        w_scale: Any
        w_zero: Any
        if self._frozen is not None:
            a_scale, a_zero = self._frozen["a_scale"], self._frozen["a_zero"]
            w_scale, w_zero = self._frozen["w_scale"], self._frozen["w_zero"]
        else:
            if self.mode == "calibrate" or (self.mode == "ema" and self.training):
                self._observe(x)
            a_scale, a_zero = self.activation_qparams()
            w_scale, w_zero = self.weight_qparams()
        xq = torch.fake_quantize_per_tensor_affine(
            x.float(), a_scale, a_zero, ACT_QMIN, ACT_QMAX
        )
        wt = self.weight.t()
        if self.per_channel:
            wq = torch.fake_quantize_per_channel_affine(
                wt, w_scale, w_zero, 1, WEIGHT_QMIN, WEIGHT_QMAX
            )
        else:
            wq = torch.fake_quantize_per_tensor_affine(
                wt, w_scale, w_zero, WEIGHT_QMIN, WEIGHT_QMAX
            )
        y = torch.matmul(xq, wq)
        return y + self.bias if self.bias is not None else y


def insert_fake_quant(
    model: nn.Module,
    *,
    per_channel: bool,
    reduce_range: bool,
    ema_decay: float,
    exclude: list[str],
) -> tuple[list[str], list[str]]:
    """Replace every ``nn.Linear`` of ``model`` whose name matches no ``exclude`` pattern
    (``fnmatch``) by a :class:`FakeQuantLinear`, in place.

    :returns: ``(quantised module names, names left in float)``.
    """
    quantized: list[str] = []
    kept: list[str] = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            kept.append(name)
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(
            parent,
            child,
            FakeQuantLinear(
                module,
                per_channel=per_channel,
                reduce_range=reduce_range,
                ema_decay=ema_decay,
            ),
        )
        quantized.append(name)
    return quantized, kept


def fake_quant_modules(model: nn.Module) -> list[FakeQuantLinear]:
    """The :class:`FakeQuantLinear` modules of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, FakeQuantLinear)]


def set_mode(model: nn.Module, mode: str) -> None:
    """Set every quantiser's :attr:`FakeQuantLinear.mode` (``calibrate``, ``ema``, ``frozen``)."""
    for m in fake_quant_modules(model):
        m.unfreeze(mode)


@torch.no_grad()
def calibrate(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> int:
    """Min-max calibration of every activation range on ``batches`` (model inputs, no labels).

    :returns: the number of examples seen.
    """
    set_mode(model, "calibrate")
    was_training = model.training
    model.eval()
    seen = 0
    for batch in batches:
        model(**batch)
        seen += int(next(iter(batch.values())).shape[0])
    model.train(was_training)
    return seen


# --- ONNX ---------------------------------------------------------------------------------


def fold_weight_quantizers(onnx_file: Path) -> int:
    """Rewrite ``onnx_file`` in place so that every ``QuantizeLinear`` of a constant (a
    weight) becomes the int8 (or uint8) initialiser it computes, feeding its
    ``DequantizeLinear``: ONNX Runtime's QDQ format for weights, stored at a byte each.
    Float initialisers no longer used are dropped.

    Rounding is half to even and the result is saturated to the zero point's type, as ONNX
    specifies ``QuantizeLinear``.

    :returns: how many quantisers were folded.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from compressor.onnx_export import save_onnx

    model = onnx.load(str(onnx_file))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    constants: dict[str, Any] = {}
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and node.attribute
            and node.attribute[0].name == "value"
        ):
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def value(name: str) -> Any:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return constants.get(name)

    folded = 0
    keep_nodes = []
    new_inits = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) == 3:
            x, scale, zero = (value(n) for n in node.input)
            if x is not None and scale is not None and zero is not None:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                shape = [1] * x.ndim
                if scale.ndim == 1 and scale.size > 1:
                    shape[axis % x.ndim] = scale.size
                s = scale.astype(np.float32).reshape(shape)
                z = zero.astype(np.int32).reshape(shape)
                info = np.iinfo(zero.dtype)
                q = np.clip(
                    np.rint(x.astype(np.float32) / s) + z, info.min, info.max
                ).astype(zero.dtype)
                new_inits.append(numpy_helper.from_array(q, node.output[0]))
                folded += 1
                continue
        keep_nodes.append(node)
    if not folded:
        return 0
    del graph.node[:]
    graph.node.extend(keep_nodes)
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    unused = [i for i in graph.initializer if i.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    keep_constants = [
        n
        for n in graph.node
        if not (n.op_type == "Constant" and n.output[0] not in used)
    ]
    del graph.node[:]
    graph.node.extend(keep_constants)
    onnx.checker.check_model(model)
    save_onnx(model, onnx_file)
    return folded


def ort_int8_kernels(onnx_file: Path) -> dict[str, int]:
    """Operator counts of the graph ONNX Runtime runs for ``onnx_file`` on this CPU: the
    session's optimised graph (extended level, where the QDQ groups become integer kernels),
    saved to a temporary file and counted.

    :returns: operator type -> node count for every type in the optimised graph.
    """
    import tempfile

    import onnxruntime as ort

    from compressor.onnx_export import op_counts

    with tempfile.TemporaryDirectory(prefix="compressor-qat-") as scratch:
        options = ort.SessionOptions()
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        )
        options.optimized_model_filepath = str(Path(scratch) / "optimized.onnx")
        options.intra_op_num_threads = 1
        ort.InferenceSession(
            str(onnx_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return op_counts(Path(scratch) / "optimized.onnx")


def export_qdq(
    model: nn.Module,
    tokenizer: Any,
    out_file: Path,
    *,
    task_type: str,
    exporter: str,
    opset: int | None,
) -> dict[str, Any]:
    """Export the fake-quantised ``model`` (scales frozen) as a QDQ graph with int8 weights.

    :returns: ``{"exporter", "notes", "weights_folded"}``.
    :raises StageError: when no exporter manages the graph.
    """
    from compressor.onnx_export import export_module, task_outputs

    modules = fake_quant_modules(model)
    modes = [m.mode for m in modules]
    was_training = model.training
    model.eval()
    for m in modules:
        m.freeze()
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        used, notes = export_module(
            model,
            tokenizer,
            out_file,
            exporter=exporter,
            opset=opset,
            outputs=task_outputs(task_type),
        )
    finally:
        for m, mode in zip(modules, modes):
            m.unfreeze(mode)
        model.train(was_training)
    return {
        "exporter": used,
        "notes": notes,
        "weights_folded": fold_weight_quantizers(out_file),
    }


# --- training -----------------------------------------------------------------------------


def qat_trainer_class() -> type:
    """The :class:`transformers.Trainer` subclass that trains the fake-quantised student
    against the fp32 teacher (imported lazily: transformers is heavy)."""
    from transformers import Trainer

    from compressor.training.losses import hidden_cosine_loss, task_soft_target_loss

    class QATTrainer(Trainer):
        """Training loss ``alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos``
        against a frozen ``teacher`` (on the training device, not part of the trained model,
        so neither optimised nor checkpointed); evaluation uses the student's own loss. Each
        term, averaged over the logging window, is logged beside ``loss``."""

        def __init__(
            self,
            *args: Any,
            teacher: nn.Module,
            task: Any,
            temperature: float,
            alpha_ce: float,
            alpha_task: float,
            alpha_cos: float,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self.model_accepts_loss_kwargs = False  # our loss is a per-batch mean
            self.teacher = teacher.to(self.args.device).eval().requires_grad_(False)
            self.task = task
            self.temperature = temperature
            self.weights = {
                "loss_ce": alpha_ce,
                "loss_task": alpha_task,
                "loss_cos": alpha_cos,
            }
            self._sums: dict[str, float] = {}
            self._count = 0

        def compute_loss(
            self,
            model: nn.Module,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            if not model.training:
                return super().compute_loss(
                    model, inputs, return_outputs, num_items_in_batch
                )
            features = {k: v for k, v in inputs.items() if k not in LABEL_KEYS}
            targets = {k: v for k, v in inputs.items() if k in LABEL_KEYS}
            want_hidden = self.weights["loss_cos"] > 0
            hard_wanted = self.weights["loss_task"] > 0
            student = model(
                **features,
                **(targets if hard_wanted else {}),
                output_hidden_states=want_hidden,
            )
            with torch.no_grad():
                teacher = self.teacher(**features, output_hidden_states=want_hidden)
            terms: dict[str, torch.Tensor] = {}
            if self.weights["loss_ce"] > 0:
                terms["loss_ce"] = task_soft_target_loss(
                    self.task, student, teacher, inputs, self.temperature
                )
            if hard_wanted:
                terms["loss_task"] = student.loss.float()
            if want_hidden:
                terms["loss_cos"] = hidden_cosine_loss(
                    student.hidden_states[-1],
                    teacher.hidden_states[-1],
                    features.get("attention_mask"),
                )
            total = sum(self.weights[k] * v for k, v in terms.items())
            for k, v in terms.items():
                self._sums[k] = self._sums.get(k, 0.0) + float(v.detach())
            self._count += 1
            return (total, student) if return_outputs else total

        def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
            if "loss" in logs and self._count:
                for k, v in self._sums.items():
                    logs[k] = round(v / self._count, 6)
                self._sums, self._count = {}, 0
            super().log(logs, *args, **kwargs)

    return QATTrainer


def _feature_batches(
    dataset: Any, collator: Any, batch_size: int, limit: int
) -> list[dict[str, torch.Tensor]]:
    """Collated model inputs (labels dropped) of the first ``limit`` rows of ``dataset``."""
    rows = [dataset[i] for i in range(min(limit, len(dataset)))]
    out = []
    for i in range(0, len(rows), batch_size):
        batch = collator(rows[i : i + batch_size])
        out.append({k: v for k, v in batch.items() if k not in LABEL_KEYS})
    return out


def _score(scorer: Any, graph: Path) -> float:
    """The headline metric of ``graph`` on the scorer's split (points: x100 for fractions)."""
    import numpy as np

    scored = scorer.score(graph)
    value = float(
        scorer.metric_matrix(np.ones((1, len(scorer))), scored)[scorer.headline.name][0]
    )
    return value


def run_qat(
    strategy: Strategy, artifact: Artifact, config: Any, context: StageContext
) -> Artifact:
    """Calibrate, train with fake quantisation and distillation, export QDQ int8; see
    :class:`~.plugin.QuantizationAwareTraining`."""
    from transformers import set_seed

    from compressor.onnx_export import (
        INT8_OPERATORS,
        ONNX_FILE,
        load_for_export,
        op_counts,
    )
    from compressor.training import trainer as training

    from .ort import resolve_int8_settings

    data = context.data
    task = data.task
    if config.alpha_task > 0 and not task.supervised:
        raise StageError(
            f"alpha_task {config.alpha_task} needs labels, and task {data.type!r} has none",
            key="config.alpha_task",
            hint="set alpha_task: 0 (distillation alone needs no labels)",
        )
    task.check_training_data(data, strategy.name)
    training.check_device_and_precision(config, context.device)
    settings, _, _ = resolve_int8_settings(
        SimpleNamespace(
            preset=config.preset,
            weight_type="auto",
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
        )
    )
    seed = context.seed if config.seed is None else config.seed
    set_seed(seed)
    source = Path(artifact.path)
    tokenizer = context.load_tokenizer(artifact)
    max_length = training.effective_max_length(tokenizer, config.max_length, context)

    teacher = load_for_export(source, data.type)
    student = load_for_export(source, data.type)
    quantized, kept = insert_fake_quant(
        student,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        ema_decay=config.ema_decay,
        exclude=list(config.exclude_modules),
    )
    if not quantized:
        raise StageError(
            f"no nn.Linear of {artifact.name!r} is left to quantise"
            + (
                f" (exclude_modules {config.exclude_modules} matches all {len(kept)})"
                if kept
                else ""
            ),
            key="config.exclude_modules",
        )

    train = data.splits["train"]
    if config.max_train_samples is not None and config.max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(config.max_train_samples))
    train_rows = training.tokenize_split(
        train, tokenizer, max_length, data, progress=context.progress
    )
    validation = data.splits.get("validation")
    has_validation = bool(
        task.supervised and validation is not None and len(validation)
    )
    val_rows = (
        training.tokenize_split(
            validation, tokenizer, max_length, data, progress=context.progress
        )
        if has_validation
        else None
    )
    collator = task.collator(tokenizer)

    context.logger.info(
        "%s: QAT of %d Linear modules (%s), calibrating on %d examples",
        context.stage_name,
        len(quantized),
        settings.summary(),
        min(config.calibration_samples, len(train_rows)),
    )
    calibrated = calibrate(
        student,
        _feature_batches(
            train_rows.shuffle(seed=seed),
            collator,
            config.batch_size,
            config.calibration_samples,
        ),
    )
    scratch = (Path(context.work_dir) / "qat-onnx").resolve()
    shutil.rmtree(scratch, ignore_errors=True)
    scorer = None
    ptq_graph = None
    if config.compare_ptq:
        scorer = _scorer_or_none(context, tokenizer, source)
        if scorer is not None:
            ptq_graph = scratch / "ptq" / ONNX_FILE
            export_qdq(
                student,
                tokenizer,
                ptq_graph,
                task_type=data.type,
                exporter="torchscript",
                opset=config.opset,
            )

    set_mode(student, config.range_update)
    args = training.training_arguments(
        config,
        context,
        has_validation=has_validation,
        seed=seed,
        best_metric=task.training_metric() if has_validation else None,
    )
    trainer = qat_trainer_class()(
        model=student,
        args=args,
        train_dataset=train_rows,
        eval_dataset=val_rows,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=training.compute_metrics(data) if has_validation else None,
        callbacks=training.callbacks(config),
        teacher=teacher,
        task=task,
        temperature=config.temperature,
        alpha_ce=config.alpha_ce,
        alpha_task=config.alpha_task,
        alpha_cos=config.alpha_cos,
    )
    metrics = training.train_and_evaluate(
        trainer, context, has_validation=has_validation
    )
    model = trainer.accelerator.unwrap_model(trainer.model).cpu()

    record: dict[str, Any] = {
        "method": "fake quantisation (torch.fake_quantize_per_tensor/per_channel_affine, STE) + "
        "distillation from the fp32 input; QDQ ONNX export",
        "quantized_modules": len(quantized),
        "kept_float": kept,
        "weights": f"int8 symmetric, {'per channel' if settings.per_channel else 'per tensor'}, "
        f"[-{WEIGHT_LEVELS[settings.reduce_range]}, {WEIGHT_LEVELS[settings.reduce_range]}]",
        "activations": "uint8 asymmetric, per tensor, min-max calibration then "
        + (
            f"EMA (decay {config.ema_decay})"
            if config.range_update == "ema"
            else "frozen"
        ),
        "calibration_samples": calibrated,
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "temperature": config.temperature,
        "alpha_ce": config.alpha_ce,
        "alpha_task": config.alpha_task,
        "alpha_cos": config.alpha_cos,
        "train_examples": len(train_rows),
        "training": metrics,
    }
    extra: dict[str, Any] = {
        "qat": record,
        "int8_settings": settings.record(),
        "optimization": "none",
    }
    if not trainer.is_world_process_zero():
        return context.new_artifact(
            artifact, strategy.name, config, format="onnx", extra=extra
        )

    out = Path(context.output_dir)
    exported = export_qdq(
        model,
        tokenizer,
        out / ONNX_FILE,
        task_type=data.type,
        exporter="torchscript",
        opset=config.opset,
    )
    shutil.copyfile(source / "config.json", out / "config.json")
    tokenizer.save_pretrained(out)
    import onnxruntime as ort

    graph_ops = op_counts(out / ONNX_FILE)
    kernels = {
        op: n
        for op, n in sorted(ort_int8_kernels(out / ONNX_FILE).items())
        if op in ORT_INT8_KERNELS
    }
    float_matmuls = graph_ops.get("MatMul", 0)
    extra.update(
        {
            "exporter": exported["exporter"],
            "export_notes": exported["notes"],
            "weights_folded": exported["weights_folded"],
            "int8_nodes": {
                op: n for op, n in sorted(graph_ops.items()) if op in INT8_OPERATORS
            },
            "int8_kernels": {
                "counts": kernels,
                "summary": f"ONNX Runtime {ort.__version__} runs {sum(kernels.values())} int8 kernels "
                f"({', '.join(f'{n} {op}' for op, n in kernels.items()) or 'none'}) for the "
                f"{len(quantized)} quantised Linear layers; {float_matmuls} MatMul nodes in the graph",
            },
            "onnxruntime": ort.__version__,
        }
    )
    record["summary"] = (
        f"QAT {metrics.get('global_step')} steps on {len(train_rows)} examples, distilled from the fp32 input "
        f"(T={config.temperature:g}, alpha ce/task/cos {config.alpha_ce:g}/{config.alpha_task:g}/"
        f"{config.alpha_cos:g}); {len(quantized)} Linear layers int8 ({record['weights']}; activations "
        f"{record['activations']})" + (f"; {len(kept)} kept in float" if kept else "")
    )
    if scorer is not None and ptq_graph is not None:
        ptq, qat = _score(scorer, ptq_graph), _score(scorer, out / ONNX_FILE)
        extra["ptq_comparison"] = {
            "metric": scorer.headline.name,
            "split": scorer.split_name,
            "examples": len(scorer),
            "ptq": ptq,
            "qat": qat,
            "summary": f"{scorer.headline.name} on {len(scorer)} {scorer.split_name} examples: QAT {qat:.4f}, "
            f"the same int8 settings without training (PTQ, calibrated) {ptq:.4f}",
        }
        context.logger.info(
            "%s: %s", context.stage_name, extra["ptq_comparison"]["summary"]
        )
    context.logger.info("%s: %s", context.stage_name, extra["int8_kernels"]["summary"])
    shutil.rmtree(scratch, ignore_errors=True)
    return context.new_artifact(
        artifact, strategy.name, config, format="onnx", extra=extra
    )


def _scorer_or_none(context: StageContext, tokenizer: Any, config_dir: Path) -> Any:
    """An :class:`~.accuracy_control.OnnxTaskScorer` on the validation split, or ``None``
    (logged) when the task has no metric or no validation examples."""
    from .accuracy_control import OnnxTaskScorer

    data = context.data
    validation = data.splits.get("validation")
    if not data.task.evaluated or validation is None or not len(validation):
        context.logger.info(
            "%s: compare_ptq skipped: no validation split with a metric",
            context.stage_name,
        )
        return None
    return OnnxTaskScorer(data, tokenizer, config_dir, batch_size=32)
