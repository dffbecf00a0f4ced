"""Plugin manager: one path for built-ins and third parties, failures reported, blocking."""

from __future__ import annotations

import types

import pytest

from compressor import Strategy, StrategyConfig, hookimpl
from compressor.errors import PluginError
from compressor.plugins import Plugins, get_plugins


def test_builtin_plugins_register_through_entry_points():
    plugins = get_plugins(reload=True)
    assert {"finetune", "distill.distilbert"} <= set(plugins.strategies)
    assert plugins.infos["finetune"].package == "compressor"
    assert "distill.distilbert" in plugins.infos["distillation"].strategies
    assert {"packaged", "local", "hub"} <= set(plugins.model_sources)
    assert {"mr-snippets", "trec6", "news-articles"} <= set(plugins.datasets)
    assert not plugins.failed


def test_fake_plugin_registers_strategy_and_dataset(fake_plugins):
    assert "copy.model" in fake_plugins.strategies
    assert fake_plugins.infos["fake"].strategies == ["copy.model"]
    assert fake_plugins.infos["fake"].datasets == ["tiny-sentiment"]
    assert "compressor_register_strategies" in fake_plugins.infos["fake"].hooks


def _plugin_with(cls):
    mod = types.ModuleType("p")

    @hookimpl
    def compressor_register_strategies(register):
        register(cls)

    mod.compressor_register_strategies = compressor_register_strategies
    return mod


def test_duplicate_strategy_name_is_an_error():
    class A(Strategy):
        name = "same"

    with pytest.raises(PluginError, match="registered twice"):
        Plugins().load(entry_points_enabled=False, extra=[("a", _plugin_with(A)), ("b", _plugin_with(A))])


def test_invalid_registrations_are_errors():
    class NoName(Strategy):
        pass

    with pytest.raises(PluginError, match="has no name"):
        Plugins().load(entry_points_enabled=False, extra=[("a", _plugin_with(NoName))])
    with pytest.raises(PluginError, match="not a Strategy subclass"):
        Plugins().load(entry_points_enabled=False, extra=[("a", _plugin_with(object))])

    class BadConfig(Strategy):
        name = "bad"
        Config = dict  # type: ignore[assignment]

    with pytest.raises(PluginError, match="StrategyConfig"):
        Plugins().load(entry_points_enabled=False, extra=[("a", _plugin_with(BadConfig))])


def test_misspelled_hook_fails_loudly():
    mod = types.ModuleType("typo")

    @hookimpl
    def compressor_register_strategy(register):  # missing final 's'
        pass

    mod.compressor_register_strategy = compressor_register_strategy
    with pytest.raises(Exception, match="unknown hook"):
        Plugins().load(entry_points_enabled=False, extra=[("typo", mod)])


class _EP:
    """A stand-in for importlib.metadata.EntryPoint."""

    def __init__(self, name, value, loader):
        self.name, self.value, self._loader, self.dist = name, value, loader, None

    def load(self):
        return self._loader()


def test_plugin_that_fails_to_import_is_reported_by_name(monkeypatch, caplog):
    def broken():
        raise ImportError("No module named 'missing_dep'")

    eps = [_EP("broken", "broken_pkg.plugin", broken)]
    monkeypatch.setattr("compressor.plugins.entry_points", lambda group: eps)
    plugins = Plugins().load()
    assert plugins.failed == {"broken": "ImportError: No module named 'missing_dep'"}
    assert "broken" in caplog.text
    with pytest.raises(PluginError) as info:
        plugins.strategy("lowrank.svd")
    assert "plugin 'broken' failed to load" in info.value.hint


def test_environment_variable_blocks_named_plugins(monkeypatch):
    class S(Strategy):
        name = "blocked.strategy"

    eps = [_EP("blockme", "x.plugin", lambda: _plugin_with(S))]
    monkeypatch.setattr("compressor.plugins.entry_points", lambda group: eps)
    monkeypatch.setenv("COMPRESSOR_DISABLE_PLUGINS", "other, blockme")
    plugins = Plugins().load()
    assert "blocked.strategy" not in plugins.strategies
    assert plugins.infos["blockme"].disabled
    with pytest.raises(PluginError) as info:  # the error says the plugin is switched off
        plugins.strategy("blocked.strategy")
    assert "COMPRESSOR_DISABLE_PLUGINS disables plugin 'blockme'" in info.value.hint
    monkeypatch.delenv("COMPRESSOR_DISABLE_PLUGINS")
    assert "blocked.strategy" in Plugins().load().strategies


