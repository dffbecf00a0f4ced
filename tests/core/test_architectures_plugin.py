"""A third-party architecture adapter registered through ``compressor_register_architectures``
and used on a model type the core does not know; the recipe check that reads the model's
config and refuses a method its adapter refuses."""

from __future__ import annotations

import json
import textwrap
import types
from pathlib import Path

import pytest

from compressor import hookimpl
from compressor.architectures import (
    ArchitectureAdapter,
    NameMatchingAdapter,
    adapter_for,
    encoder_layout,
    head_counts,
)
from compressor.errors import PluginError, RecipeError
from compressor.plugins import Plugins


class AcmeAdapter(ArchitectureAdapter):
    """A renamed BERT: BERT's modules under a model type no built-in adapter claims."""

    model_types = ("acme-bert",)
    family = "Acme"
    refused = {"heads": "Acme's kernels need every head"}


def _acme_plugin() -> types.ModuleType:
    module = types.ModuleType("acme_plugin")

    @hookimpl
    def compressor_register_architectures(register):
        register(AcmeAdapter())

    module.compressor_register_architectures = compressor_register_architectures  # type: ignore[attr-defined]
    return module


def _acme_model():
    from transformers import BertConfig, BertForSequenceClassification

    class AcmeConfig(BertConfig):
        model_type = "acme-bert"

    config = AcmeConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2)
    return BertForSequenceClassification(config).eval()


def test_a_third_party_adapter_serves_an_unknown_model_type() -> None:
    plugins = Plugins().load(entry_points_enabled=False, extra=[("acme", _acme_plugin())])
    assert isinstance(plugins.architectures["acme-bert"], AcmeAdapter)
    assert plugins.infos["acme"].architectures == ["acme-bert"]
    model = _acme_model()
    assert isinstance(adapter_for(model, plugins.architectures), AcmeAdapter)
    layout = encoder_layout(model, plugins.architectures)
    assert layout.layers.path == "bert.encoder.layer" and layout.query == "attention.self.query"
    assert head_counts(model, layout) == [4, 4]
    # without the plugin, the type is unknown: BERT-like names are matched instead
    assert isinstance(adapter_for(model, {}), NameMatchingAdapter)


def test_an_adapter_claiming_a_builtin_type_is_refused() -> None:
    class Clash(ArchitectureAdapter):
        model_types = ("bert",)

    module = types.ModuleType("clash")
    module.compressor_register_architectures = hookimpl(lambda register: register(Clash()))  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="registered twice"):
        Plugins().load(entry_points_enabled=False, extra=[("clash", module)])


def _recipe(tmp_path: Path, config: dict, strategy: str, stage_config: str = "{fraction: 0.25}") -> Path:
    model = tmp_path / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(config))
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"good {i},1\nbad {i},0\n" for i in range(10)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        version: 1
        name: arch
        model: {{name: model, source: local}}
        task:
          data: {{files: {{train: train.csv}}}}
        stages:
          - {{name: s, strategy: {strategy}, config: {stage_config}}}
        """))
    return recipe


def test_validation_refuses_a_method_the_architecture_refuses(tmp_path: Path) -> None:
    from compressor.recipe import load_recipe

    recipe = _recipe(tmp_path, {"model_type": "mpnet", "num_hidden_layers": 2}, "prune.heads")
    with pytest.raises(RecipeError) as exc:
        load_recipe(recipe)
    message = str(exc.value)
    assert "prune.heads" in message and "'heads'" in message and "relative-position bias" in message
    assert exc.value.key == "stages[0].strategy"
    load_recipe(_recipe(tmp_path / "ok", {"model_type": "mpnet"}, "prune.ffn"))  # supported


def test_validation_asks_the_third_party_adapter(tmp_path: Path) -> None:
    from compressor.recipe import load_recipe

    plugins = Plugins().load(entry_points_enabled=True, extra=[("acme", _acme_plugin())])
    recipe = _recipe(tmp_path, {"model_type": "acme-bert"}, "prune.heads")
    with pytest.raises(RecipeError, match="Acme's kernels need every head"):
        load_recipe(recipe, plugins=plugins)
    # an unknown type without an adapter is not refused up front (checked when the model loads)
    load_recipe(_recipe(tmp_path / "other", {"model_type": "zeta"}, "prune.heads"), plugins=plugins)


def test_a_run_gives_its_strategies_the_runs_adapters(tmp_path: Path, tiny_bert_dir: Path, fake_plugins) -> None:
    """A strategy that asks ``adapter_for`` without a registry, inside a run, gets the run's
    plugins' adapter (Plugins.scope), not a process-wide one; after the run, the built-ins."""
    from compressor import Strategy, StrategyConfig
    from compressor.pipeline import run

    seen = []

    class Probe(Strategy):
        name = "probe.adapter"
        Config = StrategyConfig

        def apply(self, artifact, config, context):  # noqa: ANN001, ANN201
            seen.append(adapter_for(types.SimpleNamespace(model_type="acme-bert")))
            context.save_model(context.load_model(artifact), context.load_tokenizer(artifact))
            return context.new_artifact(artifact, self.name, config)

    probe = types.ModuleType("probe")
    probe.compressor_register_strategies = hookimpl(lambda register: register(Probe))  # type: ignore[attr-defined]
    plugins = Plugins().load(
        entry_points_enabled=False, extra=[("fake", fake_plugins.fake), ("acme", _acme_plugin()), ("probe", probe)]
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        version: 1
        name: scoped
        model: {{name: {tiny_bert_dir}}}
        task:
          data: {{name: tiny-sentiment}}
        evaluation: {{baseline: false}}
        stages:
          - {{name: probe, strategy: probe.adapter, evaluate: false}}
        """))
    run(recipe, run_dir=tmp_path / "run", plugins=plugins, progress=False)
    assert len(seen) == 1 and isinstance(seen[0], AcmeAdapter)
    assert isinstance(adapter_for(types.SimpleNamespace(model_type="acme-bert")), NameMatchingAdapter)
