"""Recipes: pydantic models loaded from YAML, with file:line in every error.

Validation runs in two phases:

1. the skeleton (:class:`Recipe`): model, task, evaluation, output and the list of stages,
   each stage's ``config`` kept as a plain mapping;
2. each stage's ``config`` by its strategy's own ``Config`` model (:func:`validate_stages`),
   once the plugins are loaded.

Unknown keys are errors in both phases. Every error is a :class:`~compressor.errors.RecipeError`
naming the file, line, key path, what was expected and, for a misspelled key or strategy, the
nearest valid name.

A minimal recipe::

    version: 1
    name: quickstart
    model: {name: all-minilm-l6-v2}
    task:
      data: {name: mr-snippets}
    stages:
      - {name: teacher, strategy: finetune, config: {epochs: 1}}
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import RecipeError
from .evaluate.settings import EvaluationSettings
from .search import SearchConfig
from .suggest import did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    from .plugins import Plugins

RECIPE_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    """Which pretrained encoder the run starts from."""

    name: str = Field(
        description="Packaged model name (e.g. 'all-minilm-l6-v2'), a local folder, or a hub id."
    )
    source: str = Field(
        "auto",
        description="'auto' (packaged, then local folder, then hub) or a registered model "
        "source name: 'packaged', 'local', 'hub', or one a plugin adds.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(
        False, description="Allow a hub model's own Python code to run. Off unless you opt in."
    )


class DataConfig(_Strict):
    """The task's data: exactly one of ``name``, ``hub`` or ``files``."""

    name: str | None = Field(None, description="Registered (packaged) data set, e.g. 'mr-snippets'.")
    hub: str | None = Field(None, description="Hugging Face hub data set id.")
    hub_config: str | None = Field(None, description="Hub data set configuration (subset).")
    files: dict[str, str] | None = Field(
        None,
        description="Split name (train/validation/test) -> CSV, TSV, JSON, JSONL or Parquet file, "
        "relative to the recipe's folder.",
    )
    text_column: str = Field("text", description="Column holding the text.")
    text_pair_column: str | None = Field(None, description="Column holding the second text of a pair.")
    label_column: str = Field("label", description="Column holding the label (int or string).")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="Fraction of train held out as validation when none is given."
    )
    test_fraction: float = Field(
        0.1, gt=0, lt=1, description="Fraction of train held out as test when none is given."
    )
    max_train_samples: int | None = Field(None, ge=1, description="Cap on training rows (seeded sample).")
    max_eval_samples: int | None = Field(
        None, ge=1, description="Cap on validation and test rows (seeded sample)."
    )
    trust_remote_code: bool = Field(False, description="Allow a hub data set's loading script to run.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> DataConfig:
        given = [k for k in ("name", "hub", "files") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'name' (packaged data set), 'hub' (hub id) or 'files' "
                f"(local files); got {given or 'none'}"
            )
        return self


class TaskConfig(_Strict):
    """What the models are for and on which data."""

    type: str = Field(
        "text-classification",
        description="Task type: a registered task (text-classification, text-regression, "
        "sentence-embedding, token-classification, question-answering, masked-lm, or a "
        "plugin's; 'compressor plugins' lists them).",
    )
    data: DataConfig
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings of the task type, checked against its Options model "
        "('compressor schema' lists them per task).",
    )


class EvaluationConfig(EvaluationSettings):
    """Evaluator settings shared by every model of the run."""

    baseline: bool = Field(
        True,
        description="Evaluate the input model too. Turn off when it has no trained task head "
        "(a sentence-embedding checkpoint, for example).",
    )


class StageConfig(_Strict):
    """One stage: a strategy applied to the previous stage's artifact, or to the artifact
    named by ``input``.

    ``input`` lets several stages start from the same model, e.g. four quantisations of one
    fine-tuned teacher::

        - {name: teacher, strategy: finetune}
        - {name: int8-torch, strategy: quantize.dynamic-int8, input: teacher}
        - {name: int8-ort, strategy: quantize.ort-dynamic, input: teacher}
    """

    name: str = Field(description="Unique stage name; also the name of the artifact it makes.")
    strategy: str = Field(description="Registered strategy name, e.g. 'finetune'.")
    input: str | None = Field(
        None,
        description="Name of the artifact this stage starts from: 'baseline' or an earlier "
        "stage's name. Unset means the previous stage's artifact (the baseline for the "
        "first stage).",
    )
    config: dict[str, Any] = Field(default_factory=dict, description="The strategy's settings.")
    evaluate: bool = Field(True, description="Evaluate this stage's artifact.")

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v) or v == "baseline":
            raise ValueError(
                "letters, digits, '-', '_' or '.', starting with a letter or digit, and not "
                "'baseline' (reserved for the input model)"
            )
        return v