def test_strategy_lookup_suggests_nearest(fake_plugins):
    with pytest.raises(PluginError) as info:
        fake_plugins.strategy("copy.modl")
    assert "did you mean 'copy.model'?" in info.value.hint


def test_config_must_forbid_unknown_keys():
    from pydantic import ValidationError

    class C(StrategyConfig):
        x: int = 1

    with pytest.raises(ValidationError):
        C.model_validate({"y": 2})


# --- one registration loop for every hook ---------------------------------------------------


def test_every_registration_hook_is_collected_by_one_table():
    from compressor import hookspecs
    from compressor.plugins import REGISTRATIONS, PluginInfo

    hooks = {n for n in vars(hookspecs) if n.startswith("compressor_register_")}
    assert [r.hook for r in REGISTRATIONS] == [
        "compressor_register_strategies", "compressor_register_model_sources", "compressor_register_datasets",
        "compressor_register_backends", "compressor_register_architectures", "compressor_register_tasks",
    ]
    assert {r.hook for r in REGISTRATIONS} == hooks
    plugins = Plugins().load(entry_points_enabled=False)
    for r in REGISTRATIONS:  # each files into its Plugins registry and its PluginInfo list
        assert isinstance(getattr(plugins, r.attribute), dict)
        assert r.attribute in PluginInfo.__dataclass_fields__
        filed = [k for info in plugins.infos.values() for k in getattr(info, r.attribute)]
        assert sorted(filed) == sorted(getattr(plugins, r.attribute))


def _data_set_plugin(name):
    from compressor.sources.datasets import DatasetSpec

    mod = types.ModuleType(f"ds_{name}")

    @hookimpl
    def compressor_register_datasets(register):
        register(DatasetSpec(name=name, type="text-classification", load=lambda cache_dir: None))

    mod.compressor_register_datasets = compressor_register_datasets
    return mod


def test_a_name_registered_twice_names_both_plugins():
    with pytest.raises(PluginError) as info:
        Plugins().load(entry_points_enabled=False, extra=[("a", _data_set_plugin("dup")), ("b", _data_set_plugin("dup"))])
    assert info.value.message == "data set 'dup' registered twice (by 'a' and 'b')"
    with pytest.raises(PluginError) as info:  # a built-in name: the core's plugin is named
        Plugins().load(entry_points_enabled=False, extra=[("c", _data_set_plugin("trec6"))])
    assert info.value.message == "data set 'trec6' registered twice (by 'compressor.sources.builtin' and 'c')"


# --- the registries in use: Plugins.scope ---------------------------------------------------


def test_lookups_without_a_registry_use_the_open_scope_else_the_builtins():
    from compressor.architectures import NameMatchingAdapter, adapter_for, registered_adapters
    from compressor.errors import CompressorError
    from compressor.tasks import get_task, task_names
    from compressor.tasks.classification import TextClassification

    class Multi(TextClassification):
        name = "multi-label"

    class Acme:
        model_types = ("acme-bert",)

    mod = types.ModuleType("third")
    mod.compressor_register_tasks = hookimpl(lambda register: register(Multi()))  # type: ignore[attr-defined]
    mod.compressor_register_architectures = hookimpl(lambda register: register(Acme()))  # type: ignore[attr-defined]
    plugins = Plugins().load(entry_points_enabled=False, extra=[("third", mod)])
    config = types.SimpleNamespace(model_type="acme-bert")
    builtin = task_names()
    assert "multi-label" not in builtin and "text-classification" in builtin
    with pytest.raises(CompressorError, match="unknown task type 'multi-label'"):
        get_task("multi-label")
    assert isinstance(adapter_for(config), NameMatchingAdapter)
    with plugins.scope():
        assert isinstance(get_task("multi-label"), Multi)
        assert isinstance(adapter_for(config), Acme) and "acme-bert" in registered_adapters()
        with Plugins().load(entry_points_enabled=False).scope():  # nested: the inner one
            assert isinstance(adapter_for(config), NameMatchingAdapter)
        assert isinstance(adapter_for(config), Acme)
    assert task_names() == builtin and "acme-bert" not in registered_adapters()
    # a registry passed wins over the scope
    with plugins.scope():
        assert "multi-label" not in task_names({"text-classification": get_task("text-classification")})
