"""Records for the report tests, made by the real evaluator on tiny models.

Three tiny BERT classifiers (random weights, a real WordPiece tokenizer, nothing downloaded)
are evaluated once per test session by :func:`compressor.evaluate.evaluator.evaluate_records`
with fast settings, so every report test reads records with exactly the evaluator's fields:
a field renamed on one side fails here instead of printing ``-``. Tests that need a
particular value (a busy machine, a collapsed model) change a deep copy, through the typed
models (an unknown field name is an error).

- ``baseline``: 2 layers, hidden 32;
- ``student``: 1 layer, hidden 16, reference ``baseline`` (smaller: relative columns);
- ``orphan``: 2 layers, reference ``missing`` (not evaluated: no relative columns).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from compressor.artifact import Artifact, Lineage
from compressor.evaluate import EvaluationSettings
from compressor.evaluate.records import EvaluationRecord

#: The evaluator's settings for the session's records: latency at 2 batch sizes x 2 lengths,
#: a few calls per cell, a short matmul calibration, memory and FLOPs on.
SETTINGS = dict(
    batch_sizes=[1, 4],
    sequence_lengths=[16, 32],
    threads=1,
    warmup=1,
    min_runs=3,
    max_runs=6,
    min_time_s=0.0,
    accuracy_batch_size=16,
    calibration_s=0.02,
    bootstrap_resamples=200,
)

#: name -> (layers, hidden, seed, strategy, reference)
MODELS = {
    "baseline": (2, 32, 0, None, None),
    "student": (1, 16, 1, "distill.distilbert", "baseline"),
    "orphan": (2, 32, 2, "prune.heads", "missing"),
}


def save_tiny_bert(path: Path, *, layers: int, hidden: int, seed: int) -> Path:
    """A random BertForSequenceClassification with the conformance kit's WordPiece tokenizer;
    a wide initialisation so the logits differ between inputs (not one class for all)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from compressor.testing import tiny_tokenizer

    tok = tiny_tokenizer("bert")
    config = BertConfig(
        vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=64, num_labels=2,
        pad_token_id=tok.pad_token_id, initializer_range=0.5,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).eval().save_pretrained(path)
    tok.save_pretrained(path)
    return path


@dataclass
class Evaluated:
    """The session's evaluation: its folder, the artifacts and the records."""

    root: Path
    artifacts: dict[str, Artifact]
    records: list[EvaluationRecord]


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Evaluated:
    """:data:`MODELS` evaluated once per session (a few seconds)."""
    from compressor.evaluate.evaluator import evaluate_records
    from compressor.testing import tiny_task_data

    root = tmp_path_factory.mktemp("evaluated")
    artifacts = {}
    for name, (layers, hidden, seed, strategy, reference) in MODELS.items():
        path = save_tiny_bert(root / "artifacts" / name, layers=layers, hidden=hidden, seed=seed)
        art = Artifact(name=name, path=path, lineage=Lineage(
            stage=name, strategy=strategy, parent=reference, reference=reference,
            config={"epochs": 1} if strategy else {}))
        art.save()
        artifacts[name] = art
    records = evaluate_records(
        list(artifacts.values()), tiny_task_data(n_eval=48), EvaluationSettings(**SETTINGS),
        progress=False, output_dir=root / "run",
    )
    return Evaluated(root, artifacts, records)


@pytest.fixture
def results(evaluated: Evaluated) -> list[EvaluationRecord]:
    """Deep copies of the session's records (baseline, student, orphan): free to change."""
    return [r.model_copy(deep=True) for r in evaluated.records]


@pytest.fixture
def artifacts(evaluated: Evaluated, tmp_path: Path) -> dict[str, Artifact]:
    """The session's artifacts copied into this test's folder (model cards write there)."""
    out = {}
    for name, art in evaluated.artifacts.items():
        folder = tmp_path / "artifacts" / name
        shutil.copytree(art.path, folder)
        out[name] = Artifact.load(folder)
    return out

