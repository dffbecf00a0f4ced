"""Built-in distillation strategies of compressor (``distill.distilbert``, ``mlm-adapt``),
registered through the ``compressor`` entry-point group like any third-party plugin.

Modules: :mod:`.plugin` (strategies and configs, light), :mod:`.layers` (teacher layer
selection, light), :mod:`.adaptors` (model outputs under fixed keys), :mod:`.losses`,
:mod:`.student`, :mod:`.loading` (pruned models with another head), :mod:`.mlm`,
:mod:`.trainer` and :mod:`.distill` (torch/transformers, imported when a stage runs).
"""

from .plugin import (
    DistilBERTDistillation,
    DistillationConfig,
    LayerLossConfig,
    MLMAdapt,
    MLMAdaptConfig,
    StudentModel,
)

__all__ = [
    "DistilBERTDistillation",
    "DistillationConfig",
    "LayerLossConfig",
    "MLMAdapt",
    "MLMAdaptConfig",
    "StudentModel",
]
