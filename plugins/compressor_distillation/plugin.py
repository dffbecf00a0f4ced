"""The ``distill.distilbert`` strategy: DistilBERT-style distillation (Sanh et al. 2019).

Imports only pydantic and the compressor core (plus the light training config); torch and
transformers load inside :meth:`DistilBERTDistillation.apply`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from compressor import DataConfig
from compressor.hookspecs import hookimpl
from compressor.strategy import Strategy, StrategyConfig
from compressor.training import TrainingConfig

from .layers import LayerSelection, check_explicit_layers

if TYPE_CHECKING:  # pragma: no cover
    from compressor.artifact import Artifact
    from compressor.strategy import StageContext


class CorpusMixin(BaseModel):
    """Settings of masked-LM training on raw text (shared by ``mlm-adapt`` and the MLM mode
    of ``distill.distilbert``). ``max_length`` is the block size."""

    corpus: DataConfig | None = Field(
        None,
        description=(
            "Raw text for masked-LM training, as a task.data mapping: {name: news-articles}, "
            "{files: {train: corpus.txt}} (paths relative to the recipe's folder) or "
            "{hub: ...}; null: the texts of the run's task data."
        ),
    )
    streaming: bool = Field(
        False,
        description=(
            "Read the corpus as a stream, tokenised and packed on the fly (memory stays flat "
            "for a corpus larger than memory); needs max_steps. Local files or a hub set."
        ),
    )
    mlm_probability: float = Field(
        0.15, gt=0, lt=1, description="Share of tokens chosen for prediction (80% [MASK], 10% random, 10% kept)."
    )
    max_train_blocks: int | None = Field(
        None, ge=1, le=100_000_000, description="Cap on training blocks (seeded sample); null: all."
    )
    max_eval_blocks: int | None = Field(
        200, ge=1, le=100_000_000,
        description="Held-out blocks on which MLM accuracy is measured; null: the whole validation split.",
    )


class StudentModel(StrategyConfig):
    """A student that is another model (any architecture or tokenizer), not a layer copy."""

    model: str = Field(
        min_length=1,
        description="Packaged model name (e.g. 'all-minilm-l6-v2'), a local folder, or a hub id.",
    )
    source: str = Field("auto", description="Model source: 'auto', 'packaged', 'local' or 'hub'.")


class LayerLossConfig(StrategyConfig):
    """A loss on one teacher/student layer pair (TinyBERT / MiniLM style)."""

    teacher_layer: int = Field(
        ge=0, le=1000,
        description="Teacher layer: 0 is the embedding output, i the output of layer i (from 1).",
    )
    student_layer: int = Field(ge=0, le=1000, description="Student layer, counted as teacher_layer.")
    loss: Literal["mse", "cosine", "attention-kl"] = Field(
        "mse",
        description="'mse' or 'cosine' on hidden states (projected when widths differ), or "
        "'attention-kl' on attention distributions (equal head counts; layers from 1).",
    )
    weight: float = Field(1.0, gt=0, le=1000, description="Weight of this term in the total loss.")

    @model_validator(mode="after")
    def _attention_layers(self) -> "LayerLossConfig":
        if self.loss == "attention-kl" and min(self.teacher_layer, self.student_layer) < 1:
            raise ValueError("attention-kl maps layers counted from 1 (0 is the embedding output)")
        return self


class DistillationConfig(CorpusMixin, TrainingConfig):
    """Config of ``distill.distilbert``: student shape, loss, and training hyper-parameters.

    The loss is ``alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos`` (see
    :mod:`compressor_distillation.losses`); the defaults are the DistilBERT reference
    weights (5, 2, 1) and temperature 2. Sample recipe stage::

        - name: student
          strategy: distill.distilbert
          config:
            student_layers: 6
            layer_selection: explicit
            layers: [0, 2, 4, 7, 9, 11]   # the reference script's choice for BERT-base
            temperature: 2.0
            epochs: 3
    """

    teacher: str | None = Field(
        None,
        min_length=1,
        description=(
            "Name of an earlier artifact (e.g. 'baseline' or a fine-tuning stage) used as "
            "the teacher; null: the stage's input artifact. Task mode: a fine-tuned classifier "
            "(any checkpoint when alpha_ce is 0); MLM mode: a masked LM with a trained head."
        ),
    )
    student_layers: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=(
            "Encoder layers of the student; null: len(layers) for 'explicit', else half the "
            "teacher's, rounded up."
        ),
    )
    layer_selection: LayerSelection = Field(
        "every-other",
        description=(
            "Teacher layers copied into the student: 'every-other' (0, 2, 4, ...), "
            "'uniform' (round(linspace(0, L-1, k)), 12->6 gives 0,2,4,7,9,11), 'first-k' "
            "(0..k-1) or 'explicit' (the 'layers' list)."
        ),
    )
    layers: list[int] | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description="Teacher layer indices, strictly increasing, one per student layer ('explicit' only).",
    )
    temperature: float = Field(
        2.0, gt=0, le=100, description="Softmax temperature T of the soft targets (Hinton et al. 2015)."
    )
    alpha_ce: float = Field(
        5.0, ge=0, le=1000, description="Weight of the soft-target KL loss L_ce (times T^2)."
    )
    alpha_task: float = Field(
        2.0, ge=0, le=1000, description="Weight of the cross-entropy with the gold labels L_task."
    )
    alpha_cos: float = Field(
        1.0,
        ge=0,
        le=1000,
        description="Weight of the cosine loss L_cos between last hidden states (non-padding tokens).",
    )

    mode: Literal["auto", "task", "mlm"] = Field(
        "auto",
        description=(
            "'task': distil a fine-tuned classifier on the task's labelled data; 'mlm': general "
            "distillation of a masked LM on raw text (corpus); 'auto': 'mlm' when the task is "
            "masked-lm or a corpus is given, else 'task'."
        ),
    )
    ce_positions: Literal["all", "masked"] = Field(
        "all",
        description=(
            "MLM mode: token positions L_ce is computed on: 'all' non-padding positions (the "
            "reference code's default) or only the 'masked' ones (its restrict_ce_to_mask)."
        ),
    )
    student: StudentModel | Literal["input"] | None = Field(
        None,
        description=(
            "null: the teacher's architecture with fewer layers copied from it; 'input': the "
            "stage's input artifact as is (e.g. a pruned model); {model: name-or-path}: another "
            "model, possibly with another tokenizer (task mode: each model tokenises the text "
            "itself, and L_cos needs cos_pooling)."
        ),
    )
    student_init: Literal["copy", "random"] = Field(
        "copy",
        description=(
            "Layer-copy student: 'copy' the teacher's weights (Sanh et al. 2019) or 'random' "
            "initialisation of the same architecture (the paper's ablation; with a pruned "
            "teacher, the same pruned shapes as the copy)."
        ),
    )
    cos_pooling: Literal["cls", "mean"] | None = Field(
        None,
        description=(
            "Compute L_cos on pooled sentence vectors ('cls' or 'mean') instead of token "
            "states; required for L_cos when student and teacher tokenizers differ."
        ),
    )
    layer_losses: list[LayerLossConfig] = Field(
        default_factory=list,
        max_length=1000,
        description="Intermediate layer pairs with their own loss (TinyBERT / MiniLM); off when empty.",
    )

    @model_validator(mode="after")
    def _check(self) -> "DistillationConfig":
        if max(self.alpha_ce, self.alpha_task, self.alpha_cos) <= 0:
            raise ValueError("at least one of alpha_ce, alpha_task, alpha_cos must be > 0")
        if self.student is not None and (
            self.student_layers is not None or self.layers is not None or self.student_init != "copy"
        ):
            raise ValueError(
                "student_layers, layers and student_init shape a layer-copy student; they "
                "cannot be combined with 'student'"
            )
        if self.layer_selection == "explicit":
            if self.layers is None:
                raise ValueError("layer_selection 'explicit' needs 'layers'")
            check_explicit_layers(self.layers, self.student_layers)
        elif self.layers is not None:
            raise ValueError(
                f"'layers' is only used with layer_selection 'explicit', not {self.layer_selection!r}"
            )
        return self


class DistilBERTDistillation(Strategy):
    """DistilBERT distillation (Sanh et al. 2019) of any Hugging Face encoder, in two modes.

    **Task mode** (a fine-tuned classifier as teacher, the task's labelled ``train`` split):
    ``L = alpha_ce * L_ce + alpha_task * L_task + alpha_cos * L_cos`` on the classification
    logits, the gold labels and the last hidden states.

    **MLM mode** (general distillation on raw text, ``corpus`` or a masked-lm task): teacher
    and student are masked LMs (``AutoModelForMaskedLM``); ``L_ce`` on the MLM logits at every
    non-padding position (the reference code's default; ``ce_positions: masked`` restricts it
    to masked positions), ``L_task`` is DistilBERT's ``L_mlm`` on the gold tokens at masked
    positions (15%, 80/10/10, re-masked at every batch), ``L_cos`` on the last hidden states.
    Text is packed into blocks of ``max_length`` tokens. A teacher without MLM-head weights
    (a sentence-embedding checkpoint) is refused before training, naming ``mlm-adapt``. The
    teacher's and student's MLM accuracy on held-out blocks go to the lineage.

    **Student**: by default the teacher's architecture with ``student_layers`` layers, student
    layer ``i`` copied from teacher layer ``layers[i]`` (embeddings and heads copied as is);
    ``student_init: random`` initialises the same architecture at random (the paper's
    ablation).

    **Pruned teacher** (a ``compressor_structure.json``: heads or FFN neurons removed per
    layer, layers dropped): it loads with its shapes, and each student layer keeps the shapes
    of the teacher layer it is copied from (heads, attention width, FFN width, DeBERTa's
    per-head projections), weights copied bit for bit; the student is saved with its own
    structure file, so :func:`compressor.structure.load_pretrained` reloads it, and the
    lineage gets ``student_heads`` and ``student_ffn_widths``. ``student_init: random`` gives
    the same shapes (the config's seeded initialisation cut to them), so the ablation changes
    the initialisation only. ``L_cos`` applies unchanged (pruning keeps the hidden width);
    ``attention-kl`` pairs need equal head counts per layer.

    ``student: input`` distils into the input artifact as is; ``student: {model:
    ...}`` into another model. A student with another tokenizer (task mode only) gets its own
    tokenisation of every batch, ``L_ce`` on the logits, and ``L_cos`` only on pooled vectors
    (``cos_pooling``). A student narrower than its teacher gets a learned linear projection
    for ``L_cos`` and for hidden-state layer losses; it is trained with the student, kept in
    checkpoints, and not saved with the student (lineage ``projections`` records its shape).

    **Layer losses** (``layer_losses``, off by default): hidden-state MSE or cosine on chosen
    layer pairs (TinyBERT) and attention-distribution KL (MiniLM).

    The teacher is the input artifact unless ``teacher`` names an earlier one; the input is
    always recorded as the parent, the teacher as the lineage ``reference``. Lineage
    ``extra``: ``mode``, ``copied_layers``, ``teacher_layers``, ``student_layers``,
    ``teacher_params``, ``student_params``, ``projections``, ``validation_accuracy`` (task) or
    ``teacher_mlm_accuracy`` / ``student_mlm_accuracy`` (MLM), and the training metrics.
    """

    name: ClassVar[str] = "distill.distilbert"
    requires_roles: ClassVar[tuple[str, ...]] = ("layers",)
    Config: ClassVar[type[DistillationConfig]] = DistillationConfig
    description: ClassVar[str] = (
        "DistilBERT distillation (task or MLM): layers copied from the teacher, KL + CE + cosine loss"
    )
    needs_training_data: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = True
    task_types: ClassVar[tuple[str, ...]] = ("*",)
    needs_labels: ClassVar[bool] = True

    @classmethod
    def task_refusal(cls, task_type: str) -> str | None:
        """Labelled tasks (task mode) and ``masked-lm`` (general distillation)."""
        if task_type == "masked-lm":
            return None
        if task_type == "sentence-embedding":
            return "sentence embeddings are distilled by distill.embedding (no task head to match)"
        return super().task_refusal(task_type)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Distil the teacher into a student written to ``context.output_dir``.

        :param artifact: the input (and default teacher) artifact, PyTorch format.
        :param config: a :class:`DistillationConfig`.
        :param context: the stage's context.
        :returns: the student artifact.
        :raises compressor.errors.StageError: in task mode for a teacher without a trained
            classification head (when ``alpha_ce > 0``) or with another label count; in MLM
            mode for a teacher without MLM-head weights or a student with another tokenizer;
            for an architecture whose layer list is not found, invalid layer choices, layer
            losses beyond a model's depth or attention-kl pairs of different head counts, a
            model that cannot be loaded (the loader's reason), or a precision the hardware
            lacks.
        """
        from .distill import run_distillation

        return run_distillation(self, artifact, config, context)


class MLMAdaptConfig(CorpusMixin, TrainingConfig):
    """Config of ``mlm-adapt``. Sample recipe stage::

        - name: teacher-mlm
          strategy: mlm-adapt
          evaluate: false            # a masked LM, not a classifier
          config:
            corpus: {name: news-articles}
            train: head
            epochs: 1
            learning_rate: 1.0e-4
    """

    train: Literal["head", "all"] = Field(
        "head",
        description="Train only the MLM head ('head'; the encoder stays as it is) or the whole model ('all').",
    )


class MLMAdapt(Strategy):
    """Give an encoder-only checkpoint a trained masked-LM head, so that it can be the teacher
    of general (MLM) distillation.

    Sentence-embedding checkpoints ship without the MLM head their pre-training used; loaded
    with ``AutoModelForMaskedLM`` the head is random and the model's predictions are noise.
    This stage trains the head (``train: head``, the encoder frozen; the decoder matrix stays
    tied to the word embeddings) or the whole model (``train: all``) with the masked-LM loss
    (15%, 80/10/10, dynamic masking) on the corpus, packed into blocks of ``max_length``
    tokens. It measures masked-token top-1 accuracy on held-out blocks (the corpus's
    ``validation`` split, the same fixed masks) before and after, logs both and records them
    in the lineage (``mlm_accuracy_before``, ``mlm_accuracy_after``). The output is a
    ``*ForMaskedLM`` artifact; mark the stage ``evaluate: false`` in a classification run.
    """

    name: ClassVar[str] = "mlm-adapt"
    Config: ClassVar[type[MLMAdaptConfig]] = MLMAdaptConfig
    description: ClassVar[str] = (
        "Train a masked-LM head (optionally the whole encoder) on raw text; MLM accuracy before/after"
    )
    needs_training_data: ClassVar[bool] = True
    task_types: ClassVar[tuple[str, ...]] = ("*",)

    def apply(self, artifact: "Artifact", config: Any, context: "StageContext") -> "Artifact":
        """Adapt ``artifact``'s MLM head on the corpus; write the masked LM to ``output_dir``.

        :raises compressor.errors.StageError: for an artifact that cannot be loaded as a
            masked LM, a tokenizer without a mask token, a corpus that cannot be loaded or
            has no held-out split, or a precision the hardware lacks.
        """
        from .mlm import run_mlm_adapt

        return run_mlm_adapt(self, artifact, config, context)


@hookimpl
def compressor_register_strategies(register: Any) -> None:
    """Register ``distill.distilbert``, ``mlm-adapt`` and ``distill.embedding``."""
    from .embedding import EmbeddingDistillation  # (#14) imports this module: registered here

    register(DistilBERTDistillation)
    register(MLMAdapt)
    register(EmbeddingDistillation)
