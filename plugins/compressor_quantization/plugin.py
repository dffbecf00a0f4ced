"""Quantisation strategies and the evaluation backends for the formats they write.

Imports only pydantic and the compressor core; torch and onnxruntime load inside
each strategy's ``apply`` and each backend's ``load``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from compressor.hookspecs import hookimpl
from compressor.strategy import ChainInput, Strategy, StrategyConfig
from compressor.training import TrainingConfig

from .backends import FORMAT_DYNAMIC_INT8, FORMAT_HALF, DynamicInt8Backend, HalfBackend

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext

Preset = Literal["auto", "avx512_vnni", "avx512", "avx_vnni", "avx2", "arm64"]

#: Operators left in float by default in static int8: their inputs have outliers or wide
#: ranges in transformer encoders (LayerNorm, GELU, Softmax, the residual Add), so int8
#: activations there cost accuracy (Bondarenko et al. 2021, "Understanding and overcoming the
#: challenges of efficient transformer quantization").
DEFAULT_STATIC_EXCLUDED = [
    "LayerNormalization",
    "SkipLayerNormalization",
    "Gelu",
    "BiasGelu",
    "FastGelu",
    "Softmax",
    "Add",
]


# --- PyTorch dynamic int8 -----------------------------------------------------------------


class DynamicInt8Config(StrategyConfig):
    """Config of :class:`DynamicInt8`."""

    per_channel: bool = Field(
        True,
        description="One int8 scale per output channel of each Linear weight "
        "(per_channel_dynamic_qconfig) instead of one per tensor.",
    )


class DynamicInt8(Strategy):
    """PyTorch dynamic int8 quantisation of every ``nn.Linear`` (``torch.ao.quantization.
    quantize_dynamic``), as in the PyTorch dynamic-quantisation tutorial for BERT.

    Weights are stored as int8 (per channel by default); activations are quantised on the fly
    per call; embeddings and LayerNorm stay fp32. Runs on CPU (fbgemm / x86 / qnnpack
    kernels). The artifact (format ``pytorch-dynamic-int8``) holds ``config.json``, the
    tokenizer, ``quantized_model.pt`` (the quantised state dict, loadable with
    ``torch.load(weights_only=True)``) and ``quantization.json``; the plugin's
    :class:`~.backends.DynamicInt8Backend` rebuilds the fp32 architecture from the config,
    applies the same ``quantize_dynamic`` and loads the state dict.
    """

    name: ClassVar[str] = "quantize.dynamic-int8"
    quantizes: ClassVar[bool] = True
    Config: ClassVar[type[DynamicInt8Config]] = DynamicInt8Config
    description: ClassVar[str] = "PyTorch dynamic int8 of Linear layers (torch.ao quantize_dynamic)"
    input_formats: ClassVar[tuple[str, ...]] = ("pytorch",)
    produces: ClassVar[str] = FORMAT_DYNAMIC_INT8
    task_types: ClassVar[tuple[str, ...]] = ("*",)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Quantise ``artifact`` and save it to ``context.output_dir``.

        :returns: the ``pytorch-dynamic-int8`` artifact; lineage ``extra``:
            ``quantized_modules`` (count), ``engine``, ``per_channel``.
        :raises compressor.errors.StageError: if the model cannot be loaded.
        """
        from .torch_int8 import run_dynamic_int8

        return run_dynamic_int8(self, artifact, config, context)


# --- ONNX Runtime int8 --------------------------------------------------------------------


def ort_chain_refusal(config: Any, given: "ChainInput") -> str | None:
    """Why an ONNX Runtime quantiser cannot take ``given`` (``None``: it can).

    - an input already quantised (``quantize.*`` upstream): its integer operators cannot be
      quantised again (ONNX Runtime's shape inference and quantiser fail on them);
    - ``optimization`` set for an ONNX input: the graph is quantised as it is; optimise it
      in the ``export.onnx`` stage that made it.
    """
    if given.quantized:
        return (
            f"its input is already quantised (made by {' -> '.join(given.made_by)}); int8 "
            "operators cannot be quantised again: quantise the float model instead"
        )
    if given.format == "onnx" and config.optimization is not None:
        return (
            f"optimization {config.optimization!r} is set, but the input is already ONNX and is "
            "quantised as it is: remove 'optimization', or set it on the export.onnx stage"
        )
    return None


