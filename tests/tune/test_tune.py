"""``compressor tune`` on a tiny real BERT: a planted answer, resume after SIGKILL, nothing
passes, honest selection, shared stages, and the search block's validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from compressor.errors import RecipeError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _plant_plugin

SEARCH = """\
search:
  objective: parameters
  constraint: {{max_loss: {max_loss}, reference: teacher}}
  space:
    plant.extra_rows: {{choices: [0, 64, 256]}}
    plant.corrupt: {{choices: {corrupt}}}
  budget: {{trials: {trials}}}
  sampler: {sampler}
  seed: 0
"""

RECIPE = """\
version: 1
name: tune-test
seed: 0
model: {{name: {model}, source: local}}
task: {{data: {{name: tiny-sentiment}}}}
evaluation: {{batch_sizes: [1], sequence_length: 16, warmup: 1, min_runs: 3, max_runs: 5, min_time_s: 0.0,
             memory: false, flops: false, bootstrap_resamples: 500}}
stages:
  - name: teacher
    strategy: finetune
    config: {{epochs: 4, learning_rate: 5.0e-3, batch_size: 16, max_length: 16}}
  - {{name: plant, strategy: plant.model}}
"""


def write(tmp_path: Path, model: Path, *, max_loss=1.0, corrupt="[true, false]", trials=8, sampler="tpe",
          search: str | None = None) -> Path:
    text = RECIPE.format(model=model) + (search if search is not None else SEARCH.format(
        max_loss=max_loss, corrupt=corrupt, trials=trials, sampler=sampler))
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def plugins():
    return _plant_plugin.plugins()


@pytest.fixture
def calls(tmp_path, monkeypatch):
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("TUNE_TEST_CALLS", str(path))
    return path


def applied(calls: Path) -> list[dict]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def test_search_finds_the_planted_answer_and_scores_only_the_choice_on_test(
    tmp_path, tiny_bert_dir, plugins, calls, monkeypatch
):
    from compressor.evaluate import evaluator
    from compressor.tune import tune

    seen = []
    real = evaluator.evaluate_records

    def spy(artifacts, data, settings, **kw):
        seen.append((settings.accuracy_split, [a.name for a in artifacts]))
        return real(artifacts, data, settings, **kw)

    monkeypatch.setattr(evaluator, "evaluate_records", spy)
    recipe = write(tmp_path, tiny_bert_dir, trials=10)
    result = tune(recipe, run_dir=tmp_path / "tune", plugins=plugins)

    # the planted answer: no extra parameters, the classifier intact
    assert result.best is not None
    assert result.best.params == {"plant.extra_rows": 0, "plant.corrupt": False}
    assert result.best.status == "passed" and result.best.bound["low"] >= -1.0
    # a corrupted classifier misses the bound on the fine-tuned teacher's validation split
    corrupt = [t for t in result.trials if t.params["plant.corrupt"]]
    assert corrupt and all(t.status == "missed" and t.bound["point"] < -20 for t in corrupt)
    # the teacher was trained once for the whole search, then linked into every trial
    assert sum(1 for c in applied(calls) if c["stage"] == "plant") <= len({json.dumps(t.params, sort_keys=True) for t in result.trials})
    teachers_run = [t.number for t in result.trials if "teacher" in t.stages_run]
    assert teachers_run == [result.trials[0].number]
    assert all("teacher" in t.stages_reused for t in result.trials[1:])

    # honest selection: every trial scored on validation; test only once, for the choice and the front
    test_calls = [s for s in seen if s[0] == "test"]
    assert len(test_calls) == 1 and seen[-1] == test_calls[0]
    assert all(split == "validation" for split, _ in seen[:-1])
    assert test_calls[0][1][:2] == ["teacher", "best"]
    records = json.loads((tmp_path / "tune" / "results.json").read_text())
    assert {r["accuracy"]["split"] for r in records} == {"test"}
    assert all(t.bound is None or t.bound["n"] == 20 for t in result.trials)  # the 20 validation rows

    # outputs
    tune_dir = tmp_path / "tune"
    best_card = (tune_dir / "best" / "README.md").read_text()
    assert "How this model was chosen" in best_card and "-1 points" in best_card
    assert (tune_dir / "best" / "model.safetensors").exists()
    rows = json.loads((tune_dir / "trials.json").read_text())
    assert len(rows) == len(result.trials) and {"params", "bound", "objectives", "stages_reused"} <= set(rows[0])
    assert (tune_dir / "trials.csv").read_text().count("\n") == len(rows) + 1
    report = (tune_dir / "report.md").read_text()
    assert "Chosen on** the `validation` split" in report and "What this data can certify" in report
    assert (tune_dir / "tune-pareto.png").read_bytes()[:4] == b"\x89PNG"
    # compressor report / compare read the tune folder
    from compressor.report import load_results

    assert [r.model for r in load_results(tune_dir)][:2] == ["teacher", "best"]


def test_nothing_passes_is_its_own_result(tmp_path, tiny_bert_dir, plugins, calls):
    from compressor.tune import EXIT_NOTHING_PASSES, NothingPasses, tune

    recipe = write(tmp_path, tiny_bert_dir, max_loss=0.0, corrupt="[true]", trials=2)
    with pytest.raises(NothingPasses) as info:
        tune(recipe, run_dir=tmp_path / "tune", plugins=plugins)
    assert "closest is trial" in str(info.value)
    report = (tmp_path / "tune" / "report.md").read_text()
    assert "Nothing passes" in report and "closest is trial" in report
    assert not (tmp_path / "tune" / "best").exists()
    assert EXIT_NOTHING_PASSES == 3
    from compressor.distributed import exit_status

    assert exit_status(info.value) == 3


def test_sigkill_mid_trial_then_resume_loses_and_repeats_nothing(tmp_path, tiny_bert_dir, plugins, calls):
    """The child is killed inside its third plant stage (trial 2); --resume keeps trials 0-1,
    marks trial 2 interrupted, runs its values again and goes on to the budget."""
    from compressor.tune import tune

    search = """\
