"""``compressor validate`` asks the fallback adapter about the model itself (issue 24 item 2):
for a model type no adapter claims, the model is built from ``config.json`` on the meta
device and each role a stage needs is looked for there, so an architecture whose parts the
name-matching fallback cannot find is refused before any training, with the reason."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from compressor.architectures import probe_roles
from compressor.errors import RecipeError
from compressor.recipe import load_recipe

ROLES = ("layers", "heads", "ffn", "weights")


def _config(model_type: str, **kw: Any) -> dict[str, Any]:
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, vocab_size=99, **kw).to_dict()


XLM = {"emb_dim": 32, "n_layers": 3, "n_heads": 4}
FUNNEL = {
    "block_sizes": [1, 1, 1],
    "d_model": 32,
    "n_head": 4,
    "d_head": 8,
    "d_inner": 64,
}
BERT_LIKE = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 64,
}


def _recipe(
    tmp_path: Path, config: dict[str, Any], strategy: str, stage_config: str
) -> Path:
    model = tmp_path / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(config))
    (tmp_path / "train.csv").write_text(
        "text,label\n" + "".join(f"good {i},1\nbad {i},0\n" for i in range(10))
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        textwrap.dedent(f"""\
        version: 1
        name: probe
        model: {{name: model, source: local}}
        task:
          data: {{files: {{train: train.csv}}}}
        stages:
          - {{name: s, strategy: {strategy}, config: {stage_config}}}
        """)
    )
    return recipe


@pytest.mark.parametrize(
    ("model_type", "kw", "strategy", "stage_config", "reason"),
    [
        (
            "xlm",
            XLM,
            "prune.heads",
            "{fraction: 0.25}",
            "cannot tell which module list",
        ),
        (
            "flaubert",
            XLM,
            "distill.distilbert",
            "{student_layers: 2}",
            "transformer.attentions",
        ),
        ("funnel", FUNNEL, "distill.distilbert", "{student_layers: 2}", "block_sizes"),
        (
            "esm",
            {**BERT_LIKE, "pad_token_id": 1},
            "prune.layers",
            "{count: 1}",
            "contact_head",
        ),
    ],
)
def test_a_role_the_fallback_cannot_find_is_refused_at_validation(
    tmp_path: Path,
    model_type: str,
    kw: dict[str, Any],
    strategy: str,
    stage_config: str,
    reason: str,
) -> None:
    recipe = _recipe(tmp_path, _config(model_type, **kw), strategy, stage_config)
    with pytest.raises(RecipeError) as exc:
        load_recipe(recipe)
    assert exc.value.key == "stages[0].strategy"
    assert strategy in str(exc.value) and reason in str(exc.value)


def test_what_the_fallback_finds_is_accepted(tmp_path: Path) -> None:
    # ESM keeps BERT's module names: its attention and FFN are found, only its depth-sized
    # contact head stops layer removal
    esm = _config("esm", **BERT_LIKE, pad_token_id=1)
    assert set(probe_roles(esm, ROLES)) == {"layers"}
    load_recipe(_recipe(tmp_path / "esm", esm, "prune.heads", "{fraction: 0.25}"))
    # LayoutLM: BERT's modules under another model type, every role found
    assert probe_roles(_config("layoutlm", **BERT_LIKE), ROLES) == {}
    # a model type transformers does not know cannot be built: left to the run
    assert probe_roles({"model_type": "zeta", "num_hidden_layers": 2}, ROLES) == {}
    load_recipe(
        _recipe(
            tmp_path / "zeta", {"model_type": "zeta"}, "prune.heads", "{fraction: 0.25}"
        )
    )


def test_registered_adapters_are_not_probed() -> None:
    """A registered adapter answers from the config alone (its surgery is tested per family
    in tests/core/test_architectures_matrix.py); the probe is for the fallback."""
    from compressor.architectures import is_registered

    assert (
        is_registered("bert") and is_registered("eurobert") and not is_registered("esm")
    )