class _OrtConfig(StrategyConfig):
    preset: Preset = Field(
        "auto",
        description="Instruction set of the target CPU, which decides the 'auto' int8 settings "
        "below as ONNX Runtime's quantization docs advise for it. 'auto' reads this machine's "
        "CPU flags: avx512_vnni (also AMX CPUs), else avx512 (F and BW, no VNNI), else avx_vnni, "
        "else avx2; arm64 on ARM. Name another to prepare a model for a different machine.",
    )
    weight_type: Literal["auto", "int8", "uint8"] = Field(
        "auto",
        description="int8 weights. 'auto': int8 (s8) on every preset, the u8s8 kernels ONNX "
        "Runtime runs fastest; uint8 selects its u8u8 kernels, which never saturate but are "
        "slower on AVX2.",
    )
    per_channel: Literal["auto"] | bool = Field(
        "auto",
        description="One weight scale per output channel instead of one per tensor. 'auto': on "
        "for every preset (per-tensor cost the MPNet NER teacher 24 F1 points against 3.8 "
        "per-channel, docs/tasks.md).",
    )
    reduce_range: Literal["auto"] | bool = Field(
        "auto",
        description="7-bit weights ([-64, 64]), so that the 16-bit sums of the u8s8 kernels "
        "(VPMADDUBSW) cannot saturate. 'auto': on for int8 per-channel weights on avx2 and avx512 "
        "(no VNNI), as ONNX Runtime's docs advise; off with VNNI, AMX, on ARM and for uint8 or "
        "per-tensor weights.",
    )
    saturation_check: bool = Field(
        True,
        description="After quantising, compare the int8 graph's outputs with the float graph's "
        "on saturation_samples examples (ONNX Runtime, this CPU). If the maximum deviation, "
        "relative to the largest float output, exceeds saturation_tolerance, reduce_range is "
        "off and int8 weights run on kernels that can saturate (avx2, avx512: on this CPU and "
        "on the preset's), quantise again with reduce_range and keep that graph when it at "
        "least halves the deviation (saturation detected and avoided). The lineage records "
        "the deviations and what was done.",
    )
    saturation_samples: int = Field(
        32, ge=1, le=1024, description="Examples of saturation_split the saturation check runs."
    )
    saturation_split: str = Field(
        "validation",
        min_length=1,
        description="Split the saturation check draws its examples from (falls back to test, "
        "then train, when the task has no such split).",
    )
    saturation_tolerance: float = Field(
        0.05,
        gt=0.0,
        le=10.0,
        description="Largest max |int8 - float| output difference, relative to the largest "
        "|float| output, that the saturation check accepts without trying reduce_range.",
    )
    max_loss: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="Accuracy-controlled int8: the most points of the task's headline metric "
        "(accuracy, entity F1, exact match, Spearman x100) the int8 model may lose against "
        "the stage's input, on the validation split. Node groups (per layer: q/k/v, attention "
        "output, FFN in, FFN out; embeddings; head) are ranked by sensitivity and the most "
        "sensitive kept in float until the lower bound of the paired bootstrap interval of "
        "(int8 - input) is >= -max_loss. Unset: quantise everything. When no int8 graph "
        "meets the bound, the stage fails (exit status 2) saying so.",
    )
    confidence: float | None = Field(
        0.95,
        gt=0.5,
        lt=1.0,
        description="Coverage of the paired bootstrap interval max_loss bounds. null: compare "
        "point values instead (as Intel Neural Compressor and NNCF do), labelled so in the "
        "record.",
    )
    optimization: Literal["none", "O1", "O2", "O3"] | None = Field(
        None,
        description="ONNX Runtime graph optimisation applied to a PyTorch input after export, "
        "before quantisation (levels as in export.onnx). Unset: the strategy's default for "
        "PyTorch input; an ONNX input is quantised as it is (optimise it in its export.onnx "
        "stage), so setting a level with ONNX input is an error.",
    )
    opset: int | None = Field(None, ge=11, le=23, description="ONNX opset of the export.")
    exporter: Literal["auto", "torchscript", "dynamo"] = Field(
        "auto",
        description="torch.onnx exporter of a PyTorch input (see export.onnx): 'auto' tries "
        "TorchScript, whose graph ONNX Runtime fuses into Attention kernels, and falls back "
        "to dynamo.",
    )


