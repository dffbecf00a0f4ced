"""Tests of compressor-lowrank: the SVD maths on its own, then the strategy under the
conformance kit that compressor ships for plugin authors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from compressor import StageError, testing
from compressor_lowrank import LowRankConfig
from compressor_lowrank.svd import choose_rank, factorize_


def test_rank_r_factors_reproduce_the_best_rank_r_approximation() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 40)
    x = torch.randn(5, 48)
    u, s, vh = torch.linalg.svd(lin.weight.detach().double(), full_matrices=False)
    model = torch.nn.Sequential(lin)
    report = factorize_(model, rank=6, modules=r"^0$")
    down, up = model[0]
    assert down.weight.shape == (6, 48) and up.weight.shape == (40, 6) and down.bias is None
    best = (u[:, :6] * s[:6]) @ vh[:6]  # Eckart-Young: the best rank-6 approximation
    torch.testing.assert_close((up.weight @ down.weight).double(), best, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x), x @ best.float().T + lin.bias, atol=1e-5, rtol=1e-5)
    assert report.params_before == 48 * 40 + 40 and report.params_after == 6 * (48 + 40) + 40
    expected_err = float((s[6:] ** 2).sum().sqrt() / (s ** 2).sum().sqrt())
    assert report.relative_errors["0"] == pytest.approx(expected_err)


def test_full_rank_is_exact_and_unprofitable_layers_stay_dense() -> None:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(64, 4))
    report = factorize_(model, rank=3, modules=".")
    # 3 * (8 + 8) = 48 <= 64: factored; 3 * (64 + 4) = 204 <= 256: factored
    assert set(report.ranks) == {"0", "1"}
    report = factorize_(torch.nn.Sequential(torch.nn.Linear(8, 8)), rank=5, modules=".")
    assert report.dense == ["0"] and not report.ranks  # 5 * 16 = 80 > 64


def test_energy_picks_the_smallest_sufficient_rank() -> None:
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])  # squares 16, 4, 1, 1 of 22
    assert choose_rank(s, rank=None, energy=16 / 22) == 1
    assert choose_rank(s, rank=None, energy=0.75) == 2
    assert choose_rank(s, rank=None, energy=1.0) == 4
    assert choose_rank(s, rank=10, energy=None) == 4


def test_config_needs_exactly_one_of_rank_or_energy() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        LowRankConfig()
    with pytest.raises(ValidationError, match="exactly one"):
        LowRankConfig(rank=4, energy=0.5)
    with pytest.raises(ValidationError, match="regular expression"):
        LowRankConfig(rank=4, modules="(")


class TestLowRankConformance(testing.StrategyConformance):
    """The conformance kit: YAML round trip, unknown keys, clear errors, runs and reloads."""

    strategy = "lowrank.svd"
    config = {"rank": 8}
    architectures = ("bert", "distilbert", "deberta-v2")


def test_too_high_a_rank_is_a_clear_error(tmp_path: Path) -> None:
    model = testing.tiny_model("bert", tmp_path / "m")  # 32x32 and 32x64 layers
    with pytest.raises(StageError, match="none of the 12 matched layers") as info:
        testing.apply_strategy("lowrank.svd", model, LowRankConfig(rank=30), tmp_path)
    assert info.value.key == "config.rank"


def test_exported_onnx_model_computes_the_factored_model(tmp_path: Path) -> None:
    import copy

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = testing.tiny_model("bert", tmp_path / "m")
    data = testing.tiny_task_data(8, 8)
    texts = list(data.split("test")["text"])[:8]
    dense = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    factored = copy.deepcopy(dense)
    factorize_(factored, rank=4, modules="attention")
    enc = AutoTokenizer.from_pretrained(model_dir)(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        want = factored(**enc).logits.numpy()
        dense_logits = dense(**enc).logits.numpy()
    art = testing.apply_strategy(
        "lowrank.svd", model_dir, LowRankConfig(rank=4, modules="attention"), tmp_path, data=data
    )
    assert art.format == "onnx" and (art.path / "model.onnx").exists()
    extra = art.lineage.extra
    assert extra["factored_layers"] == 8 and extra["dense_layers"] == 0  # q, k, v, output x 2 layers
    assert extra["linear_params_after"] == 8 * (4 * 64 + 32) and extra["linear_params_before"] == 8 * (32 * 32 + 32)
    got = testing.check_artifact_reloads(art, data)
    onnx_vs_factored = abs(got - want).max()
    dense_vs_factored = abs(dense_logits - want).max()
    # ONNX Runtime runs the factored model (float rounding only), which is not the dense one
    assert onnx_vs_factored < dense_vs_factored / 20, (onnx_vs_factored, dense_vs_factored)
