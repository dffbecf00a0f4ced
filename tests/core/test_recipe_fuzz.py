"""Recipe hardening: any file content loads as a valid recipe or ends in one CompressorError.

Property-based tests mutate the ready recipes (recipes/*.yaml) as text (lines deleted,
duplicated, swapped, re-indented or cut; characters such as '[', '{', '&', '*', '!!' or tabs
inserted; values and keys replaced by other types; alias bombs added) and as data (values of
other types, keys renamed, added or deleted), and also try whole documents made of YAML
tokens. Each is loaded with the installed plugins (phase 2 included). The property: the recipe
loads and can be hashed, or :func:`load_recipe` raises a :class:`CompressorError` naming the
file, in a bounded time. Nothing else escapes.

Regression tests pin the three crashes the first fuzzing run found (a key holding '[', a
``!!python/object`` tag, a "billion laughs" alias bomb), for the loader and for
``compressor validate`` / ``compressor run`` (exit status 2, one message, no traceback).

``COMPRESSOR_FUZZ_EXAMPLES=N`` sets the number of examples of every property (defaults: 1,500
text mutations, 300 data mutations, 600 token documents; the file takes about 40 s on two
busy cores). Runs are derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compressor.cli import main
from compressor.errors import CompressorError, RecipeError
from compressor.plugins import get_plugins
from compressor.recipe import MAX_RECIPE_NODES, load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {p.name: p.read_text(encoding="utf-8") for p in sorted((ROOT / "recipes").glob("*.yaml"))}
#: Examples per property; ``COMPRESSOR_FUZZ_EXAMPLES=N`` sets all three (e.g. 5000 for a long run).
TEXT_EXAMPLES = int(os.environ.get("COMPRESSOR_FUZZ_EXAMPLES", "1500"))
DATA_EXAMPLES = int(os.environ.get("COMPRESSOR_FUZZ_EXAMPLES", "300"))
SOUP_EXAMPLES = int(os.environ.get("COMPRESSOR_FUZZ_EXAMPLES", "600"))
#: A load that takes longer than this is a hang for the property (the alias bomb took > 120 s;
#: a real recipe loads in milliseconds, a 64 KiB file of values in about a second).
SLOW_S = 10.0

FUZZ = settings(
    deadline=None,  # timing is asserted explicitly, with a bound that holds on a busy machine
    derandomize=True,  # the same examples on every run: reproducible in CI
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Fragments inserted into the text: YAML syntax, tags, aliases, control and odd characters.
# '\udcff' is written as the single byte 0xff (invalid UTF-8).
INSERTS = [
    "[", "]", "{", "}", ",", ":", ": ", "- ", "? ", "&a ", "*a", "*a ", "&", "*", "!!", "!",
    "!!python/object:os.system ", "!!python/name:os.system ", "!!binary ", "!!set ", "!foo ",
    "!!int ", "!!str ", "!!map ", "\t", " ", "\n", "\n  ", "#", "'", '"', "|", ">", "%", "@",
    "`", "=", "~", "<<: ", "\\", "\x00", "\x07", "\x85", "\ufeff", "\u2028", "\udcff", "é",
    "---\n", "...\n",
]
# Values of every type (and some that YAML cannot build) to put in place of a value.
VALUES = [
    "[]", "{}", "~", "null", "", ".nan", ".inf", "-.inf", "-1", "0", "3", "0.5", "1e400",
    "9" * 120, "9" * 5000, "0x" + "f" * 60, "0b_", "0x_", "1_000", "1:2:3", "0o17", "+.5",
    "yes", "off", "true", "'x'", '"\\ud800"', '"\\x00"', '"\\t"', "2001-13-45", "2024-01-01",
    "2001-01-01 25:00:00", "!!int abc", "!!bool maybe", "!!float x", "!!timestamp x",
    "!!python/object:os.system x", "!!python/object/apply:os.system [echo hi]", "!!binary aGk=",
    "!!set {a, b}", "!!omap [a: 1]", "!!str [1]", "!!map x", "!foo bar", "*undefined", "=",
    "[1, [2, [3]]]", "{a: 1}", "{a: {b: [1, {c: 2}]}}", "'[a'", "[" * 100 + "]" * 100, "<<",
    "&z 1", "&z [1, 2]", "baseline", "teacher", "student", "finetune", "quantize.ort-dynamic",
    "distill.distilbert", "mr-snippets", "all-minilm-l6-v2", "'a b'", "-", "?", "|\n  text",
]
# Keys to put in place of a key: not text, YAML specials, and names of other fields.
KEYS = [
    "1", "1.5", "~", "on", "no", "true", "[a]", "{a: 1}", "? {a: 1}", "? [a, b]", "<<", "*a",
    "&k key", "'1'", '"[a"', "begin[_fraction", "a[0]", "function-after[x]", "int", "str",
    "list[int]", "name", "config", "strategy", "input", "teacher", "epochs", "stages", "task",
    "data", "evaluation", "=", "!!int 3", "!!python/object:os.system x", "2024-01-01",
]

LINE_KEY = re.compile(r"^(\s*(?:- )?)([^\s:#][^:#]*?):(\s.*|)$")


def _alias_bomb(levels: int = 8, width: int = 9) -> str:
    """The "billion laughs" document: ``width ** levels`` values by reference."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@st.composite