class OrtDynamicConfig(_OrtConfig):
    """Config of :class:`OrtDynamic`."""


class OrtDynamic(Strategy):
    """ONNX Runtime dynamic int8 (``onnxruntime.quantization.quantize_dynamic``).

    A PyTorch input is first exported with ``torch.onnx`` and, by default, graph-optimised
    at ``O2`` (Attention, SkipLayerNormalization and BiasGelu fusion) so that the quantised
    graph runs fused ``QAttention`` kernels; then the weights of every operator type ONNX
    Runtime has integer kernels for (``MatMul``, ``Attention``, ``Gather``...) are quantised
    to int8, symmetric, with the settings the preset calls for
    (:func:`~.hardware.choose_int8_settings`: s8 per-channel weights everywhere, 7-bit
    ``reduce_range`` on AVX2 and AVX-512 without VNNI, whose ``VPMADDUBSW`` kernels can
    saturate; ONNX Runtime's quantization docs and its issues 5849, 6004 and 9599).
    Activations are quantised per call (no calibration). Then the saturation check compares
    the int8 graph with the float one on a batch of ``saturation_split`` and, when the gap is
    large and ``reduce_range`` closes it, keeps a ``reduce_range`` graph instead. The artifact
    (format ``onnx``) holds ``model.onnx``, ``config.json`` and the tokenizer.
    """

    name: ClassVar[str] = "quantize.ort-dynamic"
    quantizes: ClassVar[bool] = True
    requires_roles: ClassVar[tuple[str, ...]] = ("onnx",)
    Config: ClassVar[type[OrtDynamicConfig]] = OrtDynamicConfig
    description: ClassVar[str] = "ONNX Runtime dynamic int8 (onnxruntime.quantization), preset from CPU flags"
    input_formats: ClassVar[tuple[str, ...]] = ("pytorch", "onnx")
    produces: ClassVar[str] = "onnx"
    task_types: ClassVar[tuple[str, ...]] = ("*",)
    default_optimization: ClassVar[str] = "O2"

    @classmethod
    def chain_refusal(cls, config: Any, given: "ChainInput") -> str | None:
        """Refuses an input that is already quantised, and a graph optimisation level set for
        an ONNX input (see :func:`ort_chain_refusal`)."""
        return ort_chain_refusal(config, given)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Quantise ``artifact`` (exporting it first when it is PyTorch).

        :returns: the ONNX artifact; lineage ``extra``: ``preset`` and how it was chosen,
            ``cpu_flags`` used, ``int8_settings`` (weight and activation types,
            ``per_channel``, ``reduce_range``, ``chosen_by``, ``reason``, ``summary``: one
            readable line), ``saturation_check`` (deviations, whether saturation was detected
            and avoided, ``summary``), ``optimization``, ``operators_quantized``,
            ``int8_nodes`` (count by operator type).
        :raises compressor.errors.StageError: for a CPU with no int8 preset, an export or
            quantisation failure, or an optimisation level set for an ONNX input.
        """
        from .ort import run_ort_quantization

        return run_ort_quantization(self, artifact, config, context, static=False)


class OrtStaticConfig(_OrtConfig):
    """Config of :class:`OrtStatic`."""

    calibration_method: Literal["minmax", "entropy", "percentiles"] = Field(
        "minmax",
        description="How activation ranges are set from the calibration examples "
        "(onnxruntime.quantization CalibrationMethod): min-max, entropy (KL divergence) or "
        "percentiles.",
    )
    percentile: float = Field(
        99.999, gt=90.0, le=100.0, description="Percentile kept by 'percentiles' calibration."
    )
    calibration_samples: int = Field(
        128, ge=1, le=100_000, description="Examples drawn from the calibration split."
    )
    calibration_split: str = Field("train", min_length=1, description="Split calibration examples come from.")
    calibration_batch_size: int = Field(8, ge=1, le=4096, description="Sequences per calibration call.")
    max_length: int = Field(
        128,
        ge=8,
        le=8192,
        description="Calibration inputs are padded or truncated to this many tokens, at most "
        "the model's usable positions (a longer setting is capped there, and the lineage records "
        "the length used).",
    )
    operators_to_quantize: list[str] | None = Field(
        None,
        description="ONNX operator types to quantise; unset: every type ONNX Runtime "
        "quantises in QDQ form (its QDQRegistry) minus exclude_operators.",
    )
    exclude_operators: list[str] = Field(
        default_factory=lambda: list(DEFAULT_STATIC_EXCLUDED),
        description="Operator types left in float: by default LayerNorm, GELU, Softmax and "
        "the residual Add (and their fused forms), whose activations wreck encoder accuracy "
        "when quantised.",
    )

    @field_validator("operators_to_quantize")
    @classmethod
    def _not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("list at least one operator type, or leave it unset for the default")
        return v


class OrtStatic(Strategy):
    """ONNX Runtime static int8 (QDQ) with calibration (``onnxruntime.quantization.quantize_static``).

    ``calibration_samples`` examples are drawn (seeded) from ``calibration_split``, tokenised
    to ``max_length`` tokens and run through an augmented graph to collect activation ranges
    (``CalibrationMethod.<calibration_method>``); weights and
    activations of the quantised operators are then int8. Operators in
    ``exclude_operators`` stay float (the lineage records the operator types quantised and
    the excluded ones present in the graph, with their node counts). Weight type,
    per-channel and ``reduce_range`` follow the preset as in :class:`OrtDynamic`, and so does
    the saturation check (a second quantisation reuses the calibrated ranges). A PyTorch input
    is exported first (no graph optimisation by default: ONNX Runtime has no static int8
    kernel for the fused Attention operator).
    """

    name: ClassVar[str] = "quantize.ort-static"
    quantizes: ClassVar[bool] = True
    requires_roles: ClassVar[tuple[str, ...]] = ("onnx",)
    Config: ClassVar[type[OrtStaticConfig]] = OrtStaticConfig
    description: ClassVar[str] = "ONNX Runtime static int8 with calibration (min-max/entropy/percentiles)"
    needs_training_data: ClassVar[bool] = True
    needs_calibration_data: ClassVar[bool] = True
    input_formats: ClassVar[tuple[str, ...]] = ("pytorch", "onnx")
    produces: ClassVar[str] = "onnx"
    task_types: ClassVar[tuple[str, ...]] = ("*",)
    default_optimization: ClassVar[str] = "none"

    @classmethod
    def chain_refusal(cls, config: Any, given: "ChainInput") -> str | None:
        """Refuses an input that is already quantised, and a graph optimisation level set for
        an ONNX input (see :func:`ort_chain_refusal`)."""
        return ort_chain_refusal(config, given)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Calibrate and quantise ``artifact`` (exporting it first when it is PyTorch).

        :returns: the ONNX artifact; lineage ``extra`` as :class:`OrtDynamic` plus
            ``calibration`` (method, samples, split, max_length) and ``excluded_operators``
            (type -> node count left in float).
        :raises compressor.errors.StageError: see :meth:`OrtDynamic.apply`; also for a
            missing or empty calibration split.
        """
        from .ort import run_ort_quantization

        return run_ort_quantization(self, artifact, config, context, static=True)


