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


# --- compressor evaluate, a crashed stage, the format chain -------------------------------------


def _dev_csv(path: Path, n: int) -> Path:
    words = {0: ["bad", "awful", "boring"], 1: ["good", "great", "superb"]}
    path.write_text("text,label\n" + "".join(f"the film was {words[i % 2][i % 3]},{i % 2}\n" for i in range(n)))
    return path


def test_evaluate_runs_a_model_on_a_whole_file_and_the_saved_recipe_resumes(tmp_path, capsys, cli_plugins, tiny_bert_dir, monkeypatch):
    import json

    import yaml

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    csv = _dev_csv(work / "dev.csv", 40)
    argv = ["evaluate", tiny_bert_dir, "--data", "dev.csv", "--out", "ev", "--no-latency", "--sequence-length", "16",
            "--no-progress"]
    status, out = run_cli(capsys, *argv)
    assert status == 0, out
    assert "baseline" in out and f"report: {work / 'ev' / 'report.md'}" in out
    run_dir = work / "ev"
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert saved["stages"] == [] and saved["name"] == "ev" and saved["output"]["dir"] == str(work)
    assert saved["model"]["name"] == str(Path(tiny_bert_dir).resolve())
    assert saved["task"]["data"]["files"] == {"test": str(csv)}
    assert saved["evaluation"]["accuracy_split"] == "test" and saved["evaluation"]["latency"] is False
    assert "compressor evaluate" in (run_dir / "recipe.yaml").read_text().splitlines()[1]
    (record,) = json.loads((run_dir / "results.json").read_text())
    assert record["model"] == "baseline" and record["accuracy"]["n"] == 40

    # the saved recipe is an ordinary one: it resumes from another folder, measuring nothing again
    lines = (run_dir / "results.jsonl").read_text()
    monkeypatch.chdir(tmp_path)
    status, out = run_cli(capsys, "run", run_dir / "recipe.yaml", "--resume", "--no-progress")
    assert status == 0, out
    assert (run_dir / "results.jsonl").read_text() == lines
    status, out = run_cli(capsys, "report", run_dir)
    assert status == 0 and "baseline" in out
    monkeypatch.chdir(work)
    status, out = run_cli(capsys, *argv)
    assert status == 2 and "already exists" in out and "--resume" in out


def test_evaluate_names_the_argument_at_fault(tmp_path, capsys, cli_plugins, tiny_bert_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out = run_cli(capsys, "evaluate", tiny_bert_dir, "--data", "tiny-sentimnt")
    assert status == 2, out
    assert "error: --data (task.data.name): unknown data set 'tiny-sentimnt'" in out
    assert "did you mean 'tiny-sentiment'?" in out and "recipe.yaml" not in out
    status, out = run_cli(capsys, "evaluate", tiny_bert_dir, "--data", "missing.csv")
    assert status == 2 and "--data: file not found" in out and str(tmp_path / "missing.csv") in out
    _dev_csv(tmp_path / "dev.csv", 10)
    status, out = run_cli(capsys, "evaluate", tiny_bert_dir, "--data", "dev.csv", "--text-column", "review",
                          "--no-progress")
    assert status == 2 and "error: --text-column (task.data.text_column): column 'review' not found" in out
    assert "Traceback" not in out and not (tmp_path / "runs" / "evaluate-tiny-bert0-tiny-sentimnt").exists()


def test_a_crashed_stage_exits_1_with_everything_said_by_the_exception(tmp_path, capsys, fake_plugins, tiny_bert_dir, monkeypatch):
    import compressor.pipeline
    from compressor.plugins import Plugins
    from test_run_plan import plan_plugin

    plugins = Plugins().load(entry_points_enabled=False, extra=[("fake", fake_plugins.fake), ("plan", plan_plugin())])
    monkeypatch.setattr(compressor.plugins, "_cached", plugins)
    path = tmp_path / "r.yaml"
    path.write_text(recipe_text(str(tiny_bert_dir)) + "  - {name: boom, strategy: fake.crash}\n")
    run_dir = tmp_path / "run"
    real_run = compressor.pipeline.run

    def run_then_forget(*args, **kwargs):
        """The CLI must not read the recipe or the manifest again to describe the failure."""
        try:
            return real_run(*args, **kwargs)
        finally:
            path.unlink()
            (run_dir / "manifest.json").unlink()

    monkeypatch.setattr(compressor.pipeline, "run", run_then_forget)
    status, out = run_cli(capsys, "run", path, "--run-dir", run_dir, "--no-progress")
    assert status == 1, out
    tb = run_dir / "work" / "02-boom.traceback.txt"
    assert f"error: stage 'boom' failed: KeyError: 'boom in the kernel'\n  traceback: {tb}\n" in out
    assert f"earlier stages are kept in {run_dir}; fix the cause and rerun with --resume" in out
    assert "Traceback" not in out and "KeyError" in tb.read_text()


def test_validate_and_run_refuse_a_broken_format_chain(tmp_path, capsys, fake_plugins, tiny_bert_dir, monkeypatch):
    from compressor.plugins import Plugins
    from test_run_plan import plan_plugin

    plugins = Plugins().load(entry_points_enabled=False, extra=[("fake", fake_plugins.fake), ("plan", plan_plugin())])
    monkeypatch.setattr(compressor.plugins, "_cached", plugins)
    path = tmp_path / "bad.yaml"
    path.write_text(recipe_text(str(tiny_bert_dir)).replace("strategy: copy.model", "strategy: fake.export")
                    + "  - name: second\n    strategy: copy.model\n")
    for command in ("validate", "run"):
        status, out = run_cli(capsys, command, path, *(["--run-dir", tmp_path / "run"] if command == "run" else []))
        assert status == 2, out
        assert f"bad.yaml:14: stages[1].strategy: strategy 'copy.model' takes ['pytorch'] models" in out
        assert "expected: an input in 'pytorch' format; 'first' is made by stage 'first' (fake.export)" in out
        assert "hint: start this stage from an artifact it takes, e.g. 'input: baseline'" in out
    assert not (tmp_path / "run").exists() and fake_plugins.fake.calls == []


def test_the_task_types_come_from_the_registry_and_load_only_for_the_help(capsys, monkeypatch):
    import types

    import compressor.cli
    from compressor import hookimpl
    from compressor.plugins import Plugins
    from compressor.tasks.classification import TextClassification

    class MultiLabel(TextClassification):
        name = "multi-label-xyz"

    module = types.SimpleNamespace(
        __name__="tasks_plugin", compressor_register_tasks=hookimpl(lambda register: register(MultiLabel()))
    )
    loads = []
    plugins = Plugins().load(entry_points_enabled=False, extra=[("tasks", module)])
    monkeypatch.setattr(compressor.plugins, "get_plugins", lambda **kw: loads.append(1) or plugins)
    assert compressor.cli.task_types(plugins) == sorted(plugins.tasks)
    assert compressor.cli.TASK_TYPES == tuple(sorted(plugins.tasks))
    loads.clear()
    compressor.cli._parser()  # building the parser loads no plugin
    assert loads == []
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "multi-label-xyz" in out and "text-classification" in out and "{task_types}" not in out
    assert loads
