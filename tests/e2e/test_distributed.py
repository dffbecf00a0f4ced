"""One recipe under a launcher: ``torchrun --nproc_per_node 2 -m compressor run`` on CPU (gloo).

A tiny BERT is fine-tuned (a training stage: both processes, DDP through the Trainer) and
then quantised to dynamic int8 (not a training stage: rank 0 alone), and both models are
evaluated. Checked against the same recipe run in one process:

- the run directory has the same files (artifacts, manifest, results.json with the same
  records and keys, report), except the Trainer's per-process RNG states in checkpoints;
- the manifest records the global batch: 16 examples per step = 8 per process x 2;
- the fine-tuned weights agree with the single-process ones to float32 rounding. Both runs
  draw the same global batches (the Trainer's seeded sampler; under DDP each process takes
  its 8-example half of the same 16), the model has no dropout (dropout masks would be drawn
  per process, from other random streams than one process's), and each process's loss is
  the mean over its 8 examples, which DDP averages: what differs is the order of the
  floating-point sums (the gradient all-reduce, batch-of-8 against batch-of-16 kernels).
  Measured: largest weight difference 1.2e-7, L2 distance 9e-7 against 0.98 of training
  displacement. The test allows 1e-4 on the largest difference, 1e-4 relative in L2;
- rank 1 is killed (SIGKILL) in the middle of training, after a checkpoint: the launch ends
  (the launcher stops rank 0), nothing of the stage is published, and ``--resume`` under
  the launcher continues from the checkpoint to the same weights.

The two launches take about 30 s each on 2 idle cores (process start, imports, rendezvous);
the resumed launch is the one compared with the single process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is needed", allow_module_level=True)

from safetensors.torch import load_file  # noqa: E402

from compressor.pipeline import run  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import make_tiny_bert, sentiment_rows  # noqa: E402

RECIPE = """\
version: 1
name: ddp
seed: 0
model: {name: model, source: local}
task:
  type: text-classification
  data:
    files: {train: train.csv, validation: validation.csv, test: test.csv}
evaluation:
  baseline: false
  latency: false
  memory: false
  flops: false
  sequence_length: 16
  bootstrap_resamples: 100
stages:
  - name: teacher
    strategy: finetune
    config: {epochs: 1, batch_size: 16, learning_rate: 1.0e-3, eval_steps: 6, max_length: 16,
             logging_steps: 4, eval_batch_size: 32}
  - name: int8
    strategy: quantize.dynamic-int8
"""

# Kills rank 1 (SIGKILL, as the OOM killer would) when its Trainer ends step KILL_AT_STEP.
KILLER = """\
import os, signal, sys
from transformers import Trainer, TrainerCallback

class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(os.environ["KILL_AT_STEP"]) and os.environ["RANK"] == "1":
            os.kill(os.getpid(), signal.SIGKILL)

_init = Trainer.__init__
def init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.add_callback(Kill())
Trainer.__init__ = init

from compressor.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    model = make_tiny_bert(root / "model")
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    (model / "config.json").write_text(json.dumps(config))
    for split, n, seed in (("train", 192, 0), ("validation", 32, 1), ("test", 32, 2)):
        rows = sentiment_rows(n, seed)
        with open(root / f"{split}.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(zip(rows["text"], rows["label"]))
    (root / "recipe.yaml").write_text(textwrap.dedent(RECIPE))
    (root / "killer.py").write_text(KILLER)
    return root


def torchrun(workspace: Path, *args: str, script: str | None = None, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [script] if script else ["-m", "compressor"]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **env}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environ.pop(key, None)
    return subprocess.run(
        command + ["run", "recipe.yaml", "--no-progress", *args], cwd=workspace, env=environ,
        capture_output=True, text=True, timeout=600,
    )


def files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_two_processes_match_one_and_resume_after_a_killed_rank(workspace: Path) -> None:
    single = run(workspace / "recipe.yaml", run_dir=workspace / "run1", progress=False)
    run_dir = workspace / "run2"

    killed = torchrun(workspace, "--run-dir", str(run_dir), script="killer.py", KILL_AT_STEP="9")
    assert killed.returncode != 0, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert "Signals.SIGKILL" in killed.stderr or "signal 9" in killed.stderr.lower(), killed.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    teacher = next(s for s in manifest["stages"] if s["name"] == "teacher")
    assert teacher["status"] in ("running", "failed") and manifest["status"] != "done"
    assert not (run_dir / "artifacts" / "01-teacher").exists()
    assert (run_dir / "work" / "01-teacher" / "checkpoint-6").is_dir()

    resumed = torchrun(workspace, "--run-dir", str(run_dir), "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    # rank 0 alone printed the comparison table
    assert resumed.stdout.count("report: ") == 1

    # same layout: artifacts, manifest, results, report; the checkpoints differ only by the
    # RNG state of each process, and rank 0 may have left the traceback of the killed
    # attempt (the process group broke under it) as a failed single-process stage does
    one, two = files(workspace / "run1"), files(run_dir)
    assert {f for f in one ^ two if "rng_state" not in f} - {"work/01-teacher.traceback.txt"} == set()
    assert not any("rank-1.output" in f for f in two)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["processes"] == 2
    stages = {s["name"]: s for s in manifest["stages"]}
    assert stages["teacher"]["batch"] == {
        "global_batch": 16, "per_device_batch": 8, "processes": 2, "gradient_accumulation_steps": 1,
    }
    assert "batch" not in stages["int8"]  # rank 0 alone
    lineage = json.loads((run_dir / "artifacts" / "01-teacher" / "lineage.json").read_text())
    extra = lineage["lineage"]["extra"]
    assert extra["resumed_from_checkpoint"] == "checkpoint-6"
    assert (extra["global_batch"], extra["per_device_batch"], extra["processes"]) == (16, 8, 2)
    assert extra["global_step"] == 12  # 192 rows / 16 per step, as in one process
    assert single.artifacts["teacher"].lineage.extra["global_step"] == 12

    results_one = json.loads((workspace / "run1" / "results.json").read_text())
    results_two = json.loads((run_dir / "results.json").read_text())
    assert [r["model"] for r in results_two] == [r["model"] for r in results_one] == ["teacher", "int8"]
    assert [sorted(r) for r in results_two] == [sorted(r) for r in results_one]

    start = load_file(str(workspace / "model" / "model.safetensors"))
    w1 = load_file(str(workspace / "run1" / "artifacts" / "01-teacher" / "model.safetensors"))
    w2 = load_file(str(run_dir / "artifacts" / "01-teacher" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    moved = sum(float(((w1[k] - start[k]) ** 2).sum()) for k in w1 if k in start) ** 0.5
    apart = sum(float(((w1[k] - w2[k]) ** 2).sum()) for k in w1) ** 0.5
    largest = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    assert moved > 0.1  # training moved the weights...
    assert apart < 1e-4 * moved and largest < 1e-4  # ...and both runs moved them alike
    # the same accuracy on the same test rows
    assert results_two[0]["accuracy"]["accuracy"] == results_one[0]["accuracy"]["accuracy"]