# --- quantization-aware training ----------------------------------------------------------


class QATConfig(TrainingConfig):
    """Config of :class:`QuantizationAwareTraining`: the training settings of
    :class:`~compressor.training.TrainingConfig` (``epochs``, ``learning_rate``, ``batch_size``,
    ``max_steps``, ``max_length``...), the distillation loss, the int8 settings and the
    activation ranges.

    Sample recipe stage::

        - name: int8
          strategy: quantize.qat
          config:
            epochs: 1
            learning_rate: 2.0e-5
            max_train_samples: 2000
    """

    learning_rate: float = Field(
        2e-5, gt=0, le=1.0,
        description="Peak learning rate of AdamW (QAT starts from a trained model: smaller than "
        "a fine-tune's).",
    )
    max_train_samples: int | None = Field(
        None, ge=1, le=100_000_000,
        description="Train on at most this many examples of the train split (a seeded random "
        "subset); null: all of it. QAT is meant to be short.",
    )
    temperature: float = Field(
        2.0, gt=0, le=100.0,
        description="Softmax temperature T of the soft-target KL to the fp32 model (Hinton et al. "
        "2015), which is scaled by T^2.",
    )
    alpha_ce: float = Field(
        1.0, ge=0, le=1000.0,
        description="Weight of the soft-target loss to the fp32 input model: KL with temperature "
        "on distributions (classes, tags, answer start/end), MSE on scores and sentence embeddings.",
    )
    alpha_task: float = Field(
        0.0, ge=0, le=1000.0,
        description="Weight of the head's own loss on the gold labels (cross-entropy, MSE); "
        "needs a task with labels. 0: distillation alone, which needs no labels.",
    )
    alpha_cos: float = Field(
        1.0, ge=0, le=1000.0,
        description="Weight of the hidden-state cosine loss, 1 - cos(h_int8, h_fp32) on the last "
        "hidden states at non-padding positions (DistilBERT's L_cos).",
    )
    preset: Preset = Field(
        "auto",
        description="Instruction set of the target CPU, as in quantize.ort-dynamic: decides "
        "per_channel and reduce_range when they are 'auto'.",
    )
    per_channel: Literal["auto"] | bool = Field(
        "auto",
        description="One int8 weight scale per output channel instead of one per tensor. "
        "'auto': on for every preset.",
    )
    reduce_range: Literal["auto"] | bool = Field(
        "auto",
        description="7-bit weights ([-64, 64]) so that the 16-bit sums of ONNX Runtime's u8s8 "
        "kernels on AVX2 and AVX-512 without VNNI cannot saturate; QAT trains with them. 'auto': "
        "as quantize.ort-dynamic (on for per-channel weights on avx2 and avx512).",
    )
    calibration_samples: int = Field(
        256, ge=1, le=100_000,
        description="Training examples whose activations set each quantiser's initial "
        "(min-max) range before training.",
    )
    range_update: Literal["ema", "frozen"] = Field(
        "ema",
        description="How activation ranges follow training: 'ema', an exponential moving "
        "average of each batch's min and max (Jacob et al. 2018); 'frozen', the calibrated "
        "ranges kept.",
    )
    ema_decay: float = Field(
        0.99, gt=0.0, lt=1.0,
        description="Decay of the range EMA: each training batch moves a range by (1 - decay) "
        "towards its own min and max.",
    )
    exclude_modules: list[str] = Field(
        default_factory=list,
        description="fnmatch patterns of nn.Linear module names left in float (e.g. "
        "'classifier', '*.layer.11.output.dense'); the lineage lists the modules kept.",
    )
    compare_ptq: bool = Field(
        True,
        description="Also export the calibrated, untrained int8 graph (post-training "
        "quantisation with the same settings) and record both graphs' headline metric on the "
        "validation split: what the training bought.",
    )
    opset: int | None = Field(
        None, ge=13, le=23,
        description="ONNX opset of the TorchScript export (13 at least: per-channel "
        "QuantizeLinear); null: 17. (torch.export, the dynamo exporter, has no kernel for the "
        "fake-quantisation operators in torch 2.13, so QAT exports with TorchScript.)",
    )

    @model_validator(mode="after")
    def _some_loss(self) -> QATConfig:
        if self.alpha_ce == 0 and self.alpha_task == 0 and self.alpha_cos == 0:
            raise ValueError("alpha_ce, alpha_task and alpha_cos are all 0: set at least one above 0")
        return self


