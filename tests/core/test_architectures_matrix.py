"""The architecture matrix: every model type transformers maps to
``AutoModelForSequenceClassification``, and the compatibility table docs/architectures.md
generated from it.

Decoders and encoder-decoders (by transformers' auto classes,
:func:`compressor.architectures.model_kind`) must be refused by validation as "not an
encoder" (:func:`test_not_encoders_are_refused_by_validate`). Every encoder gets a tiny
random model (tests/_tiny_encoders.py) and, for each strategy of the table, either
validation refuses it (the cell says why) or its core computation runs on that model:

- :func:`test_declared_roles_work` runs the surgery of each role validation accepts (layer
  dropping and a layer-copied student, head and FFN removal, magnitude masks), plus a
  training step and PyTorch dynamic int8, and reloads the result; a role the adapter refuses
  must fail with a :class:`StageError`, never a traceback. The default suite runs one model
  type per adapter (:data:`DEFAULT_TYPES`); ``-m slow`` runs every encoder type.
- :func:`test_onnx_export` (slow) exports and optimises every model whose ``onnx`` role is
  accepted.
- :func:`test_docs_table_matches_the_matrix` checks docs/architectures.md against
  :func:`matrix_markdown`; regenerate it with
  ``COMPRESSOR_REGEN_DOCS=1 python -m pytest tests/core/test_architectures_matrix.py -k docs``.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

from _tiny_encoders import ARCHITECTURES, inputs, tiny_config, tiny_model

from compressor.architectures import (
    ENCODER,
    adapter_for,
    encoder_layout,
    head_counts,
    model_kind,
    model_refusal,
    refuse,
    registered_adapters,
    sequence_classification_types,
)
from compressor.errors import StageError
from compressor.plan import architecture_refusals
from compressor.plugins import get_plugins

DOC = Path(__file__).resolve().parents[2] / "docs" / "architectures.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
NOT_BEGIN, NOT_END = "<!-- not-encoders:begin -->", "<!-- not-encoders:end -->"

#: the strategies of the table, in column order (the user's report of issue #13)
STRATEGIES = (
    "finetune", "distill.distilbert", "prune.heads", "prune.ffn", "prune.layers",
    "prune.magnitude", "quantize.dynamic-int8", "quantize.ort-dynamic", "export.onnx",
)

#: every model type transformers maps to a sequence classifier
SEQUENCE_CLASSIFIERS = sequence_classification_types()
#: the encoders among them (rows of the table)
ENCODERS = [t for t in SEQUENCE_CLASSIFIERS if model_kind(t) == ENCODER]
#: the decoders and encoder-decoders among them (refused as not an encoder)
NOT_ENCODERS = [t for t in SEQUENCE_CLASSIFIERS if model_kind(t) != ENCODER]
#: the default suite's model types: the first of each registered adapter, plus one that no
#: adapter claims (the name-matching fallback)
DEFAULT_TYPES = sorted(
    {next(t for t in sorted(ARCHITECTURES) + sorted(set(ENCODERS) - set(ARCHITECTURES))
          if type(adapter_for(tiny_config(t))) is cls)
     for cls in {type(a) for a in registered_adapters().values()}} | {"layoutlm"}
)


def _cfg_dict(arch: str) -> dict[str, Any]:
    return tiny_config(arch).to_dict()


@cache
def refusals(arch: str) -> dict[str, str]:
    """role -> reason, as validation answers for the tiny model of ``arch`` (every role
    asked), or ``{"*": reason}`` when validation refuses the model itself."""
    from compressor.architectures import ROLES

    whole = model_refusal(_cfg_dict(arch))
    if whole:
        return {"*": whole}
    return architecture_refusals(_cfg_dict(arch), ROLES)


def cell(arch: str, strategy: str) -> str:
    """``"yes"``, or ``"no (<reason>)"`` from validation's refusals of the strategy's roles."""
    refused = refusals(arch)
    if "*" in refused:
        return f"no ({refused['*']})"
    roles = getattr(get_plugins().strategies[strategy], "requires_roles", ())
    reasons = [f"{r}: {refused[r]}" for r in roles if r in refused]
    return "yes" if not reasons else "no (" + "; ".join(reasons) + ")"


def matrix_markdown() -> str:
    """The table: one row per encoder type transformers maps to a sequence classifier, one
    column per strategy in :data:`STRATEGIES`; refusal reasons are numbered below it."""
    notes: list[str] = []
    rows = []
    header = "| model_type | adapter | " + " | ".join(f"`{s}`" for s in STRATEGIES) + " |"
    rows.append(header)
    rows.append("| --- | --- | " + " | ".join("---" for _ in STRATEGIES) + " |")
    for arch in ENCODERS:
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


def not_encoders_markdown() -> str:
    """The decoders and encoder-decoders transformers maps to a sequence classifier, which
    validation refuses as not an encoder."""
    groups = {"encoder-decoder": [], "decoder": []}
    for t in NOT_ENCODERS:
        groups[model_kind(t)].append(f"`{t}`")
    return (
        f"- encoder-decoders ({len(groups['encoder-decoder'])}): {', '.join(groups['encoder-decoder'])}\n"
        f"- decoders ({len(groups['decoder'])}): {', '.join(groups['decoder'])}\n"
    )


def test_the_matrix_covers_transformers() -> None:
    """Every registered adapter's model types are encoders transformers ships, and the
    table has rows for every encoder and nothing else."""
    assert len(SEQUENCE_CLASSIFIERS) > 100
    assert set(ARCHITECTURES) <= set(ENCODERS), set(ARCHITECTURES) - set(ENCODERS)
    assert set(ENCODERS) | set(NOT_ENCODERS) == set(SEQUENCE_CLASSIFIERS)
    assert {"bert", "modernbert", "eurobert", "xlm", "funnel", "esm"} <= set(ENCODERS)
    assert {"gpt2", "llama", "t5", "bart", "xlnet", "modernbert-decoder"} <= set(NOT_ENCODERS)


def test_every_tested_architecture_has_a_registered_adapter() -> None:
    registered = registered_adapters()
    assert set(ARCHITECTURES) <= set(registered), set(ARCHITECTURES) - set(registered)


def test_not_encoders_are_refused_by_validate(tmp_path: Path) -> None:
    """``compressor validate`` refuses a recipe on each decoder and encoder-decoder type,
    at ``model.name``, saying it is not an encoder (its config.json only: nothing is built)."""
    import json
    import textwrap

    from compressor.errors import RecipeError
    from compressor.plan import check_architectures
    from compressor.recipe import load_recipe

    (tmp_path / "model").mkdir()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent("""\
        version: 1
        name: not-an-encoder
        model: {name: model, source: local}
        task: {data: {name: mr-snippets}}
        stages:
          - {name: ft, strategy: finetune}
        """))
    loaded = load_recipe(recipe)
    strategies = get_plugins().strategies
    for model_type in NOT_ENCODERS:
        config = {"model_type": model_type}
        (tmp_path / "model" / "config.json").write_text(json.dumps(config))
        with pytest.raises(RecipeError, match="not an encoder") as info:
            check_architectures(loaded, strategies, config=config)
        assert info.value.key == "model.name", model_type
        assert model_kind(model_type) in str(info.value), model_type
    # an encoder's config saying it is a decoder is refused too; a plain encoder is not
    for config in ({"model_type": "bert", "is_decoder": True}, {"model_type": "layoutlm", "is_encoder_decoder": True}):
        with pytest.raises(RecipeError, match="not an encoder"):
            check_architectures(loaded, strategies, config=config)
    check_architectures(loaded, strategies, config=_cfg_dict("layoutlm"))


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{body}{end}", text, flags=re.S)


def test_docs_table_matches_the_matrix() -> None:
    """The table's cells are validation's answers: each unclaimed encoder type's tiny model
    is built on the meta device and probed (a few seconds in all)."""
    text = DOC.read_text(encoding="utf-8")
    table = matrix_markdown()
    block = f"{BEGIN}\n{table}{END}"
    others = f"{NOT_BEGIN}\n{not_encoders_markdown()}{NOT_END}"
    if os.environ.get("COMPRESSOR_REGEN_DOCS"):
        text = _replace_block(_replace_block(text, BEGIN, END, table), NOT_BEGIN, NOT_END, not_encoders_markdown())
        DOC.write_text(text, encoding="utf-8")
    assert others in text, (
        "docs/architectures.md is out of date: regenerate it with COMPRESSOR_REGEN_DOCS=1 "
        "python -m pytest tests/core/test_architectures_matrix.py -k docs"
    )
    assert block in text, (
        "docs/architectures.md is out of date: regenerate it with COMPRESSOR_REGEN_DOCS=1 "
        "python -m pytest tests/core/test_architectures_matrix.py -k docs"
    )


def _logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs()).logits


def _accepted(arch: str, model: Any, role: str) -> bool:
    """Whether validation accepts ``role`` for ``arch``; a role the adapter itself refuses
    must also fail at run time with a StageError, never a traceback."""
    if role not in refusals(arch):
        return True
    if adapter_for(model).refusal(role, model.config) is not None:
        with pytest.raises(StageError, match="does not support"):
            refuse(model, role)
    return False


#: model types whose tiny model fails a computation that validation does not refuse yet
#: (strict: the test fails once it passes, so the entry is removed with the fix)
KNOWN_GAPS: dict[str, str] = {}  # LayoutLMv3's lookup-table Linears: torch_int8.lookup_linears


def _sweep(default: list[str]) -> list[Any]:
    """Every encoder type: those of ``default`` in the default suite, the others slow."""
    out = []
    for t in ENCODERS:
        marks = [] if t in default else [pytest.mark.slow]
        if t in KNOWN_GAPS:
            marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[t], strict=True, raises=TypeError))
        out.append(pytest.param(t, marks=marks))
    return out


@pytest.mark.parametrize("arch", _sweep(DEFAULT_TYPES))
def test_declared_roles_work(arch: str, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification as Auto

    from compressor.structure import load_pretrained, save_pretrained
    from compressor_distillation.student import build_student
    from compressor_pruning.magnitude import apply_masks_, magnitude_masks, prunable_weights
    from compressor_pruning.structured import drop_layers_, prune_ffn_, prune_heads_

    if "*" in refusals(arch):  # validation refuses the model itself (UNSUPPORTED_ENCODERS)
        return

    # a training step (finetune, distillation) and PyTorch dynamic int8
    model = tiny_model(arch).train()
    model(**inputs(), labels=torch.tensor([0, 1])).loss.backward()
    # what quantize.dynamic-int8 does: Linears used as lookup tables stay in float
    from compressor_quantization.torch_int8 import lookup_linears, quantize_linear_layers

    fresh = tiny_model(arch).eval()
    quantized = quantize_linear_layers(fresh, per_channel=True, keep_float=lookup_linears(fresh))
    assert _logits(quantized).shape == (2, 3)

    # layers: drop one, and copy a 2-layer student
    if _accepted(arch, model, "layers"):
        dropped = tiny_model(arch)
        assert drop_layers_(dropped, [1]) == [0, 2]
        student, _ = build_student(tiny_model(arch), [0, 2])
        assert _logits(student.eval()).shape == (2, 3)
        save_pretrained(dropped, tmp_path / "layers")
        assert torch.allclose(_logits(load_pretrained(Auto, tmp_path / "layers")), _logits(dropped), atol=1e-5)

    # heads, FFN neurons and magnitude masks on one model, reloaded once
    model = tiny_model(arch)
    if _accepted(arch, model, "heads"):
        before = head_counts(model)
        # two heads; with grouped key/value heads (2 query heads each), the whole last group
        prune_heads_(model, {0: [2, 3] if encoder_layout(model).grouped_kv else [1, 2]})
        assert head_counts(model)[0] == before[0] - 2
    if _accepted(arch, model, "ffn"):
        from compressor.architectures import ffn_unit_widths

        widths = ffn_unit_widths(model)
        prune_ffn_(model, [list(range(0, w, 2 if i % 2 else 3)) for i, w in enumerate(widths)])
        assert ffn_unit_widths(model) != widths
    if _accepted(arch, model, "weights"):
        weights = prunable_weights(model)
        apply_masks_(weights, magnitude_masks(weights, 0.5, "global"))
    expected = _logits(model)
    save_pretrained(model, tmp_path / "pruned")
    again = load_pretrained(Auto, tmp_path / "pruned")
    assert torch.allclose(_logits(again), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ENCODERS)
def test_onnx_export(arch: str, tmp_path: Path) -> None:
    from compressor import testing
    from compressor.onnx_export import export_module, optimize_onnx

    if "*" in refusals(arch):
        return
    model = tiny_model(arch)
    if not _accepted(arch, model, "onnx"):
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
