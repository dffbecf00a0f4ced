"""Each observer hook, and the backend registration hook, on a real run of a tiny model."""

from __future__ import annotations

import json
import shutil
import textwrap
import types
from pathlib import Path

import pytest

from compressor import Artifact, StageError, Strategy, StrategyConfig, hookimpl
from compressor.plugins import Plugins
from compressor.pipeline import run


class Recorder:
    """An observer plugin: records every call with the arguments it opted into."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hookimpl
    def compressor_run_start(self, run_dir, recipe):
        assert (run_dir / "artifacts" / "00-baseline" / "lineage.json").exists()
        self.calls.append(("run_start", run_dir, recipe.name, [s.name for s in recipe.stages]))

    @hookimpl
    def compressor_stage_start(self, stage, strategy, context):
        assert context.stage_name == stage and context.output_dir.is_dir()
        assert not any(context.output_dir.iterdir()), "output_dir must be empty at stage start"
        self.calls.append(("stage_start", stage, strategy, sorted(context.artifacts)))

    @hookimpl
    def compressor_stage_end(self, stage, strategy, artifact, error):
        self.calls.append(("stage_end", stage, strategy, artifact and artifact.path.name, error))

    @hookimpl
    def compressor_run_end(self, run_dir, results, error):
        self.calls.append(("run_end", run_dir, [r["model"] for r in results], error))


class OnlyEnd:
    """Opt-in arguments: an implementation may take fewer arguments than the spec."""

    def __init__(self) -> None:
        self.errors: list = []

    @hookimpl
    def compressor_stage_end(self, error):
        self.errors.append(error)


def _recipe(tmp_path: Path, model: Path, stages: str) -> Path:
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"good film {i},1\nbad film {i},0\n" for i in range(30)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            name: hooks
            model: {{name: {model}, source: local}}
            task:
              data: {{files: {{train: data.csv}}}}
            evaluation: {{baseline: true, latency: false, sequence_length: 32}}
            stages:
            """
        )
        + textwrap.indent(textwrap.dedent(stages), "  ")
    )
    return recipe


def test_observers_see_a_successful_run_in_order(tmp_path, tiny_bert_dir, fake_plugins):
    rec, only = Recorder(), OnlyEnd()
    plugins = Plugins().load(
        entry_points_enabled=False, extra=[("fake", fake_plugins.fake), ("rec", rec), ("only", only)]
    )
    recipe = _recipe(
        tmp_path, tiny_bert_dir,
        """\
        - {name: one, strategy: copy.model}
        - {name: two, strategy: copy.model, evaluate: false}
        """,
    )
    run_dir = tmp_path / "run"
    run(recipe, run_dir=run_dir, plugins=plugins, progress=False)
    assert rec.calls == [
        ("run_start", run_dir, "hooks", ["one", "two"]),
        ("stage_start", "one", "copy.model", ["baseline"]),
        ("stage_end", "one", "copy.model", "01-one", None),
        ("stage_start", "two", "copy.model", ["baseline", "one"]),
        ("stage_end", "two", "copy.model", "02-two", None),
        ("run_end", run_dir, ["baseline", "one"], None),
    ]
    assert only.errors == [None, None]
    assert plugins.infos["rec"].hooks == [
        "compressor_run_end", "compressor_run_start", "compressor_stage_end", "compressor_stage_start"
    ]
    # a resumed run reuses both stages: no stage hooks, but run_start and run_end again
    rec.calls.clear()
    run(recipe, run_dir=run_dir, plugins=plugins, progress=False, resume=True)
    assert [c[0] for c in rec.calls] == ["run_start", "run_end"]


