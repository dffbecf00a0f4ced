"""StageContext serves a strategy what it needs from the run (tokenizer, model, another data
set or model) with the run's registry, cache and recipe folder; without them it uses the current
directory, ``cache_root()`` and the core's own registrations (never the process-wide plugin
manager). ``new_artifact`` keeps
``lineage.extra`` equal to what ``lineage.json`` gives back. The kit's ``make_context`` and
``apply_strategy`` call ``apply`` in a unit test with public names only."""

from __future__ import annotations

import csv
import types
from pathlib import Path

import pytest

from compressor import Artifact, DataConfig, StageContext, StageError, hookimpl, testing
from compressor.sources.datasets import DatasetSpec


def _texts(folder: Path, name: str = "corpus.csv", n: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / name, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text"])
        writer.writerows([f"the story number {i} is very good"] for i in range(n))
    return folder / name


def _plugin_with_a_dataset(name: str) -> types.SimpleNamespace:
    def load(cache_dir: Path):  # noqa: ANN202
        import datasets

        return datasets.Dataset.from_dict({"text": [f"row {i} from {cache_dir.name}" for i in range(20)]})

    @hookimpl
    def compressor_register_datasets(register):  # noqa: ANN001, ANN202
        register(DatasetSpec(name=name, type="masked-lm", load=load))

    return types.SimpleNamespace(__name__=f"ctx-test-{name}", compressor_register_datasets=compressor_register_datasets)


# --- defaults: as before ------------------------------------------------------------------


def test_a_context_built_without_the_new_fields_uses_the_cwd_the_cache_and_the_core_registries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import compressor.plugins
    from compressor.evaluate.backends import OnnxRuntimeBackend, PyTorchBackend
    from compressor.sources.packaged import cache_root

    def no_plugin_manager(**kwargs):  # noqa: ANN003, ANN202
        raise AssertionError("a StageContext must not reach the process-wide plugins")

    monkeypatch.setattr(compressor.plugins, "get_plugins", no_plugin_manager)
    ctx = StageContext("s", tmp_path / "out", tmp_path / "work", testing.tiny_task_data(8, 4), 0)
    assert ctx.base_dir is None and ctx.cache_dir is None and ctx.plugins is None
    monkeypatch.setenv("COMPRESSOR_CACHE", str(tmp_path / "cache"))
    assert ctx._cache_dir() == cache_root() == tmp_path / "cache"
    core = ctx._plugins()  # the core's default plugins' registrations, nothing installed
    builtin = compressor.plugins.Plugins().load(entry_points_enabled=False)
    assert sorted(core.datasets) == sorted(builtin.datasets) and sorted(core.model_sources) == sorted(builtin.model_sources)
    assert sorted(core.tasks) == sorted(builtin.tasks) and sorted(core.architectures) == sorted(builtin.architectures)
    assert dict(core.backends) == {"pytorch": PyTorchBackend, "onnx": OnnxRuntimeBackend}
    assert ctx.format_handler(Artifact("a", tmp_path)) is PyTorchBackend
    with pytest.raises(StageError, match="no evaluation backend for format 'pytorch-half'"):
        ctx.format_handler(Artifact("h", tmp_path, format="pytorch-half"))  # a plugin's: pass plugins=
    monkeypatch.chdir(tmp_path)
    assert ctx.resolve_path("a/b.csv") == tmp_path / "a" / "b.csv"
    _texts(tmp_path / "here")
    data = ctx.load_data(DataConfig(files={"train": "here/corpus.csv"}), task_type="masked-lm")
    assert data.type == "masked-lm" and sum(len(s) for s in data.splits.values()) == 30


# --- the run's folder, cache and registry --------------------------------------------------


def test_relative_paths_are_relative_to_the_recipe_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe_dir = tmp_path / "recipes"
    _texts(recipe_dir / "data")
    monkeypatch.chdir(tmp_path)  # the cwd holds no data/: only base_dir finds it
    ctx = testing.make_context(tmp_path / "ctx", base_dir=recipe_dir)
    assert ctx.resolve_path("data/corpus.csv") == recipe_dir / "data" / "corpus.csv"
    assert ctx.resolve_path(tmp_path / "x") == tmp_path / "x"
    data = ctx.load_data(DataConfig(files={"train": "data/corpus.csv"}, max_train_samples=5), task_type="masked-lm")
    assert len(data.split("train")) == 5  # split and capped with the run's seed, like task.data


def test_data_set_names_come_from_the_run_registry_and_cache(tmp_path: Path) -> None:
    plugins = testing.plugins_with(_plugin_with_a_dataset("ctx-only-here"), entry_points=False)
    ctx = testing.make_context(tmp_path, plugins=plugins, cache_dir=tmp_path / "my-cache")
    data = ctx.load_data(DataConfig(name="ctx-only-here"))
    assert data.name == "ctx-only-here" and data.type == "masked-lm"
    assert data.split("train")[0]["text"].endswith("from my-cache")  # load(cache_dir) got ours
    # the installed plugins do not know it: a context given them fails
    bare = testing.make_context(tmp_path / "bare")
    with pytest.raises(StageError) as info:
        bare.load_data(DataConfig(name="ctx-only-here"), key="corpus")
    assert info.value.key == "corpus.name" and "ctx-only-here" in info.value.message


def test_data_errors_are_stage_errors_under_the_config_key(tmp_path: Path) -> None:
    ctx = testing.make_context(tmp_path)
    with pytest.raises(StageError) as info:
        ctx.load_data(DataConfig(files={"train": "missing.csv"}), task_type="masked-lm", key="corpus")
    assert info.value.key == "corpus.files.train"
    assert "missing.csv" in info.value.format()


def test_resolve_model_finds_a_folder_beside_the_recipe(tmp_path: Path) -> None:
    recipe_dir = tmp_path / "recipes"
    model = testing.tiny_model("bert", recipe_dir / "models" / "tiny")
    ctx = testing.make_context(tmp_path / "ctx", base_dir=recipe_dir)
    assert ctx.resolve_model("models/tiny", key="student.model") == model
    with pytest.raises(StageError) as info:
        ctx.resolve_model("no-such-model", "packaged", key="student.model")
    assert info.value.key == "student.model" and "no-such-model" in info.value.message


# --- tokenizer and model ---------------------------------------------------------------------


def test_load_tokenizer_and_model(tmp_path: Path) -> None:
    import transformers

    folder = testing.tiny_model("roberta", tmp_path / "m", num_labels=3)
    ctx = testing.make_context(tmp_path / "ctx")
    art = Artifact("teacher", folder)
    assert type(ctx.load_tokenizer(art)).__name__ == "RobertaTokenizer"
    model = ctx.load_model(art)
    assert isinstance(model, transformers.RobertaForSequenceClassification) and model.config.num_labels == 3
    masked, info = ctx.load_model(folder, transformers.AutoModelForMaskedLM, output_loading_info=True)
    assert isinstance(masked, transformers.RobertaForMaskedLM) and info["missing_keys"]


def test_load_errors_name_the_artifact_and_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"not": "a model"}', encoding="utf-8")
    ctx = testing.make_context(tmp_path / "ctx")
    art = Artifact("my-teacher", broken)
    with pytest.raises(StageError) as info:
        ctx.load_tokenizer(art, key="teacher")
    assert info.value.key == "teacher" and "'my-teacher'" in info.value.message and str(broken) in info.value.message
    with pytest.raises(StageError) as info:
        ctx.load_model(art, key="teacher")
    assert info.value.key == "teacher" and "'my-teacher'" in info.value.message
    with pytest.raises(StageError, match="'exported' is a 'onnx' model") as info:
        ctx.load_model(Artifact("exported", broken, format="onnx"), key="teacher")
    assert info.value.key == "teacher" and info.value.expected == "a PyTorch model (format 'pytorch')"


