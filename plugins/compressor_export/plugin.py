"""The ``export.onnx`` strategy: PyTorch artifact -> ONNX artifact, checked for parity.

Imports only pydantic and the compressor core; torch and onnxruntime load inside
:meth:`ExportOnnx.apply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from compressor.hookspecs import hookimpl
from compressor.strategy import Strategy, StrategyConfig

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext

OptimizationLevel = Literal["O1", "O2", "O3", "O4"]


class ExportOnnxConfig(StrategyConfig):
    """Config of :class:`ExportOnnx`.

    Example::

        - name: onnx
          strategy: export.onnx
          config: {optimization: O2, parity_tolerance: 1.0e-3}
    """

    optimization: OptimizationLevel | None = Field(
        None,
        description="ONNX Runtime graph optimisation applied after export (levels as optimum "
        "named them): O1 basic ONNX Runtime optimisations; O2 adds the transformer fusions of "
        "onnxruntime.transformers.optimizer (Attention, SkipLayerNormalization, BiasGelu) for "
        "the model types it knows, plain ONNX Runtime optimisation for others; O3 adds the "
        "FastGelu approximation; O4 adds fp16 weights (GPU only, needs for_gpu). Unset: the "
        "graph as exported.",
    )
    for_gpu: bool = Field(
        False,
        description="Optimise for CUDAExecutionProvider instead of the CPU; required by O4.",
    )
    opset: int | None = Field(
        None, ge=11, le=23, description="ONNX opset; unset: 17 for TorchScript, the dynamo "
        "exporter's default otherwise."
    )
    exporter: Literal["auto", "torchscript", "dynamo"] = Field(
        "auto",
        description="torch.onnx exporter. 'torchscript' (dynamo=False) traces eager attention, "
        "which ONNX Runtime fuses into Attention kernels; 'dynamo' (torch.export) covers models "
        "tracing cannot, with attention left unfused; 'auto' tries TorchScript, checks the graph "
        "at two other input shapes and falls back to dynamo.",
    )
    parity_tolerance: float = Field(
        1e-3,
        gt=0.0,
        le=100.0,
        description="Largest allowed maximum absolute difference between the ONNX model's "
        "logits and the PyTorch model's on the parity inputs; above it the stage fails.",
    )
    parity_split: str = Field(
        "test", min_length=1, description="Split whose first texts are the parity inputs."
    )
    parity_samples: int = Field(
        64, ge=1, le=100_000, description="Number of parity input texts."
    )
    parity_batch_size: int = Field(
        16, ge=1, le=4096, description="Sequences per forward call in the parity check."
    )
    max_length: int = Field(
        128, ge=8, le=8192, description="Truncation length of the parity inputs, in tokens, at "
        "most the model's usable positions (a longer setting is capped there)."
    )

    @model_validator(mode="after")
    def _o4_needs_gpu(self) -> "ExportOnnxConfig":
        if self.optimization == "O4" and not self.for_gpu:
            raise ValueError(
                "optimization O4 converts the graph to fp16 for GPUs: set for_gpu: true, or "
                "use O2/O3 for CPU inference"
            )
        return self


class ExportOnnx(Strategy):
    """Export a PyTorch artifact to ONNX with ``torch.onnx`` and check it against the original.

    Steps:

    1. export with :func:`compressor.onnx_export.export_onnx` (``torch.onnx.export``, the
       sequence-classification or masked-LM head, dynamic batch and sequence axes; pruned
       shapes are rebuilt from the structure file first);
    2. optionally ONNX Runtime graph optimisation at the configured level (see
       :class:`ExportOnnxConfig`); the counts of fused operators are recorded. Attention is
       fused when every layer has the same head count (after head pruning too, with the
       pruned width); layers with different counts keep it unfused, the other fusions apply;
    3. parity: the first ``parity_samples`` texts of ``parity_split``, tokenised by the
       artifact's tokenizer (padding to the longest of each batch, truncation to
       ``max_length`` or the model's limit if lower), run through the PyTorch model (fp32,
       CPU) and the final ONNX graph (ONNX Runtime, CPU); the maximum absolute logit
       difference and the argmax agreement are stored in the lineage ``extra["parity"]``.
       Above ``parity_tolerance`` the stage fails with a
       :class:`~compressor.errors.StageError` giving the difference.

    The output directory holds ``model.onnx``, ``config.json`` and the tokenizer;
    ``onnxruntime.InferenceSession(dir + "/model.onnx")`` runs it (inputs ``input_ids``,
    ``attention_mask`` and, where the model has them, ``token_type_ids``; output ``logits``).
    """

    name: ClassVar[str] = "export.onnx"
    requires_roles: ClassVar[tuple[str, ...]] = ("onnx",)
    Config: ClassVar[type[ExportOnnxConfig]] = ExportOnnxConfig
    description: ClassVar[str] = "ONNX export (torch.onnx), ORT graph optimisation, logit parity check"
    input_formats: ClassVar[tuple[str, ...]] = ("pytorch",)
    produces: ClassVar[str] = "onnx"
    task_types: ClassVar[tuple[str, ...]] = ("*",)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Export ``artifact`` to ONNX in ``context.output_dir``.

        :param artifact: a PyTorch artifact (``save_pretrained`` folder with tokenizer).
        :param config: an :class:`ExportOnnxConfig`.
        :param context: the stage's context (its data provides the parity inputs).
        :returns: the ONNX artifact; lineage ``extra``: ``parity`` (``max_abs_diff``,
            ``tolerance``, ``argmax_agreement``, ``n``, ``split``, ``max_length``),
            ``exporter`` (the one used) and ``exporter_notes`` (why ``auto`` fell back),
            ``optimization``, ``fused_operators``, ``attention_fusion`` (``fused``,
            ``nodes``, ``heads_per_layer``, ``reason``: why attention was not fused, e.g.
            layers that keep different head counts after head pruning), ``opset``.
        :raises compressor.errors.StageError: if export or optimisation fails, or the
            parity difference exceeds ``parity_tolerance``.
        """
        from .export import run_export

        return run_export(self, artifact, config, context)


@hookimpl
def compressor_register_strategies(register: Any) -> None:
    """Register the ``export.onnx`` strategy."""
    register(ExportOnnx)
