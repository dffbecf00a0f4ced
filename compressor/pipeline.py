"""The orchestrator: resolve model and data, run the stages in order, evaluate, report.

Run directory layout (``<output.dir>/<recipe name>/``)::

    recipe.yaml            the recipe as given (as built, for ``compressor evaluate``)
    recipe.resolved.json   every default filled in, stage configs included
    manifest.json          versions, seed, git SHA, data fingerprint, hardware, stage status
    run.log                the console log
    artifacts/00-baseline/ the input model (files linked or copied from the source)
    artifacts/01-<stage>/  each finished stage's artifact (written to a ``.partial`` folder
                           first, renamed when the stage succeeds)
    work/01-<stage>/       checkpoints of a stage (Trainer), kept so a stage can resume
    work/01-<stage>.traceback.txt   the traceback of a stage that failed
    results.jsonl          one evaluation record per line, appended as they are measured
    results.json, report.md

A stage starts from the previous stage's artifact, or from the artifact its ``input`` key
names (``baseline`` or an earlier stage; see :func:`compressor.plan.stage_inputs`). Each
stage has a fingerprint: a hash of its input artifact's fingerprint, its strategy and its
validated config. ``resume=True`` reuses every finished stage whose fingerprint is unchanged
(:class:`StageCache`) and every evaluation record measured with the same model fingerprint
and settings (:class:`EvaluationCache`), and continues from the first stage that is
unfinished or changed. A recipe without stages evaluates its model (the baseline) only.

:class:`Run` holds one run's state and does it in steps (prepare the run directory, resolve
model and data, baseline, each stage, evaluation, report); :func:`run` loads a recipe file
and executes a :class:`Run`.

Under a launcher (``accelerate launch``, ``torchrun``, several nodes) every process executes
the same :class:`Run` (see :mod:`compressor.distributed`): rank 0 alone prepares the run
directory, resolves and downloads the model and data (the others then load them from the
cache), and writes artifacts, manifest, evaluation and report. A stage whose strategy trains
(:func:`stage_trains`) runs on every process, data-parallel through transformers' Trainer;
the processes other than rank 0 write their copy of the artifact into a scratch folder
(``work/NN-<stage>/rank-K.output``) that nothing reads. Every other stage runs on rank 0
while the others wait. A step that fails on one process ends all of them with its message
(:class:`compressor.distributed.RankFailed`); a process that fails or is killed while
training ends the launch (the launcher stops the others), and ``--resume`` continues from the
stage's last checkpoint as with one process. The run directory and the asset cache must be on
a file system every node sees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifact import DEFAULT_FORMAT, Artifact, Lineage, write_json_atomic
from .distributed import Ranks, describe
from .errors import CompressorError, StageError, StageFailed
from .manifest import (
    git_sha,
    hardware,
    library_versions,
    now,
    read_manifest,
    write_manifest,
)
from .plan import (
    check_architectures,
    check_format_chain,
    missing_training_data,
    model_format,
    read_model_config,
    stage_inputs,
    training_stages,
)
from .recipe import LoadedRecipe, load_recipe

log = logging.getLogger("compressor")

RESULTS_LINES = "results.jsonl"


@dataclass
class RunResult:
    """What :func:`run` returns.

    :ivar run_dir: the run directory.
    :ivar artifacts: artifact name -> :class:`Artifact`, baseline first.
    :ivar results: evaluation records (see :func:`compressor.evaluate.evaluate_artifact`).
    :ivar report: path of ``report.md``.
    """

    run_dir: Path
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None


def _sha(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def link_or_copy(src: str, dst: str) -> None:
    """``shutil.copytree``'s ``copy_function`` for artifacts: a hard link (no extra disk)
    where the file system allows one, a copy otherwise."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def setup_run_logging(run_dir: Path, ranks: Ranks | None = None) -> logging.Handler:
    """Log to ``run.log`` and the console; under a launcher only rank 0 writes ``run.log``
    and the other processes print warnings and errors only, prefixed with their rank."""
    if ranks is not None and not ranks.is_main:
        handler: logging.Handler = logging.NullHandler()
        log.addHandler(handler)
        log.setLevel(logging.WARNING)
        if not any(isinstance(h, _Console) for h in log.handlers):
            console = _Console()
            console.setFormatter(logging.Formatter(f"[compressor rank {ranks.rank}] %(message)s"))
            log.addHandler(console)
        return handler
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if not any(isinstance(h, _Console) for h in log.handlers):
        console = _Console()
        console.setFormatter(logging.Formatter("[compressor] %(message)s"))
        log.addHandler(console)
    return handler


@contextlib.contextmanager
def library_progress_bars(enabled: bool) -> Iterator[None]:
    """Turn the libraries' own progress bars (transformers' "Loading weights", the hub's
    downloads, datasets' "Map") off for the block when ``enabled`` is false, and back to
    what they were after; our bars and the Trainer's follow ``progress`` themselves."""
    if enabled:
        yield
        return
    import datasets
    import huggingface_hub.utils as hub
    import transformers.utils.logging as tf

    switches = [
        (tf.is_progress_bar_enabled(), tf.disable_progress_bar, tf.enable_progress_bar),
        (not hub.are_progress_bars_disabled(), hub.disable_progress_bars, hub.enable_progress_bars),
        (datasets.is_progress_bar_enabled(), datasets.disable_progress_bars, datasets.enable_progress_bars),
    ]
    for _, off, _ in switches:
        off()
    try:
        yield
    finally:
        for was_on, _, on in switches:
            if was_on:
                on()