# --- new_artifact ----------------------------------------------------------------------------


def test_new_artifact_keeps_extra_as_lineage_json_gives_it_back(tmp_path: Path) -> None:
    import numpy as np
    import torch

    ctx = testing.make_context(tmp_path)
    parent = Artifact("baseline", tmp_path)
    extra = {
        "pair": (1, 2),
        "np": np.float32(0.5),
        "t": torch.tensor(3),
        "path": Path("a/b"),
        "nested": {"xs": [np.int64(4), None, True, "s"]},
    }
    art = ctx.new_artifact(parent, "x.y", {"k": 1}, format="onnx", reference="teacher", extra=extra)
    assert art.lineage.extra == {
        "pair": [1, 2], "np": 0.5, "t": 3, "path": "a/b", "nested": {"xs": [4, None, True, "s"]}
    }
    assert type(art.lineage.extra["np"]) is float and type(art.lineage.extra["t"]) is int
    again = Artifact.load(ctx.output_dir)
    assert again.lineage == art.lineage and again.format == "onnx" and again.lineage.reference == "teacher"
    with pytest.raises(TypeError, match=r"extra\.heads: key 0 is a int"):
        ctx.new_artifact(parent, "x.y", {}, extra={"heads": {0: [1]}})
    with pytest.raises(TypeError, match=r"extra\.model\[1\]: object value"):
        ctx.new_artifact(parent, "x.y", {}, extra={"model": [1, object()]})


