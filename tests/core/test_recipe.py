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
    """recipes/*.yaml and benchmarks/recipes/*.yaml validate against the installed plugins
    (phase 1 and 2)."""
    from compressor.plugins import get_plugins

    plugins = get_plugins()
    root = Path(__file__).resolve().parents[2]
    recipes = sorted([*root.joinpath("recipes").glob("*.yaml"), *root.joinpath("benchmarks", "recipes").glob("*.yaml")])
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


# --- hardening: every malformed recipe ends in one RecipeError with file, line and key ------

HARDENING = [
    # (id, (old, new) edit of GOOD, line, key, words in the message)
    ("int-key", ("seed: 3", "1: 3"), 3, "1", "read by YAML as a number"),
    ("bool-key", ("seed: 3", "on: 3"), 3, "on", "read by YAML as a boolean"),
    ("null-key", ("seed: 3", "~: 3"), 3, "~", "read by YAML as null"),
    ("list-key", ("seed: 3", "[a]: 3"), 3, "(top level)", "a key must be a name, not a list"),
    ("mapping-key", ("seed: 3", "? {a: 1}\n: 3"), 3, "(top level)", "not a mapping"),
    ("bracket-key", ("seed: 3", "se[ed: 3"), 3, "se[ed", "unknown key 'se[ed'"),
    ("huge-int", ("seed: 3", "seed: " + "9" * 5000), 3, "seed", "integer of 5,000 characters"),
    ("nan-int", ("seed: 3", "seed: .nan"), 3, "seed", "finite number"),
    ("inf-int", ("  baseline: false", "  baseline: false\n  batch_sizes: [1, .inf]"), 12,
     "evaluation.batch_sizes[1]", "finite number"),
    ("seed-2**32", ("seed: 3", "seed: 4294967296"), 3, "seed", "below 2**32"),
    ("python-tag", ("note: hello", "note: !!python/object/apply:os.system [echo hi]"), 16,
     "stages[0].config.note", "'!!python/object/apply:os.system' is not allowed"),
    ("custom-tag", ("note: hello", "note: !env HOME"), 16, "stages[0].config.note", "'!env'"),
    ("bad-int-tag", ("seed: 3", "seed: !!int three"), 3, "seed", "cannot read 'three' as !!int"),
    ("empty-int-tag", ("seed: 3", "seed: !!int"), 3, "seed", "cannot read '' as !!int"),
    ("bad-date", ("note: hello", "note: 2024-13-45"), 16, "stages[0].config.note", "month must be in 1..12"),
    ("bare-equals", ("note: hello", "note: ="), 16, "stages[0].config.note", "bare '='"),
    ("nul-escape", ("note: hello", 'note: "a\\0b"'), 16, "stages[0].config.note", "NUL character"),
    ("lone-surrogate", ("note: hello", 'note: "\\ud800"'), 16, "stages[0].config.note", "surrogate"),
    ("merge-scalar", ("note: hello", "<<: 5"), 16, "stages[0].config.<<", "merge key '<<' needs a mapping"),
    ("deep-list", ("note: hello", "note: " + "[" * 200 + "]" * 200), 16, None, "nest more than 64 levels"),
    ("deep-block", ("note: hello", "".join("\n" + " " * (6 + i) + f"k{i}:" for i in range(70)) + " 1"),
     78, None, "nest more than 64 levels"),  # k61: the 65th level
    ("cyclic-alias", ("  - name: second", "  - &s\n    name: second\n    config: {note: *s}"), 19,
     None, "refers to the value that contains it"),
    ("undefined-alias", ("note: hello", "note: *nope"), 16, None, "undefined alias 'nope'"),
    ("two-documents", ("version: 1", "version: 1\n---\nname: b"), 2, None, "single document"),
]


@pytest.mark.parametrize(("edit", "line", "key", "words"), [c[1:] for c in HARDENING], ids=[c[0] for c in HARDENING])
def test_malformed_recipes_end_in_one_clear_error(tmp_path, fake_plugins, edit, line, key, words):
    import time

    text = GOOD.format(model="m").replace(*edit)
    assert text != GOOD.format(model="m")
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=fake_plugins)
    assert time.perf_counter() - start < 1.0
    err = info.value
    assert err.where == f"{path}:{line}", err.format()
    assert err.key == key, err.format()
    assert words in err.message, err.format()
    assert err.expected or err.hint, err.format()


