"""compressor: plugin-based compression of Hugging Face encoders.

Public API for users and plugin authors. Importing this package stays cheap: torch,
transformers and onnxruntime load only when a run, a strategy or the evaluator needs them.
"""

from __future__ import annotations

import os
from typing import Any

# transformers 5.25 made from_pretrained swap layers for kernels downloaded from the Hugging
# Face Hub by default (model.use_kernels is True unless USE_HUB_KERNELS says no): code from
# the hub, run without the user asking. compressor runs no remote code unless the user opts
# in, so it turns that default off; a user who sets USE_HUB_KERNELS=YES opts in.
os.environ.setdefault("USE_HUB_KERNELS", "NO")

from .artifact import Artifact, Lineage, write_json_atomic
from .errors import CompressorError, HardwareUnsupported, PluginError, RecipeError, SourceError, StageError
from .hookspecs import hookimpl
from .recipe import DataConfig, Recipe, load_recipe
from .strategy import ChainInput, StageContext, Strategy, StrategyConfig
from .task import TaskData

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "ChainInput",
    "CompressorError",
    "DataConfig",
    "HardwareUnsupported",
    "Lineage",
    "PluginError",
    "Recipe",
    "RecipeError",
    "SourceError",
    "StageContext",
    "StageError",
    "Strategy",
    "StrategyConfig",
    "TaskData",
    "__version__",
    "hookimpl",
    "load_recipe",
    "run",
    "write_json_atomic",
]


def run(recipe_path: Any, **kwargs: Any) -> Any:
    """Run a recipe; see :func:`compressor.pipeline.run`."""
    from .pipeline import run as _run

    return _run(recipe_path, **kwargs)