def text_mutations(draw: st.DrawFn) -> str:
    """A ready recipe with one to four text-level mutations."""
    name = draw(st.sampled_from(sorted(RECIPES)))
    lines = RECIPES[name].split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        line = lines[i] if lines else ""
        op = draw(
            st.sampled_from(
                ["delete", "duplicate", "swap", "insert", "value", "key", "indent", "truncate", "bomb"]
            )
        )
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate" and lines:
            lines.insert(draw(st.integers(0, len(lines))), line)
        elif op == "swap" and lines:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            col = draw(st.integers(0, len(line)))
            fragment = draw(st.sampled_from(INSERTS) | st.text(max_size=3))
            lines[i:i + 1] = (line[:col] + fragment + line[col:]).split("\n")
        elif op == "value" and (m := LINE_KEY.match(line)):
            lines[i] = f"{m.group(1)}{m.group(2)}: {draw(st.sampled_from(VALUES))}"
        elif op == "key" and (m := LINE_KEY.match(line)):
            key = m.group(2)
            if draw(st.booleans()):
                col = draw(st.integers(0, len(key)))
                key = key[:col] + draw(st.sampled_from(["[", "{", "&", "*", "!!", "\t", "]", "'", "?"])) + key[col:]
            else:
                key = draw(st.sampled_from(KEYS))
            lines[i] = f"{m.group(1)}{key}:{m.group(3)}"
        elif op == "indent" and lines:
            lines[i] = (" " * draw(st.integers(1, 3)) + line) if draw(st.booleans()) else line[1:]
        elif op == "truncate" and lines:
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
        elif op == "bomb":  # top-level anchors: small ones load, 9 ** 8 must be refused
            bomb = _alias_bomb(draw(st.sampled_from([2, 4, 8])), draw(st.sampled_from([3, 9])))
            at = draw(st.sampled_from([0, len(lines)]))
            lines[at:at] = bomb.splitlines()
    return "\n".join(lines)


#: Whole documents made of YAML syntax, special values and odd characters (a token soup).
TOKENS = [
    *"[]{},:-?&*!|>'\"#%@`=~<\\ \t\n0123456789abxyz.+_", "\x00", "\x85", "\u2028", "\ufeff",
    "\udcff", "é", "!!python/object:os.system ", "!!int ", "!!bool ", "!!timestamp ", "<<: ",
    ": ", "\n- ", "\n  ", "&a ", "*a ", "version: 1\n", "name: x\n", "stages:\n", ".nan", ".inf",
    "0x", "0b", "2001-13-45", '"\\ud800"', '"\\0"', "? ",
]


def _json_like() -> st.SearchStrategy:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.integers(min_value=-(10**40), max_value=10**40)
        | st.floats()
        | st.text(max_size=12)
        | st.sampled_from(["baseline", "teacher", "finetune", "mr-snippets", "every-other", "auto"])
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=10,
    )