def test_unreadable_contents_name_the_line(tmp_path, fake_plugins):
    good = GOOD.format(model="m").encode()
    path = tmp_path / "recipe.yaml"
    path.write_bytes(good.replace(b"seed: 3", b"seed: 3\x00"))
    err = error_for_bytes(path, fake_plugins)
    assert err.where.endswith(":3") and "'\\x00'" in err.message and "not allowed in YAML" in err.message
    path.write_bytes(good.replace(b"tiny\n", b"tiny\xe9\n"))  # Latin-1, not UTF-8
    err = error_for_bytes(path, fake_plugins)
    assert err.where.endswith(":2") and "not UTF-8" in err.message and "0xe9 at line 2, column 11" in err.message
    assert "UTF-8" in err.hint
    path.write_bytes(b"")
    err = error_for_bytes(path, fake_plugins)
    assert "found nothing (the file is empty)" in err.message and "version" in err.expected
    path.write_bytes(b"just text\n")
    assert "found a text value" in error_for_bytes(path, fake_plugins).message
    path.write_bytes(good + b"# padding\n" * 7000)
    err = error_for_bytes(path, fake_plugins)
    assert "larger than 65,536 bytes" in err.message and err.where == str(path)
    err = error_for_bytes(tmp_path, fake_plugins)
    assert "directory" in err.message and err.where == str(tmp_path)


def error_for_bytes(path: Path, fake_plugins) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=fake_plugins)
    return info.value


def test_anchors_and_merge_keys_still_work_and_keep_lines(tmp_path, fake_plugins):
    text = GOOD.format(model="m").replace(
        "    config:\n      note: hello", "    config: &cfg\n      note: hello"
    ).replace("    strategy: copy.model\n", "    strategy: copy.model\n    config: {<<: *cfg, nota: x}\n", 2)
    # the first replace anchors stage 0's config; the second gives stage 1 a merged config
    text = text.replace("    config: {<<: *cfg, nota: x}\n    config: &cfg", "    config: &cfg", 1)
    path = write(tmp_path, text)
    err = error_for(tmp_path, fake_plugins, text)
    assert err.key == "stages[1].config.nota" and err.hint == "did you mean 'note'?"
    assert err.where == f"{path}:{text.splitlines().index('    config: {<<: *cfg, nota: x}') + 1}"
    path.write_text(text.replace(", nota: x", ""))
    loaded = load_recipe(path, plugins=fake_plugins)
    assert [c.note for c in loaded.stage_configs] == ["hello", "hello"]


# --- constraints in plain words, recipes without stages ----------------------------------------


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (("seed: 3", "seed: -1"), "seed", "int >= 0 (Seed for data splits"),
        (("  baseline: false", "  baseline: false\n  sequence_length: 0"), "evaluation.sequence_length", "int >= 1, <= 8192 ("),
        (("  baseline: false", "  baseline: false\n  confidence: 2"), "evaluation.confidence", "float > 0.5, < 1.0 ("),
        (("  baseline: false", "  baseline: false\n  batch_sizes: []"), "evaluation.batch_sizes", "list[int] at least 1 item ("),
        (("    name: tiny-sentiment", "    name: tiny-sentiment\n    max_train_samples: 0"), "task.data.max_train_samples",
         "int | None >= 1 ("),
    ],
)
def test_constraints_are_shown_as_bounds(tmp_path, fake_plugins, edit, key, expected):
    err = error_for(tmp_path, fake_plugins, GOOD.format(model="m").replace(*edit))
    assert err.key == key
    assert err.expected.startswith(expected), err.expected
    assert "Ge(" not in err.format() and "MinLen(" not in err.format()


def _models_in(model, seen):
    """``model`` and every pydantic model its fields hold (lists and unions included)."""
    import typing

    from pydantic import BaseModel

    if model in seen:
        return
    seen.add(model)
    for f in model.model_fields.values():
        stack = [f.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                _models_in(ann, seen)
            stack.extend(typing.get_args(ann))


def test_no_field_of_the_recipe_or_a_builtin_strategy_shows_a_constraint_repr():
    import re

    from compressor.plugins import get_plugins
    from compressor.recipe import Recipe, _describe_field

    models: set = set()
    _models_in(Recipe, models)
    for cls in get_plugins().strategies.values():
        _models_in(cls.Config, models)
    checked = 0
    for model in models:
        for name, f in model.model_fields.items():
            text = _describe_field(model, (name,))
            assert text is not None
            assert not re.search(r"\b(Ge|Gt|Le|Lt|MinLen|MaxLen|Interval|MultipleOf|\w*Metadata)\(", text), (model, name, text)
            kinds = {type(m).__name__ for m in f.metadata}
            for kind, sign in (("Ge", ">= "), ("Gt", "> "), ("Le", "<= "), ("Lt", "< "), ("MinLen", "at least ")):
                if kind in kinds:
                    assert sign in text, (model, name, text)
                    checked += 1
    assert checked > 20  # the built-in configs are full of bounds


@pytest.mark.parametrize("stages", ["stages: []\n", ""])
def test_a_recipe_may_have_no_stages(tmp_path, fake_plugins, stages):
    text = GOOD.format(model="m").replace("  baseline: false\n", "  baseline: true\n")
    text = text[: text.index("stages:")] + stages
    loaded = load_recipe(write(tmp_path, text), plugins=fake_plugins)
    assert loaded.recipe.stages == [] and loaded.stage_configs == []
    assert loaded.resolved()["stages"] == [] and len(loaded.hash()) == 64
