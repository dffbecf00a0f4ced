"""Plugins use the core's public API only, and docs/api.md documents that API.

The built-in plugins (``plugins/``) and the example third-party plugin
(``docs/examples/compressor-lowrank``, its tests included) are read as source (AST), so the
check needs no import and sees imports inside functions too. A plugin may import:

- from ``compressor``: the names in ``compressor.__all__`` and the public modules below;
- from a public module: its ``__all__`` when it has one, else any name without a leading
  underscore (:data:`PUBLIC_MODULES`, where a few modules are limited to named classes);
- never a name starting with ``_`` from ``compressor.*``, nor such an attribute of a
  ``compressor`` module it imported (``training._finite``).

Every module of the core is either public here or private in the import-linter contract
``plugins-public-api`` (pyproject.toml), so a new module has to be classified.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Iterator

import pytest

import compressor
from compressor import StageContext, testing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [ROOT / "plugins", ROOT / "docs" / "examples" / "compressor-lowrank"]
API_MD = ROOT / "docs" / "api.md"

#: Public module -> the names plugins may import from it; ``None``: its ``__all__`` when it has
#: one, else every name without a leading underscore.
PUBLIC_MODULES: dict[str, frozenset[str] | None] = {
    "compressor": None,
    "compressor.architectures": None,
    "compressor.artifact": None,
    "compressor.errors": None,
    "compressor.evaluate.backends": None,
    "compressor.evaluate.stats": None,
    "compressor.hardware": None,
    "compressor.hookspecs": None,
    "compressor.onnx_export": None,
    "compressor.sources.datasets": frozenset({"DatasetSpec"}),
    "compressor.sources.models": frozenset({"ModelSource"}),
    "compressor.strategy": None,
    "compressor.structure": None,
    "compressor.task": None,
    "compressor.tasks": None,
    "compressor.tasks.base": None,
    "compressor.tasks.classification": None,
    "compressor.tasks.regression": None,
    "compressor.tasks.embedding": None,
    "compressor.tasks.embedding_head": None,
    "compressor.tasks.token_classification": None,
    "compressor.tasks.question_answering": None,
    "compressor.tasks.squad_metrics": None,
    "compressor.tasks.masked_lm": None,
    "compressor.testing": None,
    "compressor.training": None,
    "compressor.training.config": None,
    "compressor.training.losses": None,
    "compressor.training.trainer": None,
}


def _allowed_names(module: str) -> set[str] | None:
    """Names plugins may import from a public module (``None``: any non-private name)."""
    names = PUBLIC_MODULES[module]
    if names is not None:
        return set(names)
    declared = getattr(importlib.import_module(module), "__all__", None)
    return set(declared) if declared is not None else None


def _python_files() -> Iterator[Path]:
    for root in SCANNED:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts and ".egg-info" not in str(path):
                yield path


def violations(source: str, filename: str) -> list[str]:
    """What in one file breaks the rules above, as ``file:line: message`` strings."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> compressor module it is bound to

    def bad(node: ast.AST, message: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {message}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] != "compressor":
                    continue
                if a.name not in PUBLIC_MODULES:
                    bad(node, f"import {a.name}: not a public module of compressor (docs/api.md)")
                aliases[a.asname or a.name.split(".")[0]] = a.asname and a.name or "compressor"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module.split(".")[0] != "compressor":
                continue
            if module not in PUBLIC_MODULES:
                bad(node, f"from {module} import ...: not a public module of compressor (docs/api.md)")
                continue
            allowed = _allowed_names(module)
            for a in node.names:
                sub = f"{module}.{a.name}"
                if sub in PUBLIC_MODULES:
                    aliases[a.asname or a.name] = sub
                    continue
                if a.name.startswith("_") and not (a.name.startswith("__") and a.name.endswith("__")):
                    bad(node, f"from {module} import {a.name}: a private name of the core")
                elif allowed is not None and a.name not in allowed:
                    bad(node, f"from {module} import {a.name}: not in the public API of {module} "
                              f"(allowed: {sorted(allowed)})")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not (node.attr.startswith("__") and node.attr.endswith("__"))
        ):
            bad(node, f"{node.value.id}.{node.attr}: a private name of {aliases[node.value.id]}")
    return found


