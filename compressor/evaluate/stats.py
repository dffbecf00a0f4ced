"""Statistics of the evaluator: percentiles, confidence intervals, bootstrap, Pareto front.

Everything here works on plain numbers (numpy arrays), so it is tested against known
distributions without any model:

- :func:`percentiles`: numpy's linear-interpolation percentiles (type 7 of Hyndman & Fan);
- :func:`median_ci`: the distribution-free order-statistic interval of the median
  (binomial ranks; e.g. Conover, *Practical Nonparametric Statistics*, 3rd ed., sec. 3.2);
- :func:`mean_ci`: Student-t interval of the mean;
- :func:`bootstrap_weights` and :func:`paired_bootstrap`: percentile bootstrap
  (Efron & Tibshirani 1993, ch. 13) of any task's metrics (:func:`classification_bootstrap`:
  accuracy, F1 and macro-F1), and the *paired* bootstrap
  of a difference between two models scored on the same examples (Koehn 2004, "Statistical
  Significance Tests for Machine Translation Evaluation"): each resample draws the same
  examples for both models, so the example-to-example variation cancels out;
- :func:`pareto_front`: the non-dominated points of (higher-is-better, lower-is-better) pairs.

numpy and scipy are imported inside the functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Percentiles with linear interpolation between order statistics (numpy's default).

    :param values: samples (any unit), at least one.
    :param qs: percentiles in ``[0, 100]``.
    :returns: one value per ``q``, in the unit of ``values``.
    :raises ValueError: for no samples.
    """
    import numpy as np

    if len(values) == 0:
        raise ValueError("no samples")
    return [float(x) for x in np.percentile(np.asarray(values, dtype=np.float64), qs, method="linear")]


