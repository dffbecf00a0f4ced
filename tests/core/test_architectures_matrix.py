"""Every built-in architecture adapter on a tiny random model of its family, and the
compatibility table docs/architectures.md generated from them.

- :func:`test_declared_roles_work` runs the core surgery of each role the adapter supports
  (layer dropping and a layer-copied student, head and FFN removal, magnitude masks), plus a
  training step and PyTorch dynamic int8, and reloads the result; a refused role must fail
  with a :class:`StageError`, never a traceback.
- :func:`test_onnx_export` (slow) exports each model the adapter says exports.
- :func:`test_docs_table_matches_the_matrix` checks docs/architectures.md against
  :func:`matrix_markdown`; regenerate it with
  ``COMPRESSOR_REGEN_DOCS=1 python -m pytest tests/core/test_architectures_matrix.py -k docs``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from _tiny_encoders import ARCHITECTURES, inputs, tiny_config, tiny_model

from compressor.architectures import adapter_for, encoder_layout, head_counts, refuse, registered_adapters
from compressor.errors import StageError
from compressor.plugins import get_plugins

DOC = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"

#: the strategies of the table, in column order (the user's report of issue #13)
STRATEGIES = (
    "finetune", "distill.distilbert", "prune.heads", "prune.ffn", "prune.layers",
    "prune.magnitude", "quantize.dynamic-int8", "quantize.ort-dynamic", "export.onnx",
)


def cell(arch: str, strategy: str) -> str:
    """``"yes"``, or ``"no: <reason>"`` from the adapter's refusals of the strategy's roles."""
    config = tiny_config(arch)
    refused = adapter_for(config).refusals(config)
    roles = getattr(get_plugins().strategies[strategy], "requires_roles", ())
    reasons = [f"{r}: {refused[r]}" for r in roles if r in refused]
    return "yes" if not reasons else "no (" + "; ".join(reasons) + ")"


def matrix_markdown() -> str:
    """The table: one row per architecture of tests/_tiny_encoders.py, one column per
    strategy in :data:`STRATEGIES`; refusal reasons are numbered below it."""
    notes: list[str] = []
    rows = []
    header = "| model_type | adapter | " + " | ".join(f"`{s}`" for s in STRATEGIES) + " |"
    rows.append(header)
    rows.append("| --- | --- | " + " | ".join("---" for _ in STRATEGIES) + " |")
    for arch in sorted(ARCHITECTURES):
        adapter = adapter_for(tiny_config(arch))
        cells = []
        for s in STRATEGIES:
            c = cell(arch, s)
            if c == "yes":
                cells.append("yes")
            else:
                reason = c[4:-1]
                if reason not in notes:
                    notes.append(reason)
                cells.append(f"no [{notes.index(reason) + 1}]")
        rows.append(f"| `{arch}` | {type(adapter).__name__} | " + " | ".join(cells) + " |")
    lines = [*rows, ""]
    lines += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def test_every_tested_architecture_has_a_registered_adapter() -> None:
    registered = registered_adapters()
    assert set(ARCHITECTURES) <= set(registered), set(ARCHITECTURES) - set(registered)


def test_docs_table_matches_the_matrix() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = matrix_markdown()
    block = f"{BEGIN}\n{table}{END}"
    if os.environ.get("COMPRESSOR_REGEN_DOCS"):
        DOC.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S),
                       encoding="utf-8")
        text = DOC.read_text(encoding="utf-8")
    assert block in text, (
        "docs/architectures.md is out of date: regenerate it with COMPRESSOR_REGEN_DOCS=1 "
        "python -m pytest tests/core/test_architectures_matrix.py -k docs"
    )


def _logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs()).logits


def _refused(model: Any, role: str) -> bool:
    if adapter_for(model).refusal(role, model.config) is None:
        return False
    with pytest.raises(StageError, match="does not support"):
        refuse(model, role)
    return True


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_declared_roles_work(arch: str, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification as Auto

    from compressor.structure import load_pretrained, save_pretrained
    from compressor_distillation.student import build_student
    from compressor_pruning.magnitude import apply_masks_, magnitude_masks, prunable_weights
    from compressor_pruning.structured import drop_layers_, prune_ffn_, prune_heads_

    # a training step (finetune, distillation) and PyTorch dynamic int8
    model = tiny_model(arch).train()
    model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
    quantized = torch.ao.quantization.quantize_dynamic(tiny_model(arch), {torch.nn.Linear}, dtype=torch.qint8)
    assert _logits(quantized).shape == (2, 3)

    # layers: drop one, and copy a 2-layer student
    if not _refused(model, "layers"):
        dropped = tiny_model(arch)
        assert drop_layers_(dropped, [1]) == [0, 2]
        student, _ = build_student(tiny_model(arch), [0, 2])
        assert _logits(student.eval()).shape == (2, 3)
        save_pretrained(dropped, tmp_path / "layers")
        assert torch.allclose(_logits(load_pretrained(Auto, tmp_path / "layers")), _logits(dropped), atol=1e-5)

    # heads, FFN neurons and magnitude masks on one model, reloaded once
    model = tiny_model(arch)
    if not _refused(model, "heads"):
        before = head_counts(model)
        # two heads; with grouped key/value heads (2 query heads each), the whole last group
        prune_heads_(model, {0: [2, 3] if encoder_layout(model).grouped_kv else [1, 2]})
        assert head_counts(model)[0] == before[0] - 2
    if not _refused(model, "ffn"):
        from compressor.architectures import ffn_unit_widths

        widths = ffn_unit_widths(model)
        prune_ffn_(model, [list(range(0, w, 2 if i % 2 else 3)) for i, w in enumerate(widths)])
        assert ffn_unit_widths(model) != widths
    if not _refused(model, "weights"):
        weights = prunable_weights(model)
        apply_masks_(weights, magnitude_masks(weights, 0.5, "global"))
    expected = _logits(model)
    save_pretrained(model, tmp_path / "pruned")
    again = load_pretrained(Auto, tmp_path / "pruned")
    assert torch.allclose(_logits(again), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_onnx_export(arch: str, tmp_path: Path) -> None:
    from compressor import testing
    from compressor.onnx_export import export_module, optimize_onnx

    model = tiny_model(arch)
    if _refused(model, "onnx"):
        return
    out = tmp_path / "model.onnx"
    export_module(model, testing.tiny_tokenizer("bert"), out, exporter="auto")
    optimize_onnx(out, tmp_path / "opt.onnx", model_type=arch, level="O2", num_heads=4, hidden_size=32)


def test_albert_student_and_pruning_act_on_the_shared_layer() -> None:
    from compressor_distillation.student import build_student
    from compressor_pruning.structured import drop_layers_, prune_heads_

    teacher = tiny_model("albert")
    student, layer_list = build_student(teacher, [0, 1])
    assert layer_list.shared and student.config.num_hidden_layers == 2
    t_state = teacher.state_dict()
    assert all(torch.equal(v, t_state[k]) for k, v in student.state_dict().items())  # same weights
    assert drop_layers_(teacher, [2]) == [0, 1] and teacher.config.num_hidden_layers == 2
    prune_heads_(teacher, {0: [3]})
    assert head_counts(teacher) == [3]  # one shared layer module, run twice
    assert _logits(teacher).shape == (2, 3)


def test_modernbert_student_must_start_at_layer_0() -> None:
    from compressor_distillation.student import build_student

    with pytest.raises(StageError, match="teacher layer 0"):
        build_student(tiny_model("modernbert"), [1, 2])
