"""The recipe JSON Schema and the generated recipe reference stay in step with the models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from compressor.cli import main
from compressor.plugins import get_plugins
from compressor.schema import markdown_reference, recipe_schema, strategy_schema

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "recipe-reference.md"

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the [test] extra")


def test_recipe_reference_is_generated_from_the_models() -> None:
    expected = markdown_reference(builtin_only=True)
    assert REFERENCE.read_text(encoding="utf-8") == expected, (
        "docs/recipe-reference.md is out of date: regenerate it with\n"
        "    python -m compressor.schema --markdown > docs/recipe-reference.md"
    )


def test_reference_documents_every_field_of_every_builtin_strategy() -> None:
    plugins = get_plugins()
    text = REFERENCE.read_text(encoding="utf-8")
    builtin = [n for n, i in plugins.infos.items() if i.package == "compressor" and i.strategies]
    assert builtin, "the built-in plugins are not registered: pip install -e . --no-deps"
    for plugin in builtin:
        for name in plugins.infos[plugin].strategies:
            section = text.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
            for field, info in plugins.strategies[name].Config.model_fields.items():
                assert f"| `{field}` |" in section, (name, field)
                assert (info.description or "").split()[0] in section, (name, field)


def test_every_shipped_recipe_validates_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(recipe_schema())
    recipes = sorted((ROOT / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path, [e.message for e in errors])


def _recipe(stage: dict) -> dict:
    return {
        "version": 1,
        "name": "x",
        "model": {"name": "m"},
        "task": {"data": {"name": "mr-snippets"}},
        "stages": [stage],
    }


def test_schema_checks_each_stage_config_against_its_strategy() -> None:
    validator = jsonschema.Draft202012Validator(recipe_schema())
    good = _recipe({"name": "s", "strategy": "distill.distilbert", "config": {"temperature": 4.0}})
    assert not list(validator.iter_errors(good))
    # a key of another strategy's config, a bound, an unknown strategy, a top-level typo
    typo = _recipe({"name": "s", "strategy": "finetune", "config": {"temperature": 4.0}})
    assert any("temperature" in e.message for e in validator.iter_errors(typo))
    bad_bound = _recipe({"name": "s", "strategy": "distill.distilbert", "config": {"temperature": 0}})
    assert list(validator.iter_errors(bad_bound))
    unknown = _recipe({"name": "s", "strategy": "distill.nope", "config": {}})
    assert any("distill.nope" in e.message for e in validator.iter_errors(unknown))
    top = {**good, "stagse": []}
    assert any("stagse" in e.message for e in validator.iter_errors(top))


def test_strategy_schema_matches_its_config_model() -> None:
    plugins = get_plugins()
    for name, cls in plugins.strategies.items():
        schema = strategy_schema(name)
        assert schema["additionalProperties"] is False, name
        assert set(schema["properties"]) == set(cls.Config.model_fields), name
        try:  # a config whose defaults are valid dumps to a mapping the schema accepts
            defaults = cls.Config().model_dump(mode="json")
        except ValidationError:
            continue
        jsonschema.validate(defaults, schema)


def test_cli_prints_schema_and_names_a_misspelled_strategy(capsys: pytest.CaptureFixture) -> None:
    assert main(["schema", "finetune"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["title"] == "finetune config" and "epochs" in printed["properties"]
    assert main(["schema", "finetun"]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'finetun'" in err and "did you mean 'finetune'" in err


def test_module_entry_point_prints_the_markdown_reference() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "compressor.schema", "--markdown"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == REFERENCE.read_text(encoding="utf-8")


def test_schema_and_testing_modules_import_without_torch() -> None:
    code = (
        "import sys, compressor.schema, compressor.testing; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'pytest') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