class QuantizationAwareTraining(Strategy):
    """Quantization-aware training with distillation from the fp32 input, exported as a QDQ
    int8 ONNX graph (Jacob et al. 2018; Zafrir et al. 2019, Q8BERT).

    Every ``nn.Linear`` of the input model (minus ``exclude_modules``) gets int8 fake
    quantisers (``torch.fake_quantize_per_tensor_affine`` / ``per_channel_affine``: uint8
    asymmetric per-tensor activations, int8 symmetric weights, per channel and 7-bit as the
    preset calls for, like ``quantize.ort-dynamic``); activation ranges are calibrated (min-max
    on ``calibration_samples`` training examples), then follow an EMA during training. The
    model trains through transformers' Trainer against the frozen fp32 input on
    ``alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos`` (the losses of
    ``distill.distilbert``), every task (classification, regression, sentence embeddings,
    token classification, QA). ``torch.onnx`` exports the quantisers as
    ``QuantizeLinear``/``DequantizeLinear``; weights are stored as int8 initialisers (QDQ
    format), and ONNX Runtime runs each quantised MatMul as an integer kernel. The artifact
    (format ``onnx``) holds ``model.onnx``, ``config.json`` and the tokenizer.
    """

    name: ClassVar[str] = "quantize.qat"
    quantizes: ClassVar[bool] = True
    requires_roles: ClassVar[tuple[str, ...]] = ("onnx",)
    Config: ClassVar[type[QATConfig]] = QATConfig
    description: ClassVar[str] = "Quantization-aware training distilled from the fp32 input, QDQ int8 ONNX"
    needs_training_data: ClassVar[bool] = True
    needs_calibration_data: ClassVar[bool] = True
    input_formats: ClassVar[tuple[str, ...]] = ("pytorch",)
    produces: ClassVar[str] = "onnx"
    task_types: ClassVar[tuple[str, ...]] = (
        "text-classification", "text-regression", "sentence-embedding", "token-classification",
        "question-answering",
    )

    @classmethod
    def chain_refusal(cls, config: Any, given: ChainInput) -> str | None:
        """Refuses an input that is already quantised (its weights are no longer fp32)."""
        if given.quantized:
            return (
                f"its input is already quantised (made by {' -> '.join(given.made_by)}): QAT "
                "trains the fp32 model; give it the float model instead"
            )
        return None

    def apply(self, artifact: Artifact, config: Any, context: StageContext) -> Artifact:
        """Calibrate, train with fake quantisation and distillation, export QDQ int8.

        :returns: the ONNX artifact; lineage ``extra``: ``qat`` (settings, quantised and
            float-kept modules, training metrics, ``summary``), ``int8_settings``,
            ``int8_nodes`` (QuantizeLinear/DequantizeLinear counts in the file),
            ``int8_kernels`` (integer kernels in ONNX Runtime's optimised graph, ``summary``),
            ``weights_folded``, ``exporter``, ``ptq_comparison`` (headline metric of the
            untrained and trained int8 graphs, ``summary``) when ``compare_ptq``.
        :raises compressor.errors.StageError: for ``alpha_task > 0`` on a task without
            labels (key ``config.alpha_task``), ``exclude_modules`` that leave nothing to
            quantise (``config.exclude_modules``), a missing or empty train split, a precision
            the hardware lacks, a CPU with no int8 preset, or a failed export.
        """
        from .qat import run_qat

        return run_qat(self, artifact, config, context)


