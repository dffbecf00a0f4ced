"""The import-linter contracts of pyproject.toml ([tool.importlinter]) hold: the core imports
no plugin, the core's modules and subpackages import one another without cycles, plugins do
not import one another, and plugins import no private module of the core.

Each contract is checked by import-linter's own ``lint_imports`` (what ``lint-imports`` runs),
in this process and without its cache; the graph is built from the source files, nothing is
imported. A plugin package that is not installed (the example plugin outside CI) is found in
its source folder.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
#: where each root package lives in this repository, for packages that are not installed
SOURCE_FOLDERS = [ROOT, ROOT / "plugins", ROOT / "docs" / "examples" / "compressor-lowrank"]


def _config() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]


def _contract_ids() -> list[str]:
    return [c["id"] for c in _config()["contracts"]]


def test_import_linter_is_installed() -> None:
    """import-linter is a test dependency: without it these tests fail (never skip), or the
    contracts would go unchecked without a word."""
    assert importlib.util.find_spec("importlinter") is not None, (
        "import-linter is not installed, so the import contracts cannot be checked; it is in the "
        'test extra: pip install -e ".[test]"'
    )


def test_import_linter_is_a_test_dependency() -> None:
    extra = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]["test"]
    assert any(req.replace("_", "-").lower().startswith("import-linter") for req in extra)


@pytest.fixture
def findable_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put the source folder of every root package that cannot be imported on ``sys.path``."""
    for package in _config()["root_packages"]:
        if importlib.util.find_spec(package) is None:
            folder = next((f for f in SOURCE_FOLDERS if (f / package / "__init__.py").exists()), None)
            assert folder is not None, f"root package {package!r} is neither installed nor in {SOURCE_FOLDERS}"
            monkeypatch.syspath_prepend(str(folder))


def test_the_contracts_cover_the_import_rules() -> None:
    assert set(_contract_ids()) == {
        "core-imports-no-plugin", "core-acyclic", "plugins-independent", "plugins-public-api"
    }


@pytest.mark.parametrize("contract", _contract_ids())
def test_contract_is_kept(contract: str, findable_packages: None, capfd: pytest.CaptureFixture[str]) -> None:
    import importlinter.api  # noqa: F401 - configures import-linter as its command line does
    from importlinter.application.use_cases import lint_imports

    kept = lint_imports(
        config_filename=str(PYPROJECT), limit_to_contracts=(contract,), cache_dir=None, no_logo=True
    )
    out, err = capfd.readouterr()
    assert kept, f"import contract {contract!r} is broken (lint-imports --contract {contract}):\n{out}\n{err}"


def test_no_contract_ignores_imports() -> None:
    """The core's lookups get their registries from the caller, not from a process-wide plugin
    manager that the modules it loads would import back: no contract needs an exception."""
    ignored = {c["id"]: c["ignore_imports"] for c in _config()["contracts"] if c.get("ignore_imports")}
    assert not ignored, f"contracts with ignore_imports: {ignored}"
