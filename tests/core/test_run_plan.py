"""The orchestrator's plan and steps: the format chain and training data checked before any
stage runs, a crashed stage as :class:`StageFailed`, and evaluation-only runs."""

from __future__ import annotations

import json
import pickle
import shutil
import textwrap
import types
from pathlib import Path

import pytest

from compressor.errors import CompressorError, RecipeError, StageError, StageFailed
from compressor.pipeline import Run, run
from compressor.plan import model_format, stage_inputs
from compressor.plugins import Plugins
from compressor.recipe import load_recipe

#: Evaluation settings that keep the evaluator quick on the tiny model.
FAST = "{sequence_length: 16, latency: false, memory: false, flops: false}"


def _copy_files(src: Path, dst: Path) -> None:
    for f in Path(src).iterdir():
        if f.is_file() and f.name != "lineage.json":
            shutil.copy2(f, dst / f.name)


def plan_plugin() -> types.ModuleType:
    """Strategies with other formats and flags than ``copy.model``'s, as a plugin registers them."""
    from compressor import Strategy, StrategyConfig, hookimpl

    class Empty(StrategyConfig):
        pass

    class Export(Strategy):
        name = "fake.export"
        Config = Empty
        description = "Copies the model and calls it an ONNX-like format (test strategy)."
        produces = "fake-onnx"

        def apply(self, artifact, config, context):
            _copy_files(artifact.path, context.output_dir)
            return context.new_artifact(artifact, self.name, config, format=self.produces)

    class OnnxQuant(Strategy):
        name = "fake.onnx-quant"
        Config = Empty
        description = "Takes the ONNX-like format only (test strategy)."
        input_formats = ("fake-onnx",)
        produces = "fake-onnx"

        def apply(self, artifact, config, context):
            _copy_files(artifact.path, context.output_dir)
            return context.new_artifact(artifact, self.name, config, format=self.produces)

    class Train(Strategy):
        name = "fake.train"
        Config = Empty
        description = "Pretends to train (test strategy)."
        needs_training_data = True

        def apply(self, artifact, config, context):
            assert len(context.data.splits["train"]) > 0
            _copy_files(artifact.path, context.output_dir)
            return context.new_artifact(artifact, self.name, config)

    class Crash(Strategy):
        name = "fake.crash"
        Config = Empty
        description = "Crashes like a bug would (test strategy)."

        def apply(self, artifact, config, context):
            (context.output_dir / "half-written.bin").write_bytes(b"x")
            raise KeyError("boom in the kernel")

    mod = types.ModuleType("plan_plugin")
    mod.ends: list = []

    @hookimpl
    def compressor_register_strategies(register):
        for cls in (Export, OnnxQuant, Train, Crash):
            register(cls)

    @hookimpl
    def compressor_run_end(run_dir, results, error):
        mod.ends.append(error)

    mod.compressor_register_strategies = compressor_register_strategies
    mod.compressor_run_end = compressor_run_end
    return mod


@pytest.fixture
def plugins(fake_plugins):
    loaded = Plugins().load(entry_points_enabled=False, extra=[("fake", fake_plugins.fake), ("plan", plan_plugin())])
    loaded.fake = fake_plugins.fake
    loaded.plan = loaded.pm.get_plugin("plan")
    return loaded


def write_csv(path: Path, n: int) -> Path:
    """``n`` labelled sentences in the tiny model's vocabulary, as ``text,label`` CSV."""
    words = {0: ["bad", "awful", "boring"], 1: ["good", "great", "superb"]}
    rows = [f"the movie was {words[i % 2][i % 3]} and {words[i % 2][(i + 1) % 3]},{i % 2}\n" for i in range(n)]
    path.write_text("text,label\n" + "".join(rows))
    return path


def recipe(tmp_path: Path, model: Path, stages: str, *, data: str = "{name: tiny-sentiment}", evaluation: str = FAST,
           name: str = "plan.yaml") -> Path:
    text = textwrap.dedent(
        """\
        version: 1
        name: plan
        model: {{name: {model}, source: local}}
        task:
          data: {data}
        evaluation: {evaluation}
        """
    ).format(model=model, data=data, evaluation=evaluation)
    path = tmp_path / name
    path.write_text(text + stages)
    return path


# --- the format chain, before anything runs ---------------------------------------------------


