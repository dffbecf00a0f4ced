"""`compressor plugins --verbose` shows package, version, strategies, backends and hooks of
each plugin, and lists a plugin that fails to import with the reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "compressor-broken-plugin"
version = "2.0.1"

[project.entry-points.compressor]
broken = "compressor_broken.plugin"

[tool.setuptools]
packages = ["compressor_broken"]
"""


def test_verbose_listing_shows_hooks_backends_and_a_failed_plugin(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "compressor_broken").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "compressor_broken" / "__init__.py").write_text("")
    (pkg / "compressor_broken" / "plugin.py").write_text("import a_module_that_is_not_installed\n")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(pkg)],
        check=True, capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-m", "compressor", "plugins", "--verbose"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 1, "a failed plugin makes the listing exit with status 1"
    header, _, *rows = proc.stdout.splitlines()
    for column in ("plugin", "package", "version", "strategies", "backend formats", "hooks", "status"):
        assert column in header
    broken = next(r for r in rows if r.startswith("broken "))
    assert "compressor-broken-plugin" in broken and "2.0.1" in broken
    assert "FAILED: ModuleNotFoundError: No module named 'a_module_that_is_not_installed'" in broken
    finetune = next(r for r in rows if r.startswith("finetune "))
    assert "register_strategies" in finetune and "compressor_finetune.plugin" in finetune

    # blocked by name: listed as disabled, and the listing succeeds
    env["COMPRESSOR_DISABLE_PLUGINS"] = "broken"
    proc = subprocess.run(
        [sys.executable, "-m", "compressor", "plugins"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stdout
    assert next(r for r in proc.stdout.splitlines() if r.startswith("broken ")).rstrip().endswith("disabled")
