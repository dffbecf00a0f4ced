"""Built-in distillation strategies of compressor (``distill.distilbert``), registered
through the ``compressor`` entry-point group like any third-party plugin.

Modules: :mod:`.plugin` (strategy and config, light), :mod:`.layers` (teacher layer
selection, light), :mod:`.losses`, :mod:`.student`, :mod:`.trainer` and :mod:`.distill`
(torch/transformers, imported when a stage runs).
"""

from .plugin import DistilBERTDistillation, DistillationConfig

__all__ = ["DistilBERTDistillation", "DistillationConfig"]