def test_observers_see_a_failed_stage_and_the_error(tmp_path, tiny_bert_dir, fake_plugins):
    rec = Recorder()
    plugins = Plugins().load(entry_points_enabled=False, extra=[("fake", fake_plugins.fake), ("rec", rec)])
    recipe = _recipe(
        tmp_path, tiny_bert_dir,
        f"""\
        - {{name: ok, strategy: copy.model}}
        - {{name: boom, strategy: copy.model, config: {{fail_marker: {tmp_path / 'absent'}}}}}
        """,
    )
    with pytest.raises(StageError, match="missing"):
        run(recipe, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["run_start", "stage_start", "stage_end", "stage_start", "stage_end", "run_end"]
    _, stage, _, artifact, error = rec.calls[4]
    assert stage == "boom" and artifact is None and isinstance(error, StageError)
    _, _, results, run_error = rec.calls[5]
    assert results == [] and run_error is error


def test_run_end_is_called_when_the_data_cannot_be_resolved(tmp_path, tiny_bert_dir, fake_plugins):
    rec = Recorder()
    plugins = Plugins().load(entry_points_enabled=False, extra=[("fake", fake_plugins.fake), ("rec", rec)])
    recipe = _recipe(tmp_path, tiny_bert_dir, "- {name: one, strategy: copy.model}\n")
    (tmp_path / "data.csv").unlink()
    with pytest.raises(Exception):
        run(recipe, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    assert [c[0] for c in rec.calls] == ["run_end"] and rec.calls[0][3] is not None


def _renamed_format_plugin() -> types.ModuleType:
    """A strategy producing a format of its own and the backend that loads it."""
    from compressor.evaluate.backends import PyTorchBackend

    class Marked(PyTorchBackend):
        name = "pytorch-marked"
        formats = ("pytorch-marked",)
        loads: list[str] = []

        @classmethod
        def load(cls, artifact, *, task_type, threads, device="cpu"):
            cls.loads.append(artifact.name)
            assert (Path(artifact.path) / "MARK").exists()
            return super().load(artifact, task_type=task_type, threads=threads, device=device)

    class MarkConfig(StrategyConfig):
        pass

    class Mark(Strategy):
        name = "mark.copy"
        Config = MarkConfig
        description = "Copies the model into a format only the plugin's backend loads"
        produces = "pytorch-marked"

        def apply(self, artifact, config, context):
            for f in Path(artifact.path).iterdir():
                if f.is_file() and f.name != "lineage.json":
                    shutil.copy2(f, context.output_dir / f.name)
            (context.output_dir / "MARK").write_text("x")
            return context.new_artifact(artifact, self.name, config, format="pytorch-marked")

    mod = types.ModuleType("marked_plugin")

    @hookimpl
    def compressor_register_strategies(register):
        register(Mark)

    @hookimpl
    def compressor_register_backends(register):
        register(Marked)

    mod.compressor_register_strategies = compressor_register_strategies
    mod.compressor_register_backends = compressor_register_backends
    mod.Marked = Marked
    return mod


def test_register_backends_lets_the_evaluator_measure_a_plugin_format(tmp_path, tiny_bert_dir, monkeypatch):
    import compressor.plugins

    mod = _renamed_format_plugin()
    plugins = Plugins().load(entry_points_enabled=False, extra=[("marked", mod)])
    # the run hands the plugins' backends to the evaluator and the model cards
    monkeypatch.setattr(compressor.plugins, "_cached", plugins)
    assert plugins.backends["pytorch-marked"] is mod.Marked
    assert plugins.infos["marked"].hooks == ["compressor_register_backends", "compressor_register_strategies"]
    recipe = _recipe(tmp_path, tiny_bert_dir, "- {name: marked, strategy: mark.copy}\n")
    result = run(recipe, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    record = next(r for r in result.results if r["model"] == "marked")
    assert record["format"] == "pytorch-marked" and record["accuracy"]["n"] > 0
    assert "marked" in mod.Marked.loads
    assert Artifact.load(tmp_path / "run" / "artifacts" / "01-marked").format == "pytorch-marked"
    lineage = json.loads((tmp_path / "run" / "artifacts" / "01-marked" / "lineage.json").read_text())
    assert lineage["format"] == "pytorch-marked"