def _paths(node: object, loc: tuple = ()) -> list[tuple]:
    out = [loc]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, loc + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, loc + (i,))
    return out


@st.composite
def data_mutations(draw: st.DrawFn) -> str:
    """A ready recipe, loaded as data, with one to three values or keys changed, dumped again."""
    data = yaml.safe_load(RECIPES[draw(st.sampled_from(sorted(RECIPES)))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)[1:]
        in_configs = [p for p in paths if len(p) > 3 and p[0] == "stages" and p[2] == "config"]
        # half the time inside a stage's config, so phase 2 (the strategies' models) is hit
        loc = draw(st.sampled_from(in_configs if in_configs and draw(st.booleans()) else paths))
        parent = data
        for part in loc[:-1]:
            parent = parent[part]
        last = loc[-1]
        op = draw(st.sampled_from(["replace", "replace", "delete", "rename", "add"]))
        if op == "replace":
            parent[last] = draw(_json_like())
        elif op == "delete":
            del parent[last]
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.text(max_size=10) | st.sampled_from(KEYS))
            parent[new] = parent.pop(last)
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10) | st.sampled_from(KEYS))] = draw(_json_like())
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


@pytest.fixture(scope="module")
def plugins():
    return get_plugins()


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "recipe.yaml"


def assert_loads_or_fails_cleanly(path: Path, text: str, plugins) -> None:
    """The property: a valid, hashable recipe, or one CompressorError naming the file."""
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    start = time.perf_counter()
    try:
        loaded = load_recipe(path, plugins=plugins, validate_configs=True)
    except CompressorError as exc:
        assert exc.where and exc.where.startswith(str(path)), exc.format()
        assert re.fullmatch(re.escape(str(path)) + r"(:\d+)?", exc.where), exc.where
        assert exc.message and "Traceback" not in exc.format()
        # outcome classes, shown by pytest --hypothesis-show-statistics
        event(re.sub(r"'[^']*'|\"[^\"]*\"|\d[\d,.]*", "_", exc.message)[:48])
    else:
        # no stages is valid too: an evaluation-only recipe
        assert len(loaded.stage_configs) == len(loaded.recipe.stages)
        assert len(loaded.hash()) == 64  # the resolved recipe is plain, printable data
        event("valid")
    elapsed = time.perf_counter() - start
    assert elapsed < SLOW_S, f"load took {elapsed:.1f} s"


def test_ready_recipes_are_the_fuzz_seeds(plugins, fuzz_file):
    """Every seed loads unchanged, so a failure below comes from the mutation."""
    assert len(RECIPES) >= 5
    for text in RECIPES.values():
        fuzz_file.write_text(text, encoding="utf-8")
        load_recipe(fuzz_file, plugins=plugins).hash()


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=TEXT_EXAMPLES)
@given(text=text_mutations())
def test_text_mutations_load_or_raise_compressor_error(text, plugins, fuzz_file):
    assert_loads_or_fails_cleanly(fuzz_file, text, plugins)


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=DATA_EXAMPLES)
@given(text=data_mutations())
def test_data_mutations_load_or_raise_compressor_error(text, plugins, fuzz_file):
    assert_loads_or_fails_cleanly(fuzz_file, text, plugins)


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=SOUP_EXAMPLES)
@given(text=st.lists(st.sampled_from(TOKENS), max_size=60).map("".join))
def test_token_soup_loads_or_raises_compressor_error(text, plugins, fuzz_file):
    assert_loads_or_fails_cleanly(fuzz_file, text, plugins)


# --- the three crashes of the first fuzzing run --------------------------------------------

MOVEMENT = RECIPES["prune-movement.yaml"]
ISSUE_CASES = {
    # IndexError in validation_error: the key's '[' was taken for a pydantic location part
    "bracket-key": MOVEMENT.replace("begin_fraction:", "begin[_fraction:"),
    # yaml ConstructorError with a traceback
    "python-tag": RECIPES["quickstart.yaml"].replace(
        "name: quickstart", "name: !!python/object:os.system quickstart"
    ),
    # 9 ** 8 values by reference: no answer in 120 s
    "alias-bomb": _alias_bomb() + RECIPES["quickstart.yaml"],
}


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def timed_error(path: Path, plugins) -> tuple[RecipeError, float]:
    start = time.perf_counter()
    with pytest.raises(RecipeError) as info:
        load_recipe(path, plugins=plugins)
    return info.value, time.perf_counter() - start