def test_plugins_import_only_the_public_api() -> None:
    files = list(_python_files())
    assert len(files) > 20, files  # the built-ins and the example were found
    problems = [v for f in files for v in violations(f.read_text(encoding="utf-8"), str(f.relative_to(ROOT)))]
    assert not problems, "plugins reach past the core's public API:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from compressor.evaluate.backends import _load_tokenizer", "private name"),
        ("from compressor.plugins import get_plugins", "not a public module"),
        ("import compressor.pipeline", "not a public module"),
        ("def f():\n    from compressor.sources.packaged import cache_root", "not a public module"),
        ("from compressor.sources.datasets import load_task_data", "not in the public API"),
        ("from compressor.testing import POSITIVE", "not in the public API"),
        ("from compressor import load_task_data", "not in the public API"),
        ("from compressor.training import trainer as t\nt._finite(1)", "t._finite: a private name"),
        ("import compressor.structure as s\ns._resolve", "s._resolve: a private name"),
    ],
)
def test_the_scan_finds_what_it_forbids(source: str, expected: str) -> None:
    found = violations(source, "plugin.py")
    assert len(found) == 1 and expected in found[0], found


@pytest.mark.parametrize(
    "source",
    [
        "from compressor import Strategy, StageContext, testing, __version__",
        "from compressor.training import TrainingConfig, trainer as training\ntraining.load_tokenizer",
        "from compressor.evaluate.backends import PyTorchBackend, load_tokenizer",
        "from compressor.sources.datasets import DatasetSpec",
        "import compressor.onnx_export\nfrom . import _local\nfrom .x import _y",
        "import torch\ntorch._C",
    ],
)
def test_the_scan_allows_the_public_api(source: str) -> None:
    assert violations(source, "plugin.py") == []


def _private_modules() -> list[str]:
    """The ``forbidden_modules`` of the ``plugins-public-api`` contract in pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["id"] == "plugins-public-api")
    return list(contract["forbidden_modules"])


def _core_modules() -> list[str]:
    names = ["compressor"]
    for info in pkgutil.walk_packages(compressor.__path__, "compressor."):
        names.append(info.name)
    return sorted(names)


def test_every_core_module_is_public_or_private() -> None:
    private = _private_modules()

    def is_private(name: str) -> bool:
        return any(
            name == p or (p.endswith(".**") and name.startswith(p[:-2])) for p in private
        )

    both = [m for m in PUBLIC_MODULES if is_private(m)]
    assert not both, f"modules both public (tests/core/test_plugin_api.py) and private (pyproject.toml): {both}"
    unclassified = [m for m in _core_modules() if m not in PUBLIC_MODULES and not is_private(m)]
    assert not unclassified, (
        f"core modules neither public (PUBLIC_MODULES here, documented in docs/api.md) nor private "
        f"(the plugins-public-api contract in pyproject.toml): {unclassified}"
    )


def test_api_reference_documents_the_public_api() -> None:
    text = API_MD.read_text(encoding="utf-8")
    missing = [f"module {m}" for m in PUBLIC_MODULES if f"`{m}`" not in text]
    missing += [f"compressor.{n}" for n in compressor.__all__ if f"`{n}" not in text]
    missing += [f"compressor.testing.{n}" for n in testing.__all__ if f"`{n}" not in text]
    public_context = [
        n for n in vars(StageContext) if not n.startswith("_") and callable(getattr(StageContext, n))
    ] + [n for n in StageContext.__dataclass_fields__]
    missing += [f"StageContext.{n}" for n in public_context if f"`{n}" not in text]
    assert not missing, f"docs/api.md does not document: {missing}"