def test_an_onnx_stage_feeding_a_pytorch_strategy_is_refused_with_file_line_and_hint(tmp_path, tiny_bert_dir, plugins):
    path = recipe(tmp_path, tiny_bert_dir, textwrap.dedent("""\
        stages:
          - {name: teacher, strategy: copy.model}
          - {name: exported, strategy: fake.export}
          - {name: again, strategy: copy.model}
        """))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    err = info.value
    assert err.where == f"{path}:10" and err.key == "stages[2].strategy"
    assert "strategy 'copy.model' takes ['pytorch'] models, but its input 'exported' is a 'fake-onnx' model" in err.message
    assert "'exported' is made by stage 'exported' (fake.export), which produces 'fake-onnx'" in err.expected
    assert "'input: teacher'" in err.hint and "baseline, teacher" in err.hint

    # the run refuses it up front: no run directory, no stage ran
    with pytest.raises(RecipeError, match="fake-onnx"):
        run(path, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    assert not (tmp_path / "run").exists() and plugins.fake.calls == []


def test_the_chain_follows_input_keys(tmp_path, tiny_bert_dir, plugins):
    stages = textwrap.dedent("""\
        stages:
          - {name: exported, strategy: fake.export}
          - {name: quant, strategy: fake.onnx-quant}
          - {name: from-base, strategy: copy.model, input: baseline}
          - {name: bad, strategy: fake.onnx-quant, input: from-base}
        """)
    path = recipe(tmp_path, tiny_bert_dir, stages)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    err = info.value
    assert err.key == "stages[3].input" and err.where == f"{path}:11"
    assert "takes ['fake-onnx'] models, but its input 'from-base' is a 'pytorch' model" in err.message
    assert "'input: quant'" in err.hint
    fixed = recipe(tmp_path, tiny_bert_dir, stages.replace("input: from-base", "input: exported"))
    loaded = load_recipe(fixed, plugins=plugins)
    assert stage_inputs(loaded.recipe.stages) == ["baseline", "exported", "baseline", "exported"]


def test_a_model_folder_from_an_earlier_run_keeps_its_format(tmp_path, tiny_bert_dir, plugins):
    folder = tmp_path / "onnxish"
    shutil.copytree(tiny_bert_dir, folder)
    assert model_format(folder) == "pytorch"
    (folder / "lineage.json").write_text(json.dumps({"name": "x", "format": "fake-onnx", "lineage": {"stage": "x"}}))
    assert model_format(folder) == "fake-onnx"
    path = recipe(tmp_path, folder, "stages:\n  - {name: copy, strategy: copy.model}\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    assert "'baseline' is the input model, in 'fake-onnx' format" in info.value.expected
    assert info.value.hint == "reorder the stages so that export and quantisation come last"
    load_recipe(recipe(tmp_path, folder, "stages:\n  - {name: q, strategy: fake.onnx-quant}\n"), plugins=plugins)


def test_training_stages_need_a_train_file_and_evaluation_only_needs_none(tmp_path, tiny_bert_dir, plugins):
    write_csv(tmp_path / "dev.csv", 20)
    data = "{files: {test: dev.csv, dev: dev.csv}}"
    path = recipe(tmp_path, tiny_bert_dir, "stages:\n  - {name: copy, strategy: copy.model}\n  - {name: tune, "
                  "strategy: fake.train}\n", data=data)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    err = info.value
    assert err.where == f"{path}:5" and err.key == "task.data.files"
    assert "stage 'tune' (fake.train) trains on the train split, but task.data.files gives only test, validation" in err.message
    # the same data without the training stage is fine
    load_recipe(recipe(tmp_path, tiny_bert_dir, "stages:\n  - {name: copy, strategy: copy.model}\n", data=data), plugins=plugins)


def test_nothing_to_evaluate_is_refused(tmp_path, tiny_bert_dir, plugins):
    path = recipe(tmp_path, tiny_bert_dir, "stages: []\n", evaluation="{baseline: false}")
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    assert info.value.key == "evaluation.baseline" and info.value.where == f"{path}:6"


# --- a crashed stage ------------------------------------------------------------------------------


def test_a_crashed_stage_raises_stage_failed_with_its_cause_and_traceback(tmp_path, tiny_bert_dir, plugins):
    path = recipe(tmp_path, tiny_bert_dir, textwrap.dedent("""\
        stages:
          - {name: first, strategy: copy.model}
          - {name: boom, strategy: fake.crash}
        """))
    run_dir = tmp_path / "run"
    with pytest.raises(StageFailed) as info:
        run(path, run_dir=run_dir, plugins=plugins, progress=False)
    err = info.value
    assert isinstance(err, CompressorError) and not isinstance(err, StageError)
    assert type(err.__cause__) is KeyError and err.error is err.__cause__
    assert (err.stage, err.index, err.strategy, err.run_dir) == ("boom", 2, "fake.crash", run_dir)
    assert err.traceback_path == run_dir / "work" / "02-boom.traceback.txt"
    assert "KeyError: 'boom in the kernel'" in err.traceback_path.read_text()
    text = err.format()
    assert text.startswith("stage 'boom' failed: KeyError: 'boom in the kernel'")
    assert f"traceback: {err.traceback_path}" in text and f"kept in {run_dir}" in text and "--resume" in text
    # the manifest names the stage and the original error; observers get the original too
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["failed_stage"] == "boom"
    assert manifest["error"] == "KeyError: 'boom in the kernel'"
    assert plugins.plan.ends == [err.__cause__]
    assert not (run_dir / "artifacts" / ".02-boom.partial").exists()
    assert (run_dir / "artifacts" / "01-first" / "lineage.json").exists()
    # it survives pickling (multiprocessing, pytest-xdist) with its attributes and cause
    again = pickle.loads(pickle.dumps(err))
    assert again.format() == text and type(again.__cause__) is KeyError


def test_a_strategys_own_compressor_error_ends_the_run_as_itself(tmp_path, tiny_bert_dir, plugins):
    path = recipe(tmp_path, tiny_bert_dir, textwrap.dedent(f"""\
        stages:
          - {{name: fails, strategy: copy.model, config: {{fail_marker: {tmp_path / 'absent'}}}}}
        """))
    with pytest.raises(StageError, match="marker") as info:
        run(path, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    assert not isinstance(info.value, StageFailed)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert Path(manifest["stages"][1]["traceback"]).exists()


# --- evaluation-only runs -------------------------------------------------------------------------


@pytest.mark.parametrize("stages", ["stages: []\n", ""])
def test_a_recipe_without_stages_evaluates_the_whole_test_file(tmp_path, tiny_bert_dir, plugins, stages):
    write_csv(tmp_path / "dev.csv", 90)
    path = recipe(tmp_path, tiny_bert_dir, stages, data="{files: {test: dev.csv}}")
    run_dir = tmp_path / "run"
    result = run(path, run_dir=run_dir, plugins=plugins, progress=False)

    assert list(result.artifacts) == ["baseline"] and plugins.fake.calls == []
    (record,) = result.results
    assert record["model"] == "baseline" and record["accuracy"]["n"] == 90  # every row, not a tenth
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done" and [s["name"] for s in manifest["stages"]] == ["baseline"]
    assert manifest["data"]["splits"] == {"train": 0, "validation": 0, "test": 90}
    assert (run_dir / "report.md").exists() and (run_dir / "artifacts" / "00-baseline" / "README.md").exists()
    log = (run_dir / "run.log").read_text()
    assert f"test: 90 rows, given: {tmp_path / 'dev.csv'}" in log and "train: 0 rows, not given" in log
    assert json.loads((run_dir / "recipe.resolved.json").read_text())["stages"] == []

    # resuming reuses the evaluation: nothing is measured again
    lines = (run_dir / "results.jsonl").read_text()
    again = run(path, run_dir=run_dir, plugins=plugins, progress=False, resume=True)
    assert (run_dir / "results.jsonl").read_text() == lines and again.results == result.results


def test_an_evaluated_split_without_rows_is_refused_before_any_stage(tmp_path, tiny_bert_dir, plugins):
    write_csv(tmp_path / "dev.csv", 20)
    path = recipe(tmp_path, tiny_bert_dir, "stages:\n  - {name: copy, strategy: copy.model}\n",
                  data="{files: {validation: dev.csv}}")
    with pytest.raises(CompressorError) as info:
        run(path, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    err = info.value
    assert err.key == "evaluation.accuracy_split" and err.where == f"{path}:6"
    assert "the evaluated split 'test' has no rows" in err.message and "validation 20" in err.message
    assert err.hint == "set evaluation.accuracy_split to 'validation'"
    assert plugins.fake.calls == []


def test_run_steps_can_be_driven_one_by_one(tmp_path, tiny_bert_dir, plugins):
    path = recipe(tmp_path, tiny_bert_dir, "stages:\n  - {name: a, strategy: copy.model}\n  - {name: b, "
                  "strategy: copy.model, input: baseline, evaluate: false}\n")
    r = Run(load_recipe(path, plugins=plugins), run_dir=tmp_path / "run", plugins=plugins, progress=False)
    r.prepare_run_dir()
    r.start()
    r.resolve()
    assert r.make_baseline().format == "pytorch"
    assert r.run_stage(1).lineage.parent == "baseline"
    assert r.run_stage(2).lineage.parent == "baseline"
    assert r.evaluated_names() == ["baseline", "a"]
    assert [rec["model"] for rec in r.evaluate()] == ["baseline", "a"]
    assert r.evaluation_cache.lookup([("a", r.fingerprints["a"], r.results[1]["settings_key"])]) == [r.results[1]]
