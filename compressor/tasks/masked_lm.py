"""``masked-lm``: raw text, no labels; what general (masked-LM) distillation trains on.

The evaluator measures size, latency and memory of such models but no task quality: a
masked-LM model has no task to score.
"""

from __future__ import annotations

from .base import Metric, Task


class MaskedLM(Task):
    """Raw text for masked-language-model training (``AutoModelForMaskedLM``)."""

    name = "masked-lm"
    description = "raw text (general distillation); no quality metric"
    labelled = False
    auto_model = "AutoModelForMaskedLM"
    pipeline_tag = "fill-mask"
    evaluated = False
    onnx_outputs = {"logits": ("batch", "sequence")}

    def metrics(self, data: object) -> list[Metric]:
        return []