class OutputConfig(_Strict):
    """Where the run directory goes."""

    dir: str = Field("runs", description="Parent folder of run directories (relative to the working directory).")


class Recipe(_Strict):
    """A whole recipe (phase-1 skeleton; stage configs validated by :func:`validate_stages`)."""

    version: Literal[1] = Field(description="Recipe format version; 1 is the only one.")
    name: str = Field(description="Run name; the run directory is <output.dir>/<name>.")
    description: str = Field("", description="Free text shown in the report.")
    seed: int = Field(0, ge=0, description="Seed for data splits, initialisation and training.")
    model: ModelConfig
    task: TaskConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    stages: list[StageConfig] = Field(
        default_factory=list,
        description="Ordered stages. Empty or left out: the run only evaluates the model (the "
        "baseline) and writes the report.",
    )
    output: OutputConfig = Field(default_factory=OutputConfig)
    search: SearchConfig | None = Field(
        None,
        description="What 'compressor tune' searches: objective, constraint (max_loss with a "
        "confidence), space over the stages' settings, budget, sampler. 'compressor run' "
        "ignores it and runs the stages as written.",
    )

    @field_validator("name")
    @classmethod
    def _run_name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("letters, digits, '-', '_' or '.', starting with a letter or digit")
        return v

    @field_validator("seed")
    @classmethod
    def _seed_fits(cls, v: int) -> int:
        # numpy (through transformers.set_seed) refuses seeds of 2**32 and above at run time
        if v >= 2**32:
            raise ValueError(f"the seed must be below 2**32 = {2**32}")
        return v

    @model_validator(mode="after")
    def _unique_stage_names(self) -> Recipe:
        seen: set[str] = set()
        for st in self.stages:
            if st.name in seen:
                raise ValueError(f"stage name {st.name!r} is used twice; stage names must be unique")
            seen.add(st.name)
        return self


class LoadedRecipe:
    """A validated recipe with its source text and line map.

    :ivar recipe: the phase-1 :class:`Recipe`.
    :ivar stage_configs: validated strategy config objects, one per stage (after phase 2).
    :ivar path: the YAML file.
    :ivar lines: key path tuple -> 1-based line number in the file.
    """

    def __init__(self, recipe: Recipe, path: Path, lines: dict[tuple, int]) -> None:
        self.recipe = recipe
        self.path = path
        self.lines = lines
        self.stage_configs: list[BaseModel] = []
        self.task_options: BaseModel | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def where(self, loc: tuple) -> str:
        """``file:line`` for a key path (the nearest enclosing key when absent)."""
        return f"{self.path}:{_line_for(self.lines, tuple(loc))}"

    def resolved(self) -> dict[str, Any]:
        """The recipe with every default filled in, stage configs included (plain data)."""
        data = self.recipe.model_dump(mode="json")
        for st, cfg in zip(data["stages"], self.stage_configs):
            st["config"] = cfg.model_dump(mode="json")
        return data

    def hash(self) -> str:
        """SHA-256 of the resolved recipe (canonical JSON)."""
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()


# --- YAML with line numbers ----------------------------------------------------------------

#: Largest recipe file read, in bytes. Recipes are short hand-written text files; the limit
#: keeps ``compressor validate`` fast on a wrong path (a data file, ``/dev/zero``).
MAX_RECIPE_BYTES = 64 * 1024
#: Most YAML values (scalars, lists and mappings) a recipe may hold once every alias
#: (``*name``) is expanded in place. Real recipes hold a few hundred; the limit stops
#: "billion laughs" alias bombs before any object is built.
MAX_RECIPE_NODES = 100_000
#: Deepest nesting of lists and mappings, aliases expanded (real recipes nest about 5 deep).
MAX_RECIPE_DEPTH = 64
#: Longest integer literal, in characters (Python refuses to print ints of 4,300+ digits).
MAX_INT_CHARS = 100