def stage_trains(strategy_cls: type) -> bool:
    """Whether a strategy's stage runs on every process under a launcher (data-parallel).

    The strategy's ``trains`` class attribute decides; when it is ``None`` (the default of
    :class:`compressor.Strategy`), a strategy trains when its ``Config`` extends
    :class:`compressor.training.TrainingConfig`.
    """
    from .training.config import TrainingConfig

    trains = getattr(strategy_cls, "trains", None)
    if trains is None:
        config = getattr(strategy_cls, "Config", None)
        return isinstance(config, type) and issubclass(config, TrainingConfig)
    return bool(trains)


def batch_facts(config: Any, processes: int) -> dict[str, int] | None:
    """How a training stage's batch splits over processes (recorded in the manifest).

    :param config: a stage config; only :class:`compressor.training.TrainingConfig` ones
        have a batch.
    :param processes: processes of the run.
    :returns: ``global_batch`` (examples per optimiser step: ``batch_size`` x
        ``gradient_accumulation_steps``, whatever the processes), ``per_device_batch``
        (``batch_size / processes``), ``processes`` and ``gradient_accumulation_steps``;
        ``None`` for a config without a batch.
    """
    from .training.config import TrainingConfig

    if not isinstance(config, TrainingConfig):
        return None
    return {
        "global_batch": config.batch_size * config.gradient_accumulation_steps,
        "per_device_batch": config.batch_size // processes,
        "processes": processes,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
    }