def test_key_with_bracket_is_an_unknown_key(tmp_path, plugins):
    text = ISSUE_CASES["bracket-key"]
    path = tmp_path / "movement.yaml"
    path.write_text(text)
    err, elapsed = timed_error(path, plugins)
    assert err.where == f"{path}:{_line_of(text, 'begin[_fraction')}"
    stage = next(i for i, s in enumerate(yaml.safe_load(text)["stages"]) if "begin[_fraction" in s.get("config", {}))
    assert err.key == f"stages[{stage}].config.begin[_fraction"
    assert err.message == "unknown key 'begin[_fraction'"
    assert "begin_fraction" in err.expected
    assert err.hint == "did you mean 'begin_fraction'?"
    assert elapsed < 1.0


def test_python_tag_is_refused_before_anything_is_built(tmp_path, plugins):
    text = ISSUE_CASES["python-tag"]
    path = tmp_path / "tag.yaml"
    path.write_text(text)
    err, elapsed = timed_error(path, plugins)
    assert err.where == f"{path}:{_line_of(text, '!!python')}"
    assert err.key == "name"
    assert "'!!python/object:os.system' is not allowed" in err.message
    assert "plain values" in err.expected and "remove the tag" in err.hint
    assert elapsed < 1.0


def test_alias_bomb_is_refused_at_the_alias_that_explodes(tmp_path, plugins):
    text = ISSUE_CASES["alias-bomb"]
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    err, elapsed = timed_error(path, plugins)
    # a0..a4 stand for 10, 91, 820, 7,381 and 66,430 values: with the keys, 74,738 values
    # so far; the first *a4 in a5's list crosses the limit
    assert err.where == f"{path}:{_line_of(text, 'a5: &a5')}"
    assert "alias '*a4' repeats 66,430 values" in err.message
    assert f"more than {MAX_RECIPE_NODES:,}" in err.message
    assert "aliases (*name) repeat" in err.hint
    assert elapsed < 1.0


def test_a_cyclic_alias_is_refused(tmp_path, plugins):
    path = tmp_path / "cycle.yaml"
    path.write_text("version: 1\nname: x\nstages: &s [*s]\n")
    err, elapsed = timed_error(path, plugins)
    assert err.where == f"{path}:3" and "'*s' refers to the value that contains it" in err.message
    assert elapsed < 1.0


@pytest.mark.parametrize("case", sorted(ISSUE_CASES))
def test_validate_and_run_exit_2_with_one_message(tmp_path, capsys, plugins, monkeypatch, case):
    import compressor.plugins

    monkeypatch.setattr(compressor.plugins, "_cached", plugins)
    monkeypatch.chdir(tmp_path)  # 'run' must not create anything outside tmp_path
    path = tmp_path / f"{case}.yaml"
    path.write_text(ISSUE_CASES[case])
    for argv in (["validate", str(path)], ["run", str(path), "--no-progress"]):
        status = main(argv)
        captured = capsys.readouterr()
        assert status == 2, captured
        assert captured.out == ""
        assert captured.err.startswith(f"error: {path}:")
        assert captured.err.count("error:") == 1 and "Traceback" not in captured.err
    assert not (tmp_path / "runs").exists()


def test_cli_process_reports_every_bad_recipe_and_exits_2(tmp_path):
    """The real console entry point: one message per file, status 2, no traceback."""
    paths = []
    for case, text in ISSUE_CASES.items():
        paths.append(tmp_path / f"{case}.yaml")
        paths[-1].write_text(text)
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "compressor", "validate", *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""
    messages = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert [m.split(":", 2)[1].strip() for m in messages] == [str(p) for p in paths]
    assert time.perf_counter() - start < 60