search:
  objective: parameters
  constraint: {max_loss: 1.0, reference: teacher}
  space:
    plant.extra_rows: {low: 0, high: 4000, step: 1}
  budget: {trials: 5}
  sampler: random
"""
    recipe = write(tmp_path, tiny_bert_dir, search=search)
    tune_dir = tmp_path / "tune"
    hang = tmp_path / "hanging"
    env = {**os.environ, "TUNE_TEST_HANG": str(hang), "TUNE_TEST_CALLS": str(calls)}
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import _plant_plugin; _plant_plugin.main({str(recipe)!r}, {str(tune_dir)!r})"
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not hang.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert hang.exists(), "the child never reached its third trial"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    before = {r["number"]: r for r in json.loads((tune_dir / "trials.json").read_text())}
    finished_before = {n: r for n, r in before.items() if r["status"] in ("passed", "missed")}
    assert len(finished_before) == 2 and before[2]["status"] == "running"

    result = tune(recipe, run_dir=tune_dir, resume=True, plugins=plugins)
    after = {t.number: t for t in result.trials}
    for n, r in finished_before.items():  # kept as they were, never run again
        assert after[n].to_json() == r
    assert after[2].status == "interrupted"
    rerun = [t for t in result.trials if t.number > 2 and t.params == before[2]["params"]]
    assert rerun and rerun[0].number == 3 and rerun[0].status in ("passed", "missed")
    assert len([t for t in result.trials if t.status != "interrupted"]) == 5
    assert json.loads((tune_dir / "tune.json").read_text())["status"] == "done"


def test_grid_sampler_and_optional_stage(tmp_path, tiny_bert_dir, plugins, calls):
    """With the plant stage optional, leaving it out gives the teacher itself (fewest
    parameters, no loss): the grid finds it; trials.json says which stages ran."""
    from compressor.tune import tune

    search = """\
search:
  objective: [parameters]
  constraint: {max_loss: 1.0, reference: teacher}
  space:
    plant: {optional: true}
    plant.extra_rows: {choices: [64, 128]}
  budget: {trials: 4}
  sampler: grid
