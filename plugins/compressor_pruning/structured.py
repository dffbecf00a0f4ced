"""Structured pruning: attention heads, FFN neurons, whole layers (heavy: torch).

Every function works from :func:`compressor.architecture.encoder_layout`, not from one
architecture's attribute names, and edits the model in place (names end in ``_``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressor.architecture import (
    INTERMEDIATE_SIZE_ATTRS,
    config_int,
    encoder_layout,
    ffn_widths,
    get_module,
    head_counts,
    layer_modules,
    set_module,
)
from compressor.errors import StageError

from .common import gate_scores, mean_loss

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

NO_HEAD_PRUNING_TYPES = {
    "mpnet": "MPNet adds one relative-position bias with a slot per head (computed once for "
    "all layers) to every layer's attention scores; transformers' prune_heads leaves it "
    "unpruned and the forward pass fails. Prune FFN neurons or layers of MPNet instead.",
}
"""Model types on which head removal is refused, with the reason."""


# --- heads ---------------------------------------------------------------------------------


def head_importance(
    model: "PreTrainedModel", batches: list[dict[str, torch.Tensor]], *, normalize: bool = True
) -> list[torch.Tensor]:
    """Head importance of Michel, Levy and Neubig (2019), "Are Sixteen Heads Really Better than One?".

    ``I_h = sum over batches |dL/dxi_h|`` divided by the number of non-padding tokens,
    where ``xi_h`` is a mask (gate, value 1) on head ``h``'s output and ``L`` the task
    cross-entropy. The gate multiplies the input of the attention output projection, which
    is the concatenation of the heads' outputs: the same gradient as transformers'
    ``head_mask`` on the attention probabilities (the context is linear in them).

    :param model: a sequence classifier (gradients are taken in eval mode; weights unchanged).
    :param batches: tokenised batches with ``labels``.
    :param normalize: divide each layer's scores by their L2 norm (the paper's layer-wise
        normalisation, which makes a global ranking fairer across layers).
    :returns: one float32 tensor per layer, one score per current head.
    """
    layout = encoder_layout(model)
    outputs = [get_module(layer, layout.attn_output) for layer in layer_modules(model, layout)]
    grads, _ = gate_scores(model, outputs, layout.head_size, batches)
    if normalize:
        grads = [g / (g.norm(p=2) + 1e-20) for g in grads]
    return [g.detach().float().cpu() for g in grads]


def select_heads(
    scores: list[torch.Tensor],
    *,
    fraction: float | None = None,
    per_layer: int | None = None,
    min_heads: int = 1,
) -> dict[int, list[int]]:
    """Heads to remove: the least important ones.

    :param scores: per layer, one score per current head (higher = more important).
    :param fraction: remove ``round(fraction * total heads)`` heads, globally ranked.
    :param per_layer: or remove this many heads from every layer.
    :param min_heads: never leave a layer with fewer heads than this.
    :returns: layer index -> current head indices to remove (ascending); layers with none
        are left out.
    :raises StageError: when ``per_layer`` would go under ``min_heads``.
    """
    counts = [len(s) for s in scores]
    out: dict[int, list[int]] = {}
    if per_layer is not None:
        for layer, s in enumerate(scores):
            if counts[layer] - per_layer < min_heads:
                raise StageError(
                    f"removing {per_layer} heads from layer {layer} of {counts[layer]} would leave "
                    f"fewer than {min_heads}",
                    key="heads_per_layer",
                )
            if per_layer:
                out[layer] = sorted(torch.argsort(s)[:per_layer].tolist())
        return out
    total = sum(counts)
    target = int(round((fraction or 0.0) * total))
    ranked = sorted(
        ((float(s[h]), layer, h) for layer, s in enumerate(scores) for h in range(len(s))),
        key=lambda t: (t[0], t[1], t[2]),
    )
    left = list(counts)
    for _, layer, h in ranked:
        if target <= 0:
            break
        if left[layer] - 1 < min_heads:
            continue
        out.setdefault(layer, []).append(h)
        left[layer] -= 1
        target -= 1
    return {k: sorted(v) for k, v in sorted(out.items())}


def _head_index(heads: list[int], head_size: int, current: int) -> torch.Tensor:
    keep = [h for h in range(current) if h not in set(heads)]
    return torch.tensor([h * head_size + j for h in keep for j in range(head_size)], dtype=torch.long)


def prune_heads_(model: "PreTrainedModel", heads: dict[int, list[int]]) -> str:
    """Physically remove attention heads (current indices per layer), in place.

    transformers 5 has no ``prune_heads``, so this is done here for every architecture: the
    query/key/value (and relative-position) projections lose the heads' output rows and the
    output projection their input columns (``transformers.pytorch_utils.prune_linear_layer``),
    and the attention module's head-count attributes are updated; saving then needs a
    structure file (:func:`compressor.structure.save_pretrained` writes it).

    :returns: ``"structure-file"``: how the removal reloads.
    :raises StageError: for architectures in :data:`NO_HEAD_PRUNING_TYPES`, or when a layer
        would lose every head.
    """
    from transformers.pytorch_utils import prune_linear_layer

    layout = encoder_layout(model)
    if layout.model_type in NO_HEAD_PRUNING_TYPES:
        raise StageError(
            f"attention heads of {layout.model_class} cannot be removed: "
            f"{NO_HEAD_PRUNING_TYPES[layout.model_type]}"
        )
    counts = head_counts(model, layout)
    for layer, hs in heads.items():
        if len(set(hs)) >= counts[layer]:
            raise StageError(f"cannot remove all {counts[layer]} heads of layer {layer}")
        if any(not 0 <= h < counts[layer] for h in hs):
            raise StageError(f"head indices {hs} out of range for layer {layer} ({counts[layer]} heads)")
    layers = layer_modules(model, layout)
    for layer, hs in heads.items():
        if not hs:
            continue
        block = layers[layer]
        index = _head_index(hs, layout.head_size, counts[layer])
        for rel in layout.head_projections:
            set_module(block, rel, prune_linear_layer(get_module(block, rel), index, dim=0))
        set_module(block, layout.attn_output, prune_linear_layer(get_module(block, layout.attn_output), index, dim=1))
        attn = get_module(block, layout.attention_module)
        kept = counts[layer] - len(set(hs))
        for attr in ("num_attention_heads", "n_heads"):
            if isinstance(getattr(attn, attr, None), int):
                setattr(attn, attr, kept)
        for attr in ("all_head_size", "dim"):
            if isinstance(getattr(attn, attr, None), int):
                setattr(attn, attr, kept * layout.head_size)
    return "structure-file"


# --- FFN neurons ---------------------------------------------------------------------------


def ffn_importance(
    model: "PreTrainedModel", batches: list[dict[str, torch.Tensor]], method: str
) -> list[torch.Tensor]:
    """Importance of each FFN intermediate neuron.

    - ``"gradient"``: ``|dL/dg_j|`` for a gate ``g_j`` on neuron ``j``'s activation, i.e.
      ``|sum over tokens a_j * dL/da_j|`` accumulated over batches (first-order Taylor
      estimate of the loss change when the neuron is removed; Molchanov et al. 2017, the
      neuron analogue of Michel et al.'s head mask);
    - ``"activation"``: mean ``|a_j|`` over non-padding tokens.

    :returns: one float32 tensor per layer, one score per current neuron.
    """
    layout = encoder_layout(model)
    outputs = [get_module(layer, layout.ffn_output) for layer in layer_modules(model, layout)]
    grads, acts = gate_scores(model, outputs, 1, batches)
    scores = grads if method == "gradient" else acts
    return [s.detach().float().cpu() for s in scores]


def select_neurons(
    scores: list[torch.Tensor], *, fraction: float, scope: str, multiple_of: int = 1, min_width: int = 1
) -> list[list[int]]:
    """Neurons to keep in each layer.

    :param scores: per layer, one score per neuron (higher = more important).
    :param fraction: fraction of the neurons to remove.
    :param scope: ``"uniform"`` (the same fraction of every layer, widths rounded to
        ``multiple_of``) or ``"global"`` (one ranking over all layers, each layer's width
        then rounded to ``multiple_of``).
    :param multiple_of: kept widths are multiples of this (at least ``multiple_of``).
    :param min_width: never keep fewer neurons in a layer.
    :returns: per layer, ascending indices of the neurons kept.
    """
    widths = [len(s) for s in scores]

    def rounded(k: int, width: int) -> int:
        k = int(round(k / multiple_of)) * multiple_of if multiple_of > 1 else k
        return max(min(k, width), min_width, min(multiple_of, width))

    if scope == "uniform":
        keep_counts = [rounded(int(round(w * (1.0 - fraction))), w) for w in widths]
    else:
        flat = torch.cat([s.float() for s in scores])
        total = flat.numel()
        remove = int(round(fraction * total))
        if remove <= 0:
            keep_counts = list(widths)
        else:
            threshold = torch.kthvalue(flat, remove).values
            below = [int((s <= threshold).sum()) for s in scores]
            keep_counts = [rounded(w - b, w) for w, b in zip(widths, below)]
    return [sorted(torch.argsort(s, descending=True)[:k].tolist()) for s, k in zip(scores, keep_counts)]


def prune_ffn_(model: "PreTrainedModel", keep: list[list[int]]) -> bool:
    """Shrink each layer's FFN to the neurons in ``keep`` (rows of the first Linear, columns
    of the second), in place.

    When every layer ends with the same width, the config's intermediate size is set to it,
    so plain ``from_pretrained`` reloads the model.

    :returns: whether the widths are uniform (no structure file needed for them).
    """
    from transformers.pytorch_utils import prune_linear_layer

    layout = encoder_layout(model)
    layers = layer_modules(model, layout)
    if len(keep) != len(layers):
        raise StageError(f"{len(keep)} neuron lists for {len(layers)} layers")
    for block, idx in zip(layers, keep):
        index = torch.tensor(idx, dtype=torch.long)
        set_module(block, layout.ffn_intermediate, prune_linear_layer(get_module(block, layout.ffn_intermediate), index, dim=0))
        set_module(block, layout.ffn_output, prune_linear_layer(get_module(block, layout.ffn_output), index, dim=1))
    widths = ffn_widths(model, layout)
    uniform = len(set(widths)) == 1
    if uniform:
        attr = config_int(model.config, INTERMEDIATE_SIZE_ATTRS)
        if attr is not None:
            setattr(model.config, attr[0], widths[0])
    return uniform


# --- layers --------------------------------------------------------------------------------


def drop_layers_(model: "PreTrainedModel", drop: list[int]) -> list[int]:
    """Remove whole encoder layers, in place; the config's layer count follows.

    Per-layer config lists (``layer_types``) are renumbered for the kept layers; removed
    heads live in the structure file, whose module paths follow the kept layers.

    :param drop: layer indices to remove.
    :returns: the kept layers' original indices.
    :raises StageError: for out-of-range indices or dropping every layer.
    """
    layout = encoder_layout(model)
    n = layout.layers.count
    drop_set = set(drop)
    if any(not 0 <= i < n for i in drop_set):
        raise StageError(f"layer indices {sorted(drop_set)} out of range for {n} layers", key="layers")
    kept = [i for i in range(n) if i not in drop_set]
    if not kept:
        raise StageError(f"cannot drop all {n} layers", key="layers")
    layers = layer_modules(model, layout)
    set_module(model, layout.layers.path, nn.ModuleList([layers[i] for i in kept]))
    cfg = model.config
    setattr(cfg, layout.layers.config_attr, len(kept))
    per_layer = getattr(cfg, "layer_types", None)
    if isinstance(per_layer, (list, tuple)) and len(per_layer) == n:
        cfg.layer_types = [per_layer[i] for i in kept]
    return kept


def layer_drop_importance(
    model: "PreTrainedModel", batches: list[dict[str, torch.Tensor]], count: int
) -> tuple[list[int], list[dict[str, Any]]]:
    """Choose ``count`` layers to drop greedily by measured loss (Sajjad et al.'s
    "importance" variant of layer dropping).

    Each round tries removing each remaining layer (the layer list without it) and drops
    the one whose removal raises the task loss on ``batches`` least.

    :returns: ``(original indices to drop, trace)``: the trace lists per round the loss of
        every candidate (``{"round", "base_loss", "candidates": {layer: loss}}``).
    """
    layout = encoder_layout(model)
    path = layout.layers.path
    original = list(get_module(model, path))
    remaining = list(range(len(original)))
    dropped: list[int] = []
    trace: list[dict[str, Any]] = []
    try:
        for r in range(count):
            set_module(model, path, nn.ModuleList([original[i] for i in remaining]))
            base = mean_loss(model, batches)
            losses: dict[int, float] = {}
            for cand in remaining:
                set_module(model, path, nn.ModuleList([original[i] for i in remaining if i != cand]))
                losses[cand] = mean_loss(model, batches)
            best = min(losses, key=lambda i: (losses[i], i))
            dropped.append(best)
            remaining.remove(best)
            trace.append({"round": r, "base_loss": base, "candidates": {str(k): v for k, v in losses.items()}})
    finally:
        set_module(model, path, nn.ModuleList(original))
    return sorted(dropped), trace


def pattern_layers(n: int, count: int, pattern: str) -> list[int]:
    """Layers to drop by position (Sajjad et al.): ``"top"`` (the last ``count``),
    ``"bottom"`` (the first ``count``) or ``"alternate"`` (every other layer from the top:
    ``n-1, n-3, ...``; from ``n-2`` downwards again if more are needed)."""
    if pattern == "top":
        return list(range(n - count, n))
    if pattern == "bottom":
        return list(range(count))
    order = list(range(n - 1, -1, -2)) + list(range(n - 2, -1, -2))
    return sorted(order[:count])
