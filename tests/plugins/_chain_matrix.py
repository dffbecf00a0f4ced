"""The chain matrix: every producer strategy into every consumer strategy, on a tiny model.

Shared by tests/plugins/test_chain_matrix.py (which asserts it and checks docs/chains.md)
and nothing else. One run of :func:`run_matrix`:

1. a tiny random model of the family (4 layers, 4 heads of size 8, FFN 64) is fine-tuned on
   the kit's tiny sentiment task, so that its predictions are confident (about 94-100% test
   accuracy) and a broken chain shows as a drop, not as noise around chance;
2. for each pair ``producer -> consumer``, the two-stage recipe is validated as
   ``compressor validate`` does (:func:`compressor.load_recipe`); a refusal is recorded with
   its reason and nothing runs;
3. otherwise the producer runs once on the fine-tuned model, the consumer on its output,
   each through ``apply`` as the orchestrator calls it; both outputs are loaded through
   their format's handler (the evaluation backend) and scored on the kit's test split.

A pair passes when it was refused by validation, or when it ran and the consumer's output
scores within :func:`tolerance` of its input.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compressor import load_recipe
from compressor.artifact import Artifact
from compressor.errors import CompressorError, RecipeError
from compressor.evaluate.backends import backend_for
from compressor.plugins import get_plugins
from compressor.testing import apply_strategy, tiny_model, tiny_task_data, write_tiny_task_files

#: the tiny model's shape: 4 layers of 4 heads, so pruning can leave uneven head counts
MODEL = {"num_hidden_layers": 4, "num_attention_heads": 4}

TRAIN = {"max_steps": 3, "batch_size": 16, "learning_rate": 1e-3, "warmup_ratio": 0.0, "logging_steps": 100}
#: the saturation check is tested on its own (test_quantization_isa.py): here it would only
#: add two ONNX Runtime sessions per quantisation
ORT = {"saturation_check": False}
IMPORTANCE = {"importance_samples": 32, "importance_batch_size": 16, "max_length": 32}

#: producer -> config: every strategy that makes a model
PRODUCERS: dict[str, dict[str, Any]] = {
    "finetune": TRAIN,
    "distill.distilbert": {"student_layers": 2, **TRAIN},
    "prune.heads": {"fraction": 0.5, **IMPORTANCE},  # global ranking: uneven head counts
    "prune.ffn": {"fraction": 0.5, "scope": "global", **IMPORTANCE},  # per-layer widths
    "prune.layers": {"count": 1, **IMPORTANCE},
    "prune.magnitude": {"sparsity": 0.5, **TRAIN},
    "prune.movement": {"sparsity": 0.5, **TRAIN},
    "quantize.dynamic-int8": {},
    "quantize.half": {"dtype": "bfloat16"},
    "quantize.ort-dynamic": {"optimization": "O2", **ORT},
    "quantize.ort-static": {"calibration_samples": 16, "max_length": 32, **ORT},
    "export.onnx": {"optimization": "O2", "parity_samples": 8, "max_length": 32},
}

#: consumer -> config: every strategy that takes a model
CONSUMERS: dict[str, dict[str, Any]] = {
    "quantize.dynamic-int8": {},
    "quantize.half": {"dtype": "bfloat16"},
    "quantize.ort-dynamic": ORT,  # O2 for a PyTorch input
    "quantize.ort-static": {"calibration_samples": 16, "max_length": 32, **ORT},
    "export.onnx": {"optimization": "O2", "parity_samples": 8, "max_length": 32},
    "distill.distilbert": {"student_layers": 1, **TRAIN},
    "prune.heads": {"fraction": 0.25, **IMPORTANCE},
    "prune.ffn": {"fraction": 0.25, "scope": "global", **IMPORTANCE},
    "prune.layers": {"count": 1, **IMPORTANCE},
    "prune.magnitude": {"sparsity": 0.3, **TRAIN},
    "prune.movement": {"sparsity": 0.3, **TRAIN},
}


def tolerance(consumer: str) -> float:
    """Largest drop of test accuracy, in points, a consumer may cause on the tiny model.

    Conversions that mean to keep the function (int8, half, ONNX export) may lose at most
    10 points on 64 test rows (int8 of a 32-wide model is coarse); the lossy methods, run
    with a few training steps and no recovery, at most 30: enough to tell a working model
    from a broken chain, which falls to chance (50%) or below.
    """
    return 10.0 if consumer.startswith(("quantize.", "export.")) else 30.0


@dataclass
class Cell:
    """One pair's outcome: ``"ok"`` (ran; accuracies before and after), ``"refused"``
    (validation's reason), ``"failed"`` (what went wrong) or ``"not run"`` (accepted by
    validation, its producer left to the slow suite)."""

    producer: str
    consumer: str
    status: str
    before: float | None = None
    after: float | None = None
    reason: str = ""
    made: dict[str, Any] | None = None  # the producer's lineage extra

    @property
    def passed(self) -> bool:
        if self.status in ("refused", "not run"):
            return True
        return self.status == "ok" and self.after is not None and self.before is not None and (
            (self.before - self.after) * 100 <= tolerance(self.consumer)
        )

    def markdown(self) -> str:
        if self.status == "ok":
            return f"{(self.after - self.before) * 100:+.1f}"
        return "refused" if self.status == "refused" else "FAILED"


def accuracy(artifact: Artifact, data: Any) -> float:
    """Test accuracy of ``artifact``, loaded through its format's handler (evaluation backend)."""
    backend = backend_for(artifact, get_plugins().backends).load(
        artifact, task_type="text-classification", threads=1
    )
    test = data.splits["test"]
    batch = backend.encode(list(test["text"]), padding=True, max_length=32)
    predicted = backend.predict_logits(batch).argmax(-1)
    return float((predicted == np.asarray(test["label"])).mean())