# --- the kit's helpers ----------------------------------------------------------------------


def test_apply_strategy_runs_apply_as_the_orchestrator_would(tmp_path: Path) -> None:
    model = testing.tiny_model("bert", tmp_path / "m")
    art = testing.apply_strategy("quantize.dynamic-int8", model, {}, tmp_path / "run", stage_name="int8")
    assert art.name == "int8" and art.format == "pytorch-dynamic-int8"
    assert art.path == tmp_path / "run" / "int8" / "output" and (art.path / "lineage.json").exists()
    assert art.lineage.parent == "baseline"
    with pytest.raises(StageError, match="takes \\['pytorch'\\] models"):
        testing.apply_strategy("quantize.dynamic-int8", art, {}, tmp_path / "again")
    with pytest.raises(ValueError, match="not empty"):
        testing.make_context(tmp_path / "run", stage_name="int8")


def test_make_context_gets_the_installed_plugins_and_apply_strategy_opens_their_scope(tmp_path: Path) -> None:
    from compressor import Strategy, StrategyConfig
    from compressor.plugins import get_plugins
    from compressor.tasks import get_task

    assert testing.make_context(tmp_path / "a").plugins is get_plugins()
    seen = {}

    class Probe(Strategy):
        name = "probe.scope"
        Config = StrategyConfig

        def apply(self, artifact, config, context):  # noqa: ANN001, ANN201
            # a plugin that looks its task up without a registry gets the context's plugins'
            seen["task"] = get_task(context.data.type)
            seen["data.task"] = context.data.task
            context.save_model(context.load_model(artifact), context.load_tokenizer(artifact))
            return context.new_artifact(artifact, self.name, config)

    class Tagged(type(get_task("text-classification"))):
        name = "tagged-classification"

    module = types.SimpleNamespace(
        __name__="probe_plugin",
        compressor_register_strategies=hookimpl(lambda register: register(Probe)),
        compressor_register_tasks=hookimpl(lambda register: register(Tagged())),
    )
    plugins = testing.plugins_with(module, entry_points=False)
    data = testing.tiny_task_data(8, 4)
    data.type = "tagged-classification"
    model = testing.tiny_model("bert", tmp_path / "m")
    testing.apply_strategy(Probe, model, {}, tmp_path / "run", plugins=plugins, data=data)
    assert seen["task"] is plugins.tasks["tagged-classification"] and seen["data.task"] is seen["task"]
