"""Task types are plugins: registered through ``compressor_register_tasks``, checked by the
recipe validator (unknown type, ``task.options``, strategies that refuse a task), and found by
the core's code through :func:`compressor.tasks.get_task`."""

from __future__ import annotations

import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
from pydantic import Field

from compressor import hookimpl
from compressor.errors import PluginError, RecipeError
from compressor.plugins import Plugins
from compressor.recipe import load_recipe
from compressor.tasks import Metric, Scored, Task, get_task
from compressor.tasks.base import TaskOptions
from compressor.tasks.classification import TextClassification

BUILTIN = ["masked-lm", "question-answering", "sentence-embedding", "text-classification",
           "text-regression", "token-classification"]


class MeanLengthOptions(TaskOptions):
    unit: str = Field("words", pattern="^(words|chars)$")


class MeanLength(Task):
    """A third party's task: predicts nothing, scores the mean text length (a toy metric with
    a real computation: the bootstrap must reproduce its mean)."""

    name = "mean-length"
    description = "mean text length"
    labelled = False
    Options = MeanLengthOptions

    def metrics(self, data):
        return [Metric("mean_length", "mean length", "x100")]

    def score(self, backend, split, data, *, batch_size, progress=False):
        unit = self.options(data).unit
        lengths = [len(t.split()) if unit == "words" else len(t) for t in split["text"]]
        return Scored(arrays={"length": np.asarray(lengths, dtype=np.float64)})

    def metric_matrix(self, weights, scored, data):
        x = scored.arrays["length"]
        return {"mean_length": weights @ x / weights.sum(axis=1)}


def _plugin() -> types.ModuleType:
    mod = types.ModuleType("third_party_task")

    @hookimpl
    def compressor_register_tasks(register):
        register(MeanLength())

    mod.compressor_register_tasks = compressor_register_tasks
    return mod


def test_builtin_tasks_register_through_the_hook() -> None:
    plugins = Plugins().load(entry_points_enabled=False)
    assert sorted(plugins.tasks) == BUILTIN
    assert plugins.infos["compressor.tasks.builtin"].tasks
    assert get_task("text-classification", plugins.tasks).auto_model == "AutoModelForSequenceClassification"


def test_a_third_party_task_registers_and_scores() -> None:
    plugins = Plugins().load(entry_points_enabled=False, extra=[("mine", _plugin())])
    task = get_task("mean-length", plugins.tasks)
    assert plugins.infos["mine"].tasks == ["mean-length"]
    import datasets

    from compressor.task import TaskData

    split = datasets.Dataset.from_dict({"text": ["a b c", "d", "e f"]})
    data = TaskData(type="mean-length", splits={"test": split}, options=MeanLengthOptions(unit="chars"))
    scored = task.score(None, split, data, batch_size=8)
    assert task.full_metrics(scored, data) == {"mean_length": pytest.approx((5 + 1 + 3) / 3)}


def test_a_task_registered_twice_or_not_a_task_is_a_plugin_error() -> None:
    twice = types.ModuleType("twice")

    @hookimpl
    def compressor_register_tasks(register):
        register(TextClassification())

    twice.compressor_register_tasks = compressor_register_tasks
    with pytest.raises(PluginError, match="text-classification.* registered twice"):
        Plugins().load(entry_points_enabled=False, extra=[("twice", twice)])
    wrong = types.ModuleType("wrong")

    @hookimpl
    def compressor_register_tasks(register):  # noqa: F811
        register("not a task")

    wrong.compressor_register_tasks = compressor_register_tasks
    with pytest.raises(PluginError, match="not a compressor.tasks.Task"):
        Plugins().load(entry_points_enabled=False, extra=[("wrong", wrong)])


def test_unknown_task_type_gets_file_line_and_suggestion(tmp_path: Path, fake_plugins) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: t
        model: {name: some/folder}
        task:
          type: text-clasification
          data: {name: tiny-sentiment}
        stages: []
        """))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=fake_plugins)
    err = info.value
    assert err.key == "task.type" and err.where == f"{path}:5"
    assert "text-classification" in (err.hint or "")


def test_task_options_are_checked_by_the_tasks_own_model(tmp_path: Path) -> None:
    plugins = Plugins().load(entry_points_enabled=False, extra=[("mine", _plugin())])
    path = tmp_path / "r.yaml"
    text = """\
        version: 1
        name: t
        model: {{name: some/folder}}
        task:
          type: mean-length
          data: {{files: {{test: x.csv}}}}
          options:
            {option}
        stages: []
        """
    path.write_text(textwrap.dedent(text.format(option="unit: chars")))
    assert load_recipe(path, plugins=plugins).task_options == MeanLengthOptions(unit="chars")
    path.write_text(textwrap.dedent(text.format(option="unti: chars")))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    assert info.value.key == "task.options.unti" and info.value.where == f"{path}:8"


def test_a_strategy_that_cannot_handle_the_task_is_refused_with_the_reason(tmp_path: Path) -> None:
    plugins = Plugins().load()
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: t
        model: {name: some/folder}
        task:
          type: masked-lm
          data: {name: news-articles}
        stages:
          - {name: ft, strategy: finetune}
        """))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    assert "it trains from the task's labels, and masked-lm has none" in info.value.message
    assert info.value.where == f"{path}:8"


def test_the_task_strategy_table_in_the_docs_is_generated_from_the_strategies() -> None:
    from compressor.schema import TASK_TABLE_BEGIN, TASK_TABLE_END, task_strategy_table

    text = (Path(__file__).resolve().parents[2] / "docs" / "tasks.md").read_text(encoding="utf-8")
    begin, end = text.index(TASK_TABLE_BEGIN), text.index(TASK_TABLE_END) + len(TASK_TABLE_END)
    assert text[begin:end] + "\n" == task_strategy_table(), (
        "docs/tasks.md's table is stale; regenerate it with python -m compressor.schema --task-table"
    )
    # it says what validation does: finetune refuses a task without labels, with the reason
    assert "| `finetune` | no: it trains from the task's labels, and masked-lm has none |" in text


def test_validation_asks_a_third_party_task_for_its_labels(tmp_path: Path) -> None:
    """finetune trains from labels: recipe validation finds the run's third-party task (no
    process-wide registry) and refuses it for having none, instead of calling it unknown."""
    plugins = Plugins().load(extra=[("mine", _plugin())])
    path = tmp_path / "r.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        name: t
        model: {name: some/folder}
        task:
          type: mean-length
          data: {files: {train: x.csv, test: x.csv}}
        stages:
          - {name: ft, strategy: finetune}
        """))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    assert "it trains from the task's labels, and mean-length has none" in info.value.message
    with pytest.raises(Exception, match="unknown task type 'mean-length'"):
        get_task("mean-length")  # outside the plugins' scope: the built-in tasks only
