"""``compressor tune``: search a recipe's space for the fastest model within a loss bound.

Each trial is a whole run of the recipe (:class:`compressor.pipeline.Run`) with the trial's
values set and its left-out optional stages removed (:func:`compressor.tune.space.trial_recipe`).
Optuna proposes the values (its sampler: TPE, NSGA-II, random or grid) and keeps the study in
``study.journal`` (journal file storage), so a killed search continues with ``--resume``:
every finished trial is kept, and a trial that was running is marked ``interrupted`` and run
again with the same values. Trials share finished stages by fingerprint
(:class:`compressor.pipeline.StageStore`): the teacher every trial fine-tunes alike is
trained once.

Selection is honest: every candidate is scored against the reference on the *selection*
split (validation), with the paired bootstrap interval of (candidate - reference) on the
task's headline metric (:mod:`compressor.tune.bound`); it passes when the interval's lower
end is at or above ``-max_loss``. With ``fidelity.subset`` a candidate is first scored on
that many rows, and only one whose interval can still reach the bound is scored on the whole
split and timed. Only the chosen model and the Pareto front are then scored on the
evaluated (test) split.

Tune folder (``<output.dir>/<name>/``, or ``--run-dir``)::

    tune.json              state: recipe hash, search, seconds spent, status, the best trial
    study.journal          the Optuna study
    trials/NNNN/           each trial's run directory (a normal run folder)
    stages/index.json      finished stages by fingerprint, shared by the trials
    trials.json, trials.csv  one row per trial: values, metric with interval, latency with
                           interval, status, reason, stages reused
    best/                  the recommended artifact with its model card
    test/                  the standard report of the models scored on the test split
    results.json, manifest.json   those test records (``compressor report``/``compare`` read them)
    report.md, report.html, tune-pareto.png   the search report

Under ``torchrun``/``accelerate launch`` trials run one after another and each trial's
training stages are data-parallel as in ``compressor run`` (every process executes the
same search; rank 0 writes).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..artifact import Artifact
from ..distributed import RankFailed, Ranks
from ..errors import CompressorError, RecipeError, StageFailed
from ..io import write_json_atomic, write_text_atomic
from ..pipeline import (
    Run,
    StageStore,
    evaluation_settings,
    library_progress_bars,
    link_or_copy,
    setup_run_logging,
)
from ..recipe import LoadedRecipe, load_recipe, load_recipe_text
from ..search import SearchConfig
from .bound import Bound, bound_from_record
from .space import effective_point, sample, trial_recipe

log = logging.getLogger("compressor")

#: Exit status of ``compressor tune`` when no candidate meets the constraint.
EXIT_NOTHING_PASSES = 3

STATE_FILE = "tune.json"
JOURNAL_FILE = "study.journal"
TRIALS_JSON = "trials.json"
TRIALS_CSV = "trials.csv"

#: Trial statuses: passed the bound; scored but missed it; pruned on the subset; a stage
#: failed; killed while running (run again).
STATUSES = ("passed", "missed", "pruned", "failed", "interrupted")


class NothingPasses(CompressorError):
    """No trial of the search met the constraint (exit status :data:`EXIT_NOTHING_PASSES`).

    The tune folder's report names the closest candidate and its bound.
    """

    exit_status = EXIT_NOTHING_PASSES


@dataclass
class TrialRecord:
    """One trial of the search, as ``trials.json`` holds it.

    :ivar number: Optuna's trial number (0-based).
    :ivar params: space key -> value.
    :ivar status: one of :data:`STATUSES`.
    :ivar reason: why it failed, was pruned or missed the bound.
    :ivar bound: the selection-split :class:`~compressor.tune.bound.Bound`, as JSON.
    :ivar objectives: objective label -> value (latency and throughput as ratios to the reference).
    :ivar latency: ``{"p50_ms", "p50_ci_ms", "reference_p50_ms", "batch_size", "sequence_length"}``.
    :ivar size: ``{"disk_bytes", "params"}`` of the candidate.
    :ivar stages_reused / stages_run: stage names linked from earlier trials / run here.
    :ivar duration_s: seconds the trial took; ``run_dir``: its run folder; ``candidate``:
        the candidate artifact's folder.
    """

    number: int
    params: dict[str, Any]
    status: str = "running"
    reason: str | None = None
    bound: dict[str, Any] | None = None
    objectives: dict[str, float] = field(default_factory=dict)
    latency: dict[str, Any] | None = None
    size: dict[str, Any] | None = None
    stages_reused: list[str] = field(default_factory=list)
    stages_run: list[str] = field(default_factory=list)
    duration_s: float | None = None
    run_dir: str | None = None
    candidate: str | None = None
    fidelity: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialRecord:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class TuneResult:
    """What :func:`tune` returns.

    :ivar tune_dir: the tune folder.
    :ivar trials: every trial, in order.
    :ivar best: the recommended trial (fastest passing on the first objective), or ``None``.
    :ivar front: trial numbers on the Pareto front (metric vs the first objective).
    :ivar best_dir: ``best/`` when there is a best trial.
    :ivar report: ``report.md``.
    :ivar test_records: the test-split records of the reference, best and front.
    """

    tune_dir: Path
    trials: list[TrialRecord]
    best: TrialRecord | None
    front: list[int]
    best_dir: Path | None
    report: Path | None
    test_records: list[dict[str, Any]] = field(default_factory=list)


class _TrialRun(Run):
    """A trial's run: the stages only; the tuner scores the candidate itself."""

    def evaluate(self) -> list[dict[str, Any]]:
        self.results = []
        return []

    def report(self) -> Path:  # type: ignore[override]
        self.report_path = None
        return self.run_dir / "manifest.json"


