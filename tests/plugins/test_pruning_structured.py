"""Head, FFN-neuron and layer pruning: importance scores, shapes, kept outputs, reloading."""

from __future__ import annotations

import pytest
import torch

from compressor.architectures import ffn_widths, head_counts
from compressor.errors import StageError
from compressor.structure import load_pretrained, save_pretrained
from compressor_pruning.structured import (
    drop_layers_,
    ffn_importance,
    head_importance,
    layer_drop_importance,
    pattern_layers,
    prune_ffn_,
    prune_heads_,
    select_heads,
    select_neurons,
)

from _tiny_encoders import inputs, tiny_config, tiny_model

ARCHS = ["bert", "roberta", "distilbert", "deberta-v2", "mpnet"]


def _batches(n_batches: int = 2, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(5, 99, (4, 10), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 7:] = 0
        out.append({"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (4,), generator=g)})
    return out


def test_head_importance_is_the_head_mask_gradient() -> None:
    """Michel et al.'s score: |dL/d xi_h| for a mask xi_h on head h, summed over batches and
    divided by the token count. transformers 5 has no ``head_mask`` any more, so the
    reference is a central finite difference in float64: scaling head h's attention
    probabilities by (1 +- eps) scales its slice of the context (linear in them) that enters
    the attention output projection."""
    model = tiny_model("bert").double()
    batches = _batches(2)
    ours = head_importance(model, batches, normalize=False)
    assert all(p.grad is None for p in model.parameters())  # weights untouched

    head_size, eps = 8, 1e-4
    expected = torch.zeros(3, 4, dtype=torch.float64)

    def loss_with_scale(batch: dict, layer: int, head: int, scale: float) -> float:
        def pre(module, args):
            x = args[0].clone()
            x[..., head * head_size:(head + 1) * head_size] *= scale
            return (x,)

        h = model.bert.encoder.layer[layer].attention.output.dense.register_forward_pre_hook(pre)
        try:
            with torch.no_grad():
                return float(model(**batch).loss)
        finally:
            h.remove()

    tokens = 0
    for b in batches:
        for layer in range(3):
            for head in range(4):
                fd = (loss_with_scale(b, layer, head, 1 + eps) - loss_with_scale(b, layer, head, 1 - eps)) / (2 * eps)
                expected[layer, head] += abs(fd)
        tokens += int(b["attention_mask"].sum())
    expected /= tokens
    assert expected.min() > 0  # a real, non-trivial gradient
    assert torch.allclose(torch.stack(ours).double(), expected, rtol=1e-3, atol=1e-9)
    normalised = head_importance(model, batches, normalize=True)
    for layer in range(3):
        assert torch.allclose(normalised[layer].double(), expected[layer] / expected[layer].norm(), rtol=1e-3)


def test_neuron_gradient_importance_matches_a_finite_difference() -> None:
    """|sum a_j dL/da_j| is the derivative of the loss w.r.t. scaling neuron j's activation."""
    model = tiny_model("bert").double()  # float64: the finite difference needs the precision
    batch = _batches(1)[0]
    scores = ffn_importance(model, [batch], "gradient")
    tokens = int(batch["attention_mask"].sum())
    out_dense = model.bert.encoder.layer[1].output.dense
    j, eps = 5, 1e-3

    def loss_with_scale(scale: float) -> float:
        def pre(module, args):
            x = args[0].clone()
            x[..., j] = x[..., j] * scale
            return (x,)

        h = out_dense.register_forward_pre_hook(pre)
        try:
            with torch.no_grad():
                return float(model(**batch).loss.double())
        finally:
            h.remove()

    fd = (loss_with_scale(1 + eps) - loss_with_scale(1 - eps)) / (2 * eps)
    assert abs(fd) > 1e-6  # a real, non-trivial derivative
    assert scores[1][j].item() == pytest.approx(abs(fd) / tokens, rel=1e-3)
    acts = ffn_importance(model, [batch], "activation")
    assert all(a.min() >= 0 for a in acts) and acts[0].shape == (64,)


def test_select_heads_global_fraction_and_per_layer() -> None:
    scores = [torch.tensor([0.1, 0.9, 0.5, 0.2]), torch.tensor([0.3, 0.05, 0.8, 0.7])]
    assert select_heads(scores, fraction=0.25) == {0: [0], 1: [1]}
    assert select_heads(scores, per_layer=2) == {0: [0, 3], 1: [0, 1]}
    # min_heads protects each layer: layer 1 keeps 3 heads
    assert select_heads(scores, fraction=0.75, min_heads=3) == {0: [0], 1: [1]}
    with pytest.raises(StageError, match="fewer than 1"):
        select_heads(scores, per_layer=4)


def test_select_neurons_uniform_and_global() -> None:
    scores = [torch.arange(8.0), torch.arange(8.0) + 4]
    assert select_neurons(scores, fraction=0.5, scope="uniform") == [[4, 5, 6, 7], [4, 5, 6, 7]]
    keep = select_neurons(scores, fraction=0.5, scope="global")
    assert [len(k) for k in keep] == [2, 6]  # the low-scoring layer loses more
    assert select_neurons(scores, fraction=0.4, scope="uniform", multiple_of=4) == [[4, 5, 6, 7], [4, 5, 6, 7]]


@pytest.mark.parametrize("arch", [a for a in ARCHS if a != "mpnet"])
def test_removing_masked_heads_leaves_logits_unchanged(arch: str, tmp_path) -> None:
    """Zero the output of some heads (what a head mask does), then remove those heads:
    the kept heads compute exactly what they computed, so the logits do not change."""
    from transformers import AutoModelForSequenceClassification as Auto

    from compressor.architectures import encoder_layout

    model = tiny_model(arch)
    layout = encoder_layout(model)
    remove = {0: [1, 2], 2: [0]}
    with torch.no_grad():
        for layer, heads in remove.items():
            out = model.get_submodule(f"{layout.layers.path}.{layer}.{layout.attn_output}")
            for h in heads:
                out.weight[:, h * 8 : (h + 1) * 8] = 0
        masked = model(**inputs()).logits
    how = prune_heads_(model, remove)
    assert head_counts(model) == [2, 4, 3]
    assert how == "structure-file"  # transformers 5 has no prune_heads: our own surgery
    with torch.no_grad():
        assert torch.allclose(model(**inputs()).logits, masked, atol=1e-5)
    save_pretrained(model, tmp_path)
    again = load_pretrained(Auto, tmp_path)
    assert head_counts(again) == [2, 4, 3]
    with torch.no_grad():
        assert torch.equal(again(**inputs()).logits, model(**inputs()).logits)


def test_heads_pruned_twice_remove_the_right_original_heads(tmp_path) -> None:
    """Indices are current ones: the second call's head 0 is the original head 1."""
    from transformers import AutoModelForSequenceClassification as Auto

    model = tiny_model("bert")
    query = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    prune_heads_(model, {0: [0]})      # original head 0
    prune_heads_(model, {0: [0]})      # now current head 0 = original head 1
    assert head_counts(model) == [2, 4, 4]
    kept = model.bert.encoder.layer[0].attention.self.query.weight
    assert torch.equal(kept, query[16:32])  # original heads 2 and 3 (head size 8)
    save_pretrained(model, tmp_path)
    again = load_pretrained(Auto, tmp_path)
    assert head_counts(again) == [2, 4, 4]
    with torch.no_grad():
        assert torch.equal(again(**inputs()).logits, model(**inputs()).logits)


def test_mpnet_heads_are_refused_with_the_reason() -> None:
    with pytest.raises(StageError, match="relative-position bias"):
        prune_heads_(tiny_model("mpnet"), {0: [1]})


@pytest.mark.parametrize("arch", ARCHS)
def test_removing_dead_neurons_leaves_logits_unchanged(arch: str, tmp_path) -> None:
    """Neurons whose outgoing weights are zero contribute nothing: removing them keeps the logits."""
    from transformers import AutoModelForSequenceClassification as Auto

    from compressor.architectures import encoder_layout

    model = tiny_model(arch)
    layout = encoder_layout(model)
    keep = [list(range(0, 64, 2)), list(range(64)), list(range(20, 60))]
    with torch.no_grad():
        for layer, kept in enumerate(keep):
            out = model.get_submodule(f"{layout.layers.path}.{layer}.{layout.ffn_output}")
            dead = [j for j in range(64) if j not in kept]
            out.weight[:, dead] = 0
        masked = model(**inputs()).logits
    uniform = prune_ffn_(model, keep)
    assert not uniform and ffn_widths(model) == [32, 64, 40]
    with torch.no_grad():
        assert torch.allclose(model(**inputs()).logits, masked, atol=1e-5)
    assert save_pretrained(model, tmp_path) is not None  # per-layer widths need the file
    again = load_pretrained(Auto, tmp_path)
    with torch.no_grad():
        assert torch.equal(again(**inputs()).logits, model(**inputs()).logits)


def test_uniform_ffn_reloads_with_plain_transformers(tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification as Auto

    model = tiny_model("distilbert")
    assert prune_ffn_(model, [list(range(40))] * 3)
    assert model.config.hidden_dim == 40
    assert save_pretrained(model, tmp_path) is None
    again = Auto.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(again(**inputs()).logits, model(**inputs()).logits)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "deberta-v2"])
def test_dropping_layers_matches_skipping_them(arch: str, tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification as Auto

    from compressor.architectures import encoder_layout

    model = tiny_model(arch)
    layout = encoder_layout(model)
    full = model.get_submodule(layout.layers.path)
    if arch == "bert":
        prune_heads_(model, {2: [0]})  # the structure file must follow the renumbering
    kept = drop_layers_(model, [1])
    assert kept == [0, 2] and len(model.get_submodule(layout.layers.path)) == 2
    assert model.get_submodule(layout.layers.path)[1] is full[2]
    save_pretrained(model, tmp_path)
    again = load_pretrained(Auto, tmp_path)
    assert encoder_layout(again).layers.count == 2
    if arch == "bert":
        assert head_counts(again) == [4, 3]
    with torch.no_grad():
        assert torch.equal(again(**inputs()).logits, model(**inputs()).logits)
    with pytest.raises(StageError, match="cannot drop all"):
        drop_layers_(model, [0, 1])


def test_layer_patterns() -> None:
    assert pattern_layers(6, 2, "top") == [4, 5]
    assert pattern_layers(6, 2, "bottom") == [0, 1]
    assert pattern_layers(6, 2, "alternate") == [3, 5]
    assert pattern_layers(6, 4, "alternate") == [1, 3, 4, 5]


def test_layer_importance_drops_the_layer_whose_removal_hurts_least() -> None:
    model = tiny_model("bert")
    batches = _batches(2)
    # make layer 2 an identity-like layer: its attention and FFN outputs are zero
    with torch.no_grad():
        layer = model.bert.encoder.layer[2]
        for lin in (layer.attention.output.dense, layer.output.dense):
            lin.weight.zero_()
            lin.bias.zero_()
    # with zero residual updates the layer still applies its LayerNorms; make them identity too
    # only when the input is already normalised: the test compares measured losses instead.
    drop, trace = layer_drop_importance(model, batches, 1)
    losses = {int(k): v for k, v in trace[0]["candidates"].items()}
    assert drop == [min(losses, key=losses.get)]
    assert len(model.bert.encoder.layer) == 3  # the model is restored
