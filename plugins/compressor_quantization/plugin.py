"""Quantisation strategies and the evaluation backends for the formats they write.

Imports only pydantic and the compressor core; torch and onnxruntime load inside
each strategy's ``apply`` and each backend's ``load``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from compressor.hookspecs import hookimpl
from compressor.strategy import ChainInput, Strategy, StrategyConfig

from .backends import FORMAT_DYNAMIC_INT8, FORMAT_HALF, DynamicInt8Backend, HalfBackend

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext

Preset = Literal["auto", "avx512_vnni", "avx512", "avx2", "arm64"]

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
        description="Instruction set of the target CPU, which sets the int8 types as optimum's "
        "presets did (u8 activations; u8 weights on avx2, s8 elsewhere). 'auto' reads this "
        "machine's CPU flags: avx512_vnni, else avx512, else avx2; arm64 on ARM.",
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

    per_channel: bool = Field(
        False,
        description="Per-channel weight scales (more accurate, larger and often slower "
        "with dynamic quantisation on CPU).",
    )


class OrtDynamic(Strategy):
    """ONNX Runtime dynamic int8 (``onnxruntime.quantization.quantize_dynamic``).

    A PyTorch input is first exported with ``torch.onnx`` and, by default, graph-optimised
    at ``O2`` (Attention, SkipLayerNormalization and BiasGelu fusion) so that the quantised
    graph runs fused ``QAttention`` kernels; then the weights of every operator type ONNX
    Runtime has integer kernels for (``MatMul``, ``Attention``, ``Gather``...) are quantised
    to int8, symmetric, with the preset's types.
    Activations are quantised per call (no calibration). The artifact (format ``onnx``) holds
    ``model.onnx``, ``config.json`` and the tokenizer.
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
            ``cpu_flags`` used, ``optimization``, ``operators_quantized``,
            ``quantized_nodes`` (count by operator type).
        :raises compressor.errors.StageError: for a CPU with no int8 preset, an export or
            quantisation failure, or an optimisation level set for an ONNX input.
        """
        from .ort import run_ort_quantization

        return run_ort_quantization(self, artifact, config, context, static=False)


class OrtStaticConfig(_OrtConfig):
    """Config of :class:`OrtStatic`."""

    per_channel: bool = Field(True, description="Per-channel weight scales.")
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
    the excluded ones present in the graph, with their node counts). A PyTorch input is
    exported first (no graph optimisation by default: ONNX Runtime has no static int8
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
    """Register the four quantisation strategies."""
    for cls in (DynamicInt8, OrtDynamic, OrtStatic, Half):
        register(cls)


@hookimpl
def compressor_register_backends(register: Any) -> None:
    """Register the backends of the ``pytorch-dynamic-int8`` and ``pytorch-half`` formats."""
    register(DynamicInt8Backend)
    register(HalfBackend)
