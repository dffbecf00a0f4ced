"""Every registered strategy, the built-ins and the example plugin, passes the conformance kit.

The default suite runs each strategy through the whole kit on one tiny architecture,
rotating through :data:`compressor.testing.ARCHITECTURES` so that every architecture is
exercised by some strategy, and on one of the other tasks it supports (token
classification or extractive QA, alternating); ``-m slow`` runs every strategy on every
architecture and every task it supports.

A strategy whose defaults are not a valid (or a quick) config gets a minimal one in
:data:`CASES`; a strategy that takes no PyTorch input is fed by a registered strategy that
produces its input format (e.g. an ONNX export before an ONNX quantiser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compressor import testing
from compressor.plugins import get_plugins

ARCHS = list(testing.ARCHITECTURES)
#: what compressor.architecture knows how to cut (layers, heads, FFN neurons): not ModernBERT
LAYERED = [a for a in ARCHS if a != "modernbert"]

FAST_TRAINING = {"epochs": 1, "batch_size": 16, "max_length": 32, "logging_steps": 1}

#: strategy -> {"config": minimal config, "architectures": supported (default: all)}
CASES: dict[str, dict[str, Any]] = {
    "finetune": {"config": FAST_TRAINING},
    "distill.distilbert": {"config": {**FAST_TRAINING, "student_layers": 1}},
    "lowrank.svd": {"config": {"rank": 8}},
    "prune.magnitude": {"config": {**FAST_TRAINING, "sparsity": 0.5}},
    "prune.movement": {"config": {**FAST_TRAINING, "sparsity": 0.5}},
    "prune.heads": {"architectures": [a for a in LAYERED if a != "mpnet"], "config": {"fraction": 0.5, "importance_samples": 32, "max_length": 32}},
    "prune.ffn": {"architectures": LAYERED, "config": {"fraction": 0.5, "importance_samples": 32, "max_length": 32}},
    "prune.layers": {"architectures": LAYERED, "config": {"count": 1, "importance_samples": 32, "max_length": 32}},
    "mlm-adapt": {"config": FAST_TRAINING},
    "quantize.ort-static": {"config": {"calibration_samples": 16, "max_length": 32}},
}



def _strategies() -> list[str]:
    return sorted(get_plugins().strategies)


def _case(name: str) -> dict[str, Any]:
    case = CASES.get(name, {})
    return {
        "config": case.get("config", {}),
        "architectures": case.get("architectures", ARCHS),
    }


def _before(name: str) -> list[tuple[str, dict[str, Any]]]:
    """Stages that turn a tiny PyTorch model into an input the strategy takes."""
    plugins = get_plugins()
    cls = plugins.strategies[name]
    if "pytorch" in cls.input_formats:
        return []
    for other, ocls in sorted(plugins.strategies.items()):
        if "pytorch" in ocls.input_formats and ocls.produces in cls.input_formats:
            return [(other, _case(other)["config"])]
    pytest.fail(f"{name} takes {cls.input_formats}; no registered strategy makes that from a PyTorch model")


def _runnable(name: str) -> bool:
    return get_plugins().strategies[name].supports_task("text-classification")


def test_the_builtins_and_the_example_are_registered() -> None:
    names = _strategies()
    assert {"finetune", "distill.distilbert"} <= set(names)
    assert not get_plugins().failed, f"plugins failed to load: {get_plugins().failed}"


@pytest.mark.parametrize("name", _strategies())
def test_config_roundtrip_and_unknown_keys(name: str, tmp_path: Path) -> None:
    config = _case(name)["config"]
    testing.check_config_roundtrip(name, config)
    testing.check_rejects_unknown_keys(name, config, tmp_path)


@pytest.mark.parametrize("name", _strategies())
def test_clear_error_on_an_input_that_is_not_a_model(name: str, tmp_path: Path) -> None:
    testing.check_clear_errors(name, _case(name)["config"], tmp_path)


@pytest.mark.parametrize(
    ("name", "architecture"),
    [
        (name, _case(name)["architectures"][i % len(_case(name)["architectures"])])
        for i, name in enumerate(_strategies())
    ],
)
def test_runs_in_a_recipe_and_is_measured(name: str, architecture: str, tmp_path: Path) -> None:
    if not _runnable(name):
        pytest.skip(f"{name} does not take text-classification tasks")
    testing.check_runs_in_recipe(name, _case(name)["config"], architecture, tmp_path, before=_before(name))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "architecture"),
    [(name, arch) for name in _strategies() for arch in _case(name)["architectures"]],
)
def test_runs_on_every_supported_architecture(name: str, architecture: str, tmp_path: Path) -> None:
    if not _runnable(name):
        pytest.skip(f"{name} does not take text-classification tasks")
    testing.check_runs_in_recipe(name, _case(name)["config"], architecture, tmp_path, before=_before(name))


OTHER_TASKS = [t for t in testing.TASKS if t != "text-classification"]


@pytest.mark.parametrize(
    ("name", "task"), [(name, OTHER_TASKS[i % len(OTHER_TASKS)]) for i, name in enumerate(_strategies())]
)
def test_runs_on_another_task(name: str, task: str, tmp_path: Path) -> None:
    if task not in testing.supported_tasks(name):
        pytest.skip(f"{name} does not take {task} tasks: {get_plugins().strategies[name].task_refusal(task)}")
    testing.check_runs_in_recipe(name, _case(name)["config"], "bert", tmp_path, before=_before(name), task=task)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "task"), [(name, task) for name in _strategies() for task in OTHER_TASKS])
def test_runs_on_every_supported_task(name: str, task: str, tmp_path: Path) -> None:
    if task not in testing.supported_tasks(name):
        pytest.skip(f"{name} does not take {task} tasks: {get_plugins().strategies[name].task_refusal(task)}")
    testing.check_runs_in_recipe(name, _case(name)["config"], "bert", tmp_path, before=_before(name), task=task)
