"""The :class:`Task` contract: what differs between encoder tasks, in one object per task.

A recipe's ``task.type`` names a registered task. Everything the orchestrator, the
strategies and the evaluator do that depends on the task goes through it:

- **data**: which columns a split needs once normalised (:meth:`Task.normalise`), whether it
  has classes, and the checks that give a clear error for bad rows;
- **model**: the ``transformers`` Auto class of the head (:attr:`Task.auto_model`) and the
  config arguments it needs (:meth:`Task.model_kwargs`);
- **training**: tokenisation with labels aligned to the model's inputs
  (:meth:`Task.tokenize`), the batch collator, the metric watched for early stopping;
- **soft targets** for distillation (:meth:`Task.soft_targets`): the outputs a student
  should match, and whether each is a distribution (KL with temperature) or a value (MSE);
  the loss itself is the distillation plugin's;
- **evaluation**: per-example statistics of one model on a split (:meth:`Task.score`) and the
  metrics of any weighted resample of them (:meth:`Task.metric_matrix`), which gives the
  point estimates, the bootstrap intervals and the paired differences from one function.

Built-in tasks are registered by :mod:`compressor.tasks.builtin`; a plugin adds one through
the ``compressor_register_tasks`` hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..errors import CompressorError, StageError

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

    from ..evaluate.backends import Backend
    from ..task import TaskData


@dataclass(frozen=True)
class Metric:
    """One metric a task reports.

    :param name: key in the results (``"accuracy"``, ``"spearman"``, ``"entity_f1"``...).
    :param label: its name in reports (``"accuracy"``, ``"STS-B Spearman"``...).
    :param unit: how reports show ``100 * value``: ``"%"`` for fractions, ``"x100"`` for
        correlations and other values.
    """

    name: str
    label: str
    unit: str = "%"

    @property
    def header(self) -> str:
        """The report column header, e.g. ``"accuracy (%)"``."""
        return f"{self.label} ({self.unit})"


@dataclass
class SoftTarget:
    """One output a student matches in distillation.

    :param name: which output (``"logits"``, ``"start_logits"``, ``"embedding"``...).
    :param values: float tensor ``(N, C)``: one row per scored position (classification: per
        example; token classification: per non-ignored token; QA: per example over token
        positions), or ``(N, 1)`` / ``(N, D)`` for values.
    :param kind: ``"distribution"`` (soft-target KL with temperature over the last axis),
        ``"value"`` (MSE) or ``"embedding"`` (MSE and/or cosine between vectors).
    """

    name: str
    values: Any
    kind: str = "distribution"


@dataclass
class Scored:
    """Per-example statistics of one model on one split, as its task computes them.

    :param arrays: name -> numpy array whose first axis is the evaluation unit (an example, a
        sentence, a question, a pair); every array has the same length ``n``.
    :param extra: JSON-ready facts that are not resampled (e.g. distinct predicted classes).
    :param predictions: what is saved beside the results (``.npz``), name -> array.
    """

    arrays: dict[str, "np.ndarray"]
    extra: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, "np.ndarray"] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0


class TaskOptions(BaseModel):
    """Settings of a task under the recipe's ``task.options`` (none by default).

    A task with settings subclasses this and names the subclass as its ``Options``; the
    recipe validator checks ``task.options`` against it (unknown keys are errors).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class Task:
    """Base class of a task type (see the module docstring for the contract).

    :cvar name: ``task.type`` in recipes, e.g. ``"text-classification"``.
    :cvar description: one line for listings and the recipe reference.
    :cvar labelled: whether training needs a label column (``masked-lm`` and
        ``sentence-embedding`` train on raw text).
    :cvar has_classes: whether labels are class names made contiguous ids.
    :cvar auto_model: name of the ``transformers`` Auto class of the head.
    :cvar pipeline_tag: the Hugging Face Hub pipeline tag written in model cards.
    :cvar evaluated: whether the evaluator scores task quality (``masked-lm``: no).
    :cvar supervised: whether the head trains from labels with the model's own loss
        (``finetune``, task distillation's hard loss, pruning's importance scores).
    :cvar token_level: whether outputs are per token (token classification, QA): a student
        must then tokenise as its teacher does.
    :cvar optional_columns: normalised name -> source column kept when the data has it
        (QA keeps ``id`` and ``title``).
    :cvar Options: the pydantic model of ``task.options``.
    :cvar onnx_outputs: the head's outputs an ONNX export keeps, name -> dynamic axes
        (``{"logits": ("batch",)}``; per-token outputs add ``"sequence"``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    labelled: ClassVar[bool] = True
    has_classes: ClassVar[bool] = False
    auto_model: ClassVar[str] = "AutoModel"
    pipeline_tag: ClassVar[str] = "feature-extraction"
    evaluated: ClassVar[bool] = True
    supervised: ClassVar[bool] = False
    token_level: ClassVar[bool] = False
    optional_columns: ClassVar[dict[str, str]] = {}
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    onnx_outputs: ClassVar[dict[str, tuple[str, ...]]] = {"logits": ("batch",)}

    def options(self, data: "TaskData | None") -> TaskOptions:
        """The run's validated ``task.options`` (defaults without data)."""
        opts = getattr(data, "options", None) if data is not None else None
        return opts if isinstance(opts, self.Options) else self.Options.model_validate(opts or {})

    # --- data -----------------------------------------------------------------------------

    def columns(self, cfg: Any) -> dict[str, str]:
        """Normalised column name -> column in the source data, from the recipe's
        ``task.data`` section (``text_column``, ``text_pair_column``, ``label_column``...).
        """
        wanted = {"text": cfg.text_column}
        if cfg.text_pair_column:
            wanted["text_pair"] = cfg.text_pair_column
        if self.labelled:
            wanted["label"] = cfg.label_column
        return wanted

    def normalise(
        self, splits: dict[str, "datasets.Dataset"], where: dict[str, str], spec: Any
    ) -> tuple[dict[str, "datasets.Dataset"], list[str]]:
        """Check and convert the label column(s) of every split, after columns were renamed.

        :param splits: split name -> data set with the columns of :meth:`columns`.
        :param where: split name -> file or data set name, for messages.
        :param spec: the registered :class:`~compressor.sources.datasets.DatasetSpec`, or
            ``None``.
        :returns: ``(splits, label_names)``.
        :raises SourceError: naming the split (file) and row for a bad value.
        """
        return splits, []

    def stratify(self) -> bool:
        """Whether split-offs are stratified by ``label``."""
        return self.has_classes

    def groups(self, split: "datasets.Dataset") -> list[Any] | None:
        """The group of every row, when rows of one group must stay in one split (SQuAD's
        articles), or ``None`` (default: rows split independently)."""
        return None

    def check_training_data(self, data: "TaskData", strategy: str) -> None:
        """Refuse data a training strategy cannot use.

        :raises StageError: without a non-empty ``train`` split or the task's columns.
        """
        if data.type != self.name:
            raise StageError(
                f"strategy {strategy!r} trains a {self.name!r} model but the task type is {data.type!r}"
            )
        train = data.splits.get("train")
        if train is None or len(train) == 0:
            raise StageError(
                f"strategy {strategy!r} needs a non-empty 'train' split",
                expected=f"a 'train' split among {sorted(data.splits)}",
            )
        for split_name in ("train", "validation"):
            split = data.splits.get(split_name)
            if split is None or len(split) == 0:
                continue
            needed = list(self.required_columns(data))
            missing = [c for c in needed if c not in split.column_names]
            if missing:
                raise StageError(
                    f"split {split_name!r} lacks column(s) {missing}",
                    expected=f"columns {needed}",
                )

    def required_columns(self, data: "TaskData") -> tuple[str, ...]:
        """Normalised columns every split must have."""
        cols = ["text"]
        if data.has_text_pair:
            cols.append("text_pair")
        if self.labelled:
            cols.append("label")
        return tuple(cols)

    def plain_text(self, split: "datasets.Dataset") -> "datasets.Dataset":
        """The split as plain strings: a ``text`` column and, for pairs, ``text_pair``.

        What latency timing, ONNX export samples and calibration feed the tokenizer; a task
        whose ``text`` is not a string (token classification: a list of words) overrides it.
        """
        keep = [c for c in ("text", "text_pair") if c in split.column_names]
        drop = [c for c in split.column_names if c not in keep]
        return split.remove_columns(drop) if drop else split

    # --- model ----------------------------------------------------------------------------

    def auto_class(self) -> Any:
        """The ``transformers`` Auto class of this task's head."""
        import transformers

        return getattr(transformers, self.auto_model)

    def model_kwargs(self, data: "TaskData | None") -> dict[str, Any]:
        """Config arguments the head needs (``num_labels``, ``id2label``...) for ``data``."""
        return {}

    def check_head(self, model: Any, data: "TaskData", what: str) -> None:
        """Refuse a model whose head does not fit the task (e.g. another label count).

        :param what: the model's name, for messages.
        :raises StageError: when the head does not fit.
        """

    # --- training -------------------------------------------------------------------------

    def tokenize(
        self, split: "datasets.Dataset", tokenizer: Any, max_length: int, data: "TaskData",
        *, progress: bool = False,
    ) -> "datasets.Dataset":
        """Tokenise a split for training, with ``labels`` aligned to the inputs.

        :returns: a data set of the tokenizer's model inputs plus ``labels`` (shape per
            task); padding happens in :meth:`collator`.
        """
        raise NotImplementedError(f"task {self.name!r} has no training tokenisation")

    def collator(self, tokenizer: Any) -> Any:
        """The batch collator for :meth:`tokenize`'s rows (default: pad to the longest)."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def training_metric(self) -> tuple[str, bool] | None:
        """``(name, greater_is_better)`` of the metric :meth:`compute_metrics` returns for
        early stopping, or ``None`` to watch the validation loss."""
        return None

    def compute_metrics(self, data: "TaskData") -> Any:
        """``Trainer(compute_metrics=...)`` for the validation split, or ``None``."""
        return None

    # --- importance scores (pruning) -----------------------------------------------------

    def reference_batch(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """Add to ``batch`` what :meth:`loss` compares against, computed with ``model``
        before it is changed (default: nothing; the labels are in the batch).

        A task without labels (sentence embeddings) stores the unpruned model's outputs here,
        so the importance of a part is the change of the distance to them.
        """
        return batch

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        """The scalar loss whose gradients and changes score a model's parts.

        :param batch: a collated batch of :meth:`tokenize`'s rows (labels included), passed
            through :meth:`reference_batch`.
        :returns: a float scalar tensor (with gradient when enabled); default: the head's own
            loss, ``model(**batch).loss``.
        :raises StageError: when the model computes no loss from the batch.
        """
        out = model(**batch)
        if getattr(out, "loss", None) is None:
            raise StageError(
                f"the {type(model).__name__} computed no loss from the batch: task "
                f"{self.name!r} needs its labels in the batch"
            )
        return out.loss

    # --- distillation ---------------------------------------------------------------------

    def soft_targets(self, outputs: Any, batch: dict[str, Any]) -> list[SoftTarget]:
        """The outputs a student matches, rows aligned between student and teacher.

        :param outputs: the model's forward output (``ModelOutput``).
        :param batch: the student's batch (``labels`` marks ignored positions).
        :returns: one :class:`SoftTarget` per output.
        """
        raise NotImplementedError(f"task {self.name!r} defines no soft targets")

    # --- evaluation -----------------------------------------------------------------------

    def metrics(self, data: "TaskData") -> list[Metric]:
        """The metrics this task reports for ``data``, headline metric first."""
        raise NotImplementedError

    def score(
        self, backend: "Backend", split: "datasets.Dataset", data: "TaskData", *,
        batch_size: int, progress: bool = False,
    ) -> Scored:
        """Run ``backend`` on ``split`` and keep the per-example statistics the metrics need.

        :raises CompressorError: for a model whose outputs do not fit the task.
        """
        raise NotImplementedError(f"task {self.name!r} is not evaluated")

    def metric_matrix(self, weights: "np.ndarray", scored: Scored, data: "TaskData") -> dict[str, "np.ndarray"]:
        """Every metric of :meth:`metrics` on weighted resamples.

        :param weights: float array ``(B, n)``: how often each unit appears in each of ``B``
            resamples (a row of ones is the full split).
        :param scored: one model's :class:`Scored` (``n`` units).
        :returns: metric name -> float array ``(B,)``.
        """
        raise NotImplementedError

    def relate(self, scored: Scored, reference: Scored, data: "TaskData") -> None:
        """Add statistics that compare a model with its reference (the teacher or parent
        scored in the same evaluation call) to ``scored``, in place; default: nothing.

        Called by the evaluator once both are scored, before any metric is computed (e.g.
        a student's cosine to its teacher's sentence embeddings).
        """

    def full_metrics(self, scored: Scored, data: "TaskData") -> dict[str, float]:
        """The metrics on the whole split (one resample of weight one per unit)."""
        import numpy as np

        if len(scored) == 0:
            raise CompressorError("nothing scored: the evaluation split is empty")
        ones = np.ones((1, len(scored)))
        return {k: float(v[0]) for k, v in self.metric_matrix(ones, scored, data).items()}

    # --- artifacts ------------------------------------------------------------------------

    def loading_snippet(self, path: str = "path/to/this/folder") -> list[str]:
        """Python lines that load a PyTorch artifact of this task (model card)."""
        return [
            f"from transformers import {self.auto_model}, AutoTokenizer",
            "",
            f'model = {self.auto_model}.from_pretrained("{path}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{path}")',
        ]

    def complete_artifact(self, source: Any, output: Any) -> None:
        """Carry task files a strategy does not write from ``source`` (the input model's
        folder) to ``output`` (the new PyTorch artifact's folder); default: nothing.

        Called by the orchestrator after every stage that writes a PyTorch artifact.
        """

    def __repr__(self) -> str:
        return f"<task {self.name}>"


def column(ds: "datasets.Dataset", name: str) -> list[Any]:
    """A column as a Python list, fast (through Arrow; honours an indices mapping)."""
    return ds.with_format("arrow")[name].to_pylist()


def class_label_kwargs(data: "TaskData | None") -> dict[str, Any]:
    """``num_labels``, ``id2label`` and ``label2id`` of a head over ``data.label_names``
    (``{}`` without label names)."""
    if data is None or not data.label_names:
        return {}
    id2label = dict(enumerate(data.label_names))
    return {"num_labels": data.num_labels, "id2label": id2label,
            "label2id": {v: k for k, v in id2label.items()}}


def tokenize_sequences(
    split: "datasets.Dataset", tokenizer: Any, max_length: int, data: "TaskData", label: Any,
    *, progress: bool = False,
) -> "datasets.Dataset":
    """Tokenise ``text`` (and ``text_pair``) with one ``labels`` value per example, made by
    ``label(value)`` (``int`` for classes, ``float`` for scores); truncation, no padding."""
    pair = data.has_text_pair

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer(batch["text"], batch["text_pair"] if pair else None,
                        truncation=True, max_length=max_length)
        enc["labels"] = [label(x) for x in batch["label"]]
        return dict(enc)

    return tokenize_texts(split, encode, progress=progress)


def tokenize_texts(
    split: "datasets.Dataset", encode: Any, *, progress: bool, desc: str = "tokenizing"
) -> "datasets.Dataset":
    """``split.map(encode, batched=True)`` dropping the source columns, with the data set
    library's progress bar only when ``progress``."""
    import datasets

    silence = not progress and datasets.is_progress_bar_enabled()
    if silence:
        datasets.disable_progress_bars()
    try:
        return split.map(encode, batched=True, remove_columns=list(split.column_names), desc=desc)
    finally:
        if silence:
            datasets.enable_progress_bars()


def predict_batches(
    backend: "Backend", split: "datasets.Dataset", *, batch_size: int, progress: bool,
    encode: Any = None, desc: str = "evaluating",
) -> list[tuple[Any, dict[str, "np.ndarray"]]]:
    """Run ``backend`` over ``split`` in batches.

    :param encode: ``encode(rows) -> batch`` (default: :meth:`Backend.encode` of ``text``
        and ``text_pair``, padded, truncated at :meth:`Backend.accuracy_max_length`).
    :returns: ``[(batch, outputs)]`` with ``outputs = backend.predict_outputs(batch)``.
    """
    from tqdm.auto import tqdm

    has_pair = "text_pair" in split.column_names
    max_length = backend.accuracy_max_length()

    def default(rows: dict[str, list[Any]]) -> Any:
        return backend.encode(
            list(rows["text"]), list(rows["text_pair"]) if has_pair else None,
            padding=True, max_length=max_length,
        )

    encode = encode or default
    out = []
    n = len(split)
    with tqdm(total=n, desc=desc, unit="ex", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            rows = split[start : start + batch_size]
            batch = encode(rows)
            out.append((batch, backend.predict_outputs(batch)))
            bar.update(min(batch_size, n - start))
    return out
