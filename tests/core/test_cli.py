"""The command line: exit status 2 and one clear message for bad input; fast start-up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import compressor.plugins
from compressor.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli_plugins(fake_plugins, monkeypatch):
    monkeypatch.setattr(compressor.plugins, "_cached", fake_plugins)
    return fake_plugins


def recipe_text(model: str, data: str = "data:\n    name: tiny-sentiment") -> str:
    return textwrap.dedent(
        """\
        version: 1
        name: clitest
        model:
          name: {model}
        task:
          {data}
        evaluation:
          baseline: false
        stages:
          - name: first
            strategy: copy.model
        """
    ).format(model=model, data=data)


def run_cli(capsys, *argv) -> tuple[int, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.err + captured.out


@pytest.mark.parametrize(
    ("edit", "line", "needles"),
    [
        (("name: clitest", "nmae: clitest"), 2, ["nmae", "did you mean 'name'?"]),
        (("strategy: copy.model", "strategy: copy.mdoel"), 12, ["stages[0].strategy", "did you mean 'copy.model'?"]),
        (("name: clitest", "name: clitest\nseed: -1"), 3, ["seed", "greater than or equal to 0"]),
        (("  name: tiny-sentiment", "  name: mr-snipets"), 7, ["task.data.name", "expected"]),
    ],
)
def test_validate_and_run_report_bad_recipes_with_exit_2(tmp_path, capsys, cli_plugins, edit, line, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(recipe_text("m").replace(*edit))
    for command in ("validate", "run"):
        status, out = run_cli(capsys, command, path)
        assert status == 2, out
        assert f"bad.yaml:{line}:" in out
        for needle in needles:
            assert needle in out
        assert "Traceback" not in out


def test_validate_several_recipes(tmp_path, capsys, cli_plugins):
    good = tmp_path / "good.yaml"
    good.write_text(recipe_text("m"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe_text("m").replace("version: 1", "versoin: 1"))
    status, out = run_cli(capsys, "validate", good, bad)
    assert status == 2
    assert "ok: " in out and "good.yaml" in out and "bad.yaml:1:" in out


def test_unreadable_recipe_file(tmp_path, capsys, cli_plugins):
    status, out = run_cli(capsys, "run", tmp_path / "missing.yaml")
    assert status == 2 and "missing.yaml" in out and "not found" in out


def test_unknown_packaged_model_at_run(tmp_path, capsys, cli_plugins):
    path = tmp_path / "r.yaml"
    path.write_text(recipe_text("all-minilm-l6-v3").replace("name: all-minilm-l6-v3", "name: all-minilm-l6-v3\n  source: packaged"))
    status, out = run_cli(capsys, "run", path, "--run-dir", tmp_path / "run", "--no-progress")
    assert status == 2, out
    assert "r.yaml:4:" in out and "model.name" in out and "all-minilm-l6-v2" in out
    assert "Traceback" not in out


def test_missing_data_column_at_run(tmp_path, capsys, cli_plugins, tiny_bert_dir):
    csv = tmp_path / "reviews.csv"
    csv.write_text("sentence,label\ngood film,1\nbad film,0\n" * 20)
    path = tmp_path / "r.yaml"
    data = "data:\n    files: {train: reviews.csv}\n    text_column: text"
    path.write_text(recipe_text(str(tiny_bert_dir), data=data))
    status, out = run_cli(capsys, "run", path, "--run-dir", tmp_path / "run", "--no-progress")
    assert status == 2, out
    assert "task.data.text_column" in out and "sentence" in out
    assert "r.yaml:8:" in out
    assert "Traceback" not in out


def test_plugins_and_report_commands(tmp_path, capsys, cli_plugins):
    status, out = run_cli(capsys, "plugins", "--verbose")
    assert status == 0
    assert "copy.model" in out and "tiny-sentiment" in out
    status, out = run_cli(capsys, "report", tmp_path)
    assert status == 2 and "results" in out


def _python(code: str, **env) -> str:
    import os

    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, check=True
    )
    return res.stdout.strip()


def test_help_and_validate_do_not_import_heavy_libraries():
    code = (
        "import sys, contextlib, io\n"
        "from compressor.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    status = main(['validate', 'recipes/quickstart.yaml'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'onnxruntime') if m in sys.modules]\n"
        "print(status, heavy)"
    )
    assert _python(code) == "0 []"
