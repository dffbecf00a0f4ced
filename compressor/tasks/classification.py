"""``text-classification``: one class per text (or text pair), softmax head, cross-entropy.

Metrics: accuracy, and F1 of class 1 for two classes or macro-F1 for more (scikit-learn's
definitions), from per-example gold and predicted class ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import logging
import os

from ..errors import CompressorError, SourceError, StageError
from .base import (
    Metric,
    Scored,
    SoftTarget,
    Task,
    class_label_kwargs,
    column,
    predict_batches,
    tokenize_sequences,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

    from ..evaluate.backends import Backend
    from ..sources.datasets import DatasetSpec
    from ..task import TaskData


def task_metric_name(num_labels: int) -> str:
    """``"f1"`` (binary, positive class 1) for 2 labels, ``"macro_f1"`` for more.

    :raises CompressorError: for fewer than 2 labels.
    """
    if num_labels < 2:
        raise CompressorError(
            f"classification needs at least 2 labels, got {num_labels}",
            hint="for scores use task type text-regression",
        )
    return "f1" if num_labels == 2 else "macro_f1"


def classification_matrix(
    weights: "np.ndarray", labels: "np.ndarray", predictions: "np.ndarray", num_labels: int
) -> dict[str, "np.ndarray"]:
    """Accuracy and F1 (2 classes) or macro-F1 for each weighted resample.

    :param weights: ``(B, n)`` resample counts.
    :param labels: gold class ids ``(n,)``; ``predictions``: predicted ids ``(n,)``.
    :returns: ``{"accuracy": (B,), "f1" | "macro_f1": (B,)}`` (fractions).
    """
    import numpy as np

    n = labels.shape[0]
    correct = (labels == predictions).astype(np.float64)
    out = {"accuracy": weights @ correct / n}
    classes = np.arange(num_labels)
    pred_1h = (predictions[:, None] == classes[None, :]).astype(np.float64)
    gold_1h = (labels[:, None] == classes[None, :]).astype(np.float64)
    tp = weights @ (pred_1h * gold_1h)
    denom = weights @ pred_1h + weights @ gold_1h
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), 0.0)
    if num_labels == 2:
        out["f1"] = f1[:, 1]
    else:
        out["macro_f1"] = f1.mean(axis=1)
    return out


def normalise_class_labels(
    splits: dict[str, "datasets.Dataset"], where: dict[str, str], spec: "DatasetSpec | None"
) -> tuple[dict[str, "datasets.Dataset"], list[str]]:
    """Map class labels to contiguous int ids shared by all splits; cast to ``ClassLabel``.

    Used by class-label tasks (:class:`compressor.tasks.classification.TextClassification`).

    :returns: ``(splits, label_names)``.
    :raises SourceError: for labels that are not classes, or fewer than two classes.
    """
    from datasets import ClassLabel

    features = [ds.features["label"] for ds in splits.values()]
    if all(isinstance(f, ClassLabel) for f in features):
        names = list(features[0].names)
        if any(list(f.names) != names for f in features):
            raise SourceError("splits disagree on the label names", key="task.data.label_column")
        out = {}
        for split, ds in splits.items():
            labels = column(ds, "label")
            n_unlabelled = sum(1 for v in labels if v < 0)
            if n_unlabelled == len(labels) and split != "train":
                if "train" not in splits:
                    raise SourceError(
                        f"split {split!r} has no labels (all -1) and there is no train split to "
                        "take labelled rows from",
                        key="task.data.label_column",
                        where=where[split] if os.path.isabs(where[split]) else None,
                    )
                log.warning("%s: split %r has no labels (all -1); it is made from train instead", where[split], split)
                continue
            if n_unlabelled:
                log.warning("%s: dropped %d unlabelled rows (label -1) from %s", where[split], n_unlabelled, split)
                ds = ds.filter(lambda b: [v >= 0 for v in b], input_columns="label", batched=True)
            out[split] = ds
        return out, names

    values = {split: column(ds, "label") for split, ds in splits.items()}
    everything = [v for vals in values.values() for v in vals]
    key = "task.data.label_column"

    if spec is not None and spec.label_names and all(isinstance(v, int) and not isinstance(v, bool) for v in everything):
        names = list(spec.label_names)
        bad = sorted({v for v in everything if not 0 <= v < len(names)})
        if bad:
            raise SourceError(
                f"data set {spec.name!r} has label ids {bad[:5]} outside 0..{len(names) - 1}", key=key
            )
        return {s: cast_labels(ds, names) for s, ds in splits.items()}, names

    def as_class(v: Any) -> Any:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float):
            if not v.is_integer():
                raise SourceError(
                    f"label {v!r} is not a class (labels must be integers or strings; "
                    "for scores use task type text-regression)",
                    key=key,
                    where=next(iter(where.values())),
                )
            return int(v)
        if isinstance(v, (int, str)):
            return v
        raise SourceError(f"label {v!r} ({type(v).__name__}) is not a class", key=key)

    classes = [as_class(v) for v in everything]
    kinds = {type(c) for c in classes}
    if kinds == {int}:
        ordered = sorted(set(classes))
        names = [str(c) for c in ordered]
    else:
        classes = [str(c) for c in classes]
        ordered = sorted(set(classes))
        names = list(ordered)
    if len(ordered) < 2:
        raise SourceError(
            f"the label column holds {len(ordered)} distinct value(s) {names}; "
            "classification needs at least 2",
            key=key,
            where=next(iter(where.values())),
        )
    ids = {c: i for i, c in enumerate(ordered)}
    out = {}
    for split, ds in splits.items():
        mapped = [ids[as_class(v) if kinds == {int} else str(as_class(v))] for v in values[split]]
        ds = ds.remove_columns("label").add_column("label", mapped)
        out[split] = cast_labels(ds, names)
    return out, names


def cast_labels(ds: "datasets.Dataset", names: list[str]) -> "datasets.Dataset":
    from datasets import ClassLabel

    return ds.cast_column("label", ClassLabel(names=names))



class TextClassification(Task):
    """Sequence classification (``AutoModelForSequenceClassification``)."""

    name = "text-classification"
    description = "one class per text or text pair; accuracy and (macro-)F1"
    labelled = True
    has_classes = True
    supervised = True
    auto_model = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"

    def normalise(self, splits: Any, where: Any, spec: Any) -> Any:
        return normalise_class_labels(splits, where, spec)

    def check_training_data(self, data: "TaskData", strategy: str) -> None:
        import numpy as np

        super().check_training_data(data, strategy)
        if data.num_labels < 2:
            raise StageError(f"strategy {strategy!r} needs at least 2 label names, got {data.label_names!r}")
        for split_name in ("train", "validation"):
            split = data.splits.get(split_name)
            if split is None or len(split) == 0:
                continue
            labels = np.asarray(split.with_format("numpy")["label"])
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= data.num_labels:
                raise StageError(
                    f"split {split_name!r} has labels in [{low}, {high}] but the task has "
                    f"{data.num_labels} label names",
                    expected=f"integer labels in [0, {data.num_labels - 1}]",
                )

    def model_kwargs(self, data: "TaskData | None") -> dict[str, Any]:
        return class_label_kwargs(data)

    def check_head(self, model: Any, data: "TaskData", what: str) -> None:
        if data.num_labels and model.config.num_labels != data.num_labels:
            raise StageError(
                f"{what!r} predicts {model.config.num_labels} labels but the task has {data.num_labels}",
                hint="fine-tune the model on the task first (a 'finetune' stage)",
            )

    def tokenize(self, split: "datasets.Dataset", tokenizer: Any, max_length: int, data: "TaskData",
                 *, progress: bool = False) -> "datasets.Dataset":
        return tokenize_sequences(split, tokenizer, max_length, data, int, progress=progress)

    def training_metric(self) -> tuple[str, bool]:
        return "accuracy", True

    def compute_metrics(self, data: "TaskData") -> Any:
        import numpy as np

        def accuracy(eval_pred: Any) -> dict[str, float]:
            logits, labels = eval_pred
            if isinstance(logits, tuple):
                logits = logits[0]
            preds = np.asarray(logits).argmax(axis=-1)
            return {"accuracy": float((preds == np.asarray(labels)).mean())}

        return accuracy

    def soft_targets(self, outputs: Any, batch: dict[str, Any]) -> list[SoftTarget]:
        return [SoftTarget("logits", outputs.logits, "distribution")]

    def metrics(self, data: "TaskData") -> list[Metric]:
        second = task_metric_name(max(data.num_labels, 2))
        return [Metric("accuracy", "accuracy"),
                Metric(second, "F1" if second == "f1" else "macro-F1")]

    def score(self, backend: "Backend", split: "datasets.Dataset", data: "TaskData", *,
              batch_size: int, progress: bool = False) -> Scored:
        import numpy as np

        if "label" not in split.column_names:
            raise CompressorError(f"the evaluation split lacks a 'label' column; has {split.column_names}")
        num_labels = data.num_labels or int(getattr(backend.config, "num_labels", 0))
        task_metric_name(num_labels)
        logits = np.concatenate(
            [out["logits"] for _, out in predict_batches(backend, split, batch_size=batch_size,
                                                         progress=progress, desc="accuracy")]
        )
        if logits.ndim != 2 or logits.shape[1] != num_labels:
            raise CompressorError(
                f"the model outputs {logits.shape[-1]} logits per example but the task has "
                f"{num_labels} labels",
                hint="fine-tune the model on this task first (a 'finetune' stage)",
            )
        labels = np.asarray(split["label"], dtype=np.int64)
        preds = logits.argmax(axis=-1).astype(np.int64)
        return Scored(
            arrays={"label": labels, "prediction": preds},
            extra={"predicted_classes": int(np.unique(preds).size)},
            predictions={"label": labels, "prediction": preds, "logits": logits.astype(np.float32)},
        )

    def metric_matrix(self, weights: "np.ndarray", scored: Scored, data: "TaskData") -> dict[str, "np.ndarray"]:
        labels, preds = scored.arrays["label"], scored.arrays["prediction"]
        num_labels = data.num_labels or int(max(labels.max(), preds.max())) + 1
        return classification_matrix(weights, labels, preds, max(num_labels, 2))