_YAML_TAG = "tag:yaml.org,2002:"
#: Tags a recipe value may carry (explicitly or as YAML resolves plain values): plain data.
_SCALAR_TAGS = tuple(_YAML_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp"))
_PLAIN_TAGS = (*_SCALAR_TAGS, _YAML_TAG + "seq", _YAML_TAG + "map")
_KEY_KINDS = {
    "int": "a number",
    "float": "a number",
    "bool": "a boolean (yes/no/on/off/true/false)",
    "null": "null (empty or '~')",
    "timestamp": "a date",
}


def _short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (safe for ints too large to print)."""
    try:
        text = repr(value)
    except ValueError:  # int with more digits than sys.get_int_max_str_digits()
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML_TAG):] if tag.startswith(_YAML_TAG) else tag


def _yaml_kind(value: Any) -> str:
    """How a YAML reader would name ``value``'s type (for 'found a list')."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "text value"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _read_text(path: Path) -> str:
    """The recipe file's text, refusing directories, huge files and text that is not UTF-8."""
    if path.is_dir():
        raise RecipeError(
            "this is a directory, not a recipe file",
            where=str(path),
            expected="a recipe YAML file",
            hint="give the path of a .yaml file, e.g. recipes/quickstart.yaml",
        )
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise RecipeError("recipe file not found", where=str(path), hint="check the path") from None
    except (OSError, ValueError) as exc:
        raise RecipeError(f"cannot read the recipe: {exc}", where=str(path)) from None
    if len(raw) > MAX_RECIPE_BYTES:
        raise RecipeError(
            f"cannot read the recipe: the file is larger than {MAX_RECIPE_BYTES:,} bytes",
            where=str(path),
            expected="a recipe YAML file (a few kilobytes)",
            hint="check the path: this looks like a data or model file",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise RecipeError(
            f"cannot read the recipe: not UTF-8 text (byte {raw[exc.start]:#04x} at line {line}, "
            f"column {column})",
            where=f"{path}:{line}",
            expected="UTF-8 text",
            hint="save the recipe as UTF-8; check the path if this is not a recipe",
        ) from None


def _yaml_error(exc: Exception, path: Path, text: str) -> RecipeError:
    """A :class:`RecipeError` for a PyYAML error, with the line when PyYAML gives one."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line: int | str = mark.line + 1 if mark else "?"
        problem = exc.problem or str(exc)
        if exc.context:
            at = f" (line {exc.context_mark.line + 1})" if exc.context_mark and exc.problem_mark else ""
            problem = f"{exc.context}{at}: {problem}"
        return RecipeError(
            f"not valid YAML: {problem}",
            where=f"{path}:{line}",
            hint="check indentation, that every 'key: value' pair has a space after ':', and "
            "quote values that are meant as plain text",
        )
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow (NUL, ...)
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return RecipeError(
            f"not valid YAML: the character {char!r} (#x{ord(char):04x}) is not allowed in YAML",
            where=f"{path}:{line}",
            expected="printable text",
            hint="remove the control character; check the path if this is not a recipe",
        )
    return RecipeError(f"not valid YAML: {exc}", where=str(path))


class _Refused(Exception):
    """Raised inside the YAML loader; :func:`_compose` turns it into a :class:`RecipeError`."""

    def __init__(self, line: int, message: str, expected: str, hint: str) -> None:
        super().__init__(message)
        self.line, self.message, self.expected, self.hint = line, message, expected, hint


def _too_deep(line: int) -> _Refused:
    return _Refused(
        line,
        f"lists and mappings nest more than {MAX_RECIPE_DEPTH} levels deep (aliases expanded)",
        f"at most {MAX_RECIPE_DEPTH} levels of nesting",
        "a recipe nests about 5 deep: check for unclosed '[' or '{' and for aliases (*name) "
        "that repeat nested values",
    )


class _EventCheck:
    """Refuses alias bombs, self-referencing aliases, deep nesting and huge recipes while the
    parser's events stream by, before the composer builds (or recurses into) anything.

    Keeps, for each anchor, the number of values it stands for and how deep it nests once
    its own aliases are expanded, so the cost is one pass over the events.
    """

    def __init__(self) -> None:
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, height), expanded
        self.open_anchors: set[str] = set()
        # one frame per open list/mapping: [anchor, values, deepest level reached]
        self.stack: list[list[Any]] = []
        self.expanded = 0

    def _count(self, values: int, line: int, alias: str | None = None) -> None:
        self.expanded += values
        if self.expanded <= MAX_RECIPE_NODES:
            return
        if alias is None:
            raise _Refused(
                line,
                f"the recipe holds more than {MAX_RECIPE_NODES:,} values",
                f"at most {MAX_RECIPE_NODES:,} values",
                "check the path: this looks like a data file, not a recipe",
            )
        raise _Refused(
            line,
            f"alias '*{alias}' repeats {values:,} values; with the values before it the recipe "
            f"expands to more than {MAX_RECIPE_NODES:,} (an alias bomb?)",
            f"at most {MAX_RECIPE_NODES:,} values once aliases are expanded",
            "aliases (*name) repeat the anchored value (&name) in place: use fewer, or write "
            "the values out",
        )

    def feed(self, event: Any) -> None:
        """Check one parser event.

        :param event: a PyYAML event, in stream order.
        :raises _Refused: with the line of the alias or list/mapping at fault.
        """
        from yaml.events import (
            AliasEvent,
            CollectionEndEvent,
            CollectionStartEvent,
            ScalarEvent,
        )

        line = event.start_mark.line + 1
        stack = self.stack
        level = len(stack)
        if isinstance(event, CollectionStartEvent):
            if level >= MAX_RECIPE_DEPTH:
                raise _too_deep(line)
            self._count(1, line)
            stack.append([event.anchor, 1, level])
            if event.anchor is not None:
                self.open_anchors.add(event.anchor)
        elif isinstance(event, CollectionEndEvent):
            anchor, values, deepest = stack.pop()
            level -= 1
            if anchor is not None:
                self.anchors[anchor] = (values, deepest - level)
                self.open_anchors.discard(anchor)
            if stack:
                stack[-1][1] += values
                stack[-1][2] = max(stack[-1][2], deepest)
        elif isinstance(event, ScalarEvent):
            self._count(1, line)
            if event.anchor is not None:
                self.anchors[event.anchor] = (1, 0)
            if stack:
                stack[-1][1] += 1
        elif isinstance(event, AliasEvent):
            name = event.anchor
            if name in self.open_anchors:
                raise _Refused(
                    line,
                    f"alias '*{name}' refers to the value that contains it (a cycle)",
                    f"an alias to a value marked '&{name}' earlier, outside the alias",
                    "a value cannot contain itself: write the values out",
                )
            if name not in self.anchors:
                return  # undefined alias: the composer reports it with its line
            values, height = self.anchors[name]
            if level + height > MAX_RECIPE_DEPTH:
                raise _too_deep(line)
            self._count(values, line, alias=name)
            if stack:
                stack[-1][1] += values
                stack[-1][2] = max(stack[-1][2], level + height)


@functools.cache
def _loader_class() -> type:
    """A PyYAML safe loader that checks events as they are composed (:class:`_EventCheck`)
    and stops flow nesting (``[[[[...``) in the scanner, whose cost grows with its square."""
    import yaml

    class _RecipeLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self._check = _EventCheck()

        def get_event(self) -> Any:
            event = super().get_event()
            self._check.feed(event)
            return event

        def fetch_flow_collection_start(self, TokenClass: Any) -> None:
            if self.flow_level >= MAX_RECIPE_DEPTH:
                raise _too_deep(self.get_mark().line + 1)
            super().fetch_flow_collection_start(TokenClass)

    return _RecipeLoader


def _compose_node(text: str) -> Any:
    loader = _loader_class()(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _compose(text: str, path: Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a recipe's text into plain data and a key path -> line map.

    Everything that can go wrong ends in a :class:`RecipeError` with a line: invalid YAML,
    alias bombs, cycles and deep nesting (:class:`_EventCheck`), keys that are not text,
    tags other than plain data (``!!python/object:...``), values PyYAML cannot build
    (``!!int abc``, a date such as 2024-13-45), integers too long to print, text with NUL
    characters or lone surrogates, duplicate keys. No Python object is built before the
    whole node graph has passed these checks.

    :param text: the recipe's text.
    :param path: the recipe file (for messages).
    :returns: the plain data (``None`` for an empty document) and the key path -> line map.
    :raises RecipeError: naming the line, and the key when there is one.
    """
    import yaml

    try:
        node = _compose_node(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path, text) from None
    except _Refused as exc:
        raise RecipeError(
            exc.message, where=f"{path}:{exc.line}", expected=exc.expected, hint=exc.hint
        ) from None
    lines: dict[tuple, int] = {}
    if node is None:
        return None, lines
    constructor = yaml.constructor.SafeConstructor()

    def fail(n: Any, loc: tuple, message: str, expected: str | None, hint: str | None) -> RecipeError:
        return RecipeError(
            message, where=f"{path}:{n.start_mark.line + 1}", key=_fmt_loc(loc), expected=expected, hint=hint
        )

    def check_value(n: Any, loc: tuple) -> None:
        tag = n.tag
        if isinstance(n, yaml.ScalarNode):
            kind, allowed = "value", _SCALAR_TAGS
        elif isinstance(n, yaml.SequenceNode):
            kind, allowed = "list", (_YAML_TAG + "seq",)
        else:
            kind, allowed = "mapping", (_YAML_TAG + "map",)
        if tag not in allowed:
            if tag == _YAML_TAG + "value":  # a bare '=' (YAML 1.1 "default value")
                raise fail(n, loc, "a bare '=' is a special YAML value", "a string, number, "
                           "boolean, list or mapping", "quote it: '='")
            if tag in _PLAIN_TAGS:
                raise fail(n, loc, f"the YAML tag {_show_tag(tag)!r} cannot mark a {kind}",
                           f"a {kind} without a tag", "remove the tag")
            raise fail(
                n,
                loc,
                f"the YAML tag {_show_tag(tag)!r} is not allowed in a recipe",
                "plain values (text, numbers, booleans, null, lists, mappings), untagged",
                "remove the tag: recipes hold plain data and never build Python objects",
            )
        if kind != "value":
            return
        value = n.value
        if tag == _YAML_TAG + "int" and len(value) > MAX_INT_CHARS:
            raise fail(n, loc, f"an integer of {len(value):,} characters is too large",
                       f"an integer of at most {MAX_INT_CHARS} characters", None)
        if tag == _YAML_TAG + "str":
            if "\x00" in value:
                raise fail(n, loc, "the text contains a NUL character (\\0)", "text without "
                           "NUL characters", "remove the '\\0' or '\\x00' escape")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise fail(n, loc, f"the text {_short_repr(value)} holds an unpaired UTF-16 "
                           "surrogate (a '\\ud800'-style escape)", "valid Unicode text",
                           "write the character itself, or a '\\U0001xxxx' escape") from None
        try:  # builds the scalar once (cached by node): '!!int abc', '!!int', 2024-13-45, '0x_' fail here
            constructor.construct_object(n)
        except Exception as exc:  # noqa: BLE001 - any failure to build one scalar is a bad value
            reason = getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}"
            raise fail(n, loc, f"cannot read {_short_repr(value)} as {_show_tag(tag)} "
                       f"({_short_repr(str(reason), 120)[1:-1]})", f"a valid {_show_tag(tag)[2:]}",
                       "quote the value if it is meant as text") from None

    def key_text(k: Any, loc: tuple) -> str:
        if not isinstance(k, yaml.ScalarNode):
            kind = "list" if isinstance(k, yaml.SequenceNode) else "mapping"
            raise fail(k, loc, f"a key must be a name, not a {kind}", "a text key such as "
                       "'epochs'", "'[...]:', '{...}:' and '? ...' make complex keys; quote the "
                       "key if it is meant as text")
        check_value(k, loc)
        if k.tag != _YAML_TAG + "str":
            kind = _KEY_KINDS.get(k.tag[len(_YAML_TAG):], _show_tag(k.tag))
            raise fail(k, loc + (k.value,), f"the key {k.value!r} is read by YAML as {kind}, "
                       "not as text", "a text key", f"quote it: '{k.value}': ...")
        return k.value

    def walk(n: Any, loc: tuple, merged: bool = False) -> None:
        lines.setdefault(loc, n.start_mark.line + 1)
        check_value(n, loc)
        if isinstance(n, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag == _YAML_TAG + "merge":  # '<<'
                    sources = v.value if isinstance(v, yaml.SequenceNode) else [v]
                    if not all(isinstance(s, yaml.MappingNode) for s in sources):
                        raise fail(v, loc + ("<<",), "a merge key '<<' needs a mapping or a "
                                   "list of mappings", "'<<: *name' where '&name' marks a "
                                   "mapping", "point '<<' at an anchored mapping, or quote "
                                   "'<<' if it is meant as a key")
                    for s in sources:
                        walk(s, loc, merged=True)
                    continue
                key = key_text(k, loc)
                if key in seen:
                    raise RecipeError(
                        f"key {key!r} appears twice",
                        where=f"{path}:{k.start_mark.line + 1}",
                        key=_fmt_loc(loc + (key,)),
                        hint="remove one of them",
                    )
                seen.add(key)
                if merged:
                    lines.setdefault(loc + (key,), k.start_mark.line + 1)
                else:
                    lines[loc + (key,)] = k.start_mark.line + 1
                walk(v, loc + (key,), merged)
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                if merged:
                    lines.setdefault(loc + (i,), v.start_mark.line + 1)
                else:
                    lines[loc + (i,)] = v.start_mark.line + 1
                walk(v, loc + (i,), merged)

    walk(node, ())
    try:
        data = constructor.construct_document(node)
    except yaml.YAMLError as exc:  # not expected after the walk; kept as a safety net
        raise _yaml_error(exc, path, text) from None
    return data, lines


def _line_for(lines: dict[tuple, int], loc: tuple) -> int | str:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), 1)


def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            text = str(part)
            out += ("." if out else "") + (text if text.isprintable() else _short_repr(text))
    return out or "(top level)"


_PSEUDO_LOC = re.compile(r"^(function-[a-z]+\[.*\]|[a-z_-]+\[.*\])$")


def _data_loc(loc: tuple, data: Any, kind: str) -> tuple:
    """``loc`` without pydantic's pseudo-locations (union members such as ``'int'`` or
    ``'list[int]'``, ``'function-after[...]'``), keeping every key the recipe really has.

    :param loc: a pydantic error location.
    :param data: the validated input (the recipe's mapping, or a stage's ``config``);
        ``None`` when unknown, then parts are dropped by their shape alone.
    :param kind: the pydantic error type (the last part of a ``missing`` error is kept).
    """
    if data is None:
        return tuple(p for p in loc if not (isinstance(p, str) and _PSEUDO_LOC.match(p)))
    out: list[Any] = []
    current = data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and isinstance(part, str) and part in current or (
            isinstance(current, (list, tuple))
            and isinstance(part, int)
            and not isinstance(part, bool)
            and 0 <= part < len(current)
        ):
            out.append(part)
            current = current[part]
        elif i == len(loc) - 1 and kind == "missing" and isinstance(current, dict):
            out.append(part)  # the key the recipe lacks
        # anything else is a pseudo-location pydantic adds inside unions and validators
    return tuple(out)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Field names of the pydantic model reached by following ``loc`` (for suggestions)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *typing.get_args(ann)]
        for c in list(candidates):
            candidates.extend(typing.get_args(c))
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _describe_field(model: type[BaseModel], loc: tuple) -> str | None:
    """The annotation and description of the field at ``loc``, for 'expected:'."""
    parent = loc[:-1]
    name = loc[-1] if loc else None
    import typing

    current: Any = model
    for part in parent:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        f = current.model_fields.get(part)
        if f is None:
            return None
        cands = [f.annotation, *typing.get_args(f.annotation)]
        for c in list(cands):
            cands.extend(typing.get_args(c))
        current = next((c for c in cands if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if isinstance(name, int) and not isinstance(name, bool):  # a list item: its list's field
        whole = _describe_field(model, parent)
        return f"an item of {whole}" if whole else None
    if not (isinstance(current, type) and issubclass(current, BaseModel)) or not isinstance(name, str):
        return None
    f = current.model_fields.get(name)
    if f is None:
        return None
    ann = _short_names(str(f.annotation).replace("typing.", ""))
    if not typing.get_args(f.annotation):  # a plain class: 'int', not "<class 'int'>"
        ann = getattr(f.annotation, "__name__", None) or ann
    bounds = constraint_texts(f.metadata, f.annotation)
    desc = f" ({f.description})" if f.description else ""
    return f"{ann}{' ' + ', '.join(bounds) if bounds else ''}{desc}"


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
_DOTTED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


def _short_names(annotation: str) -> str:
    """``list[compressor.recipe.StageConfig]`` -> ``list[StageConfig]`` (quoted text kept)."""
    parts = re.split(r"('[^']*'|\"[^\"]*\")", annotation)
    return "".join(p if i % 2 else _DOTTED.sub(r"\1", p) for i, p in enumerate(parts))


def constraint_texts(metadata: list[Any], annotation: Any = None) -> list[str]:
    """Pydantic field constraints in plain words: ``['>= 1', '<= 100']``.

    A :class:`pydantic.fields.FieldInfo` keeps ``Field(ge=1, le=100, min_length=1, ...)``
    as ``annotated_types`` objects in ``metadata`` (``Ge(ge=1)``, ``Le(le=100)``,
    ``MinLen(min_length=1)``, ``Interval``, ``MultipleOf``) and a pattern in pydantic's
    general metadata; their ``repr`` is what a user must not see. Unknown metadata is
    left out.

    :param metadata: ``FieldInfo.metadata``.
    :param annotation: the field's type: lengths of lists, tuples, sets and mappings count
        items, other lengths count characters.
    :returns: one text per constraint, in the order the field declares them.
    """
    import typing

    origins = [typing.get_origin(a) or a for a in (annotation, *typing.get_args(annotation))]
    sized = (list, tuple, set, frozenset, dict)
    unit = "item" if any(isinstance(o, type) and issubclass(o, sized) for o in origins) else "character"
    out: list[str] = []
    for meta in metadata:
        for attr, sign in _BOUNDS:
            value = getattr(meta, attr, None)
            if value is not None and not callable(value):
                out.append(f"{sign} {value}")
        for attr, word in (("min_length", "at least"), ("max_length", "at most")):
            value = getattr(meta, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                out.append(f"{word} {value} {unit}{'' if value == 1 else 's'}")
        value = getattr(meta, "multiple_of", None)
        if value is not None:
            out.append(f"a multiple of {value}")
        value = getattr(meta, "pattern", None)
        if isinstance(value, str):
            out.append(f"matching the regular expression {value!r}")
    return out


def validation_error(
    exc: ValidationError,
    *,
    model: type[BaseModel],
    path: Path,
    lines: dict[tuple, int],
    prefix: tuple = (),
    data: Any = None,
) -> RecipeError:
    """Turn a pydantic :class:`ValidationError` into one :class:`RecipeError`.

    The first error is reported in full (file:line, key path, expected, suggestion); the
    count of further errors is appended.

    :param exc: the pydantic error.
    :param model: the model that was validated (for field names and descriptions).
    :param path: the recipe file.
    :param lines: key path -> line, from :func:`_compose`.
    :param prefix: key path of ``data`` inside the recipe (``("stages", 1, "config")``).
    :param data: the validated input; lets keys holding ``[`` or named like a type be told
        apart from pydantic's own location parts.
    :returns: the :class:`RecipeError` to raise.
    """
    # A misspelled key shows up twice (unknown key + required key missing): report the
    # unknown key first, since it carries the suggestion.
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    kind = first["type"]
    loc = _data_loc(tuple(first["loc"]), data, kind)
    full = prefix + loc
    last = loc[-1] if loc else None
    hint = None
    expected = None
    if kind == "extra_forbidden" and last is not None:
        fields = _fields_at(model, loc[:-1]) or []
        message = f"unknown key {last!r}"
        expected = f"one of {fields}" if fields else None
        hint = did_you_mean(str(last), fields)
    elif kind == "missing" and last is not None:
        message = f"required key {last!r} is missing"
        expected = _describe_field(model, loc)
    else:
        message = first["msg"]
        if "input" in first and not isinstance(first["input"], (dict, list)):
            message += f" (got {_short_repr(first['input'])})"
        expected = _describe_field(model, loc)
    if len(errors) > 1:
        more = ", ".join(
            _fmt_loc(prefix + _data_loc(tuple(e["loc"]), data, e["type"])) for e in errors[1:4]
        )
        message += f" [and {len(errors) - 1} more: {more}{'...' if len(errors) > 4 else ''}]"
    return RecipeError(
        message,
        where=f"{path}:{_line_for(lines, full)}",
        key=_fmt_loc(full),
        expected=expected,
        hint=hint,
    )


# --- loading -------------------------------------------------------------------------------


def load_recipe(path: str | Path, *, plugins: Plugins | None = None, validate_configs: bool = True) -> LoadedRecipe:
    """Load and validate a recipe file.

    :param path: YAML file.
    :param plugins: loaded plugins for phase 2 (default: the process-wide ones).
    :param validate_configs: run phase 2 (each stage's config by its strategy).
    :returns: the :class:`LoadedRecipe`.
    :raises RecipeError: unreadable file, invalid YAML (including alias bombs, disallowed tags
        and keys that are not text), or a failed validation, with file, line, key, expected
        value and suggestion. No other exception escapes for any file content.
    """
    path = Path(path)
    return load_recipe_text(_read_text(path), path, plugins=plugins, validate_configs=validate_configs)


def load_recipe_text(
    text: str, path: str | Path, *, plugins: Plugins | None = None, validate_configs: bool = True
) -> LoadedRecipe:
    """Validate a recipe held in memory (``compressor evaluate`` builds one).

    :param text: the recipe's YAML text.
    :param path: where the recipe is (or will be) saved: error messages name it, and
        relative paths in the recipe are taken from its folder.
    :param plugins: loaded plugins for phase 2 (default: the process-wide ones).
    :param validate_configs: run phase 2 (each stage's config by its strategy).
    :returns: the :class:`LoadedRecipe`.
    :raises RecipeError: as :func:`load_recipe`.
    """
    path = Path(path)
    data, lines = _compose(text, path)
    if not isinstance(data, dict):
        found = "nothing (the file is empty)" if data is None else f"a {_yaml_kind(data)}"
        raise RecipeError(
            f"the recipe must be a YAML mapping; found {found}",
            where=f"{path}:{lines.get((), 1)}",
            expected="a mapping with the keys version, name, model, task and stages",
            hint="start from a recipe in recipes/, or see 'compressor schema --markdown'",
        )
    if "version" in data and data["version"] != RECIPE_VERSION:
        raise RecipeError(
            f"unsupported recipe version {_short_repr(data['version'])}",
            where=f"{path}:{lines.get(('version',), 1)}",
            key="version",
            expected=f"{RECIPE_VERSION}",
        )
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, model=Recipe, path=path, lines=lines, data=data) from None
    loaded = LoadedRecipe(recipe, path, lines)
    if validate_configs:
        validate_stages(loaded, plugins=plugins)
    return loaded


def validate_stages(loaded: LoadedRecipe, *, plugins: Plugins | None = None) -> None:
    """Phase 2: validate each stage's ``config`` with its strategy's ``Config`` model.

    Also checks that the data set name (for registered data sets) and the model source are
    known, so ``compressor validate`` catches them before any download, and the stage plan
    (:func:`compressor.plan.check_plan`): every stage's input in a format its strategy takes,
    training data for the stages that train, something to evaluate.

    :raises RecipeError: for an unknown strategy (with the nearest name), a bad config, or a
        stage chain that cannot run.
    """
    from .plugins import get_plugins

    plugins = plugins or get_plugins()
    with plugins.scope():  # a strategy's task_refusal looks the task up by name
        _validate_stages(loaded, plugins)


def _validate_stages(loaded: LoadedRecipe, plugins: Plugins) -> None:
    recipe = loaded.recipe
    data_cfg = recipe.task.data
    if data_cfg.name is not None and data_cfg.name not in plugins.datasets:
        loc = ("task", "data", "name")
        raise RecipeError(
            f"unknown data set {data_cfg.name!r}",
            where=loaded.where(loc),
            key=_fmt_loc(loc),
            expected=f"one of {sorted(plugins.datasets)} (or use 'hub:' or 'files:')",
            hint=did_you_mean(data_cfg.name, plugins.datasets),
        )
    task_loc = ("task", "type")
    if recipe.task.type not in plugins.tasks:
        raise RecipeError(
            f"unknown task type {recipe.task.type!r}",
            where=loaded.where(task_loc),
            key=_fmt_loc(task_loc),
            expected=f"one of {sorted(plugins.tasks)}",
            hint=did_you_mean(recipe.task.type, plugins.tasks),
        )
    task = plugins.tasks[recipe.task.type]
    try:
        loaded.task_options = task.Options.model_validate(recipe.task.options)
    except ValidationError as exc:
        raise validation_error(
            exc,
            model=task.Options,
            path=loaded.path,
            lines=loaded.lines,
            prefix=("task", "options"),
            data=recipe.task.options,
        ) from None
    src = recipe.model.source
    if src != "auto" and src not in plugins.model_sources:
        loc = ("model", "source")
        raise RecipeError(
            f"unknown model source {src!r}",
            where=loaded.where(loc),
            key=_fmt_loc(loc),
            expected=f"'auto' or one of {sorted(plugins.model_sources)}",
            hint=did_you_mean(src, plugins.model_sources),
        )
    configs = []
    for i, stage in enumerate(recipe.stages):
        loc = ("stages", i, "strategy")
        if stage.strategy not in plugins.strategies:
            raise RecipeError(
                f"unknown strategy {stage.strategy!r}",
                where=loaded.where(loc),
                key=_fmt_loc(loc),
                expected=f"one of {sorted(plugins.strategies)}",
                hint=plugins.unknown_hint(stage.strategy, plugins.strategies)
                or "run 'compressor plugins' to list installed strategies",
            )
        cls = plugins.strategies[stage.strategy]
        if stage.input is not None:
            earlier_names = ["baseline", *(s.name for s in recipe.stages[:i])]
            if stage.input not in earlier_names:
                loc = ("stages", i, "input")
                raise RecipeError(
                    f"input {stage.input!r} is not an artifact made before stage {stage.name!r}",
                    where=loaded.where(loc),
                    key=_fmt_loc(loc),
                    expected=f"one of {earlier_names}",
                    hint=did_you_mean(stage.input, earlier_names),
                )
        if not cls.supports_task(recipe.task.type):
            raise RecipeError(
                f"strategy {stage.strategy!r} does not support task type {recipe.task.type!r}"
                + (f": {cls.task_refusal(recipe.task.type)}" if cls.task_refusal(recipe.task.type) else ""),
                where=loaded.where(loc),
                key=_fmt_loc(loc),
                expected=(
                    f"a task type in {list(cls.task_types)}" if "*" not in cls.task_types
                    else "a task type it supports: one of "
                    f"{[t for t in sorted(plugins.tasks) if cls.supports_task(t)]}"
                ),
            )
        try:
            config = cls.Config.model_validate(stage.config)
        except ValidationError as exc:
            raise validation_error(
                exc,
                model=cls.Config,
                path=loaded.path,
                lines=loaded.lines,
                prefix=("stages", i, "config"),
                data=stage.config,
            ) from None
        # A strategy that names a teacher must name an artifact made before it.
        teacher = getattr(config, "teacher", None)
        earlier = ["baseline", *(s.name for s in recipe.stages[:i])]
        if cls.needs_teacher and isinstance(teacher, str) and teacher not in earlier:
            loc = ("stages", i, "config", "teacher")
            raise RecipeError(
                f"teacher {teacher!r} is not an artifact made before stage {stage.name!r}",
                where=loaded.where(loc),
                key=_fmt_loc(loc),
                expected=f"one of {earlier}",
                hint=did_you_mean(teacher, earlier),
            )
        configs.append(config)
    loaded.stage_configs = configs
    from .plan import check_plan

    check_plan(loaded, plugins.strategies, adapters=plugins.architectures)