# --- half precision -----------------------------------------------------------------------


class HalfConfig(StrategyConfig):
    """Config of :class:`Half`."""

    dtype: Literal["auto", "float16", "bfloat16"] = Field(
        "auto",
        description="'auto': float16 when the run has a CUDA GPU, bfloat16 on a CPU with "
        "AMX-BF16 or AVX-512 BF16; other hardware is refused.",
    )


class Half(Strategy):
    """Cast every weight to fp16 (CUDA) or bf16 (CPUs with AMX / AVX-512 BF16).

    The artifact (format ``pytorch-half``) is a ``save_pretrained`` folder whose safetensors
    and ``config.json`` (``torch_dtype``) are in that dtype; the plugin's
    :class:`~.backends.HalfBackend` loads it with ``dtype="auto"`` and runs it in that dtype
    (bf16 on CPU or CUDA; fp16 on CUDA only).
    """

    name: ClassVar[str] = "quantize.half"
    quantizes: ClassVar[bool] = True
    Config: ClassVar[type[HalfConfig]] = HalfConfig
    description: ClassVar[str] = "fp16 (CUDA) or bf16 (AMX / AVX-512 BF16 CPUs) weights"
    input_formats: ClassVar[tuple[str, ...]] = ("pytorch",)
    produces: ClassVar[str] = FORMAT_HALF
    task_types: ClassVar[tuple[str, ...]] = ("*",)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Cast ``artifact`` and save it to ``context.output_dir``.

        :returns: the ``pytorch-half`` artifact; lineage ``extra``: ``dtype``, ``reason``.
        :raises compressor.errors.StageError: where the hardware supports neither dtype, or
            the requested one.
        """
        from .half import run_half

        return run_half(self, artifact, config, context)


@hookimpl
def compressor_register_strategies(register: Any) -> None:
    """Register the five quantisation strategies."""
    for cls in (DynamicInt8, OrtDynamic, OrtStatic, QuantizationAwareTraining, Half):
        register(cls)


@hookimpl
def compressor_register_backends(register: Any) -> None:
    """Register the backends of the ``pytorch-dynamic-int8`` and ``pytorch-half`` formats."""
    register(DynamicInt8Backend)
    register(HalfBackend)