def _search_hash(loaded: LoadedRecipe) -> str:
    """Hash of the recipe minus the budget (a resumed search may get more trials or time)."""
    import hashlib

    data = loaded.resolved()
    search = dict(data.get("search") or {})
    search.pop("budget", None)
    data["search"] = search
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Tuner:
    """One search, in steps: :meth:`prepare`, :meth:`search` (trials until the budget is
    spent), :meth:`finish` (test scoring of the chosen model and the front, best/, reports).

    :param loaded: a validated recipe with a ``search`` block.
    :param tune_dir: the tune folder; default ``<output.dir>/<name>``.
    :param plugins: loaded plugins (default: process-wide).
    :param trials / time_s: override the budget's trials / seconds.
    :param progress: progress bars inside the trials.
    :param shared_stages: folder of the stage store (:class:`~compressor.pipeline.StageStore`);
        default ``<tune folder>/stages``. Searches given one folder reuse one another's stages.
    :param ranks: the processes of a launched search (:class:`compressor.distributed.Ranks`):
        rank 0 samples, scores and writes; every process runs each trial's stages, the
        training ones data-parallel (as ``compressor run``); default one process.
    """

    def __init__(
        self,
        loaded: LoadedRecipe,
        *,
        tune_dir: str | Path | None = None,
        plugins: Any = None,
        trials: int | None = None,
        time_s: float | None = None,
        progress: bool = False,
        shared_stages: str | Path | None = None,
        ranks: Ranks | None = None,
    ) -> None:
        from ..plugins import get_plugins

        search = loaded.recipe.search
        if search is None:
            raise RecipeError(
                "the recipe has no search block: there is nothing to tune",
                where=loaded.where(()),
                key="search",
                expected="a search: block (objective, constraint, space, budget)",
                hint="see docs/tune.md, or run the recipe as written with 'compressor run'",
            )
        self.loaded = loaded
        self.search: SearchConfig = search
        self.plugins = plugins or get_plugins()
        self.tune_dir = Path(tune_dir) if tune_dir else Path(loaded.recipe.output.dir) / loaded.recipe.name
        self.max_trials = trials if trials is not None else search.budget.trials
        self.max_time_s = time_s if time_s is not None else search.budget.time_s
        self.progress = progress
        self.ranks = ranks or Ranks()
        self.records: dict[int, TrialRecord] = {}
        self.state: dict[str, Any] = {}
        self.store = StageStore(shared_stages or self.tune_dir / "stages")
        self.data_text = loaded.path.read_text(encoding="utf-8")
        self.recipe_data = loaded.recipe.model_dump(mode="json", exclude_unset=True)
        self._stage_names = [s.name for s in loaded.recipe.stages]
        self.study: Any = None
        self.session_start = time.monotonic()
        self.spent_before = 0.0

    # --- folder and state -------------------------------------------------------------------

    def prepare(self, *, resume: bool = False, overwrite: bool = False) -> None:
        """Create the tune folder, or take over an existing one (``resume``).

        :raises CompressorError: the folder exists without ``resume``/``overwrite``, or it
            holds a search of a different recipe (space, constraint, objectives).
        """
        d = self.tune_dir
        if d.exists() and any(d.iterdir()):
            if overwrite:
                shutil.rmtree(d)
            elif not resume:
                raise CompressorError(
                    f"tune folder {d} already exists",
                    hint="add --resume to continue the search, or --overwrite to start again",
                )
        d.mkdir(parents=True, exist_ok=True)
        (d / "trials").mkdir(exist_ok=True)
        state_path = d / STATE_FILE
        digest = _search_hash(self.loaded)
        if state_path.exists():
            self.state = json.loads(state_path.read_text(encoding="utf-8"))
            if self.state.get("search_hash") != digest:
                raise CompressorError(
                    f"the search in {d} was started from a different recipe (space, constraint, "
                    "objectives or stages changed)",
                    hint="--overwrite to start the search again, or --run-dir for a new folder",
                )
            self.spent_before = float(self.state.get("spent_s", 0.0))
        else:
            self.state = {"recipe": str(self.loaded.path.resolve()), "search_hash": digest, "spent_s": 0.0}
        if (d / TRIALS_JSON).exists():
            for row in json.loads((d / TRIALS_JSON).read_text(encoding="utf-8")):
                rec = TrialRecord.from_json(row)
                self.records[rec.number] = rec
        write_text_atomic(d / "recipe.yaml", self.data_text)
        self.state.update(status="running")
        self._save_state()

    def _save_state(self) -> None:
        self.state["spent_s"] = round(self.spent(), 1)
        write_json_atomic(self.tune_dir / STATE_FILE, self.state)

    def spent(self) -> float:
        """Seconds of search so far, earlier ``--resume`` sessions included."""
        return self.spent_before + (time.monotonic() - self.session_start)

    def _save_trials(self) -> None:
        rows = [self.records[k].to_json() for k in sorted(self.records)]
        write_json_atomic(self.tune_dir / TRIALS_JSON, rows)
        write_text_atomic(self.tune_dir / TRIALS_CSV, trials_csv(list(self.records.values())))

    # --- the study --------------------------------------------------------------------------

    def open_study(self) -> Any:
        """Create or load the Optuna study (journal storage in the tune folder); trials a
        killed session left running are marked failed in the study, ``interrupted`` in
        ``trials.json``, and queued to run again with the same values."""
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        from optuna.trial import TrialState

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = JournalStorage(JournalFileBackend(str(self.tune_dir / JOURNAL_FILE)))
        self.study = optuna.create_study(
            study_name=self.loaded.recipe.name,
            storage=storage,
            sampler=self._sampler(),
            directions=self.search.directions,
            load_if_exists=True,
        )
        if not self.study.trials:
            for point in self.search.enqueue:
                self.study.enqueue_trial(_optuna_params(self.search, point))
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study.tell(trial.number, state=TrialState.FAIL)
            rec = self.records.get(trial.number) or TrialRecord(number=trial.number, params=dict(trial.params))
            rec.status = "interrupted"
            rec.reason = "the search was stopped while this trial ran; its values are run again"
            self.records[trial.number] = rec
            self.study.enqueue_trial(dict(trial.params), skip_if_exists=False)
            log.info("[tune] trial %d was interrupted: queued to run again", trial.number)
        self._save_trials()
        return self.study

    def _sampler(self) -> Any:
        import optuna

        from .space import grid_space

        kind, seed = self.search.sampler, self.search.seed
        if kind == "tpe":  # constraints: Trial.set_constraint, which TPE and NSGA-II read
            startup = min(10, max(2, (self.max_trials or 10) // 3))
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        if kind == "grid":
            return optuna.samplers.GridSampler(grid_space(self.search), seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)

    def finished(self) -> list[TrialRecord]:
        """Trials that count against the budget (interrupted ones do not)."""
        return [r for r in self.records.values() if r.status in ("passed", "missed", "pruned", "failed")]

    def budget_left(self) -> bool:
        if self.max_trials is not None and len(self.finished()) >= self.max_trials:
            return False
        if self.max_time_s is not None and self.spent() >= self.max_time_s:
            return False
        if self.search.sampler == "grid":
            from .space import grid_space

            size = 1
            for values in grid_space(self.search).values():
                size *= len(values)
            if len(self.finished()) >= size:
                return False
        return True

    # --- one trial --------------------------------------------------------------------------

    def run_trial(self) -> TrialRecord:
        """Ask the study for values, run the trial's stages, score its candidate, tell the
        study. A failed stage fails the trial (recorded with its reason); an error in the
        model or data (before any stage runs) ends the search."""
        from optuna.trial import TrialState

        main = self.ranks.is_main
        trial = number = point = None
        if main:
            trial = self.study.ask()
            point = sample(trial, self.search)
            number = trial.number
        number, point = self.ranks.share((number, point))
        rec = TrialRecord(number=number, params=point)
        rec.run_dir = str(self.tune_dir / "trials" / f"{number:04d}")
        self.records[number] = rec
        if main:
            self._save_trials()
        t0 = time.monotonic()
        state, values = TrialState.FAIL, None
        same = self._same_values(rec)
        if same is not None:  # the sampler proposed values already scored: reuse the result
            if main:
                state, values = self._copy_result(rec, same, trial)
            return rec
        try:
            run = self._run_stages(rec, point)
            with self.ranks.together(f"scoring trial {number}"):
                if main and run is not None:
                    state, values = self._score(rec, run, trial)
        finally:
            rec.duration_s = round(time.monotonic() - t0, 1)
            if rec.status == "running":  # an exception escaped: the search ends, the trial is marked
                rec.status, rec.reason = "failed", rec.reason or "the search stopped during this trial"
            if main:
                trial.set_user_attr("status", rec.status)
                self._save_trials()
                self._save_state()
        if main:
            self._tell(trial, values, state)
        return rec

    def _tell(self, trial: Any, values: Any, state: Any) -> None:
        """``study.tell``; the grid sampler calls ``study.stop()`` once every point is done,
        which Optuna only allows inside ``study.optimize``: the trial is stored by then."""
        try:
            self.study.tell(trial, values=values, state=state)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise

    def _same_values(self, rec: TrialRecord) -> TrialRecord | None:
        """An earlier trial that made the same model: the same values, ignoring those of the
        stages both left out (every process knows it from rank 0)."""
        found = None
        if self.ranks.is_main:
            mine = effective_point(self.search, rec.params, self._stage_names)
            found = next(
                (r.number for r in sorted(self.records.values(), key=lambda r: r.number)
                 if r.number != rec.number and r.status in ("passed", "missed", "pruned")
                 and effective_point(self.search, r.params, self._stage_names) == mine),
                None,
            )
        found = self.ranks.share(found)
        return None if found is None else self.records.get(found, TrialRecord(number=found, params=rec.params))

    def _copy_result(self, rec: TrialRecord, same: TrialRecord, trial: Any) -> tuple[Any, Any]:
        """Record ``same``'s result for ``rec`` and tell the study (rank 0)."""
        from optuna.trial import TrialState

        for name in ("status", "bound", "objectives", "latency", "size", "candidate", "fidelity"):
            setattr(rec, name, json.loads(json.dumps(getattr(same, name))))
        rec.reason = f"the same values as trial {same.number}: its result is reused" + (
            f" ({same.reason})" if same.reason else "")
        rec.stages_reused = list(same.stages_reused) + list(same.stages_run)
        rec.run_dir, rec.duration_s = same.run_dir, 0.0
        state, values = TrialState.PRUNED, None
        if rec.status in ("passed", "missed") and rec.bound:
            state, values = TrialState.COMPLETE, list(rec.objectives.values())
            trial.set_constraint("max_loss", constraint_value(Bound(**rec.bound), self.search.constraint.max_loss))
        trial.set_user_attr("status", rec.status)
        self._save_trials()
        self._log_trial(rec)
        self._tell(trial, values, state)
        return state, values

    def _run_stages(self, rec: TrialRecord, point: dict[str, Any]) -> Run | None:
        import yaml

        name = f"{self.loaded.recipe.name}-trial-{rec.number:04d}"
        data = trial_recipe(self.recipe_data, self.search, point, name=name)
        text = yaml.safe_dump(data, sort_keys=False)
        try:
            loaded = load_recipe_text(text, self.loaded.path, plugins=self.plugins)
        except RecipeError as exc:
            rec.status, rec.reason = "failed", f"the trial's values do not make a valid recipe: {exc.message}"
            return None
        run = _TrialRun(
            loaded, run_dir=rec.run_dir, plugins=self.plugins, progress=self.progress,
            recipe_text=text, stage_store=self.store, ranks=self.ranks,
        )
        try:
            run.execute(resume=True)
        except (StageFailed, CompressorError) as exc:
            failed = run.manifest.get("failed_stage")
            if failed is None and isinstance(exc, RankFailed) and exc.step.startswith("stage"):
                failed = exc.step  # a stage rank 0 ran alone failed there
            if failed is None:  # the model, the data or the recipe: not this trial's values
                raise
            rec.status = "failed"
            rec.reason = f"stage {failed!r} failed: {exc.error if isinstance(exc, StageFailed) else exc.message}"
            self._note_stages(rec, run)
            log.info("[tune] trial %d failed: %s", rec.number, rec.reason)
            return None
        self._note_stages(rec, run)
        return run

    @staticmethod
    def _note_stages(rec: TrialRecord, run: Run) -> None:
        for entry in run.manifest.get("stages", []):
            if entry.get("name") == "baseline" or entry.get("status") != "done":
                continue
            (rec.stages_reused if entry.get("reused") else rec.stages_run).append(entry["name"])

    def _candidate_name(self, run: Run) -> str:
        if self.search.candidate is not None:
            return self.search.candidate
        stages = run.recipe.stages
        return stages[-1].name if stages else "baseline"

    def _settings(self, *, split: str, subset: int | None, timed: bool) -> Any:
        """Evaluation settings of a selection scoring: the recipe's, on ``split``, timed only
        at the objectives' cells, without memory, FLOPs or calibration."""
        base = evaluation_settings(self.loaded.recipe.evaluation).model_dump()
        cells = [self._cell(o) for o in self.search.objective if o.name in ("latency", "throughput")]
        base.update(accuracy_split=split, max_eval_samples=subset, memory=False, flops=False, calibration_s=0.0)
        if cells and timed:
            base.update(
                batch_sizes=sorted({b for b, _ in cells}),
                sequence_lengths=sorted({n for _, n in cells}),
                sequence_length=min(n for _, n in cells),
                latency=True,
            )
        else:
            base.update(latency=False)
        from ..evaluate import EvaluationSettings

        return EvaluationSettings.model_validate(base)

    def objective_label(self, objective: Any) -> str:
        """``latency@b1x128`` (ratio to the reference), ``throughput@b32x128``, ``size``, ``parameters``."""
        if objective.name in ("latency", "throughput"):
            b, n = self._cell(objective)
            return f"{objective.name}@b{b}x{n}"
        return objective.name

    def _cell(self, objective: Any) -> tuple[int, int]:
        ev = self.loaded.recipe.evaluation
        return (objective.batch_size or ev.batch_sizes[0], objective.sequence_length or ev.lengths[0])

    def _evaluate(self, run: Run, settings: Any, folder: Path) -> tuple[Any, Any]:
        """Score the reference and the candidate together; return their records."""
        from ..evaluate.evaluator import evaluate_records

        reference = run.artifacts[self.search.constraint.reference]
        candidate = run.artifacts[self._candidate_name(run)]
        label = "candidate" if candidate.name == reference.name else candidate.name
        cand = replace(candidate, name=label, lineage=replace(candidate.lineage, reference=reference.name))
        with self.plugins.scope():
            records = evaluate_records(
                [reference, cand], run.data, settings, progress=False, output_dir=folder,
                backends=self.plugins.backends, tasks=self.plugins.tasks,
            )
        cpu = [r for r in records if (r.device or "cpu") == "cpu"] or records
        by_name = {r.model: r for r in cpu}
        return by_name[reference.name], by_name[label]

    def _score(self, rec: TrialRecord, run: Run, trial: Any) -> tuple[Any, Any]:
        from optuna.trial import TrialState

        constraint = self.search.constraint
        rec.candidate = str(run.artifacts[self._candidate_name(run)].path)
        folder = Path(rec.run_dir) / "selection"
        split = self.search.selection_split
        subset = self.search.fidelity.subset
        if subset is not None and subset < len(run.data.split(split)):
            _, cand = self._evaluate(run, self._settings(split=split, subset=subset, timed=False), folder)
            first = bound_from_record(cand, confidence=constraint.confidence)
            if first is not None and not first.can_still_pass(constraint.max_loss):
                rec.status, rec.bound, rec.fidelity = "pruned", first.to_json(), f"{subset} rows"
                rec.reason = (
                    f"cannot pass: on the first {subset} {split} rows (candidate - reference) is "
                    f"{first.text()}, whose upper end is under -{constraint.max_loss:g}"
                )
                self._log_trial(rec)
                return TrialState.PRUNED, None
        ref, cand = self._evaluate(run, self._settings(split=split, subset=None, timed=True), folder)
        bound = bound_from_record(cand, confidence=constraint.confidence)
        if bound is None:
            rec.status, rec.reason = "failed", "the candidate has no paired difference from the reference"
            return TrialState.FAIL, None
        rec.bound, rec.fidelity = bound.to_json(), "full"
        rec.size = {"disk_bytes": cand.size.disk_bytes if cand.size else None,
                    "params": cand.size.params if cand.size else None}
        values = []
        for objective in self.search.objective:
            value = self._objective(objective, ref, cand, rec)
            if value is None:
                rec.status, rec.reason = "failed", f"objective {objective.name} could not be measured"
                return TrialState.FAIL, None
            rec.objectives[self.objective_label(objective)] = value
            values.append(value)
        passed = bound.passes(constraint.max_loss)
        rec.status = "passed" if passed else "missed"
        if not passed:
            criterion = "point difference" if bound.confidence is None else f"{bound.confidence:.0%} lower bound"
            rec.reason = f"{criterion} of (candidate - reference) is under -{constraint.max_loss:g} points: {bound.text()}"
        trial.set_constraint("max_loss", constraint_value(bound, constraint.max_loss))
        self._log_trial(rec)
        return TrialState.COMPLETE, values

    def _objective(self, objective: Any, ref: Any, cand: Any, rec: TrialRecord) -> float | None:
        if objective.name == "size":
            return None if cand.size is None else cand.size.disk_bytes
        if objective.name == "parameters":
            return None if cand.size is None else cand.size.params
        batch, length = self._cell(objective)

        def cell(record: Any) -> Any:
            return next((c for c in record.latency if c.batch_size == batch and c.sequence_length == length), None)

        c, r = cell(cand), cell(ref)
        if c is None or r is None or not c.p50_ms or not r.p50_ms:
            return None
        if rec.latency is None:
            rec.latency = {
                "batch_size": batch, "sequence_length": length, "p50_ms": c.p50_ms,
                "p50_ci_ms": list(c.p50_ci_ms) if c.p50_ci_ms else None, "reference_p50_ms": r.p50_ms,
                "reference_p50_ci_ms": list(r.p50_ci_ms) if r.p50_ci_ms else None,
            }
        if objective.name == "latency":
            return c.p50_ms / r.p50_ms
        return r.p50_ms / c.p50_ms  # throughput ratio: batch / p50 of each

    def _log_trial(self, rec: TrialRecord) -> None:
        done = len(self.finished())
        total = self.max_trials
        best = self.best()
        per_trial = self.spent() / max(done, 1)
        left = []
        if total is not None:
            left.append(per_trial * max(total - done, 0))
        if self.max_time_s is not None:
            left.append(max(self.max_time_s - self.spent(), 0.0))
        eta = f"ETA {min(left) / 60:.0f} min" if left else ""
        bound = Bound(**rec.bound).text() if rec.bound else "-"
        objective = ", ".join(f"{k} {v:.3g}" for k, v in rec.objectives.items()) or "-"
        best_text = f"best: trial {best.number} ({_first_objective_text(best)})" if best else "best: none passes yet"
        log.info(
            "[tune] trial %d (%d of %s done): %s, %s, %s, reused %d stage(s) | %s | %s",
            rec.number, done, total if total is not None else "?", rec.status, bound, objective,
            len(rec.stages_reused), best_text, eta,
        )

    # --- choosing ---------------------------------------------------------------------------

    def best(self) -> TrialRecord | None:
        """The passing trial with the best first objective (ties: the better metric)."""
        passing = [r for r in self.records.values() if r.status == "passed" and r.objectives]
        if not passing:
            return None
        first = self.search.objective[0]
        sign = 1.0 if first.lower_is_better else -1.0
        return min(passing, key=lambda r: (sign * next(iter(r.objectives.values())), -(r.bound or {}).get("point", 0.0)))

    def front(self) -> list[TrialRecord]:
        """Scored trials that no other scored trial beats on the metric (point difference)
        and every objective at once."""
        scored = [r for r in self.records.values() if r.status in ("passed", "missed") and r.objectives and r.bound]
        signs = [1.0 if o.lower_is_better else -1.0 for o in self.search.objective]

        def key(r: TrialRecord) -> list[float]:
            return [-r.bound["point"]] + [s * v for s, v in zip(signs, r.objectives.values())]

        out: list[TrialRecord] = []
        for r in sorted(scored, key=lambda r: r.number):
            if any(o.params == r.params for o in out):
                continue  # the same values sampled again: one model
            mine = key(r)
            dominated = any(
                all(a <= b for a, b in zip(key(o), mine)) and any(a < b for a, b in zip(key(o), mine))
                for o in scored if o is not r
            )
            if not dominated:
                out.append(r)
        return out

    def closest(self) -> TrialRecord | None:
        """The scored trial whose bound comes nearest to passing."""
        scored = [r for r in self.records.values() if r.bound and r.status in ("missed", "pruned")]
        if not scored:
            return None

        def reach(r: TrialRecord) -> float:
            b = r.bound
            return b["point"] if b.get("confidence") is None or b.get("low") is None else b["low"]

        return max(scored, key=reach)

    # --- after the search -------------------------------------------------------------------

    def finish(self) -> TuneResult:
        """Score the best trial and the front on the evaluated (test) split, write
        ``best/``, ``results.json``, the trials files and the report."""
        from ..manifest import hardware, library_versions, now
        from .report import write_tune_report

        best, front = self.best(), self.front()
        chosen = ([best] if best else []) + [r for r in front if best is None or r.number != best.number]
        test_records: list[dict[str, Any]] = []
        best_dir = None
        manifest = {
            "run": self.loaded.recipe.name, "kind": "tune", "finished_at": now(),
            "hardware": hardware(), "versions": library_versions(),
        }
        if chosen:
            test_records = self._score_on_test(chosen, best, manifest)
        if best is not None:
            best_dir = self._write_best(best, test_records)
        self.state.update(
            status="done", best=best.number if best else None, front=[r.number for r in front],
            trials_finished=len(self.finished()),
        )
        self._save_state()
        report = write_tune_report(self, best=best, front=front, test_records=test_records, manifest=manifest)
        return TuneResult(
            tune_dir=self.tune_dir, trials=[self.records[k] for k in sorted(self.records)], best=best,
            front=[r.number for r in front], best_dir=best_dir, report=report, test_records=test_records,
        )

    def _trial_artifacts(self, rec: TrialRecord) -> dict[str, Artifact]:
        folder = Path(rec.run_dir) / "artifacts"
        out = {}
        for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
            if sub.is_dir() and not sub.name.startswith(".") and (sub / "lineage.json").exists():
                a = Artifact.load(sub)
                out[a.name] = a
        return out

    def _score_on_test(self, chosen: list[TrialRecord], best: TrialRecord | None, manifest: dict[str, Any]) -> list[dict[str, Any]]:
        """The reference, the best trial and the front on the evaluated split, timed together."""
        from ..evaluate import evaluate_artifacts
        from ..report import write_report
        from ..sources.datasets import load_task_data
        from ..sources.packaged import cache_root

        reference_name = self.search.constraint.reference
        first = self._trial_artifacts(chosen[0])
        reference = first[reference_name]
        models = [reference]
        for rec in chosen:
            label = "best" if best is not None and rec.number == best.number else f"trial-{rec.number:04d}"
            cand = Artifact.load(rec.candidate)
            models.append(replace(cand, name=label, lineage=replace(cand.lineage, reference=reference.name)))
        recipe = self.loaded.recipe
        data = load_task_data(
            recipe.task.data, datasets_registry=self.plugins.datasets, cache_dir=cache_root(), seed=recipe.seed,
            base_dir=self.loaded.base_dir, task_type=recipe.task.type, tasks_registry=self.plugins.tasks,
            options=self.loaded.task_options,
        )
        log.info("[tune] scoring the reference, the best model and the front (%d) on %r", len(models) - 1,
                 recipe.evaluation.accuracy_split)
        test_dir = self.tune_dir / "test"
        test_dir.mkdir(exist_ok=True)
        with self.plugins.scope():
            records = evaluate_artifacts(
                models, data, evaluation_settings(recipe.evaluation), progress=self.progress,
                output_dir=test_dir, backends=self.plugins.backends, tasks=self.plugins.tasks,
            )
        for record in records:
            record["run"] = recipe.name
        write_report(test_dir, records, title=f"{recipe.name}: chosen on {self.search.selection_split}, "
                     f"scored on {recipe.evaluation.accuracy_split}", manifest=manifest)
        write_json_atomic(self.tune_dir / "results.json", records)
        write_json_atomic(self.tune_dir / "manifest.json", manifest)
        return records

    def _write_best(self, best: TrialRecord, test_records: list[dict[str, Any]]) -> Path:
        from ..report import write_model_cards
        from .report import search_card_section

        target = self.tune_dir / "best"
        partial = self.tune_dir / ".best.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(best.candidate, partial, copy_function=link_or_copy)
        card = partial / "README.md"
        if card.exists():
            card.unlink()  # the trial's own card: the tune's replaces it
        artifacts = self._trial_artifacts(best)
        cand = Artifact.load(partial)
        artifacts["best"] = replace(cand, name="best", path=partial)
        own = [r for r in test_records if r.get("model") == "best"]
        trial_recipe_file = Path(best.run_dir) / "recipe.yaml"  # the stages this model went through
        recipe_text = trial_recipe_file.read_text(encoding="utf-8") if trial_recipe_file.exists() else self.data_text
        write_model_cards(own, artifacts, recipe_text=recipe_text, run_name=self.loaded.recipe.name,
                          backends=self.plugins.backends)
        text = card.read_text(encoding="utf-8") if card.exists() else ""
        write_text_atomic(card, text + "\n" + search_card_section(self, best, test_records))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        return target


def constraint_value(bound: Bound, max_loss: float) -> float:
    """``-(lower bound + max_loss)``: at or below 0 when the candidate passes."""
    value = bound.point if bound.confidence is None or bound.low is None else bound.low
    return -(value + max_loss)


def _optuna_params(search: SearchConfig, point: dict[str, Any]) -> dict[str, Any]:
    """A point as Optuna stores it (JSON text for choices that are not plain scalars)."""
    from .space import _is_primitive

    out = {}
    for key, value in point.items():
        param = search.space[key]
        if param.choices is not None and not all(_is_primitive(c) for c in param.choices):
            value = json.dumps(value, sort_keys=True)
        out[key] = value
    return out


def _first_objective_text(rec: TrialRecord) -> str:
    if not rec.objectives:
        return "-"
    k, v = next(iter(rec.objectives.items()))
    if k.startswith("latency"):
        return f"{1 / v:.2f}x faster" if v else "-"
    if k.startswith("throughput"):
        return f"{v:.2f}x throughput"
    return f"{k} {v:.4g}"


def _cell_text(value: Any) -> str:
    """A parameter in a CSV cell: text as itself, anything else as JSON (true, 0.3, [0, 2])."""
    return value if isinstance(value, str) else json.dumps(value)


def trials_csv(records: list[TrialRecord]) -> str:
    """``trials.csv``: one row per trial, params flattened as ``param:<key>`` columns."""
    keys = sorted({k for r in records for k in r.params})
    objectives = sorted({k for r in records for k in r.objectives})
    header = (["trial", "status"] + [f"param:{k}" for k in keys]
              + ["metric", "diff_points", "diff_low", "diff_high", "n"] + objectives
              + ["p50_ms", "p50_ci_low_ms", "p50_ci_high_ms", "reference_p50_ms", "disk_bytes",
                 "stages_reused", "stages_run", "duration_s", "reason"])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in sorted(records, key=lambda r: r.number):
        b = r.bound or {}
        lat = r.latency or {}
        ci = lat.get("p50_ci_ms") or [None, None]
        writer.writerow(
            [r.number, r.status] + [_cell_text(r.params[k]) if k in r.params else "" for k in keys]
            + [b.get("metric"), b.get("point"), b.get("low"), b.get("high"), b.get("n")]
            + [r.objectives.get(k) for k in objectives]
            + [lat.get("p50_ms"), ci[0], ci[1], lat.get("reference_p50_ms"), (r.size or {}).get("disk_bytes"),
               ";".join(r.stages_reused), ";".join(r.stages_run), r.duration_s, r.reason or ""]
        )
    return buf.getvalue()


def load_tune_recipe(path: str | Path, *, plugins: Any = None) -> LoadedRecipe:
    """:func:`compressor.recipe.load_recipe` plus the checks of its search block against the
    stages (:func:`compressor.tune.space.check_search`); ``compressor validate`` runs both.

    :raises RecipeError: as those two.
    """
    from ..plugins import get_plugins
    from .space import check_search

    plugins = plugins or get_plugins()
    loaded = load_recipe(path, plugins=plugins)
    with plugins.scope():
        check_search(loaded, plugins)
    return loaded


def tune(
    recipe_path: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    run_dir: str | Path | None = None,
    trials: int | None = None,
    time_s: float | None = None,
    plugins: Any = None,
    progress: bool = False,
    shared_stages: str | Path | None = None,
    ranks: Ranks | None = None,
) -> TuneResult:
    """Search a recipe's space for the fastest model whose loss is bounded (``compressor tune``).

    :param recipe_path: a recipe with a ``search:`` block (:class:`~compressor.search.SearchConfig`).
    :param resume: continue the search in an existing tune folder (no finished trial is
        run again; a trial that was running is run again).
    :param overwrite: delete an existing tune folder first.
    :param run_dir: the tune folder; default ``<output.dir>/<name>``.
    :param trials / time_s: override ``search.budget`` (finished trials; seconds of search,
        summed over resumed sessions).
    :param plugins: loaded plugins (default: process-wide).
    :param progress: progress bars inside the trials.
    :param shared_stages: a stage store shared with other searches (see :class:`Tuner`).
    :param ranks: the search's processes; default: one, or those a launcher started (every
        process calls this function; rank 0 samples, scores and writes, every process runs
        the trials' stages, training data-parallel).
    :returns: a :class:`TuneResult` (rank 0's, on every process).
    :raises RecipeError: no search block, or a bad one (file, line, key).
    :raises CompressorError: bad model or data (before any trial), or an existing folder
        without ``resume``/``overwrite``.
    :raises NothingPasses: no trial met the constraint; the report and ``trials.json`` are
        written first and name the closest candidate (``compressor tune`` exits with
        :data:`EXIT_NOTHING_PASSES`).
    """
    from ..plugins import get_plugins

    plugins = plugins or get_plugins()
    loaded = load_tune_recipe(recipe_path, plugins=plugins)
    ranks = ranks or Ranks.from_environment()
    tuner = Tuner(loaded, tune_dir=run_dir, plugins=plugins, trials=trials, time_s=time_s, progress=progress,
                  shared_stages=shared_stages, ranks=ranks)
    main = ranks.is_main
    with ranks.together("preparing the tune folder"):
        if main:
            tuner.prepare(resume=resume, overwrite=overwrite)
    handler = setup_run_logging(tuner.tune_dir, ranks)
    result: TuneResult | None = None
    nothing: str | None = None
    try:
        with plugins.scope(), library_progress_bars(progress):
            with ranks.together("opening the study"):
                if main:
                    tuner.open_study()
            while ranks.share(tuner.budget_left() if main else None):
                tuner.run_trial()
            with ranks.together("scoring the choice on the test split"):
                if main:
                    result = tuner.finish()
                    nothing = None if result.best is not None else _nothing_passes(tuner)
        result, nothing = ranks.share((result, nothing))
    finally:
        if main:
            tuner._save_state()
        log.removeHandler(handler)
        handler.close()
    if nothing is not None:
        raise NothingPasses(
            nothing,
            where=str(result.report),
            key="search.constraint.max_loss",
            hint="see the report's 'what this data can certify'; widen the space, raise max_loss, "
            "add selection data, or use confidence: null to compare point values",
        )
    return result


def _nothing_passes(tuner: Tuner) -> str:
    closest = tuner.closest()
    detail = (
        f"; the closest is trial {closest.number}: {Bound(**closest.bound).text()}" if closest and closest.bound else ""
    )
    return (
        f"no trial of {len(tuner.finished())} met the constraint (lose at most "
        f"{tuner.search.constraint.max_loss:g} points against {tuner.search.constraint.reference!r}){detail}"
    )
