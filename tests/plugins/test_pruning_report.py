"""The report's "no measured speedup" flag and sparsity column (compressor.report.tables)."""

from __future__ import annotations

from typing import Any

from compressor.report.tables import no_speedup_flag, render_table


def _result(name: str, params: int, p50: dict[int, float], *, zeros: int = 0, ref: str | None = None) -> dict[str, Any]:
    return {
        "model": name,
        "strategy": None if ref is None else "prune.x",
        "reference": ref,
        "size": {
            "params": params,
            "disk_bytes": params * 4,
            "sparsity": zeros / 1000,
            "structure": {"zero_weights": zeros, "linear_weights": 1000},
        },
        "latency": [{"batch_size": bs, "p50_ms": v} for bs, v in p50.items()],
    }


BASE = _result("baseline", 1000, {1: 10.0, 32: 100.0})


def test_flag_when_smaller_but_not_faster() -> None:
    masked = _result("sparse", 1000, {1: 9.8, 32: 99.0}, zeros=800, ref="baseline")
    assert no_speedup_flag(masked, BASE) == "no measured speedup (bs1, bs32)"
    fewer = _result("heads", 850, {1: 9.0, 32: 97.0}, ref="baseline")  # faster at bs1 only
    assert no_speedup_flag(fewer, BASE) == "no measured speedup (bs32)"


def test_no_flag_when_faster_or_not_smaller() -> None:
    faster = _result("heads", 600, {1: 7.0, 32: 60.0}, ref="baseline")
    assert no_speedup_flag(faster, BASE) is None
    same_size = _result("ft", 1000, {1: 10.0, 32: 100.0}, ref="baseline")  # fine-tuned: not smaller
    assert no_speedup_flag(same_size, BASE) is None
    slightly = _result("tiny-prune", 950, {1: 10.0, 32: 100.0}, zeros=40, ref="baseline")  # < 10%
    assert no_speedup_flag(slightly, BASE) is None
    assert no_speedup_flag(same_size, None) is None


def test_table_shows_sparsity_and_the_flag_only_when_needed() -> None:
    masked = _result("sparse", 1000, {1: 9.9, 32: 101.0}, zeros=800, ref="baseline")
    table = render_table([BASE, masked])
    assert "sparsity (%)" in table and "80.0" in table
    assert "no measured speedup (bs1, bs32)" in table and "speed check" in table
    faster = _result("heads", 600, {1: 7.0, 32: 60.0}, ref="baseline")
    plain = render_table([BASE, faster])
    assert "speed check" not in plain and "sparsity" not in plain


def test_pruning_plugin_registers_through_its_entry_point() -> None:
    import importlib.metadata as md

    from compressor.plugins import Plugins

    eps = {ep.name: ep.value for ep in md.entry_points(group="compressor")}
    assert eps.get("pruning") == "compressor_pruning.plugin"
    plugins = Plugins().load()
    assert plugins.infos["pruning"].strategies == [
        "prune.magnitude", "prune.movement", "prune.heads", "prune.ffn", "prune.layers"
    ]
    assert not plugins.infos["pruning"].error
