"""Recipe loading: two-phase validation, and one clear error (file:line, key, expected, hint)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compressor.errors import RecipeError
from compressor.recipe import load_recipe

GOOD = """\
version: 1
name: tiny
seed: 3
model:
  name: {model}
task:
  type: text-classification
  data:
    name: tiny-sentiment
evaluation:
  baseline: false
stages:
  - name: first
    strategy: copy.model
    config:
      note: hello
  - name: second
    strategy: copy.model
"""


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_valid_recipe_loads_with_defaults_and_stage_configs(tmp_path, fake_plugins):
    path = write(tmp_path, GOOD.format(model="some/folder"))
    loaded = load_recipe(path, plugins=fake_plugins)
    assert loaded.recipe.seed == 3
    assert [s.name for s in loaded.recipe.stages] == ["first", "second"]
    assert loaded.stage_configs[0].note == "hello"
    assert loaded.stage_configs[1].note == ""  # default filled by the strategy's model
    resolved = loaded.resolved()
    assert resolved["stages"][1]["config"] == {"note": "", "fail_marker": None}
    assert resolved["evaluation"]["batch_sizes"] == [1, 32]
    assert len(loaded.hash()) == 64


def error_for(tmp_path, fake_plugins, text: str) -> RecipeError:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=fake_plugins)
    return info.value


def test_typo_in_top_level_key_names_line_and_suggests(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("seed: 3", "sede: 3")
    err = error_for(tmp_path, fake_plugins, text)
    assert err.where.endswith("recipe.yaml:3")
    assert err.key == "sede"
    assert "unknown key" in err.message
    assert err.hint == "did you mean 'seed'?"
    assert "seed" in err.expected


def test_typo_in_nested_key(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("    name: tiny-sentiment", "    nmae: tiny-sentiment")
    err = error_for(tmp_path, fake_plugins, text)
    assert err.where.endswith(":9")
    assert err.key == "task.data.nmae"
    assert err.hint == "did you mean 'name'?"


def test_typo_in_stage_config_key_is_phase_two(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("note: hello", "nota: hello")
    err = error_for(tmp_path, fake_plugins, text)
    assert err.where.endswith(":16")
    assert err.key == "stages[0].config.nota"
    assert err.hint == "did you mean 'note'?"
    # phase 1 alone accepts it: the skeleton does not know strategy configs
    loaded = load_recipe(write(tmp_path, text, "b.yaml"), plugins=fake_plugins, validate_configs=False)
    assert loaded.recipe.stages[0].config == {"nota": "hello"}


def test_misspelled_strategy(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("strategy: copy.model", "strategy: copy.modle", 1)
    err = error_for(tmp_path, fake_plugins, text)
    assert err.where.endswith(":14")
    assert err.key == "stages[0].strategy"
    assert "unknown strategy 'copy.modle'" in err.message
    assert "did you mean 'copy.model'?" in err.hint


def test_wrong_type(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("seed: 3", "seed: three")
    err = error_for(tmp_path, fake_plugins, text)
    assert err.where.endswith(":3")
    assert err.key == "seed"
    assert "integer" in err.message and "'three'" in err.message
    assert "int" in err.expected


def test_wrong_type_in_evaluation_list(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("  baseline: false", "  baseline: false\n  batch_sizes: [1, many]")
    err = error_for(tmp_path, fake_plugins, text)
    assert err.key == "evaluation.batch_sizes[1]"
    assert err.where.endswith(":12")


def test_unknown_packaged_dataset(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("name: tiny-sentiment", "name: tiny-sentimnet")
    err = error_for(tmp_path, fake_plugins, text)
    assert err.key == "task.data.name"
    assert err.where.endswith(":9")
    assert "tiny-sentiment" in err.hint


def test_missing_required_key(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("model:\n  name: m\n", "")
    err = error_for(tmp_path, fake_plugins, text)
    assert err.key == "model"
    assert "missing" in err.message


def test_two_data_sources_rejected(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace("name: tiny-sentiment", "name: tiny-sentiment\n    hub: glue")
    err = error_for(tmp_path, fake_plugins, text)
    assert err.key == "task.data"
    assert "exactly one" in err.message


def test_duplicate_stage_names_and_reserved_name(tmp_path, fake_plugins):
    err = error_for(tmp_path, fake_plugins, GOOD.format(model="m").replace("name: second", "name: first"))
    assert "used twice" in err.message
    err = error_for(tmp_path, fake_plugins, GOOD.format(model="m").replace("name: second", "name: baseline"))
    assert err.key == "stages[1].name"


def test_duplicate_yaml_key(tmp_path, fake_plugins):
    err = error_for(tmp_path, fake_plugins, GOOD.format(model="m").replace("seed: 3", "seed: 3\nseed: 4"))
    assert err.where.endswith(":4")
    assert "twice" in err.message


def test_unreadable_and_invalid_files(tmp_path, fake_plugins):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.yaml", plugins=fake_plugins)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(bad, plugins=fake_plugins)
    err = error_for(tmp_path, fake_plugins, "version: 1\nname: x\n  model: [\n")
    assert "not valid YAML" in err.message and ":" in err.where
    err = error_for(tmp_path, fake_plugins, "- just\n- a list\n")
    assert "mapping" in err.message


def test_unsupported_version(tmp_path, fake_plugins):
    err = error_for(tmp_path, fake_plugins, GOOD.format(model="m").replace("version: 1", "version: 2"))
    assert err.key == "version" and err.where.endswith(":1")


def test_every_shipped_recipe_validates():
    """recipes/*.yaml validate against the installed plugins (phase 1 and 2)."""
    from compressor.plugins import get_plugins

    plugins = get_plugins()
    recipes = sorted(Path(__file__).resolve().parents[2].joinpath("recipes").glob("*.yaml"))
    assert recipes, "no recipes found"
    for path in recipes:
        load_recipe(path, plugins=plugins)


def test_named_teacher_must_be_an_earlier_artifact(tmp_path):
    from compressor.plugins import get_plugins

    text = textwrap.dedent("""\
        version: 1
        name: t
        model: {name: m}
        task: {data: {name: mr-snippets}}
        stages:
          - {name: teacher, strategy: finetune}
          - name: student
            strategy: distill.distilbert
            config: {teacher: teachr}
        """)
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=get_plugins())
    err = info.value
    assert err.key == "stages[1].config.teacher" and err.where.endswith(":9")
    assert err.hint == "did you mean 'teacher'?"
    path.write_text(text.replace("teachr", "teacher"))
    assert load_recipe(path, plugins=get_plugins()).stage_configs[1].teacher == "teacher"
