"""Pruning strategies: ``prune.magnitude``, ``prune.movement``, ``prune.heads``, ``prune.ffn``,
``prune.layers``.

Imports only pydantic and the compressor core; torch and transformers load inside each
strategy's ``apply`` (:mod:`compressor_pruning.run`).

Every strategy states what it removed in its artifact's lineage ``extra`` (sparsity, heads
and FFN widths per layer, layers kept); the evaluator measures whether the model got faster
and the report flags "no measured speedup" when it did not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from compressor.hookspecs import hookimpl
from compressor.strategy import Strategy, StrategyConfig
from compressor.training import TrainingConfig

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext


class ImportanceData(StrategyConfig):
    """Fields shared by the strategies that score parts of the model on task data."""

    importance_split: Literal["train", "validation"] = Field(
        "train", description="Split whose examples the importance scores are computed on."
    )
    importance_samples: int = Field(
        512, ge=1, le=1_000_000, description="Examples (seeded sample of the split) used for importance scores."
    )
    importance_batch_size: int = Field(32, ge=1, le=4096, description="Examples per importance batch.")
    max_length: int = Field(128, ge=4, le=65536, description="Tokens per example; longer inputs are truncated.")


class HeadPruningConfig(ImportanceData):
    """Config of ``prune.heads``. Sample recipe stage::

        - name: heads
          strategy: prune.heads
          config: {fraction: 0.4, importance_samples: 512}
    """

    fraction: float | None = Field(
        None, ge=0, lt=1, description="Fraction of all heads removed, ranked globally by importance."
    )
    heads_per_layer: int | None = Field(
        None, ge=0, le=4096, description="Or: heads removed from every layer, the least important of each."
    )
    normalize: bool = Field(
        True, description="Divide each layer's importance scores by their L2 norm before ranking (Michel et al.)."
    )
    min_heads_per_layer: int = Field(1, ge=1, le=4096, description="Heads every layer keeps at least.")

    @model_validator(mode="after")
    def _one_target(self) -> "HeadPruningConfig":
        if (self.fraction is None) == (self.heads_per_layer is None):
            raise ValueError("give exactly one of 'fraction' and 'heads_per_layer'")
        return self


class FFNPruningConfig(ImportanceData):
    """Config of ``prune.ffn``. Sample recipe stage::

        - name: ffn
          strategy: prune.ffn
          config: {fraction: 0.3, importance: gradient, scope: uniform}
    """

    fraction: float = Field(gt=0, lt=1, description="Fraction of FFN intermediate neurons removed.")
    importance: Literal["gradient", "activation"] = Field(
        "gradient",
        description="'gradient': |sum a * dL/da| per neuron (first-order Taylor); 'activation': mean |a|.",
    )
    scope: Literal["uniform", "global"] = Field(
        "uniform",
        description="'uniform': the same fraction of every layer (config intermediate_size changes, "
        "reloads with plain transformers); 'global': one ranking over all layers (per-layer "
        "widths, reloaded through compressor_structure.json).",
    )
    multiple_of: int = Field(1, ge=1, le=4096, description="Kept widths are rounded to a multiple of this.")


class LayerDropConfig(ImportanceData):
    """Config of ``prune.layers`` (Sajjad et al., "Poor Man's BERT"). Sample recipe stage::

        - name: drop
          strategy: prune.layers
          config: {fraction: 0.334, selection: importance}
    """

    selection: Literal["top", "bottom", "alternate", "importance", "explicit"] = Field(
        "top",
        description="'top' (last layers), 'bottom', 'alternate' (every other from the top), "
        "'importance' (greedy: drop the layer whose removal raises the task loss least), "
        "'explicit' (the 'layers' list).",
    )
    count: int | None = Field(None, ge=1, le=1000, description="Layers dropped.")
    fraction: float | None = Field(None, gt=0, lt=1, description="Or: fraction of layers dropped (rounded).")
    layers: list[int] | None = Field(None, min_length=1, description="Layer indices dropped ('explicit' only).")

    @model_validator(mode="after")
    def _target(self) -> "LayerDropConfig":
        if self.selection == "explicit":
            if self.layers is None or self.count is not None or self.fraction is not None:
                raise ValueError("selection 'explicit' takes 'layers' only")
        else:
            if self.layers is not None:
                raise ValueError(f"'layers' is only used with selection 'explicit', not {self.selection!r}")
            if (self.count is None) == (self.fraction is None):
                raise ValueError("give exactly one of 'count' and 'fraction'")
        return self


class MagnitudeConfig(TrainingConfig):
    """Config of ``prune.magnitude``. The training fields are used in ``gradual`` mode only.

    Sample recipe stage::

        - name: sparse80
          strategy: prune.magnitude
          config: {sparsity: 0.8, schedule: gradual, epochs: 1}
    """

    sparsity: float = Field(gt=0, lt=1, description="Final fraction of zero weights in the encoder layers' Linear matrices.")
    scope: Literal["global", "per-layer"] = Field(
        "global", description="'global': one magnitude threshold over all matrices; 'per-layer': the same sparsity in each."
    )
    schedule: Literal["one-shot", "gradual"] = Field(
        "one-shot", description="'one-shot': prune once, no training; 'gradual': cubic schedule while fine-tuning."
    )
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="Sparsity s_i at the start of the gradual schedule.")
    begin_fraction: float = Field(0.0, ge=0, lt=1, description="Fraction of the training steps before pruning starts (t_0).")
    end_fraction: float = Field(0.7, gt=0, le=1, description="Fraction of the training steps when the final sparsity is reached (t_1).")
    frequency: int = Field(10, ge=1, le=1_000_000, description="Optimiser steps between mask updates.")

    @model_validator(mode="after")
    def _schedule(self) -> "MagnitudeConfig":
        if self.end_fraction <= self.begin_fraction:
            raise ValueError("end_fraction must be larger than begin_fraction")
        if self.initial_sparsity > self.sparsity:
            raise ValueError("initial_sparsity must not exceed sparsity")
        return self


class MovementConfig(TrainingConfig):
    """Config of ``prune.movement``. Sample recipe stage::

        - name: movement80
          strategy: prune.movement
          config: {sparsity: 0.8, block: [32, 32], teacher: baseline, epochs: 3, learning_rate: 1.0e-4}
    """

    sparsity: float = Field(gt=0, lt=1, description="Final fraction of zero weights in the encoder layers' Linear matrices.")
    scope: Literal["per-layer", "global"] = Field(
        "per-layer",
        description="'per-layer': every matrix keeps the same fraction (the reference implementation's "
        "top-k); 'global': one score ranking over all matrices.",
    )
    block: tuple[int, int] = Field(
        (1, 1),
        description="Weights sharing one score, [rows, columns]: [1, 1] is unstructured; e.g. [32, 32] "
        "prunes 32x32 blocks. Both sides must divide every encoder Linear weight. One score per "
        "weight needs the paper's long fine-tuning: within one epoch it collapsed MiniLM to one "
        "class, while [32, 32] did not (docs/pruning.md).",
    )
    scores_learning_rate: float = Field(
        1e-2, gt=0, le=10, description="Learning rate of the importance scores (the paper uses 1e-2)."
    )
    initial_sparsity: float = Field(0.0, ge=0, lt=1, description="Sparsity s_i at the start of the cubic schedule.")
    begin_fraction: float = Field(
        0.1, ge=0, lt=1,
        description="Fraction of the training steps at full density before pruning starts (t_0), so "
        "the scores learn from the task first.",
    )
    end_fraction: float = Field(
        0.7, gt=0, le=1,
        description="Fraction of the training steps when the final sparsity is reached (t_1); the rest "
        "fine-tunes at the final sparsity.",
    )
    teacher: str | None = Field(
        None,
        description="Earlier artifact (e.g. 'baseline', the unpruned model) whose soft targets add a "
        "distillation term; null: task loss only.",
    )
    alpha_distil: float = Field(
        0.5, ge=0, le=1,
        description="Weight of the soft-target loss: (1 - alpha) * task loss + alpha * T^2 * KL.",
    )
    temperature: float = Field(2.0, gt=0, le=100, description="Softmax temperature of the soft targets.")

    @model_validator(mode="after")
    def _schedule(self) -> "MovementConfig":
        if self.end_fraction <= self.begin_fraction:
            raise ValueError("end_fraction must be larger than begin_fraction")
        if self.initial_sparsity > self.sparsity:
            raise ValueError("initial_sparsity must not exceed sparsity")
        if min(self.block) < 1:
            raise ValueError(f"block sides must be at least 1, got {list(self.block)}")
        return self


class _Pruning(Strategy):
    """Pruning by importance on task batches: tasks with labels (the head's loss), and tasks
    with a loss of their own (sentence embeddings: the distance to the unpruned model's)."""

    task_types: ClassVar[tuple[str, ...]] = ("*",)

    @classmethod
    def task_refusal(cls, task_type: str) -> str | None:
        """A strategy that trains on labels (``needs_labels``: movement) needs a labelled task;
        the others need a loss to score parts by (labels, or the task's own loss)."""
        refusal = super().task_refusal(task_type)
        if refusal is not None or cls.needs_labels:
            return refusal
        from compressor.errors import CompressorError
        from compressor.tasks import get_task

        from .common import task_has_importance_loss

        try:
            task = get_task(task_type)
        except CompressorError:
            return "unknown task type"
        if not task_has_importance_loss(task):
            return f"{task_type} gives no loss to score the model's parts by"
        return None


class HeadPruning(_Pruning):
    """Remove attention heads by importance (Michel, Levy and Neubig 2019).

    Importance of head ``h``: ``|dL/dxi_h|`` summed over task batches (``xi_h``: a mask on
    the head's output, ``L``: task cross-entropy), divided by the token count and, by
    default, L2-normalised per layer. The least important heads (globally, or per layer)
    are removed from the weights by shrinking the projections the architecture's adapter
    names (separate or fused query/key/value, per-head biases) and writing
    ``compressor_structure.json``. Architectures whose adapter refuses heads (MPNet: its
    shared relative-position bias has a slot per head; docs/architectures.md lists the
    others) are refused at recipe validation. Lineage ``extra``: ``head_importance``,
    ``removed_heads``, ``heads_before``, ``heads_after``, ``params_before``,
    ``params_after``, ``reload``.
    """

    name: ClassVar[str] = "prune.heads"
    requires_roles: ClassVar[tuple[str, ...]] = ("heads",)
    Config: ClassVar[type[HeadPruningConfig]] = HeadPruningConfig
    description: ClassVar[str] = "Remove attention heads by gradient importance (Michel et al. 2019)"
    needs_training_data: ClassVar[bool] = True

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Score heads on task data, remove the least important, save.

        :raises compressor.errors.StageError: for a non-PyTorch or unsupported model, a
            model whose head does not fit the task, or a target that leaves a layer
            without heads.
        """
        from .run import run_heads

        return run_heads(self, artifact, config, context)


class FFNPruning(_Pruning):
    """Remove FFN intermediate neurons by importance (structured; both Linear layers shrink).

    Scores: ``gradient`` (``|sum a_j dL/da_j|``, first-order Taylor) or ``activation``
    (mean ``|a_j|``) on task batches. ``uniform`` scope keeps the same width in every
    layer (the config's intermediate size changes; plain transformers reloads it);
    ``global`` ranks all neurons together and writes per-layer widths to
    ``compressor_structure.json``. Lineage ``extra``: ``ffn_before``, ``ffn_after``,
    ``params_before``, ``params_after``, ``reload``.
    """

    name: ClassVar[str] = "prune.ffn"
    requires_roles: ClassVar[tuple[str, ...]] = ("ffn",)
    Config: ClassVar[type[FFNPruningConfig]] = FFNPruningConfig
    description: ClassVar[str] = "Remove FFN neurons by gradient or activation importance"
    needs_training_data: ClassVar[bool] = True

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Score neurons, shrink every FFN, save.

        :raises compressor.errors.StageError: as :meth:`HeadPruning.apply`.
        """
        from .run import run_ffn

        return run_ffn(self, artifact, config, context)


class LayerDropping(_Pruning):
    """Drop whole encoder layers (Sajjad et al., "On the Effect of Dropping Layers of
    Pre-trained Transformer Models", a.k.a. "Poor Man's BERT").

    ``top`` was their best simple strategy; ``importance`` greedily drops the layer whose
    removal raises the task loss least, measured on task batches. The config's layer count
    is updated so plain ``from_pretrained`` reloads the model. Lineage ``extra``:
    ``dropped_layers``, ``kept_layers``, ``importance_trace`` (losses, importance only).
    """

    name: ClassVar[str] = "prune.layers"
    requires_roles: ClassVar[tuple[str, ...]] = ("layers",)
    Config: ClassVar[type[LayerDropConfig]] = LayerDropConfig
    description: ClassVar[str] = "Drop encoder layers: top, bottom, alternate or by measured importance"
    needs_training_data: ClassVar[bool] = True

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Choose the layers, remove them, save.

        :raises compressor.errors.StageError: for out-of-range layers or dropping them all.
        """
        from .run import run_layers

        return run_layers(self, artifact, config, context)


class MagnitudePruning(Strategy):
    """Unstructured magnitude pruning of the encoder layers' Linear weights.

    ``one-shot`` zeroes the smallest ``|w|`` at once (follow with ``finetune`` to recover);
    ``gradual`` fine-tunes on the task with transformers' Trainer while the sparsity rises
    along Zhu and Gupta's (2017) cubic schedule. Masks are permanent (zeros in a dense
    safetensors file, reloadable by transformers); ``model.safetensors.bitmask`` beside it
    holds the sparse-aware form. Lineage ``extra``: ``sparsity`` (measured),
    ``sparsity_per_layer``, ``dense_bytes``, ``sparse_bytes``, ``schedule_history`` and the
    training metrics (gradual).
    """

    # one-shot needs no data at all; ``gradual`` trains on the task's labels and refuses a
    # task without them when the stage runs
    task_types: ClassVar[tuple[str, ...]] = ("*",)
    name: ClassVar[str] = "prune.magnitude"
    requires_roles: ClassVar[tuple[str, ...]] = ("weights",)
    Config: ClassVar[type[MagnitudeConfig]] = MagnitudeConfig
    description: ClassVar[str] = "Unstructured magnitude pruning, one-shot or gradual (Zhu & Gupta 2017)"
    needs_training_data: ClassVar[bool] = True

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Prune (training in gradual mode), make masks permanent, save dense and sparse forms.

        :raises compressor.errors.StageError: for a non-PyTorch or unsupported model, or a
            precision the hardware lacks.
        """
        from .run import run_magnitude

        return run_magnitude(self, artifact, config, context)


class MovementPruning(_Pruning):
    """Movement pruning while fine-tuning (Sanh, Wolf and Rush 2020), hard top-k variant.

    Learns one score per weight (or per block) from the straight-through gradient
    ``dL/dW' * W`` and keeps the top-scored weights, the kept fraction falling along Zhu and
    Gupta's cubic schedule (see :mod:`compressor_pruning.movement`). With ``teacher`` set, the
    loss adds the soft-target KL against that model (the paper distils from the fine-tuned
    model). Masks end permanent, saved as :class:`MagnitudePruning` saves them. Lineage
    ``extra``: ``sparsity``, ``sparsity_per_layer``, ``dense_bytes``, ``sparse_bytes``,
    ``schedule_history``, ``block``, ``teacher`` and the training metrics.
    """

    needs_labels: ClassVar[bool] = True
    name: ClassVar[str] = "prune.movement"
    requires_roles: ClassVar[tuple[str, ...]] = ("weights",)
    Config: ClassVar[type[MovementConfig]] = MovementConfig
    description: ClassVar[str] = "Movement pruning during fine-tuning, unstructured or blocks (Sanh et al. 2020)"
    needs_training_data: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Fine-tune with learned masks, make them permanent, save dense and sparse forms.

        :raises compressor.errors.StageError: for a non-PyTorch or unsupported model, a block
            that does not divide the weights, or a teacher with another tokenizer.
        """
        from .run import run_movement

        return run_movement(self, artifact, config, context)


@hookimpl
def compressor_register_strategies(register: Any) -> None:
    """Register the pruning strategies."""
    for cls in (MagnitudePruning, MovementPruning, HeadPruning, FFNPruning, LayerDropping):
        register(cls)