@functools.lru_cache(maxsize=4096)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int, float]:
    """1-based ranks ``(j, k)`` of the order statistics bracketing the median.

    ``P(X_(j) <= median <= X_(k)) = P(j <= B <= k - 1)`` for ``B ~ Binomial(n, 1/2)`` whatever
    the (continuous) distribution; ``j`` is the largest rank with ``P(B <= j - 1) <= (1 -
    confidence) / 2`` and ``k = n + 1 - j``, so the coverage is at least ``confidence``
    when ``n`` allows it (``n >= 6`` for 95%).

    :param n: number of samples, at least 1.
    :param confidence: nominal coverage in ``(0, 1)``.
    :returns: ``(j, k, coverage)``: ranks and the exact coverage of ``[X_(j), X_(k)]``.
    """
    from scipy.stats import binom

    if n < 1:
        raise ValueError("need at least one sample")
    alpha = 1.0 - confidence
    # smallest x with cdf(x) >= alpha/2, so cdf(x - 1) < alpha/2: rank j = x keeps the tail
    # below X_(j) under alpha/2
    j = int(binom.ppf(alpha / 2.0, n, 0.5))
    j = max(1, min(j, (n + 1) // 2))
    k = n + 1 - j
    coverage = float(binom.cdf(k - 1, n, 0.5) - binom.cdf(j - 1, n, 0.5))
    return j, k, coverage


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median (order statistics).

    :param values: samples, at least one (unit kept).
    :param confidence: nominal coverage.
    :returns: ``(low, high)``; for very few samples the interval is ``(min, max)`` and its
        coverage is below ``confidence`` (see :func:`median_ci_ranks`).
    """
    import numpy as np

    x = np.sort(np.asarray(values, dtype=np.float64))
    if len(x) == 0:
        raise ValueError("no samples")
    j, k, _ = median_ci_ranks(len(x), confidence)
    return float(x[j - 1]), float(x[k - 1])


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean: ``mean +- t * s / sqrt(n)``.

    :param values: samples (unit kept); with a single sample the interval is that sample.
    :returns: ``(low, high)``.
    """
    import numpy as np
    from scipy.stats import t

    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise ValueError("no samples")
    m = float(x.mean())
    if len(x) < 2:
        return m, m
    half = float(t.ppf(0.5 + confidence / 2.0, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m - half, m + half


def bootstrap_weights(n: int, resamples: int, seed: int) -> "np.ndarray":
    """How often each example appears in each bootstrap resample.

    :param n: number of examples.
    :param resamples: number of resamples ``B``.
    :param seed: seed of ``numpy.random.default_rng``.
    :returns: float64 array of shape ``(B, n)``; each row sums to ``n`` (a multinomial draw
        of ``n`` examples with replacement). A statistic that is a (ratio of) sum(s) over
        examples is then one matrix product per resample set.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def _interval(samples: "np.ndarray", confidence: float) -> tuple[float, float]:
    import numpy as np

    lo, hi = np.percentile(samples, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def paired_bootstrap(
    metric_matrix: "Callable[[np.ndarray], dict[str, np.ndarray]]",
    n: int,
    *,
    reference_matrix: "Callable[[np.ndarray], dict[str, np.ndarray]] | None" = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile-bootstrap intervals of a task's metrics, and optionally of the paired
    difference from a reference model scored on the same evaluation units.

    :param metric_matrix: ``weights (B, n) -> {metric: (B,)}``: the metrics of each weighted
        resample (:meth:`compressor.tasks.Task.metric_matrix` of one model's scores).
    :param n: evaluation units (examples, sentences, questions, pairs).
    :param reference_matrix: the same for the reference model, or ``None``.
    :param resamples: bootstrap resamples ``B``; ``confidence``: interval coverage;
        ``seed``: resampling seed (the same seed gives the same intervals).
    :returns: ``{"<metric>": [low, high], ..., "resamples", "confidence", "method"}``; with
        a reference also ``"diff": {"<metric>": {"value", "low", "high"}}`` (model minus
        reference, ``value`` on the full set, the interval from the same resamples: paired).
    :raises ValueError: for no units.
    """
    import numpy as np

    if n <= 0:
        raise ValueError("no examples to resample")
    weights = bootstrap_weights(n, resamples, seed)
    boots = metric_matrix(weights)
    out: dict[str, Any] = {k: list(_interval(v, confidence)) for k, v in boots.items()}
    out.update(resamples=resamples, confidence=confidence, method="percentile bootstrap")
    if reference_matrix is not None:
        ones = np.ones((1, n))
        full, full_ref = metric_matrix(ones), reference_matrix(ones)
        ref_boots = reference_matrix(weights)
        out["diff"] = {}
        for k in boots:
            if k not in ref_boots:
                continue
            lo, hi = _interval(boots[k] - ref_boots[k], confidence)
            out["diff"][k] = {"value": float(full[k][0] - full_ref[k][0]), "low": lo, "high": hi}
    return out


def classification_bootstrap(
    labels: "np.ndarray",
    predictions: "np.ndarray",
    num_labels: int,
    *,
    reference_predictions: "np.ndarray | None" = None,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`paired_bootstrap` of accuracy and F1 (2 classes) or macro-F1.

    :param labels: gold class ids, int array ``(n,)``; ``predictions``: predicted ids
        ``(n,)``; ``reference_predictions``: the reference model's, ``(n,)`` or ``None``.
    :raises ValueError: for arrays of different lengths or no examples.
    """
    import numpy as np

    from ..tasks.classification import classification_matrix

    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(
            f"labels and predictions must be 1-d, non-empty and of one length; got "
            f"{labels.shape} and {predictions.shape}"
        )
    ref = None
    if reference_predictions is not None:
        ref = np.asarray(reference_predictions, dtype=np.int64)
        if ref.shape != labels.shape:
            raise ValueError(f"reference predictions have shape {ref.shape}, expected {labels.shape}")
    return paired_bootstrap(
        lambda w: classification_matrix(w, labels, predictions, num_labels),
        len(labels),
        reference_matrix=(lambda w: classification_matrix(w, labels, ref, num_labels)) if ref is not None else None,
        resamples=resamples, confidence=confidence, seed=seed,
    )


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[bool]:
    """Which points are Pareto-optimal for (higher-is-better ``a``, lower-is-better ``b``).

    A point is dominated when another has ``a`` at least as high and ``b`` at least as low,
    and is strictly better in one. Points with a missing coordinate are never optimal.

    :param points: ``(a, b)`` pairs, e.g. (accuracy, p50 latency).
    :returns: one flag per point, in order.
    """
    flags = []
    for i, (a, b) in enumerate(points):
        if a is None or b is None:
            flags.append(False)
            continue
        dominated = any(
            j != i
            and a2 is not None
            and b2 is not None
            and a2 >= a
            and b2 <= b
            and (a2 > a or b2 < b)
            for j, (a2, b2) in enumerate(points)
        )
        flags.append(not dominated)
    return flags
