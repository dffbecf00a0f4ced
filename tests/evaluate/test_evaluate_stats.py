"""Statistics against known distributions: percentiles, interval coverage, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from compressor.evaluate.stats import (
    classification_bootstrap,
    mean_ci,
    median_ci,
    median_ci_ranks,
    pareto_front,
    percentiles,
)


def test_percentiles_linear_interpolation():
    assert percentiles(list(range(1, 101)), [50, 90, 99]) == pytest.approx([50.5, 90.1, 99.01])
    with pytest.raises(ValueError):
        percentiles([], [50])


def test_median_ci_ranks_are_the_binomial_ones():
    # n = 100, 95%: the textbook ranks are 40 and 61 (Conover, table A3)
    j, k, coverage = median_ci_ranks(100, 0.95)
    assert (j, k) == (40, 61) and 0.95 <= coverage < 0.97
    j, k, coverage = median_ci_ranks(3, 0.95)  # too few samples: (min, max), below 95%
    assert (j, k) == (1, 3) and coverage == pytest.approx(0.75)


def test_median_and_mean_intervals_cover_the_truth():
    """Exponential latencies (skewed, like real ones): the median interval covers the true
    median ln 2 in about 95% of 400 experiments, the t interval of the mean covers 1."""
    rng = np.random.default_rng(1)
    cover_median = cover_mean = 0
    for _ in range(400):
        x = rng.exponential(1.0, size=60)
        lo, hi = median_ci(x)
        cover_median += lo <= np.log(2) <= hi
        lo, hi = mean_ci(x)
        cover_mean += lo <= 1.0 <= hi
    assert 0.92 <= cover_median / 400 <= 0.99
    assert 0.90 <= cover_mean / 400 <= 0.98


def test_bootstrap_accuracy_interval_matches_the_binomial_one():
    rng = np.random.default_rng(0)
    n = 1000
    labels = rng.integers(0, 2, n)
    preds = np.where(rng.random(n) < 0.8, labels, 1 - labels)
    res = classification_bootstrap(labels, preds, 2, resamples=2000, seed=0)
    p = float((labels == preds).mean())
    lo, hi = res["accuracy"]
    half = 1.96 * np.sqrt(p * (1 - p) / n)
    assert lo < p < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
    # same seed, same interval; different seed, (slightly) different one
    assert classification_bootstrap(labels, preds, 2, resamples=2000, seed=0)["accuracy"] == [lo, hi]
    assert classification_bootstrap(labels, preds, 2, resamples=2000, seed=1)["accuracy"] != [lo, hi]


def test_bootstrap_f1_and_macro_f1_center_on_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 600)
    preds = np.where(rng.random(600) < 0.7, labels, rng.integers(0, 3, 600))
    res = classification_bootstrap(labels, preds, 3, resamples=500, seed=0)
    macro = f1_score(labels, preds, average="macro")
    assert res["macro_f1"][0] < macro < res["macro_f1"][1]
    bin_labels, bin_preds = labels % 2, preds % 2
    res = classification_bootstrap(bin_labels, bin_preds, 2, resamples=500, seed=0,
                                   reference_predictions=bin_labels)
    f1 = f1_score(bin_labels, bin_preds)
    assert res["f1"][0] < f1 < res["f1"][1]
    assert res["diff"]["f1"]["value"] == pytest.approx(f1 - 1.0)


def test_paired_difference():
    rng = np.random.default_rng(3)
    n = 1000
    labels = rng.integers(0, 2, n)
    ref = np.where(rng.random(n) < 0.85, labels, 1 - labels)
    same = classification_bootstrap(labels, ref, 2, reference_predictions=ref, resamples=300)
    assert same["diff"]["accuracy"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    # 10 examples flipped from right to wrong: a real but tiny loss; paired, it is detected
    # (every resample has the loss or none), while the unpaired intervals overlap widely
    worse = ref.copy()
    idx = np.flatnonzero(ref == labels)[:10]
    worse[idx] = 1 - worse[idx]
    res = classification_bootstrap(labels, worse, 2, reference_predictions=ref, resamples=1000)
    d = res["diff"]["accuracy"]
    assert d["value"] == pytest.approx(-0.01)
    assert d["high"] < 0 < d["high"] + 0.01 and d["low"] > -0.02
    assert res["accuracy"][1] > same["accuracy"][0]  # unpaired intervals overlap
    # a model differing at random on 4% of examples, half right half wrong: within noise
    noisy = ref.copy()
    flip = rng.choice(n, 40, replace=False)
    noisy[flip] = 1 - noisy[flip]
    d = classification_bootstrap(labels, noisy, 2, reference_predictions=ref, resamples=1000)["diff"]["accuracy"]
    assert d["low"] < d["value"] < d["high"] and (d["high"] - d["low"]) > 0.005


def test_bootstrap_input_errors():
    with pytest.raises(ValueError):
        classification_bootstrap(np.array([0, 1]), np.array([0]), 2)
    with pytest.raises(ValueError):
        classification_bootstrap(np.array([0, 1]), np.array([0, 1]), 2,
                                 reference_predictions=np.array([1]))


def test_pareto_front():
    pts = [(0.90, 10.0), (0.89, 5.0), (0.85, 6.0), (0.90, 12.0), (0.80, 2.0), (None, 1.0)]
    assert pareto_front(pts) == [True, True, False, False, True, False]
    assert pareto_front([(0.9, 1.0), (0.9, 1.0)]) == [True, True]  # ties: neither dominates
