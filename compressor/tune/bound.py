"""Whether a candidate meets the loss bound, and what the data could ever certify.

A candidate passes when the lower end of the paired bootstrap interval of (candidate -
reference) on the task's headline metric, in points, is at or above ``-max_loss``
(``confidence: null``: the point difference instead). The interval comes from the
evaluator (:func:`compressor.evaluate.stats.paired_bootstrap`, percentile method, the same
resamples for both models).

The smallest bound a split can certify follows from the interval's width: a candidate whose
point difference is 0 still has its lower bound ``w`` points under 0, where ``w`` is the
interval's half-width below the point. With ``n`` paired examples the width shrinks as
``1/sqrt(n)``, so certifying ``max_loss = m`` for such a candidate takes about
``n * (w / m) ** 2`` examples. For accuracy, the paired difference of two classifiers that
disagree on a fraction ``d`` of the examples has a standard error of about
``sqrt(d / n)`` (McNemar's setting): 1,000 sentences and 8% disagreement give 0.9 points,
a 95% lower bound 1.7 points under the point estimate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Bound:
    """(candidate - reference) on the headline metric, in points (100 x the fraction).

    :ivar metric: the headline metric's name (``accuracy``, ``f1``, ``spearman``...).
    :ivar point: the difference on the whole split.
    :ivar low: lower end of the paired interval (``None`` without one).
    :ivar high: upper end.
    :ivar n: paired examples (evaluation units) behind it.
    :ivar confidence: the interval's coverage, or ``None`` when point values are compared.
    :ivar candidate: the candidate's metric, points; ``reference``: the reference's.
    """

    metric: str
    point: float
    low: float | None
    high: float | None
    n: int
    confidence: float | None
    candidate: float | None = None
    reference: float | None = None

    def passes(self, max_loss: float) -> bool:
        """The lower bound (the point difference when ``confidence`` is ``None``) is at or
        above ``-max_loss``."""
        value = self.point if self.confidence is None or self.low is None else self.low
        return value >= -max_loss - 1e-9

    def can_still_pass(self, max_loss: float) -> bool:
        """The upper end of the interval (scored on a subset) still reaches ``-max_loss``:
        the whole split might certify it. Without an interval, the point difference."""
        value = self.high if self.high is not None else self.point
        return value >= -max_loss - 1e-9

    @property
    def margin(self) -> float | None:
        """Points from the point difference down to the lower bound (``None`` without one)."""
        return None if self.low is None else self.point - self.low

    def text(self) -> str:
        if self.low is None or self.high is None:
            return f"{self.point:+.2f} points"
        return f"{self.point:+.2f} [{self.low:+.2f}, {self.high:+.2f}] points"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def bound_from_record(record: Any, *, confidence: float | None) -> Bound | None:
    """The :class:`Bound` of an evaluation record measured with its reference in the same
    call (``record.accuracy.vs_reference``).

    :param record: an :class:`~compressor.evaluate.records.EvaluationRecord`.
    :param confidence: the constraint's confidence (``None``: point values).
    :returns: ``None`` when the record has no paired difference on its headline metric.
    """
    acc = record.accuracy
    if acc is None or acc.vs_reference is None or acc.primary is None:
        return None
    primary = acc.primary
    diff = getattr(acc.vs_reference, primary, None) if primary in ("accuracy", "f1") else None
    if diff is None:
        diff = acc.vs_reference.differences.get(primary)
    if diff is None:
        return None
    value = getattr(acc, primary, None) if primary in ("accuracy", "f1", "macro_f1") else acc.metrics.get(primary)
    return Bound(
        metric=primary,
        point=100.0 * diff.value,
        low=None if diff.low is None else 100.0 * diff.low,
        high=None if diff.high is None else 100.0 * diff.high,
        n=int(acc.n or 0),
        confidence=confidence,
        candidate=None if value is None else 100.0 * value,
        reference=None if value is None else 100.0 * (value - diff.value),
    )


def certifiable(bound: Bound, max_loss: float) -> dict[str, Any] | None:
    """What the split behind ``bound`` can certify.

    :returns: ``{"n", "margin", "smallest_certifiable", "examples_needed"}``: the interval's
        reach below its point (``margin``, points) is the smallest loss bound a candidate
        with no point loss could be certified at on this split; ``examples_needed`` is about
        how many paired examples would certify ``max_loss`` for such a candidate (width
        shrinking as ``1/sqrt(n)``); ``None`` without an interval.
    """
    margin = bound.margin
    if margin is None or bound.n <= 0:
        return None
    needed = None
    if max_loss > 0:
        needed = math.ceil(bound.n * (margin / max_loss) ** 2)
    return {
        "n": bound.n,
        "margin": round(margin, 3),
        "smallest_certifiable": round(margin, 3),
        "examples_needed": needed,
    }
