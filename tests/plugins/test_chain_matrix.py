"""Every producer into every consumer (tests/plugins/_chain_matrix.py), on tiny fine-tuned
models of BERT, RoBERTa and ModernBERT with uneven head counts after pruning: each pair runs
and its output scores within tolerance of its input, or is refused by recipe validation.

The default suite runs every pair on BERT and checks BERT's table in docs/chains.md. ``-m slow``
runs on RoBERTa and ModernBERT the pairs of the producers whose output depends on the family
(:data:`FAMILY_PRODUCERS`), then every pair on every family, and checks the whole table.

docs/chains.md holds the generated table; regenerate it with
``COMPRESSOR_REGEN_DOCS=1 python -m pytest tests/plugins/test_chain_matrix.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import pytest

from _chain_matrix import CONSUMERS, PRODUCERS, Cell, run_matrix, tolerance

DOC = Path(__file__).resolve().parents[2] / "docs" / "chains.md"
BEGIN, END = "<!-- chains:begin -->", "<!-- chains:end -->"
ARCHITECTURES = ("bert", "roberta", "modernbert")

#: producers whose output's shapes or graph depend on the family (a student, pruned layers,
#: an exported graph); finetune and unstructured pruning keep the input's shapes, and the
#: quantisers' outputs go only where validation lets them, as on BERT
FAMILY_PRODUCERS = ("distill.distilbert", "prune.heads", "prune.ffn", "prune.layers", "export.onnx")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch) -> Callable[[str], list[Cell]]:
    """Runs (once per architecture, on demand) and caches :func:`run_matrix`."""
    cache: dict[tuple[str, bool], list[Cell]] = {}

    def get(arch: str, full: bool = False) -> list[Cell]:
        full = full or arch == "bert" or bool(os.environ.get("COMPRESSOR_REGEN_DOCS"))
        if (arch, True) in cache:
            return cache[(arch, True)]
        if (arch, full) not in cache:
            cache[(arch, full)] = run_matrix(arch, run=None if full else FAMILY_PRODUCERS,
                                             root=tmp_path_factory.mktemp(f"chains-{arch}"))
        return cache[(arch, full)]

    return get


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory: pytest.TempPathFactory):
    """A CPU with bf16 (faked: quantize.half checks the CPU's flags) for the whole module."""
    cpuinfo = tmp_path_factory.mktemp("cpu") / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Faked Xeon with AMX\n"
        "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n\n"
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("COMPRESSOR_CPUINFO", str(cpuinfo))
    yield mp
    mp.undo()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES[1:])
def test_every_pair_on_every_family(matrix, arch: str) -> None:
    check(matrix(arch, full=True))


# after the full runs above, so that in a slow run these reuse them (the fixture's cache)
@pytest.mark.parametrize("arch", ["bert", *(pytest.param(a, marks=pytest.mark.slow) for a in ARCHITECTURES[1:])])
def test_every_pair_runs_within_tolerance_or_is_refused_by_validation(matrix, arch: str) -> None:
    check(matrix(arch))


def check(cells: list[Cell]) -> None:
    """Every pair passed; the pairs that show the chains work did run."""
    assert len(cells) == len(PRODUCERS) * len(CONSUMERS)
    bad = [
        f"{c.producer} -> {c.consumer}: {c.status}"
        + (f" {c.before:.3f} -> {c.after:.3f} (tolerance {tolerance(c.consumer)} pts)" if c.status == "ok" else f": {c.reason}")
        for c in cells
        if not c.passed
    ]
    assert not bad, "\n".join(bad)
    ran = [c for c in cells if c.status == "ok"]
    # pruned and distilled models go everywhere a model goes, quantised ones nowhere but ORT
    for producer in ("prune.heads", "prune.ffn", "prune.layers", "distill.distilbert"):
        assert {c.consumer for c in ran if c.producer == producer} == set(CONSUMERS), producer
    assert all(c.producer not in FAMILY_PRODUCERS for c in cells if c.status == "not run")
    assert {(c.producer, c.consumer) for c in ran if c.producer.startswith("quantize.")} == set()
    assert ("export.onnx", "quantize.ort-dynamic") in {(c.producer, c.consumer) for c in ran}
    heads = next(c.made for c in ran if c.producer == "prune.heads")["heads_after"]
    assert len(set(heads)) > 1, f"prune.heads left even head counts {heads}: the matrix misses uneven ones"


def table(arch: str, cells: list[Cell], notes: list[str]) -> list[str]:
    """Markdown rows: one per producer, one column per consumer; ``runs`` or ``refused [n]``
    (the reasons are numbered in ``notes``, shared by the architectures); a producer with a
    pair not run gets the row ``NOT RUN`` (never in the docs: they are generated with every
    pair run)."""
    rows = ["| producer \\ consumer | " + " | ".join(f"`{c}`" for c in CONSUMERS) + " |",
            "| --- |" + " --- |" * len(CONSUMERS)]
    by = {(c.producer, c.consumer): c for c in cells}
    for producer in PRODUCERS:
        out = []
        for consumer in CONSUMERS:
            c = by[(producer, consumer)]
            if c.status == "refused":
                reason = re.sub(r"^stage 'c' \([^)]*\) cannot run on its input 'p': ", "", c.reason)
                reason = reason.replace("its input 'p'", "its input")
                if reason not in notes:
                    notes.append(reason)
                out.append(f"refused [{notes.index(reason) + 1}]")
            else:
                out.append("runs" if c.passed else "FAILS")
        if any(by[(producer, c)].status == "not run" for c in CONSUMERS):
            out = ["NOT RUN"]
        rows.append(f"| `{producer}` | " + " | ".join(out) + " |")
    return [f"### {arch}", "", *rows, ""]


def _check_docs(matrix, architectures: tuple[str, ...]) -> None:
    notes: list[str] = []
    lines: list[str] = []
    for arch in architectures:
        lines += table(arch, matrix(arch), notes)
    lines += ["Refusals (by `compressor validate`, before anything runs):", ""]
    lines += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    generated = "\n".join(lines) + "\n"
    text = DOC.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    if os.environ.get("COMPRESSOR_REGEN_DOCS"):
        assert architectures == ARCHITECTURES, "regenerate with -m 'slow or not slow' (every family)"
        DOC.write_text(text[:start] + "\n" + generated + text[end:], encoding="utf-8")
        return
    documented = text[start:end].strip().splitlines()
    wanted = [line for line in generated.strip().splitlines() if "NOT RUN" not in line]
    # every generated line is in the docs, in order (BERT's table comes first, so its refusal
    # notes keep their numbers when it is checked alone)
    it = iter(documented)
    missing = [line for line in wanted if not any(line == d for d in it)]
    complete = architectures != ARCHITECTURES or len(documented) == len(generated.strip().splitlines())
    assert not missing and complete, (
        "docs/chains.md is out of date (" + "; ".join(missing[:3]) + "): COMPRESSOR_REGEN_DOCS=1 "
        "python -m pytest tests/plugins/test_chain_matrix.py -m 'slow or not slow'"
    )


def test_docs_table_matches_the_matrix(matrix) -> None:
    """BERT's table and the refusals it meets (RoBERTa's and ModernBERT's: ``-m slow``)."""
    _check_docs(matrix, ("bert",))


@pytest.mark.slow
def test_docs_table_of_every_family_matches_the_matrix(matrix) -> None:
    _check_docs(matrix, ARCHITECTURES)
