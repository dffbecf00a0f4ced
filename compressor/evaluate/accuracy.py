"""Accuracy pass: argmax predictions on a labelled split, accuracy and the task's F1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import CompressorError

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

    from .backends import Backend


def task_metric_name(num_labels: int) -> str:
    """The usual metric besides accuracy: ``"f1"`` (binary, positive class 1) for 2 labels,
    ``"macro_f1"`` for more.

    :raises CompressorError: for fewer than 2 labels (regression is not supported).
    """
    if num_labels < 2:
        raise CompressorError(
            f"accuracy needs a classification task with at least 2 labels, got {num_labels}"
        )
    return "f1" if num_labels == 2 else "macro_f1"


def classification_metrics(
    labels: "np.ndarray", predictions: "np.ndarray", num_labels: int
) -> dict[str, Any]:
    """Accuracy and the task metric of integer predictions.

    :param labels: gold class indices, shape ``(n,)``.
    :param predictions: predicted class indices, shape ``(n,)``.
    :param num_labels: number of classes.
    :returns: ``{"n", "accuracy", "<task metric>", "task_metric", "predicted_classes"}``;
        metric values are fractions in ``[0, 1]``; ``predicted_classes`` counts the distinct
        classes predicted (1: the model gives every example the same class).
    """
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    metric = task_metric_name(num_labels)
    if metric == "f1":
        value = f1_score(labels, predictions, average="binary", pos_label=1, zero_division=0)
    else:
        value = f1_score(
            labels, predictions, average="macro", labels=list(range(num_labels)), zero_division=0
        )
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, predictions)),
        metric: float(value),
        "task_metric": metric,
        "predicted_classes": int(np.unique(predictions).size),
    }


def predict(
    backend: "Backend",
    dataset: "datasets.Dataset",
    *,
    batch_size: int,
    progress: bool = True,
) -> "np.ndarray":
    """Logits of every example of ``dataset``, in order.

    Each batch is tokenised with the artifact's tokenizer, truncated to
    :meth:`Backend.accuracy_max_length` tokens and padded to its longest member.

    :param backend: the loaded model.
    :param dataset: rows with ``text`` and optionally ``text_pair``.
    :param batch_size: sequences per forward call.
    :param progress: show a progress bar.
    :returns: float32 array of shape ``(len(dataset), num_labels)``.
    """
    import numpy as np
    from tqdm.auto import tqdm

    has_pair = "text_pair" in dataset.column_names
    max_length = backend.accuracy_max_length()
    chunks: list[np.ndarray] = []
    n = len(dataset)
    with tqdm(total=n, desc="accuracy", unit="ex", disable=not progress, leave=False) as bar:
        for start in range(0, n, batch_size):
            rows = dataset[start : start + batch_size]
            batch = backend.encode(
                list(rows["text"]),
                list(rows["text_pair"]) if has_pair else None,
                padding=True,
                max_length=max_length,
            )
            chunks.append(backend.predict_logits(batch))
            bar.update(len(rows["text"]))
    return np.concatenate(chunks, axis=0)


def measure_accuracy(
    backend: "Backend",
    dataset: "datasets.Dataset",
    *,
    num_labels: int,
    split: str,
    batch_size: int,
    max_samples: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Accuracy and task metric of ``backend`` on a labelled split.

    :returns: ``{"split", "n", "accuracy", "f1" | "macro_f1", "task_metric"}`` (see
        :func:`accuracy_and_predictions`).
    """
    return accuracy_and_predictions(
        backend, dataset, num_labels=num_labels, split=split, batch_size=batch_size,
        max_samples=max_samples, progress=progress,
    )[0]


def accuracy_and_predictions(
    backend: "Backend",
    dataset: "datasets.Dataset",
    *,
    num_labels: int,
    split: str,
    batch_size: int,
    max_samples: int | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], "np.ndarray", "np.ndarray"]:
    """Accuracy, task metric and the per-example predictions of ``backend`` on a split.

    :param backend: the loaded model.
    :param dataset: the split: ``text``, optional ``text_pair``, ``label`` (int class index).
    :param num_labels: number of classes of the task.
    :param split: the split's name (recorded in the result).
    :param batch_size: sequences per forward call.
    :param max_samples: use the first this-many examples only (all if ``None``).
    :param progress: show a progress bar (with an ETA).
    :returns: ``(metrics, labels, predictions)``: ``metrics`` is ``{"split", "n",
        "accuracy", "f1" | "macro_f1", "task_metric"}`` (fractions); ``labels`` and
        ``predictions`` are int64 arrays of shape ``(n,)`` (argmax of the logits), kept so
        intervals and paired differences can be computed (:mod:`compressor.evaluate.stats`).
    :raises CompressorError: for missing columns, an empty split, or a model whose output
        size differs from ``num_labels``.
    """
    import numpy as np

    missing = {"text", "label"} - set(dataset.column_names)
    if missing:
        raise CompressorError(
            f"split {split!r} lacks column(s) {sorted(missing)}; has {dataset.column_names}"
        )
    if max_samples is not None and max_samples < len(dataset):
        dataset = dataset.select(range(max_samples))
    if len(dataset) == 0:
        raise CompressorError(f"split {split!r} is empty: nothing to evaluate accuracy on")
    task_metric_name(num_labels)  # fail before the forward passes
    logits = predict(backend, dataset, batch_size=batch_size, progress=progress)
    if logits.ndim != 2 or logits.shape[1] != num_labels:
        raise CompressorError(
            f"the model outputs {logits.shape[-1]} logits per example but the task has "
            f"{num_labels} labels",
            hint="fine-tune the model on this task first (a 'finetune' stage)",
        )
    labels = np.asarray(dataset["label"], dtype=np.int64)
    predictions = logits.argmax(axis=-1).astype(np.int64)
    result = {"split": split}
    result.update(classification_metrics(labels, predictions, num_labels))
    return result, labels, predictions
