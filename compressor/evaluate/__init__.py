"""The evaluator: accuracy, size and latency of any artifact, with one set of settings.

Public API:

- :func:`evaluate_artifact` evaluates one artifact and returns a JSON-serialisable dict;
- :func:`evaluate_artifacts` evaluates several, timing their latency in interleaved rounds;
- :class:`EvaluationSettings` is the recipe's ``evaluation:`` section;
- :data:`METRICS` describes each reported metric (unit, direction).

Importing this package is cheap: torch, transformers, onnxruntime, scikit-learn and numpy
are imported inside the functions that use them.
"""

from __future__ import annotations

from .evaluator import evaluate_artifact, evaluate_artifacts
from .metrics import METRICS, Metric
from .settings import EvaluationSettings

__all__ = ["METRICS", "EvaluationSettings", "Metric", "evaluate_artifact", "evaluate_artifacts"]