"""
    recipe = write(tmp_path, tiny_bert_dir, search=search)
    result = tune(recipe, run_dir=tmp_path / "tune", plugins=plugins)
    assert len(result.trials) == 4
    assert result.best.params["plant"] is False
    left_out = [t for t in result.trials if t.params["plant"] is False]
    assert all("plant" not in t.stages_run + t.stages_reused for t in left_out)


@pytest.mark.parametrize(
    "search, key, words",
    [
        ("  space: {plant.extra_rows: {choices: [0]}}\n  constraint: {max_loss: 1}\n  budgett: {trials: 1}\n",
         "search.budgett", "budget"),
        ("  space: {plnt.extra_rows: {choices: [0]}}\n  constraint: {max_loss: 1}\n", "search.space.plnt.extra_rows", "plant"),
        ("  space: {plant.extra_row: {choices: [0]}}\n  constraint: {max_loss: 1}\n", "search.space.plant.extra_row", "extra_rows"),
        ("  space: {plant.extra_rows: {choices: [-5]}}\n  constraint: {max_loss: 1}\n", "search.space.plant.extra_rows", "-5"),
        ("  space: {teacher.epochs: {choices: [1, 2]}}\n  constraint: {max_loss: 1, reference: plant}\n",
         "search.constraint.reference", "would change"),
        ("  space: {plant.corrupt: {choices: [true]}}\n  constraint: {max_loss: 1}\n  selection_split: test\n",
         "search.selection_split", "optimistic"),
        ("  space: {plant.extra_rows: {low: 0, high: 10}}\n  constraint: {max_loss: 1}\n  sampler: grid\n",
         "search", "step"),
    ],
)
def test_validate_refuses_a_bad_search_block_with_file_and_line(tmp_path, tiny_bert_dir, plugins, search, key, words):
    from compressor.tune.tuner import load_tune_recipe

    recipe = write(tmp_path, tiny_bert_dir, search="search:\n" + search)
    with pytest.raises(RecipeError) as info:
        load_tune_recipe(recipe, plugins=plugins)
    message = info.value.format()
    assert key in message and words in message
    assert f"{recipe}:" in message


def test_trial_recipe_rewires_the_stage_after_a_left_out_one():
    from compressor.search import SearchConfig
    from compressor.tune.space import trial_recipe

    data = {"name": "r", "stages": [
        {"name": "teacher", "strategy": "finetune"},
        {"name": "heads", "strategy": "prune.heads", "config": {"amount": 0.2}},
        {"name": "int8", "strategy": "quantize.ort-dynamic"},
        {"name": "other", "strategy": "quantize.half", "input": "heads"},
    ], "search": {}}
    search = SearchConfig.model_validate({
        "constraint": {"max_loss": 1}, "space": {"heads": {"optional": True}, "heads.amount": {"low": 0.1, "high": 0.5}},
    })
    out = trial_recipe(data, search, {"heads": False, "heads.amount": 0.3}, name="t")
    assert [s["name"] for s in out["stages"]] == ["teacher", "int8", "other"]
    assert out["stages"][1].get("input") is None and out["stages"][2]["input"] == "teacher"
    assert "search" not in out and out["name"] == "t" and data["stages"][1]["config"] == {"amount": 0.2}
    kept = trial_recipe(data, search, {"heads": True, "heads.amount": 0.3}, name="t")
    assert kept["stages"][1]["config"] == {"amount": 0.3}


def test_latency_objective_with_a_first_cheap_scoring(tmp_path, tiny_bert_dir, plugins, calls):
    """Latency as a ratio to the reference, timed in the trial; with fidelity.subset a
    corrupted candidate is pruned on the first 10 validation rows, never timed."""
    from compressor.tune import tune

    search = """\
search:
  objective: [{name: latency, batch_size: 1, sequence_length: 16}]
  constraint: {max_loss: 1.0, reference: teacher}
  space:
    plant.corrupt: {choices: [true, false]}
  fidelity: {subset: 10}
  budget: {trials: 2}
  sampler: grid
