"""The hook reference documents every hook, with the spec's exact signature, and every hook
has a test of its own (the datasette approach: its name appears in a test under tests/)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from compressor import hookspecs
from compressor.plugins import Plugins

ROOT = Path(__file__).resolve().parents[2]
HOOKS_MD = ROOT / "docs" / "hooks.md"


def hook_names() -> list[str]:
    """Every hook the plugin manager knows, read from the specs it was given."""
    pm = Plugins().pm
    names = sorted(n for n in dir(pm.hook) if n.startswith("compressor_"))
    assert names, "no hookspecs found"
    # the same set as the functions marked @hookspec in the module
    marked = sorted(n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT}_spec"))
    assert names == marked
    return names


def _section(name: str) -> str:
    text = HOOKS_MD.read_text(encoding="utf-8")
    parts = re.split(r"^### ", text, flags=re.M)
    for part in parts[1:]:
        if part.split("\n", 1)[0].strip() == name:
            return part
    raise AssertionError(f"docs/hooks.md has no '### {name}' section: document the hook there")


@pytest.mark.parametrize("name", hook_names())
def test_hook_is_documented_with_its_exact_signature(name: str) -> None:
    section = _section(name)
    match = re.search(rf"^def {name}\(.*?\) -> None$", section, flags=re.M | re.S)
    assert match, f"docs/hooks.md '### {name}' lacks a 'def {name}(...) -> None' signature line"
    documented = ast.parse(match.group(0) + ": ...").body[0]
    assert isinstance(documented, ast.FunctionDef)
    doc_params = [a.arg for a in documented.args.args]
    spec_params = list(inspect.signature(getattr(hookspecs, name)).parameters)
    assert doc_params == spec_params, f"{name}: docs say {doc_params}, the spec has {spec_params}"
    for heading in ("**Arguments**", "**Returns**", "**When**"):
        assert heading in section, f"{name}: no {heading} in docs/hooks.md"
    assert f"def {name}(" in section.split(match.group(0), 1)[1], f"{name}: no example implementation"
    assert f"[`{name}`](#{name})" in HOOKS_MD.read_text(encoding="utf-8"), f"{name}: not in the summary table"


@pytest.mark.parametrize("name", hook_names())
def test_hook_has_a_test_of_its_own(name: str) -> None:
    this = Path(__file__).resolve()
    users = [
        p.relative_to(ROOT)
        for p in (ROOT / "tests").rglob("test_*.py")
        if p.resolve() != this and name in p.read_text(encoding="utf-8")
    ]
    assert users, f"no test under tests/ mentions {name}: add one that implements and exercises it"


def test_documented_hooks_all_exist() -> None:
    documented = re.findall(r"^### (compressor_\w+)", HOOKS_MD.read_text(encoding="utf-8"), flags=re.M)
    assert sorted(documented) == hook_names()