def recipe(folder: Path, model: Path, files: dict[str, str], stages: list[tuple[str, str, dict]]) -> Path:
    """A recipe of ``stages`` (name, strategy, config) on ``model`` and the kit's data files."""
    text = {
        "version": 1,
        "name": "chain",
        "model": {"source": "local", "name": str(model)},
        "task": {"type": "text-classification",
                 "data": {"files": {k: str(folder / "data" / v) for k, v in files.items()}}},
        "stages": [{"name": n, "strategy": s, "config": c} for n, s, c in stages],
    }
    path = folder / f"{'-'.join(n for n, _, _ in stages)}.yaml"
    path.write_text(json.dumps(text, indent=1))  # JSON is YAML
    return path


def run_matrix(arch: str, *, run: tuple[str, ...] | None = None, root: Path | None = None) -> list[Cell]:
    """Every pair of :data:`PRODUCERS` x :data:`CONSUMERS` on a tiny fine-tuned model of
    family ``arch`` (a key of :data:`compressor.testing.ARCHITECTURES`).

    :param run: the producers whose accepted pairs are run (default: all); every pair is
        validated, and an accepted pair of another producer is recorded as ``"not run"``.
    :returns: one :class:`Cell` per pair, producers in the outer loop.
    """
    import torch

    torch.set_num_threads(1)  # tiny models: more threads only spin on a busy 2-core machine
    root = Path(root or tempfile.mkdtemp(prefix=f"chains-{arch}-"))
    data = tiny_task_data(n_train=128, n_eval=64)
    files = write_tiny_task_files(root / "data", n_train=128, n_eval=64)
    base = tiny_model(arch, root / "random", config=MODEL)
    teacher = apply_strategy("finetune", base, {**TRAIN, "max_steps": 80, "learning_rate": 2e-3, "warmup_ratio": 0.1},
                             root / "teacher",
                             data=data, stage_name="teacher")
    cells: list[Cell] = []
    for producer in PRODUCERS:
        made: Artifact | None = None
        failure = ""
        for consumer in CONSUMERS:
            path = recipe(root, Path(teacher.path), files,
                          [("p", producer, PRODUCERS[producer]), ("c", consumer, CONSUMERS[consumer])])
            try:
                load_recipe(path)
            except RecipeError as exc:
                cells.append(Cell(producer, consumer, "refused", reason=exc.message))
                continue
            if run is not None and producer not in run:
                cells.append(Cell(producer, consumer, "not run"))
                continue
            if made is None and not failure:
                try:
                    made = apply_strategy(producer, teacher, PRODUCERS[producer], root / "p" / producer,
                                          data=data, stage_name="p")
                    made = Artifact(name="baseline", path=made.path, format=made.format, lineage=made.lineage)
                    before = accuracy(made, data)
                except (CompressorError, RuntimeError, ValueError, AssertionError) as exc:
                    failure = f"producer: {type(exc).__name__}: {exc}"
            if failure:
                cells.append(Cell(producer, consumer, "failed", reason=failure))
                continue
            try:
                out = apply_strategy(consumer, made, CONSUMERS[consumer],
                                     root / "c" / producer / consumer, data=data, stage_name="c")
                cells.append(Cell(producer, consumer, "ok", before=before, after=accuracy(out, data),
                                  made=made.lineage.extra))
            except (CompressorError, RuntimeError, ValueError, AssertionError, KeyError) as exc:
                cells.append(Cell(producer, consumer, "failed", reason=f"{type(exc).__name__}: {exc}"))
    return cells