class _Console(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class StageCache:
    """The stages an earlier attempt of the run finished: what ``--resume`` may reuse.

    Built from the earlier ``manifest.json``; a stage (or the baseline) is reusable when
    it finished, its fingerprint is unchanged and its artifact folder is complete.

    :param manifest: the earlier manifest, or ``None`` for a fresh run.
    """

    def __init__(self, manifest: dict[str, Any] | None = None) -> None:
        stages = (manifest or {}).get("stages", [])
        self.entries: dict[str, dict[str, Any]] = {
            s["name"]: s for s in stages if isinstance(s, dict) and isinstance(s.get("name"), str)
        }

    def reusable(self, name: str, fingerprint: str, folder: Path) -> dict[str, Any] | None:
        """The earlier manifest entry of ``name`` when its artifact can be reused.

        :param name: the stage's name (``"baseline"`` for the input model).
        :param fingerprint: the stage's fingerprint in this run.
        :param folder: the stage's artifact folder.
        :returns: the entry, or ``None`` when the stage must run (again).
        """
        old = self.entries.get(name)
        if (
            old
            and old.get("status") == "done"
            and old.get("fingerprint") == fingerprint
            and (folder / "lineage.json").exists()
        ):
            return old
        return None


class StageStore:
    """Finished stages shared between runs, by fingerprint: what ``compressor tune``'s trials
    reuse from one another (the teacher every trial fine-tunes the same way is trained once).

    ``index.json`` maps a stage fingerprint to the artifact folder of the run that made it;
    a run that needs that fingerprint links the folder's files into its own artifact folder
    (hard links where the file system allows, else copies) instead of running the stage.

    :param root: folder of ``index.json`` (created when needed).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.index_path = self.root / "index.json"

    def _index(self) -> dict[str, str]:
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def fetch(self, fingerprint: str, out_dir: Path) -> dict[str, Any] | None:
        """Link the artifact made with ``fingerprint`` into ``out_dir``.

        :returns: ``{"reused_from": <folder>}``, or ``None`` when no complete artifact with
            that fingerprint is known (``out_dir`` is then untouched).
        """
        folder = self._index().get(fingerprint)
        if not folder or not (Path(folder) / "lineage.json").exists():
            return None
        partial = out_dir.with_name(f".{out_dir.name}.shared")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(folder, partial, copy_function=link_or_copy)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(partial, out_dir)
        return {"reused_from": str(folder)}

    def add(self, fingerprint: str, folder: Path) -> None:
        """Record that ``folder`` holds the finished artifact of ``fingerprint``."""
        self.root.mkdir(parents=True, exist_ok=True)
        index = self._index()
        index.setdefault(fingerprint, str(Path(folder).resolve()))
        write_json_atomic(self.index_path, index)


class EvaluationCache:
    """The evaluation records measured so far in a run directory (``results.jsonl``).

    Records are kept by ``(model, fingerprint, settings_key)``; one model may have one
    record per device (CPU, CUDA), the latest one per device winning. A torn last line
    (a killed run) is skipped.

    :param path: the ``results.jsonl`` file (it may not exist yet).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: dict[tuple[Any, Any, Any], list[dict[str, Any]]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a torn last line from a killed run
                    continue
                if isinstance(record, dict):
                    self._keep(record)

    @staticmethod
    def key(record: dict[str, Any]) -> tuple[Any, Any, Any]:
        """``(model, fingerprint, settings_key)`` of a record."""
        return record.get("model"), record.get("fingerprint"), record.get("settings_key")

    def _keep(self, record: dict[str, Any]) -> None:
        key = self.key(record)
        others = [r for r in self.records.get(key, []) if r.get("device") != record.get("device")]
        self.records[key] = others + [record]

    def lookup(self, keys: list[tuple[str, str, str]]) -> list[dict[str, Any]] | None:
        """The records of every key, in order, or ``None`` when one was never measured.

        :param keys: ``(model, fingerprint, settings_key)`` per model wanted.
        """
        if not all(k in self.records for k in keys):
            return None
        return [r for k in keys for r in self.records[k]]

    def add(self, record: dict[str, Any]) -> None:
        """Append one record to ``results.jsonl`` (flushed to disk) and keep it.

        :param record: an evaluation record with ``fingerprint`` and ``settings_key`` set.
        """
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._keep(record)


class Run:
    """One run of a validated recipe, in steps.

    :meth:`execute` does every step in order: :meth:`prepare_run_dir`, :meth:`start`,
    :meth:`resolve`, :meth:`make_baseline`, :meth:`run_stage` for each stage,
    :meth:`evaluate`, :meth:`finish` and :meth:`report`, with the plugins' run hooks around
    them and the manifest recording each step.

    :param loaded: the recipe, phase 2 included (:func:`compressor.recipe.load_recipe`).
    :param run_dir: the run directory; default ``<output.dir>/<name>``.
    :param plugins: loaded :class:`compressor.plugins.Plugins` (default: process-wide).
    :param progress: show progress bars.
    :param recipe_text: the recipe's text, written as the run's ``recipe.yaml``; default:
        the bytes of ``loaded.path`` (read now, so ``--overwrite`` may delete a recipe kept
        in the run directory).
    :param ranks: the processes of the run (:class:`compressor.distributed.Ranks`);
        default: one process, or those a launcher started
        (:meth:`~compressor.distributed.Ranks.from_environment`, at :meth:`execute`).
    :param stage_store: finished stages shared with other runs (:class:`StageStore`): a
        stage whose fingerprint it holds is linked in, not run, and every stage this run
        finishes is added to it.
    """

    def __init__(
        self,
        loaded: LoadedRecipe,
        *,
        run_dir: str | Path | None = None,
        plugins: Any = None,
        progress: bool = True,
        recipe_text: str | None = None,
        ranks: Ranks | None = None,
        stage_store: StageStore | None = None,
    ) -> None:
        from .plugins import get_plugins

        self.loaded = loaded
        self.recipe = loaded.recipe
        self.plugins = plugins or get_plugins()
        self.progress = progress
        self.run_dir = Path(run_dir) if run_dir else Path(self.recipe.output.dir) / self.recipe.name
        self.recipe_bytes = recipe_text.encode("utf-8") if recipe_text is not None else loaded.path.read_bytes()
        self.recipe_hash = loaded.hash()
        self.inputs = stage_inputs(self.recipe.stages)
        self.manifest: dict[str, Any] = {}
        self.previous_status: str | None = None
        self.stage_cache = StageCache()
        self.evaluation_cache = EvaluationCache(self.run_dir / RESULTS_LINES)
        self.device = "cpu"
        self.cache_dir: Path | None = None
        self.model_dir: Path | None = None
        self.baseline_format = DEFAULT_FORMAT
        self.data: Any = None
        self.artifacts: dict[str, Artifact] = {}
        self.fingerprints: dict[str, str] = {}
        self.results: list[dict[str, Any]] = []
        self.report_path: Path | None = None
        self.ranks = ranks
        self.stage_store = stage_store

    # --- the whole run ----------------------------------------------------------------------

    def execute(self, *, resume: bool = False, overwrite: bool = False) -> RunResult:
        """Run every step; the manifest says ``done`` or ``failed`` at the end.

        :param resume: continue an existing run directory.
        :param overwrite: delete an existing run directory first.
        :returns: a :class:`RunResult`.
        :raises compressor.errors.CompressorError: bad recipe, data or model, or an existing
            run directory without ``resume``/``overwrite``; a strategy's own
            :class:`~compressor.errors.CompressorError` (such as
            :class:`~compressor.errors.HardwareUnsupported`) ends the run as itself.
        :raises compressor.errors.StageFailed: a stage crashed with any other exception
            (its ``__cause__``); the plugins' ``compressor_run_end`` hook receives the
            original exception.
        """
        if self.ranks is None:
            self.ranks = Ranks.from_environment()
        ranks = self.ranks
        with ranks.together("preparing the run directory"):
            if ranks.is_main:
                self.prepare_run_dir(resume=resume, overwrite=overwrite)
        if ranks.size > 1:
            # the other processes decide what to reuse from rank 0's view of the earlier run
            previous = ranks.share(self.stage_cache.entries if ranks.is_main else None)
            status = ranks.share(self.previous_status)
            if not ranks.is_main:
                self.stage_cache = StageCache({"stages": list(previous.values())})
                self.previous_status = status
        handler = setup_run_logging(self.run_dir, ranks)
        error: BaseException | None = None
        # a plugin's lookups without a registry (get_task(name), adapter_for(model)) get the run's
        with self.plugins.scope(), library_progress_bars(self.progress):
            try:
                with ranks.together("writing the manifest"):
                    self.start()
                self.resolve()
                self.make_baseline()
                if ranks.is_main:
                    self.plugins.hook.compressor_run_start(run_dir=self.run_dir, recipe=self.recipe)
                for index in range(1, len(self.recipe.stages) + 1):
                    self.run_stage(index)
                with ranks.together("evaluation and report"):
                    if ranks.is_main:
                        self.evaluate()
                        self.finish()
                        self.report()
                if ranks.size > 1:
                    self.results = ranks.share(self.results)
                    self.report_path = ranks.share(self.report_path)
                return self.result()
            except BaseException as exc:
                error = exc.error if isinstance(exc, StageFailed) else exc
                if self.manifest:
                    self.manifest.update(status="failed", finished_at=now(), error=f"{type(error).__name__}: {error}")
                    self.save()
                raise
            finally:
                try:
                    if ranks.is_main:
                        self.plugins.hook.compressor_run_end(run_dir=self.run_dir, results=self.results, error=error)
                finally:
                    log.removeHandler(handler)
                    handler.close()

    def result(self) -> RunResult:
        """What the run made so far, as a :class:`RunResult`."""
        return RunResult(
            run_dir=self.run_dir, artifacts=dict(self.artifacts), results=list(self.results), report=self.report_path
        )

    def save(self) -> None:
        """Write the manifest (atomically); only rank 0 writes it under a launcher."""
        if self.ranks is None or self.ranks.is_main:
            write_manifest(self.run_dir, self.manifest)

    # --- steps ------------------------------------------------------------------------------

    def prepare_run_dir(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Create the run directory, or take over an existing one.

        :param resume: keep an existing directory and reuse what it finished.
        :param overwrite: delete an existing directory first.
        :raises compressor.errors.CompressorError: the directory exists (and is not empty)
            without ``resume`` or ``overwrite``, or the path is a file.
        """
        run_dir = self.run_dir
        if run_dir.exists() and not run_dir.is_dir():
            raise CompressorError(
                f"the run directory {run_dir} is a file",
                hint="choose another run directory (--run-dir, or output.dir and name in the recipe)",
            )
        previous = read_manifest(run_dir) if run_dir.exists() else None
        if run_dir.exists() and any(run_dir.iterdir()) and not resume:
            if not overwrite:
                raise CompressorError(
                    f"run directory {run_dir} already exists",
                    hint="add --resume to continue it, or --overwrite to start again from scratch",
                )
            shutil.rmtree(run_dir)
            previous = None
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "artifacts").mkdir(exist_ok=True)
        (run_dir / "work").mkdir(exist_ok=True)
        self.previous_status = previous.get("status") if previous else None
        self.stage_cache = StageCache(previous)
        self.evaluation_cache = EvaluationCache(run_dir / RESULTS_LINES)

    def start(self) -> None:
        """Write ``recipe.yaml``, ``recipe.resolved.json`` and a first manifest (``running``)
        (rank 0 only under a launcher; the others keep the manifest in memory)."""
        if self.ranks is None or self.ranks.is_main:
            target = self.run_dir / "recipe.yaml"
            partial = target.with_name(".recipe.yaml.partial")
            partial.write_bytes(self.recipe_bytes)
            os.replace(partial, target)
            write_json_atomic(self.run_dir / "recipe.resolved.json", self.loaded.resolved())
        self.manifest = {
            "run": self.recipe.name,
            "recipe": str(self.loaded.path.resolve()),
            "recipe_hash": self.recipe_hash,
            "status": "running",
            "started_at": now(),
            "resumed_from": self.previous_status,
            "command": " ".join(sys.argv),
            "seed": self.recipe.seed,
            "git_sha": git_sha(Path.cwd()),
            "versions": library_versions(),
            "plugins": {n: i.version for n, i in self.plugins.infos.items() if not i.error},
            "hardware": hardware(),
            "processes": self.ranks.size if self.ranks is not None else 1,
            "stages": [],
        }
        self.save()

    def resolve(self) -> None:
        """Resolve the model and load the data; check the plan against what they are.

        Under a launcher rank 0 resolves first (downloading what the cache lacks) while the
        others wait; then the others resolve from the cache, and every process must have
        loaded the same data (fingerprint) as rank 0.

        The format chain is checked again with the format of the resolved model (an
        artifact folder of an earlier run keeps its own), the training stages need training
        rows, and the evaluated split must exist and hold rows: all before any stage runs.

        :raises compressor.errors.CompressorError: at the recipe's file:line (model, data,
            task type, format chain, training data, ``evaluation.accuracy_split``); data that
            differs between processes.
        :raises compressor.distributed.RankFailed: when another process failed to resolve.
        """
        ranks = self.ranks or Ranks()
        with ranks.together("resolving the model and data on rank 0"):
            if ranks.is_main:
                self._resolve_here()
        with ranks.together("resolving the model and data"):
            if not ranks.is_main:
                self._resolve_here()
        if ranks.size > 1:
            fingerprints = ranks.gather(self.data.fingerprint)
            if len(set(fingerprints)) > 1:
                raise CompressorError(
                    f"the processes loaded different data (fingerprints by rank: {fingerprints})",
                    hint="give every node the same data files and the same asset cache "
                    "(a shared file system)",
                )

    def _resolve_here(self) -> None:
        import torch

        from .sources.datasets import load_task_data
        from .sources.models import resolve_model
        from .sources.packaged import cache_root

        recipe, loaded = self.recipe, self.loaded
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        cache = self.cache_dir = cache_root()
        log.info("resolving model %r (source: %s)", recipe.model.name, recipe.model.source)
        try:
            model_name = recipe.model.name
            # a relative local folder is relative to the recipe's folder, then to the cwd
            if recipe.model.source in ("auto", "local") and (loaded.base_dir / model_name).is_dir():
                model_name = str(loaded.base_dir / model_name)
            model_dir = resolve_model(
                model_name,
                recipe.model.source,
                sources=self.plugins.model_sources,
                cache_dir=cache,
                revision=recipe.model.revision,
                trust_remote_code=recipe.model.trust_remote_code,
            )
        except CompressorError as exc:
            _locate(exc, loaded)
            raise
        log.info("loading data")
        try:
            data = load_task_data(
                recipe.task.data,
                datasets_registry=self.plugins.datasets,
                cache_dir=cache,
                seed=recipe.seed,
                base_dir=loaded.base_dir,
                task_type=recipe.task.type,
                tasks_registry=self.plugins.tasks,
                options=loaded.task_options,
            )
        except CompressorError as exc:
            _locate(exc, loaded)
            raise
        if data.type != recipe.task.type:
            raise CompressorError(
                f"data set {data.name!r} is {data.type!r} data but the task is {recipe.task.type!r}",
                where=loaded.where(("task", "type")),
                key="task.type",
                expected=repr(data.type),
            )
        self.model_dir, self.data = Path(model_dir), data
        self.baseline_format = model_format(model_dir)
        check_format_chain(loaded, self.plugins.strategies, baseline_format=self.baseline_format)
        check_architectures(
            loaded, self.plugins.strategies, config=read_model_config(model_dir),
            adapters=self.plugins.architectures,
        )
        self._check_data()
        self.manifest["model_dir"] = str(model_dir)
        self.manifest["data"] = {
            "name": data.name,
            "fingerprint": data.fingerprint,
            "splits": {k: len(v) for k, v in data.splits.items()},
            "labels": data.label_names,
        }
        self.manifest["device"] = self.device
        self.save()

    def _check_data(self) -> None:
        """Training rows for the stages that train; rows in the evaluated split."""
        data, loaded = self.data, self.loaded
        train = data.splits.get("train")
        trainers = training_stages(loaded, self.plugins.strategies)
        if trainers and (train is None or len(train) == 0):
            raise missing_training_data(loaded, trainers[0][1], f"the data {data.name!r} has no training rows")
        if not self.evaluated_names():
            return
        split = self.recipe.evaluation.accuracy_split
        sizes = {k: len(v) for k, v in data.splits.items()}
        with_rows = [k for k, n in sizes.items() if n]
        if sizes.get(split, 0) == 0:
            from .suggest import did_you_mean

            state = "has no rows" if split in sizes else "is not a split of the data"
            hint = did_you_mean(split, with_rows) if split not in sizes else None
            if hint is None and with_rows:
                hint = f"set evaluation.accuracy_split to {with_rows[-1]!r}"
            raise CompressorError(
                f"the evaluated split {split!r} {state} (the data gives "
                f"{', '.join(f'{k} {n}' for k, n in sizes.items())} rows)",
                where=loaded.where(("evaluation", "accuracy_split")),
                key="evaluation.accuracy_split",
                expected=f"a split with rows: one of {with_rows}",
                hint=hint,
            )

    def make_baseline(self) -> Artifact:
        """Link (or copy) the input model into ``artifacts/00-baseline`` (kept on resume;
        rank 0 only under a launcher).

        :returns: the baseline :class:`Artifact`, in the format of the resolved model.
        """
        recipe = self.recipe
        ranks = self.ranks or Ranks()
        fingerprint = _sha(recipe.model.model_dump(), recipe.task.model_dump(), recipe.seed, self.data.fingerprint)
        baseline_dir = self.run_dir / "artifacts" / "00-baseline"
        with ranks.together("writing the baseline"):
            if ranks.is_main:
                self._write_baseline(fingerprint, baseline_dir)
        artifact = Artifact.load(baseline_dir)
        self.artifacts["baseline"] = artifact
        self.fingerprints["baseline"] = fingerprint
        self.manifest["stages"].append(
            {"name": "baseline", "strategy": None, "status": "done", "fingerprint": fingerprint, "artifact": str(baseline_dir)}
        )
        self.save()
        return artifact

    def _write_baseline(self, fingerprint: str, baseline_dir: Path) -> None:
        if self.stage_cache.reusable("baseline", fingerprint, baseline_dir) is None:
            shutil.rmtree(baseline_dir, ignore_errors=True)
            partial = baseline_dir.with_name(".00-baseline.partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(self.model_dir, partial, copy_function=link_or_copy, ignore=shutil.ignore_patterns(".git*"))
            Artifact(
                name="baseline",
                path=partial,
                format=self.baseline_format,
                lineage=Lineage(stage="baseline", recipe_hash=self.recipe_hash, extra={"source": str(self.model_dir)}),
            ).save()
            os.replace(partial, baseline_dir)

    def run_stage(self, index: int) -> Artifact:
        """Run stage ``index``, or reuse its artifact from an earlier attempt.

        Under a launcher a stage whose strategy trains (:func:`stage_trains`) runs on every
        process, the others' artifact going to a scratch folder; any other stage runs on
        rank 0 while the others wait.

        :param index: 1-based position among the recipe's stages; the stages before it
            (and the baseline) must be done.
        :returns: the stage's :class:`Artifact`.
        :raises compressor.errors.StageError: the input's format does not suit the
            strategy, or the strategy returned something other than its artifact.
        :raises compressor.errors.CompressorError: raised by the strategy, as itself.
        :raises compressor.errors.StageFailed: the strategy raised any other exception;
            the traceback is saved in ``work/<NN>-<stage>.traceback.txt``
            (``work/<NN>-<stage>.rank<K>.traceback.txt`` for rank K > 0).
        :raises compressor.distributed.RankFailed: the stage failed on another process.
        """
        recipe, plugins = self.recipe, self.plugins
        ranks = self.ranks or Ranks()
        stage, config = recipe.stages[index - 1], self.loaded.stage_configs[index - 1]
        strategy_cls = plugins.strategy(stage.strategy)
        source = self.inputs[index - 1]
        artifact = self.artifacts[source]
        fingerprint = _sha(self.fingerprints[source], stage.strategy, config.model_dump(mode="json"))
        self.fingerprints[stage.name] = fingerprint
        folder = f"{index:02d}-{stage.name}"
        out_dir = self.run_dir / "artifacts" / folder
        work_dir = self.run_dir / "work" / folder
        entry: dict[str, Any] = {
            "name": stage.name,
            "strategy": stage.strategy,
            "status": "pending",
            "fingerprint": fingerprint,
            "artifact": str(out_dir),
        }
        batch = batch_facts(config, ranks.size) if stage_trains(strategy_cls) else None
        if batch is not None:
            entry["batch"] = batch
        self.manifest["stages"].append(entry)
        old = self.stage_cache.reusable(stage.name, fingerprint, out_dir)
        if old is None and self.stage_store is not None and ranks.is_main:
            old = self.stage_store.fetch(fingerprint, out_dir)
        old = ranks.share(old)
        if old is not None:
            done = Artifact.load(out_dir)
            self.artifacts[stage.name] = done
            entry.update({k: old[k] for k in ("started_at", "finished_at", "duration_s", "reused_from") if k in old})
            entry["status"] = "done"
            entry["reused"] = True
            log.info(
                "stage %d %r: finished in %s, reused", index, stage.name,
                old.get("reused_from", "an earlier run"),
            )
            self.save()
            return done
        if artifact.format not in strategy_cls.input_formats:  # a strategy that made another format than it declares
            raise StageError(
                f"strategy {stage.strategy!r} takes {list(strategy_cls.input_formats)} models, "
                f"but its input {artifact.name!r} is a {artifact.format!r} model",
                where=self.loaded.where(("stages", index - 1, "strategy")),
                key=f"stages[{index - 1}].strategy",
                hint="reorder the stages so that export and quantisation come last, or "
                "start this stage from another artifact with 'input: <name>'",
            )
        partial = out_dir.with_name(f".{folder}.partial")
        everywhere = ranks.size > 1 and stage_trains(strategy_cls)
        if ranks.size > 1 and not everywhere:
            with ranks.together(f"stage {stage.name!r} (on rank 0)"):
                if ranks.is_main:
                    self._prepare_stage(out_dir, work_dir, partial, fingerprint)
                    self._apply_stage(index, strategy_cls, artifact, config, entry, partial, work_dir, partial)
            return self._load_stage(stage.name, out_dir, entry)
        with ranks.together(f"preparing stage {stage.name!r}"):
            if ranks.is_main:
                self._prepare_stage(out_dir, work_dir, partial, fingerprint)
                entry.update(status="running", started_at=now())
                self.save()  # before any process can record a failure of its own
        # rank K > 0 trains with the others but its copy of the artifact goes nowhere
        output_dir = partial if ranks.is_main else work_dir / f"rank-{ranks.rank}.output"
        if not ranks.is_main:
            shutil.rmtree(output_dir, ignore_errors=True)
            output_dir.mkdir(parents=True)
        # no exchange on failure here: the others may be inside a collective of the
        # Trainer; this process ends and the launcher stops them
        produced = self._apply_stage(index, strategy_cls, artifact, config, entry, partial, work_dir, output_dir)
        if not everywhere:
            return produced
        with ranks.together(f"saving stage {stage.name!r}"):
            if ranks.is_main:
                self._finish_stage(stage.name, strategy_cls, produced, partial, out_dir, entry)
        if not ranks.is_main:
            shutil.rmtree(output_dir, ignore_errors=True)
        return self._load_stage(stage.name, out_dir, entry)

    def _prepare_stage(self, out_dir: Path, work_dir: Path, partial: Path, fingerprint: str) -> None:
        # A changed stage invalidates its old output and checkpoints.
        shutil.rmtree(out_dir, ignore_errors=True)
        stamp = work_dir / "fingerprint"
        if work_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
            shutil.rmtree(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)

    def _load_stage(self, name: str, out_dir: Path, entry: dict[str, Any]) -> Artifact:
        """The stage's artifact as rank 0 saved it (every process)."""
        done = Artifact.load(out_dir)
        self.artifacts[name] = done
        entry["status"] = "done"
        return done

    def _apply_stage(
        self, index: int, strategy_cls: type, artifact: Artifact, config: Any, entry: dict[str, Any],
        partial: Path, work_dir: Path, output_dir: Path,
    ) -> Artifact:
        """Run the strategy; on rank 0 (or alone) also check, save and publish its artifact."""
        import transformers

        from .strategy import StageContext
        from .tasks import get_task

        recipe, plugins = self.recipe, self.plugins
        ranks = self.ranks or Ranks()
        stage = recipe.stages[index - 1]
        folder = f"{index:02d}-{stage.name}"
        context = StageContext(
            stage_name=stage.name,
            output_dir=output_dir,
            work_dir=work_dir,
            data=self.data,
            seed=recipe.seed,
            artifacts=dict(self.artifacts),
            recipe_hash=self.recipe_hash,
            logger=log,
            progress=self.progress and ranks.is_main,
            device=self.device,
            base_dir=self.loaded.base_dir,
            cache_dir=self.cache_dir,
            plugins=plugins,
        )
        if entry.get("status") != "running":
            entry.update(status="running", started_at=now())
            self.save()
        log.info("stage %d/%d %r: %s", index, len(recipe.stages), stage.name, stage.strategy)
        if ranks.is_main:
            plugins.hook.compressor_stage_start(stage=stage.name, strategy=stage.strategy, context=context)
        t0 = time.perf_counter()
        transformers.set_seed(recipe.seed)
        try:
            with plugins.scope():
                produced = strategy_cls().apply(artifact, config, context)
            if not isinstance(produced, Artifact):
                raise StageError(
                    f"strategy {stage.strategy!r} returned {type(produced).__name__}, not an Artifact"
                )
            if Path(produced.path).resolve() != output_dir.resolve():
                raise StageError(
                    f"strategy {stage.strategy!r} wrote its artifact to {produced.path}, "
                    f"not to the stage's output_dir"
                )
            if ranks.is_main:
                # task files a strategy does not write (a sentence-transformers pooling config)
                task = get_task(self.data.type, plugins.tasks)
                task.complete_artifact(Path(artifact.path), Path(produced.path))
            if ranks.is_main:
                produced.save()
        except BaseException as exc:
            entry.update(
                status="failed",
                finished_at=now(),
                duration_s=round(time.perf_counter() - t0, 2),
                error=f"{type(exc).__name__}: {exc}" if ranks.is_main else f"rank {ranks.rank}: {describe(exc)}",
            )
            suffix = "" if ranks.is_main else f".rank{ranks.rank}"
            tb = self.run_dir / "work" / f"{folder}{suffix}.traceback.txt"
            tb.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
            entry["traceback"] = str(tb)
            self.manifest["failed_stage"] = stage.name
            if ranks.is_main:
                self.save()
                plugins.hook.compressor_stage_end(stage=stage.name, strategy=stage.strategy, artifact=None, error=exc)
                shutil.rmtree(partial, ignore_errors=True)
            else:
                self._record_rank_failure(stage.name, entry)
            if isinstance(exc, CompressorError) or not isinstance(exc, Exception):
                raise  # input errors end the run as themselves; so do KeyboardInterrupt & co.
            raise StageFailed(
                stage.name, index, strategy=stage.strategy, run_dir=self.run_dir, traceback_path=tb, error=exc
            ) from exc
        entry["duration_s"] = round(time.perf_counter() - t0, 2)
        if ranks.size > 1 and stage_trains(strategy_cls):
            return produced  # rank 0 publishes it once every process is done
        self._finish_stage(stage.name, strategy_cls, produced, partial, partial.with_name(folder), entry)
        return self.artifacts[stage.name]

    def _finish_stage(
        self, name: str, strategy_cls: type, produced: Artifact, partial: Path, out_dir: Path, entry: dict[str, Any]
    ) -> None:
        os.replace(partial, out_dir)
        done = Artifact.load(out_dir)
        self.artifacts[name] = done
        entry.update(status="done", finished_at=now())
        self.save()
        if self.stage_store is not None:
            self.stage_store.add(entry["fingerprint"], out_dir)
        self.plugins.hook.compressor_stage_end(
            stage=name, strategy=getattr(strategy_cls, "name", None), artifact=done, error=None
        )
        log.info("stage %r done in %.1f s", name, entry["duration_s"])

    def _record_rank_failure(self, name: str, entry: dict[str, Any]) -> None:
        """A process other than rank 0 failed in a training stage: rank 0 is blocked in the
        Trainer and will be stopped by the launcher, so this process records the failure in
        the manifest itself."""
        manifest = read_manifest(self.run_dir)
        if not manifest:
            return
        for old in manifest.get("stages", []):
            if isinstance(old, dict) and old.get("name") == name:
                old.update({k: entry[k] for k in ("status", "finished_at", "duration_s", "error", "traceback")})
        manifest.update(status="failed", failed_stage=name, finished_at=now(), error=entry["error"])
        write_manifest(self.run_dir, manifest)

    def evaluated_names(self) -> list[str]:
        """The artifacts the recipe evaluates, in report order (``baseline`` first)."""
        names = ["baseline"] if self.recipe.evaluation.baseline else []
        return names + [s.name for s in self.recipe.stages if s.evaluate]

    def evaluate(self) -> list[dict[str, Any]]:
        """Measure every evaluated artifact with the same settings, or reuse the records.

        All models are measured together so their latency is timed in interleaved rounds;
        ratios between them (speedups) then survive a busy machine. Records measured in an
        earlier attempt with the same model fingerprints and settings are reused.

        :returns: the evaluation records (also in :attr:`results`).
        """
        from .evaluate import evaluate_artifacts

        settings = self.recipe.evaluation
        settings_key = _sha(settings.model_dump(mode="json"))
        wanted = self.evaluated_names()
        keys = [(name, self.fingerprints[name], settings_key) for name in wanted]
        cached = self.evaluation_cache.lookup(keys)
        if not wanted:
            log.info("evaluation: no model is evaluated (evaluation.baseline and every stage's evaluate are off)")
            results: list[dict[str, Any]] = []
        elif cached is not None:
            log.info("evaluation: every model was measured in an earlier run, reused")
            results = cached
        else:
            log.info("evaluating %s", ", ".join(wanted))
            with self.plugins.scope():  # a plugin backend's load may look its task up by name
                results = evaluate_artifacts(
                    [self.artifacts[name] for name in wanted], self.data, evaluation_settings(settings),
                    progress=self.progress, output_dir=self.run_dir, backends=self.plugins.backends,
                    tasks=self.plugins.tasks,
                )
            for record in results:
                record.update(fingerprint=self.fingerprints[record["model"]], settings_key=settings_key)
                self.evaluation_cache.add(record)
        self.results = results
        return results

    def finish(self) -> None:
        """Mark the run ``done`` in the manifest."""
        self.manifest.update(status="done", finished_at=now())
        self.manifest.pop("failed_stage", None)
        self.save()

    def report(self) -> Path:
        """Write the report files and a model card into every evaluated artifact.

        :returns: the path of ``report.md``.
        """
        from .report import write_model_cards, write_report

        self.report_path = write_report(self.run_dir, self.results, title=self.recipe.name, manifest=self.manifest)
        write_model_cards(
            self.results, self.artifacts, recipe_text=self.recipe_bytes.decode("utf-8", errors="replace"),
            run_name=self.recipe.name, backends=self.plugins.backends,
        )
        log.info("report: %s", self.report_path)
        return self.report_path


def run(
    recipe_path: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    run_dir: str | Path | None = None,
    plugins: Any = None,
    progress: bool = True,
    ranks: Ranks | None = None,
) -> RunResult:
    """Run a recipe end to end.

    :param recipe_path: the YAML recipe.
    :param resume: continue an existing run directory from its first unfinished stage.
    :param overwrite: delete an existing run directory and start again.
    :param run_dir: override ``<output.dir>/<name>``.
    :param plugins: a loaded :class:`compressor.plugins.Plugins` (default: process-wide).
    :param progress: show progress bars.
    :param ranks: the run's processes; default: one, or those a launcher started (see
        :mod:`compressor.distributed`). Under a launcher every process calls this function;
        the result's ``results`` and ``report`` are rank 0's on every process.
    :returns: a :class:`RunResult`.
    :raises compressor.distributed.RankFailed: (a ``CompressorError``) another process of
        a launched run failed; the message is that process's.
    :raises compressor.errors.CompressorError: bad recipe, data or model (the CLI prints it
        and exits with status 2), checked before any stage runs where it can be; a
        strategy's own ``CompressorError`` ends the run as itself.
    :raises compressor.errors.StageFailed: a stage raised any other exception (kept as
        ``__cause__``), after the manifest recorded which stage failed and where its
        traceback is (the CLI exits with status 1).
    """
    from .plugins import get_plugins

    plugins = plugins or get_plugins()
    loaded = load_recipe(recipe_path, plugins=plugins)
    return Run(loaded, run_dir=run_dir, plugins=plugins, progress=progress, ranks=ranks).execute(
        resume=resume, overwrite=overwrite
    )


def evaluation_settings(cfg: Any) -> Any:
    """The evaluator's :class:`~compressor.evaluate.EvaluationSettings` for a recipe's
    ``evaluation`` block (``baseline`` is the pipeline's, not the evaluator's)."""
    from .evaluate import EvaluationSettings

    data = cfg.model_dump()
    data.pop("baseline", None)
    return EvaluationSettings.model_validate(data)


def _locate(exc: CompressorError, loaded: LoadedRecipe) -> None:
    """Point a source error at the recipe's file:line for its key path.

    A file path the source put in ``where`` (the data file at fault) moves into the message.
    """
    if not exc.key or not exc.key.split(".")[0] in ("model", "task"):
        return
    loc: list[Any] = []
    for part in exc.key.replace("]", "").replace("[", ".").split("."):
        if part:
            loc.append(int(part) if part.isdigit() else part)
    if exc.where and exc.where not in exc.message:
        exc.message += f" (in {exc.where})"
    exc.where = loaded.where(tuple(loc))
    exc.args = (exc.format(),)
