"""``text-regression``: one score per text (or text pair), a single-output head, MSE loss.

The head is ``AutoModelForSequenceClassification`` with ``num_labels=1`` and
``problem_type="regression"`` (transformers then trains it with ``MSELoss``); a cross-encoder
on sentence pairs (STS-B: ``text_column: sentence1``, ``text_pair_column: sentence2``,
``label_column: score``) is the same task with a ``text_pair`` column.

Metrics: Pearson's r and Spearman's rho between the prediction and the gold score (as in
the GLUE STS-B task, Cer et al. 2017), each with bootstrap intervals and paired differences:
:func:`weighted_pearson` and :func:`weighted_spearman` give them for every weighted resample
at once (a row of ones gives exactly ``scipy.stats.pearsonr`` / ``spearmanr``, ties ranked
by their mean rank). RMSE and MAE are reported as point estimates.

Distillation: there is no softmax over one output, so the teacher's prediction is a
``"value"`` soft target, matched with MSE.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..errors import CompressorError, SourceError, StageError
from .base import Metric, Scored, SoftTarget, Task, predict_batches, tokenize_sequences

if TYPE_CHECKING:  # pragma: no cover
    import datasets
    import numpy as np

    from ..evaluate.backends import Backend
    from ..task import TaskData


# --- weighted correlations (bootstrap) -----------------------------------------------------


def _rows(a: "np.ndarray", b: int) -> "np.ndarray":
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    return np.broadcast_to(a, (b, a.shape[-1])) if a.ndim == 1 else a


def weighted_pearson(weights: "np.ndarray", x: "np.ndarray", y: "np.ndarray") -> "np.ndarray":
    """Pearson's r of ``x`` and ``y`` under each row of ``weights``.

    :param weights: float ``(B, n)``, how often each unit counts in each resample.
    :param x: float ``(n,)`` or ``(B, n)`` (one row per resample, e.g. ranks).
    :param y: float ``(n,)`` or ``(B, n)``.
    :returns: float64 ``(B,)``; NaN where either side has no variance.
    """
    import numpy as np

    w = np.asarray(weights, dtype=np.float64)
    b = w.shape[0]
    x, y = _rows(x, b), _rows(y, b)
    total = w.sum(axis=1)
    total = np.where(total > 0, total, 1.0)
    mx = (w * x).sum(axis=1) / total
    my = (w * y).sum(axis=1) / total
    dx, dy = x - mx[:, None], y - my[:, None]
    cov = (w * dx * dy).sum(axis=1)
    vx = (w * dx * dx).sum(axis=1)
    vy = (w * dy * dy).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(vx * vy)
    return np.where((vx > 0) & (vy > 0), np.clip(r, -1.0, 1.0), np.nan)


def weighted_ranks(weights: "np.ndarray", x: "np.ndarray") -> "np.ndarray":
    """The rank of every unit in each resample, ties given their mean rank.

    In a resample where unit ``i`` appears ``w_i`` times, the rank of a value is the number of
    drawn values below it plus ``(count of drawn values equal to it + 1) / 2`` (the average
    rank of a tie group, as ``scipy.stats.rankdata(method="average")``).

    :param weights: ``(B, n)`` counts.
    :param x: ``(n,)`` values.
    :returns: float64 ``(B, n)`` ranks (from 1).
    """
    import numpy as np

    w = np.asarray(weights, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    group_of_sorted = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    totals = np.add.reduceat(w[:, order], starts, axis=1)  # (B, G)
    before = np.cumsum(totals, axis=1) - totals
    group_rank = before + (totals + 1.0) / 2.0
    ranks = np.empty_like(w)
    ranks[:, order] = group_rank[:, group_of_sorted]
    return ranks


def weighted_spearman(weights: "np.ndarray", x: "np.ndarray", y: "np.ndarray") -> "np.ndarray":
    """Spearman's rho of ``x`` and ``y`` under each row of ``weights``: Pearson's r of the
    ranks each resample gives (:func:`weighted_ranks`).

    :returns: float64 ``(B,)``.
    """
    return weighted_pearson(weights, weighted_ranks(weights, x), weighted_ranks(weights, y))


def correlation_matrix(weights: "np.ndarray", predictions: "np.ndarray", gold: "np.ndarray") -> dict[str, "np.ndarray"]:
    """``{"pearson": (B,), "spearman": (B,)}`` of predictions against gold scores."""
    return {
        "pearson": weighted_pearson(weights, predictions, gold),
        "spearman": weighted_spearman(weights, predictions, gold),
    }


# --- labels --------------------------------------------------------------------------------


def normalise_scores(
    splits: dict[str, "datasets.Dataset"], where: dict[str, str], key: str = "task.data.label_column"
) -> dict[str, "datasets.Dataset"]:
    """Make the ``label`` column of every split a float32 score.

    :raises SourceError: naming the split's file (or data set) and the row (the file's line
        for CSV/TSV files with a header) of the first value that is not a finite number.
    """
    from datasets import Value

    out = {}
    for split, ds in splits.items():
        if "label" not in ds.column_names:
            out[split] = ds
            continue
        for row, value in enumerate(ds.with_format("arrow")["label"].to_pylist()):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok and isinstance(value, str):
                try:
                    value = float(value)
                    ok = True
                except ValueError:
                    ok = False
            if not ok or not math.isfinite(float(value)):
                place = where.get(split, split)
                line = f"{place}:{row + 2}" if place.endswith((".csv", ".tsv")) else f"{place} (row {row})"
                raise SourceError(
                    f"score {value!r} in split {split!r} is not a finite number",
                    key=key,
                    where=line,
                    expected="a number in every row of the label column",
                )
        out[split] = ds.cast_column("label", Value("float32"))
    return out


# --- the task ------------------------------------------------------------------------------


class TextRegression(Task):
    """One score per text or text pair (``AutoModelForSequenceClassification``, one output)."""

    name = "text-regression"
    description = "one score per text or text pair (MSE); Pearson and Spearman"
    labelled = True
    supervised = True
    has_classes = False
    auto_model = "AutoModelForSequenceClassification"
    pipeline_tag = "text-classification"

    def normalise(self, splits: Any, where: Any, spec: Any) -> Any:
        return normalise_scores(splits, where), []

    def stratify(self) -> bool:
        return False

    def model_kwargs(self, data: "TaskData | None") -> dict[str, Any]:
        return {"num_labels": 1, "problem_type": "regression"}

    def check_head(self, model: Any, data: "TaskData", what: str) -> None:
        if int(getattr(model.config, "num_labels", 0)) != 1:
            raise StageError(
                f"{what!r} has {model.config.num_labels} outputs; a regression head has 1",
                hint="fine-tune the model on the scores first (a 'finetune' stage)",
            )

    def tokenize(self, split: "datasets.Dataset", tokenizer: Any, max_length: int, data: "TaskData",
                 *, progress: bool = False) -> "datasets.Dataset":
        return tokenize_sequences(split, tokenizer, max_length, data, float, progress=progress)

    def training_metric(self) -> tuple[str, bool]:
        return "pearson", True

    def compute_metrics(self, data: "TaskData") -> Any:
        import numpy as np

        def metrics(eval_pred: Any) -> dict[str, float]:
            preds, labels = eval_pred
            if isinstance(preds, tuple):
                preds = preds[0]
            p = np.asarray(preds, dtype=np.float64).reshape(-1)
            y = np.asarray(labels, dtype=np.float64).reshape(-1)
            ones = np.ones((1, p.size))
            out = {k: float(v[0]) for k, v in correlation_matrix(ones, p, y).items()}
            out["mse"] = float(np.mean((p - y) ** 2))
            return out

        return metrics

    def soft_targets(self, outputs: Any, batch: dict[str, Any]) -> list[SoftTarget]:
        return [SoftTarget("logits", outputs.logits, "value")]

    def metrics(self, data: "TaskData") -> list[Metric]:
        return [Metric("pearson", "Pearson r", "x100"),
                Metric("spearman", "Spearman rho", "x100")]

    def score(self, backend: "Backend", split: "datasets.Dataset", data: "TaskData", *,
              batch_size: int, progress: bool = False) -> Scored:
        """Predict every row's score.

        :returns: arrays ``label`` and ``prediction`` (float64 ``(n,)``); extra ``rmse`` and
            ``mae`` (in the label's unit) and the predictions' mean and standard deviation.
        :raises CompressorError: without a ``label`` column, or for a model with more than one
            output (a classifier).
        """
        import numpy as np

        if "label" not in split.column_names:
            raise CompressorError(f"the evaluation split lacks a 'label' column; has {split.column_names}")
        logits = np.concatenate(
            [out["logits"] for _, out in predict_batches(backend, split, batch_size=batch_size,
                                                         progress=progress, desc="scores")]
        )
        if logits.ndim != 2 or logits.shape[1] != 1:
            raise CompressorError(
                f"the model outputs {logits.shape[-1]} values per example; a regression head has 1",
                hint="fine-tune the model on this task first (a 'finetune' stage)",
            )
        preds = logits[:, 0].astype(np.float64)
        gold = np.asarray(split["label"], dtype=np.float64)
        err = preds - gold
        return Scored(
            arrays={"label": gold, "prediction": preds},
            extra={
                "rmse": float(np.sqrt(np.mean(err**2))),
                "mae": float(np.mean(np.abs(err))),
                "prediction_mean": float(preds.mean()),
                "prediction_std": float(preds.std()),
            },
            predictions={"prediction": preds.astype(np.float32)},
        )

    def metric_matrix(self, weights: "np.ndarray", scored: Scored, data: "TaskData") -> dict[str, "np.ndarray"]:
        return correlation_matrix(weights, scored.arrays["prediction"], scored.arrays["label"])
