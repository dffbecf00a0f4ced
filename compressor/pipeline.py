"""The orchestrator: resolve model and data, run the stages in order, evaluate, report.

Run directory layout (``<output.dir>/<recipe name>/``)::

    recipe.yaml            the recipe as given
    recipe.resolved.json   every default filled in, stage configs included
    manifest.json          versions, seed, git SHA, data fingerprint, hardware, stage status
    run.log                the console log
    artifacts/00-baseline/ the input model (files linked or copied from the source)
    artifacts/01-<stage>/  each finished stage's artifact (written to a ``.partial`` folder
                           first, renamed when the stage succeeds)
    work/01-<stage>/       checkpoints of a stage (Trainer), kept so a stage can resume
    results.jsonl          one evaluation record per line, appended as they are measured
    results.json, report.md

A stage starts from the previous stage's artifact, or from the artifact its ``input`` key
names (``baseline`` or an earlier stage). Each stage has a fingerprint: a hash of its input
artifact's fingerprint, its strategy and its validated config. ``resume=True`` reuses every finished stage whose fingerprint is unchanged
and continues from the first stage that is unfinished or changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifact import Artifact, Lineage
from .errors import CompressorError, StageError
from .manifest import (
    git_sha,
    hardware,
    library_versions,
    now,
    read_manifest,
    write_manifest,
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


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _setup_logging(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if not any(isinstance(h, _Console) for h in log.handlers):
        console = _Console()
        console.setFormatter(logging.Formatter("[compressor] %(message)s"))
        log.addHandler(console)
    return handler


class _Console(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _read_results(run_dir: Path) -> list[dict[str, Any]]:
    p = run_dir / RESULTS_LINES
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line from a killed run
                continue
    return out


def _append_result(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / RESULTS_LINES, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def run(
    recipe_path: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    run_dir: str | Path | None = None,
    plugins: Any = None,
    progress: bool = True,
) -> RunResult:
    """Run a recipe end to end.

    :param recipe_path: the YAML recipe.
    :param resume: continue an existing run directory from its first unfinished stage.
    :param overwrite: delete an existing run directory and start again.
    :param run_dir: override ``<output.dir>/<name>``.
    :param plugins: a loaded :class:`compressor.plugins.Plugins` (default: process-wide).
    :param progress: show progress bars.
    :returns: a :class:`RunResult`.
    :raises compressor.errors.CompressorError: bad recipe, data or model (the CLI prints it
        and exits with status 2). Any other exception raised by a stage is re-raised after
        the manifest records which stage failed and why.
    """
    from .plugins import get_plugins

    plugins = plugins or get_plugins()
    loaded = load_recipe(recipe_path, plugins=plugins)
    recipe = loaded.recipe
    run_dir = Path(run_dir) if run_dir else Path(recipe.output.dir) / recipe.name
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
    handler = _setup_logging(run_dir)
    try:
        return _run(loaded, run_dir, previous, plugins, progress)
    finally:
        log.removeHandler(handler)
        handler.close()


def _run(loaded: LoadedRecipe, run_dir: Path, previous: dict | None, plugins: Any, progress: bool) -> RunResult:
    from .evaluate import evaluate_artifacts
    from .report import write_model_cards, write_report
    from .sources.datasets import load_task_data
    from .sources.models import resolve_model
    from .sources.packaged import cache_root

    recipe = loaded.recipe
    recipe_hash = loaded.hash()
    shutil.copyfile(loaded.path, run_dir / "recipe.yaml")
    from .artifact import write_json_atomic

    write_json_atomic(run_dir / "recipe.resolved.json", loaded.resolved())

    manifest: dict[str, Any] = {
        "run": recipe.name,
        "recipe": str(loaded.path.resolve()),
        "recipe_hash": recipe_hash,
        "status": "running",
        "started_at": now(),
        "resumed_from": previous.get("status") if previous else None,
        "command": " ".join(sys.argv),
        "seed": recipe.seed,
        "git_sha": git_sha(Path.cwd()),
        "versions": library_versions(),
        "plugins": {n: i.version for n, i in plugins.infos.items() if not i.error},
        "hardware": hardware(),
        "stages": [],
    }
    old_stages = {s["name"]: s for s in (previous or {}).get("stages", [])}
    result = RunResult(run_dir=run_dir)
    error: BaseException | None = None

    def save() -> None:
        write_manifest(run_dir, manifest)

    save()
    try:
        import torch
        import transformers

        device = "cuda" if torch.cuda.is_available() else "cpu"
        cache = cache_root()
        log.info("resolving model %r (source: %s)", recipe.model.name, recipe.model.source)
        try:
            model_name = recipe.model.name
            # a relative local folder is relative to the recipe's folder, then to the cwd
            if recipe.model.source in ("auto", "local") and (loaded.base_dir / model_name).is_dir():
                model_name = str(loaded.base_dir / model_name)
            model_dir = resolve_model(
                model_name,
                recipe.model.source,
                sources=plugins.model_sources,
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
                datasets_registry=plugins.datasets,
                cache_dir=cache,
                seed=recipe.seed,
                base_dir=loaded.base_dir,
                task_type=recipe.task.type,
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
        manifest["model_dir"] = str(model_dir)
        manifest["data"] = {
            "name": data.name,
            "fingerprint": data.fingerprint,
            "splits": {k: len(v) for k, v in data.splits.items()},
            "labels": data.label_names,
        }
        manifest["device"] = device
        save()

        fingerprint = _sha(recipe.model.model_dump(), recipe.task.model_dump(), recipe.seed, data.fingerprint)
        baseline_dir = run_dir / "artifacts" / "00-baseline"
        if not (baseline_dir / "lineage.json").exists() or old_stages.get("baseline", {}).get("fingerprint") != fingerprint:
            shutil.rmtree(baseline_dir, ignore_errors=True)
            partial = baseline_dir.with_name(".00-baseline.partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(model_dir, partial, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".git*"))
            Artifact(
                name="baseline",
                path=partial,
                lineage=Lineage(stage="baseline", recipe_hash=recipe_hash, extra={"source": str(model_dir)}),
            ).save()
            os.replace(partial, baseline_dir)
        artifact = Artifact.load(baseline_dir)
        result.artifacts["baseline"] = artifact
        manifest["stages"].append(
            {"name": "baseline", "strategy": None, "status": "done", "fingerprint": fingerprint, "artifact": str(baseline_dir)}
        )
        save()
        plugins.hook.compressor_run_start(run_dir=run_dir, recipe=recipe)

        stage_fingerprints = {"baseline": fingerprint}
        for index, (stage, config) in enumerate(zip(recipe.stages, loaded.stage_configs), start=1):
            strategy_cls = plugins.strategy(stage.strategy)
            if stage.input is not None:  # validated: the baseline or an earlier stage
                artifact = result.artifacts[stage.input]
                fingerprint = stage_fingerprints[stage.input]
            fingerprint = _sha(fingerprint, stage.strategy, config.model_dump(mode="json"))
            stage_fingerprints[stage.name] = fingerprint
            folder = f"{index:02d}-{stage.name}"
            out_dir = run_dir / "artifacts" / folder
            work_dir = run_dir / "work" / folder
            entry: dict[str, Any] = {
                "name": stage.name,
                "strategy": stage.strategy,
                "status": "pending",
                "fingerprint": fingerprint,
                "artifact": str(out_dir),
            }
            manifest["stages"].append(entry)
            old = old_stages.get(stage.name)
            if old and old.get("status") == "done" and old.get("fingerprint") == fingerprint and (out_dir / "lineage.json").exists():
                artifact = Artifact.load(out_dir)
                result.artifacts[stage.name] = artifact
                entry.update({k: old[k] for k in ("started_at", "finished_at", "duration_s") if k in old})
                entry["status"] = "done"
                entry["reused"] = True
                log.info("stage %d %r: finished in an earlier run, reused", index, stage.name)
                save()
                continue
            if artifact.format not in strategy_cls.input_formats:
                raise StageError(
                    f"strategy {stage.strategy!r} takes {list(strategy_cls.input_formats)} models, "
                    f"but its input {artifact.name!r} is a {artifact.format!r} model",
                    where=loaded.where(("stages", index - 1, "strategy")),
                    key=f"stages[{index - 1}].strategy",
                    hint="reorder the stages so that export and quantisation come last, or "
                    "start this stage from another artifact with 'input: <name>'",
                )
            # A changed stage invalidates its old output and checkpoints.
            shutil.rmtree(out_dir, ignore_errors=True)
            stamp = work_dir / "fingerprint"
            if work_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != fingerprint):
                shutil.rmtree(work_dir)
            work_dir.mkdir(parents=True, exist_ok=True)
            stamp.write_text(fingerprint)
            partial = out_dir.with_name(f".{folder}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)

            from .strategy import StageContext

            context = StageContext(
                stage_name=stage.name,
                output_dir=partial,
                work_dir=work_dir,
                data=data,
                seed=recipe.seed,
                artifacts=dict(result.artifacts),
                recipe_hash=recipe_hash,
                logger=log,
                progress=progress,
                device=device,
            )
            entry.update(status="running", started_at=now())
            save()
            log.info("stage %d/%d %r: %s", index, len(recipe.stages), stage.name, stage.strategy)
            plugins.hook.compressor_stage_start(stage=stage.name, strategy=stage.strategy, context=context)
            t0 = time.perf_counter()
            transformers.set_seed(recipe.seed)
            try:
                produced = strategy_cls().apply(artifact, config, context)
                if not isinstance(produced, Artifact):
                    raise StageError(
                        f"strategy {stage.strategy!r} returned {type(produced).__name__}, not an Artifact"
                    )
                if Path(produced.path).resolve() != partial.resolve():
                    raise StageError(
                        f"strategy {stage.strategy!r} wrote its artifact to {produced.path}, "
                        f"not to the stage's output_dir"
                    )
                produced.save()
            except BaseException as exc:
                entry.update(
                    status="failed",
                    finished_at=now(),
                    duration_s=round(time.perf_counter() - t0, 2),
                    error=f"{type(exc).__name__}: {exc}",
                )
                tb = run_dir / "work" / f"{folder}.traceback.txt"
                tb.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
                entry["traceback"] = str(tb)
                manifest["failed_stage"] = stage.name
                save()
                plugins.hook.compressor_stage_end(stage=stage.name, strategy=stage.strategy, artifact=None, error=exc)
                shutil.rmtree(partial, ignore_errors=True)
                raise
            os.replace(partial, out_dir)
            artifact = Artifact.load(out_dir)
            result.artifacts[stage.name] = artifact
            entry.update(status="done", finished_at=now(), duration_s=round(time.perf_counter() - t0, 2))
            save()
            plugins.hook.compressor_stage_end(stage=stage.name, strategy=stage.strategy, artifact=artifact, error=None)
            log.info("stage %r done in %.1f s", stage.name, entry["duration_s"])

        # Evaluation: every requested artifact, same settings, one after another.
        settings = recipe.evaluation
        settings_key = _sha(settings.model_dump(mode="json"))
        fingerprints = {s["name"]: s["fingerprint"] for s in manifest["stages"]}
        # One record per (model, device): a model may be measured on CPU and on CUDA.
        done: dict[tuple, list[dict[str, Any]]] = {}
        for r in _read_results(run_dir):
            key = (r.get("model"), r.get("fingerprint"), r.get("settings_key"))
            same_device = [x for x in done.get(key, []) if x.get("device") != r.get("device")]
            done[key] = same_device + [r]  # the latest record per device wins
        wanted = ["baseline"] if settings.baseline else []
        wanted += [s.name for s in recipe.stages if s.evaluate]
        eval_settings = _evaluation_settings(settings)
        keys = [(name, fingerprints[name], settings_key) for name in wanted]
        if all(k in done for k in keys):
            log.info("evaluation: every model was measured in an earlier run, reused")
            results = [r for k in keys for r in done[k]]
        else:
            # All models are measured together so their latency is timed in interleaved
            # rounds; ratios between them (speedups) then survive a busy machine.
            log.info("evaluating %s", ", ".join(wanted))
            results = evaluate_artifacts(
                [result.artifacts[name] for name in wanted], data, eval_settings,
                progress=progress, output_dir=run_dir, backends=plugins.backends,
            )
            for record in results:
                record.update(fingerprint=fingerprints[record["model"]], settings_key=settings_key)
                _append_result(run_dir, record)
        result.results = results
        manifest.update(status="done", finished_at=now())
        manifest.pop("failed_stage", None)
        save()
        result.report = write_report(run_dir, results, title=recipe.name, manifest=manifest)
        write_model_cards(
            results, result.artifacts, recipe_text=(run_dir / "recipe.yaml").read_text(encoding="utf-8"),
            run_name=recipe.name,
        )
        log.info("report: %s", result.report)
        return result
    except BaseException as exc:
        error = exc
        manifest.update(status="failed", finished_at=now(), error=f"{type(exc).__name__}: {exc}")
        save()
        raise
    finally:
        plugins.hook.compressor_run_end(run_dir=run_dir, results=result.results, error=error)


def _evaluation_settings(cfg: Any) -> Any:
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
