"""Exact match and F1 exactly as the official SQuAD v1.1 evaluation script defines them.

Source: ``evaluate-v1.1.py`` of the SQuAD site (Rajpurkar et al. 2016,
https://rajpurkar.github.io/SQuAD-explorer/), whose functions ``normalize_answer``,
``f1_score``, ``exact_match_score`` and ``metric_max_over_ground_truths`` are reproduced
here unchanged in behaviour: lower case, punctuation removed (``string.punctuation``), the
articles *a*, *an*, *the* removed as whole words, whitespace collapsed; F1 over the bag of
whitespace tokens; the maximum over the gold answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (v1.1 script)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-overlap F1 of two answers after :func:`normalize_answer` (0 when nothing is
    shared, including an empty prediction)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 when the normalised answers are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(
    metric_fn: Callable[[str, str], float], prediction: str, ground_truths: Sequence[str]
) -> float:
    """The best score of ``prediction`` against any of the gold answers."""
    return max(metric_fn(prediction, gt) for gt in ground_truths)


def squad_scores(prediction: str, ground_truths: Sequence[str]) -> tuple[float, float]:
    """``(exact_match, f1)`` of one question, each a fraction in [0, 1] (the script reports
    100 times their mean).

    :raises ValueError: when ``ground_truths`` is empty.
    """
    if not ground_truths:
        raise ValueError("a question needs at least one gold answer")
    return (metric_max_over_ground_truths(exact_match_score, prediction, ground_truths),
            metric_max_over_ground_truths(f1_score, prediction, ground_truths))