"""
    recipe = write(tmp_path, tiny_bert_dir, search=search)
    result = tune(recipe, run_dir=tmp_path / "tune", plugins=plugins)
    by_value = {t.params["plant.corrupt"]: t for t in result.trials}
    pruned, kept = by_value[True], by_value[False]
    assert pruned.status == "pruned" and pruned.fidelity == "10 rows" and pruned.bound["n"] == 10
    assert pruned.latency is None and "cannot pass" in pruned.reason
    assert kept.status == "passed" and kept.bound["n"] == 20
    ratio = kept.objectives["latency@b1x16"]
    lat = kept.latency
    assert ratio == pytest.approx(lat["p50_ms"] / lat["reference_p50_ms"])
    assert 0.2 < ratio < 5  # the same architecture: about 1
    assert result.best.number == kept.number


@pytest.mark.slow
def test_two_processes_run_the_search_with_data_parallel_trials(tmp_path, tiny_bert_dir):
    """torchrun --nproc_per_node 2 (gloo, CPU): rank 0 samples and scores, both processes
    train each trial's teacher; the search ends as it would in one process."""
    search = SEARCH.format(max_loss=1.0, corrupt="[false]", trials=2, sampler="random")
    recipe = write(tmp_path, tiny_bert_dir, search=search)
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import _plant_plugin; "
            f"_plant_plugin.main({str(recipe)!r}, {str(tmp_path / 'tune')!r})")
    script = tmp_path / "run_tune.py"
    script.write_text(code + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = json.loads((tmp_path / "tune" / "trials.json").read_text())
    assert len(trials) == 2 and all(t["status"] == "passed" for t in trials)
    manifest = json.loads((tmp_path / "tune" / "trials" / "0000" / "manifest.json").read_text())
    teacher = next(s for s in manifest["stages"] if s["name"] == "teacher")
    assert teacher["batch"]["processes"] == 2
    assert (tmp_path / "tune" / "best" / "model.safetensors").exists()


def test_points_that_differ_only_in_a_left_out_stage_make_the_same_model():
    from compressor.search import SearchConfig
    from compressor.tune.space import effective_point

    search = SearchConfig.model_validate({
        "constraint": {"max_loss": 1},
        "space": {"heads": {"optional": True}, "heads.fraction": {"low": 0.1, "high": 0.5, "step": 0.1},
                  "student.student_layers": {"choices": [2, 3]}},
    })
    names = ["teacher", "student", "heads"]
    a = effective_point(search, {"heads": False, "heads.fraction": 0.1, "student.student_layers": 3}, names)
    b = effective_point(search, {"heads": False, "heads.fraction": 0.4, "student.student_layers": 3}, names)
    c = effective_point(search, {"heads": True, "heads.fraction": 0.4, "student.student_layers": 3}, names)
    assert a == b == {"heads": False, "student.student_layers": 3}
    assert c != b


def test_cli_refuses_bad_input_with_exit_status_2(tmp_path, tiny_bert_dir, capsys):
    """No search block, a bad --trials, and a tune folder that exists without --resume: one
    message each, exit status 2, nothing run or deleted (the installed plugins, a files: data set)."""
    import csv

    from compressor.cli import main

    sentiment_rows = _plant_plugin.suite_conftest().sentiment_rows

    for split, n in (("train", 40), ("validation", 20), ("test", 20)):
        rows = sentiment_rows(n)
        with open(tmp_path / f"{split}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("text", "label"), *zip(rows["text"], rows["label"])])
    head = f"""\
version: 1
name: cli
model: {{name: {tiny_bert_dir}, source: local}}
task: {{data: {{files: {{train: train.csv, validation: validation.csv, test: test.csv}}}}}}
stages:
  - {{name: teacher, strategy: finetune}}
  - {{name: int8, strategy: quantize.dynamic-int8}}
"""
    plain = tmp_path / "plain.yaml"
    plain.write_text(head)
    assert main(["tune", str(plain)]) == 2
    err = capsys.readouterr().err
    assert "no search block" in err and f"{plain}:" in err

    recipe = tmp_path / "search.yaml"
    recipe.write_text(head + "search:\n  objective: size\n  constraint: {max_loss: 1, reference: teacher}\n"
                      "  space: {int8.per_channel: {choices: [true, false]}}\n")
    assert main(["tune", str(recipe), "--trials", "0"]) == 2
    assert "--trials must be at least 1" in capsys.readouterr().err

    folder = tmp_path / "tune"
    folder.mkdir()
    (folder / "keep.txt").write_text("earlier work")
    assert main(["tune", str(recipe), "--run-dir", str(folder)]) == 2
    assert "already exists" in capsys.readouterr().err and (folder / "keep.txt").exists()
