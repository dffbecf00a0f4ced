"""Built-in pruning strategies of compressor (entry point ``pruning``): unstructured
magnitude, attention heads, FFN neurons and whole layers. See :mod:`compressor_pruning.plugin`."""

from .plugin import (
    FFNPruning,
    FFNPruningConfig,
    HeadPruning,
    HeadPruningConfig,
    LayerDropConfig,
    LayerDropping,
    MagnitudeConfig,
    MagnitudePruning,
)

__all__ = [
    "FFNPruning",
    "FFNPruningConfig",
    "HeadPruning",
    "HeadPruningConfig",
    "LayerDropConfig",
    "LayerDropping",
    "MagnitudeConfig",
    "MagnitudePruning",
]
