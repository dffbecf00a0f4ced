"""The ``lowrank.svd`` strategy: the light half of the plugin (pydantic and compressor only).

compressor imports this module when it loads plugins, for ``compressor --help``,
``compressor validate`` and ``compressor plugins`` too, so it must stay cheap: torch,
torch and transformers are imported inside :meth:`LowRankSVD.apply`, in :mod:`.svd`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from compressor import Strategy, StrategyConfig, hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from compressor import Artifact, StageContext

#: Default ``modules``: every Linear layer inside the encoder's layer stack (``...layer.3.``
#: in BERT, RoBERTa, DistilBERT, ELECTRA, MPNet, DeBERTa-v2, XLM-R; ``...layers.3.`` in
#: ModernBERT): attention projections and feed-forward layers, not the pooler or the head.
ENCODER_LAYERS = r"(^|\.)layers?\.\d+\."


class LowRankConfig(StrategyConfig):
    """Config of ``lowrank.svd``. Give exactly one of ``rank`` or ``energy``.

    Sample recipe stage::

        - name: lowrank
          strategy: lowrank.svd
          config:
            energy: 0.9        # or rank: 64
    """

    rank: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="Rank r kept in every factored layer: W (out x in) becomes "
        "(out x r)(r x in). Layers where r * (in + out) does not save parameters stay dense.",
    )
    energy: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Per layer, keep the smallest rank whose singular values hold this "
        "fraction of sum(s_i^2) (the squared Frobenius norm of W).",
    )
    modules: str = Field(
        ENCODER_LAYERS,
        min_length=1,
        description="Regular expression (re.search) on qualified module names selecting the "
        "Linear layers to factor; the default is every Linear of the encoder's layer stack.",
    )
    min_saving: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Factor a layer only if it then has at most (1 - min_saving) of its "
        "parameters; otherwise keep it dense.",
    )

    @field_validator("modules")
    @classmethod
    def _regex_compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> "LowRankConfig":
        if (self.rank is None) == (self.energy is None):
            raise ValueError("give exactly one of 'rank' (fixed rank) or 'energy' (fraction of sum(s^2) kept)")
        return self


class LowRankSVD(Strategy):
    """Low-rank factorisation of Linear layers by truncated SVD, exported to ONNX.

    Each selected ``nn.Linear`` with weight ``W`` (out x in, float32) is replaced by two:
    ``x -> B (A x) + b`` with ``A = sqrt(S_r) V_r^T`` (r x in) and ``B = U_r sqrt(S_r)``
    (out x r), where ``W = U S V^T`` is the SVD. By the Eckart-Young-Mirsky theorem this is
    the best rank-r approximation of ``W`` in Frobenius norm; it saves parameters and
    multiply-adds when ``r * (in + out) < in * out``. Applied to BERT by Noach & Goldberg
    2020, "Compressing Pre-trained Language Models by Matrix Decomposition" (AACL), who
    recover accuracy with distillation afterwards: without training, a small rank costs
    accuracy (this strategy does no training).

    The factored model is exported to ONNX (``compressor.onnx_export.export_module``
    traces the model with the two small layers in place), so the artifact really is smaller and is run by the
    evaluator's ONNX Runtime backend; a following stage must take ONNX input (e.g. ONNX
    int8 quantisation). Lineage ``extra``: ``factored_layers``, ``dense_layers``, ``ranks``
    (name -> r), ``linear_params_before``/``after``, ``mean_relative_error``
    (``||W - W_r||_F / ||W||_F`` averaged over factored layers).
    """

    name: ClassVar[str] = "lowrank.svd"
    Config: ClassVar[type[LowRankConfig]] = LowRankConfig
    description: ClassVar[str] = "Truncated-SVD low-rank factorisation of Linear layers (ONNX output)"
    input_formats: ClassVar[tuple[str, ...]] = ("pytorch",)
    produces: ClassVar[str] = "onnx"  # type: ignore[assignment]
    task_types: ClassVar[tuple[str, ...]] = ("text-classification",)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Factor ``artifact``'s Linear layers and export the result to ``context.output_dir``.

        :param artifact: a PyTorch sequence-classification artifact with its tokenizer.
        :param config: a :class:`LowRankConfig`.
        :param context: the stage's context (only ``output_dir``, ``logger`` are used).
        :returns: the ONNX artifact (``model.onnx``, ``config.json``, tokenizer files).
        :raises compressor.StageError: if the input does not load as a classifier, no
            Linear layer matches ``modules``, or no matched layer would shrink at the rank
            asked for.
        """
        from .svd import run_lowrank

        return run_lowrank(self, artifact, config, context)


@hookimpl
def compressor_register_strategies(register: Any) -> None:
    """Register ``lowrank.svd``."""
    register(LowRankSVD)
