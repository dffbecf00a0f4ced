"""Structured pruning: attention heads, FFN neurons, whole layers (heavy: torch).

Every function works from the model's architecture adapter
(:func:`compressor.architectures.encoder_layout`), not from one architecture's attribute
names: separate or fused query/key/value projections, per-head bias vectors, GLU FFNs,
stacked FFNs and shared layers are all described there. Functions edit the model in place
(names end in ``_``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressor.architectures import (
    EncoderLayout,
    adapter_for,
    encoder_layout,
    ffn_unit_widths,
    find_layer_list,
    get_module,
    head_counts,
    layer_modules,
    refuse,
    set_module,
)
from compressor.errors import StageError

from .common import gate_scores, mean_loss

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel


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
    refuse(model, "heads")
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
    group: int = 1,
) -> dict[int, list[int]]:
    """Heads to remove: the least important ones.

    :param scores: per layer, one score per current head (higher = more important).
    :param fraction: remove ``round(fraction * total heads)`` heads, globally ranked.
    :param per_layer: or remove this many heads from every layer.
    :param min_heads: never leave a layer with fewer heads than this.
    :param group: query heads per key/value head (grouped-query attention,
        :attr:`~compressor.architectures.EncoderLayout.kv_group`): heads ``[g * group,
        (g + 1) * group)`` share key/value head ``g`` and are removed together, ranked by the
        sum of their scores; ``fraction`` then removes ``round(fraction * total groups)``
        groups and ``per_layer`` must be a multiple of ``group``.
    :returns: layer index -> current head indices to remove (ascending); layers with none
        are left out.
    :raises StageError: when ``per_layer`` would go under ``min_heads``, or is not a multiple
        of ``group``.
    """
    if group > 1:
        return _select_groups(scores, fraction=fraction, per_layer=per_layer, min_heads=min_heads, group=group)
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


def _select_groups(
    scores: list[torch.Tensor], *, fraction: float | None, per_layer: int | None, min_heads: int, group: int
) -> dict[int, list[int]]:
    """:func:`select_heads` over whole key/value groups of ``group`` query heads."""
    if per_layer is not None and per_layer % group:
        raise StageError(
            f"heads_per_layer={per_layer}: this model's query heads share key/value heads in "
            f"groups of {group}, and a head goes with its whole group",
            key="heads_per_layer",
            expected=f"a multiple of {group}",
        )
    summed = [s.reshape(-1, group).sum(dim=1) for s in scores]
    chosen = select_heads(
        summed,
        fraction=fraction,
        per_layer=per_layer // group if per_layer is not None else None,
        min_heads=-(-min_heads // group),
    )
    return {layer: [g * group + j for g in gs for j in range(group)] for layer, gs in chosen.items()}


def _head_index(heads: list[int], head_size: int, current: int) -> torch.Tensor:
    """Feature indices ``h * head_size + j`` of the heads kept (not in ``heads``)."""
    keep = [h for h in range(current) if h not in set(heads)]
    return torch.tensor([h * head_size + j for h in keep for j in range(head_size)], dtype=torch.long)


def _fused_index(heads: list[int], head_size: int, current: int, layout: str) -> torch.Tensor:
    """Row indices kept in a fused q/k/v Linear of ``current`` heads.

    ``"blocks"``: rows ``[q heads | k heads | v heads]`` (ModernBERT's ``Wqkv``);
    ``"per-head"``: rows ``[q_h k_h v_h]`` head after head (DeBERTa v1's ``in_proj``).
    """
    keep = [h for h in range(current) if h not in set(heads)]
    width = current * head_size
    if layout == "blocks":
        rows = [p * width + h * head_size + j for p in range(3) for h in keep for j in range(head_size)]
    else:
        rows = [h * 3 * head_size + j for h in keep for j in range(3 * head_size)]
    return torch.tensor(rows, dtype=torch.long)


def _prune_vector_(block: nn.Module, name: str, index: torch.Tensor) -> None:
    """Keep entries ``index`` of the 1-D parameter ``name`` of ``block``."""
    owner_path, _, attr = name.rpartition(".")
    owner = get_module(block, owner_path)
    old = getattr(owner, attr)
    setattr(owner, attr, nn.Parameter(old.detach().index_select(0, index.to(old.device)).clone(),
                                      requires_grad=old.requires_grad))


def prune_heads_(model: "PreTrainedModel", heads: dict[int, list[int]]) -> str:
    """Physically remove attention heads (current indices per layer module), in place.

    transformers 5 has no ``prune_heads``, so this is done here for every architecture the
    adapters describe: the query/key/value projections (separate, or the rows of a fused one),
    the per-head bias vectors and relative-position projections lose the heads' rows, the
    output projection their input columns (``transformers.pytorch_utils.prune_linear_layer``),
    and the attention module's head-count attributes are updated; saving then needs a
    structure file (:func:`compressor.structure.save_pretrained` writes it).

    :param heads: layer module index (:func:`~compressor.architectures.layer_modules`) ->
        current head indices to remove.
    :returns: ``"structure-file"``: how the removal reloads.
    With grouped key/value heads (:attr:`~compressor.architectures.EncoderLayout.kv_group`
    query heads per key/value head), only whole groups are removed: the group's query rows,
    its key/value head's rows of the key and value projections, and its columns of the
    output projection.

    :raises StageError: when the architecture's adapter refuses head removal (with its
        reason), a layer would lose every head, or (grouped key/value heads) the heads of a
        layer do not make whole groups.
    """
    from transformers.pytorch_utils import prune_linear_layer

    refuse(model, "heads")
    layout = encoder_layout(model)
    counts = head_counts(model, layout)
    for layer, hs in heads.items():
        if not 0 <= layer < len(counts):
            raise StageError(f"layer {layer} out of range ({len(counts)} layer modules)")
        if len(set(hs)) >= counts[layer]:
            raise StageError(f"cannot remove all {counts[layer]} heads of layer {layer}")
        if any(not 0 <= h < counts[layer] for h in hs):
            raise StageError(f"head indices {hs} out of range for layer {layer} ({counts[layer]} heads)")
        g = layout.kv_group
        partial = sorted({h // g for h in hs if any(k not in hs for k in range(h // g * g, h // g * g + g))})
        if partial:
            raise StageError(
                f"cannot remove heads {sorted(set(hs))} of layer {layer}: its query heads share "
                f"key/value heads in groups of {g} (heads g*{g} .. g*{g}+{g - 1} use key/value "
                f"head g), and groups {partial} would lose only some of their query heads",
                hint="remove whole groups (select_heads(..., group=layout.kv_group) picks them)",
            )
    layers = layer_modules(model, layout)
    for layer, hs in heads.items():
        if not hs:
            continue
        _remove_heads(layers[layer], layout, sorted(set(hs)), counts[layer], prune_linear_layer)
    return "structure-file"


def _remove_heads(block: nn.Module, layout: EncoderLayout, hs: list[int], current: int, prune: Any) -> None:
    size = layout.head_size
    index = _head_index(hs, size, current)
    if layout.qkv is not None:
        fused = _fused_index(hs, size, current, layout.qkv_layout)
        set_module(block, layout.qkv, prune(get_module(block, layout.qkv), fused, dim=0))
    for rel in layout.head_projections:
        set_module(block, rel, prune(get_module(block, rel), index, dim=0))
    if layout.kv_projections:
        g = layout.kv_group
        kv_index = _head_index(sorted({h // g for h in hs}), size, current // g)
        for rel in layout.kv_projections:
            set_module(block, rel, prune(get_module(block, rel), kv_index, dim=0))
    for name in layout.head_vectors:
        _prune_vector_(block, name, index)
    set_module(block, layout.attn_output, prune(get_module(block, layout.attn_output), index, dim=1))
    attn = get_module(block, layout.attention_module)
    kept = current - len(hs)
    for attr in layout.head_count_attrs:
        if isinstance(getattr(attn, attr, None), int):
            setattr(attn, attr, kept)
    for attr in layout.head_width_attrs:
        if isinstance(getattr(attn, attr, None), int):
            setattr(attn, attr, kept * size)


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

    :returns: one float32 tensor per FFN (per layer module; MobileBERT's stacked FFNs one
        after the other, layer-major), one score per current neuron.
    """
    refuse(model, "ffn")
    layout = encoder_layout(model)
    outputs = [get_module(layer, out) for layer in layer_modules(model, layout) for _, out in layout.ffn_units]
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
    """Shrink each FFN to the neurons in ``keep`` (rows of the input Linear, both halves of a
    GLU input, rows of a separate gate Linear, columns of the output Linear), in place.

    When every FFN ends with the same width, the config's intermediate size is set to it,
    so plain ``from_pretrained`` reloads the model.

    :param keep: per FFN (the order of :func:`ffn_importance`), ascending neuron indices.
    :returns: whether the widths are uniform (no structure file needed for them).
    :raises StageError: when the adapter refuses FFN pruning, or ``keep`` has another
        length than the model has FFNs.
    """
    from transformers.pytorch_utils import prune_linear_layer

    refuse(model, "ffn")
    layout = encoder_layout(model)
    units = [(block, pair) for block in layer_modules(model, layout) for pair in layout.ffn_units]
    if len(keep) != len(units):
        raise StageError(f"{len(keep)} neuron lists for {len(units)} FFNs")
    for (block, (ffn_in, ffn_out)), idx in zip(units, keep):
        index = torch.tensor(idx, dtype=torch.long)
        linear_out = get_module(block, ffn_out)
        rows = index
        if layout.ffn_glu:  # values then gates, each of the current width
            rows = torch.cat([index, index + linear_out.in_features])
        set_module(block, ffn_in, prune_linear_layer(get_module(block, ffn_in), rows, dim=0))
        if layout.ffn_gate is not None and ffn_in == layout.ffn_intermediate:
            set_module(block, layout.ffn_gate, prune_linear_layer(get_module(block, layout.ffn_gate), index, dim=0))
        set_module(block, ffn_out, prune_linear_layer(linear_out, index, dim=1))
        owner = get_module(block, ffn_out.rpartition(".")[0])
        if isinstance(getattr(owner, "intermediate_size", None), int):  # a gated MLP's own width
            owner.intermediate_size = len(idx)
    widths = ffn_unit_widths(model, layout)
    uniform = len(set(widths)) == 1
    if uniform:
        attr = adapter_for(model).intermediate_attr
        if isinstance(getattr(model.config, attr, None), int):
            setattr(model.config, attr, widths[0])
    return uniform


# --- layers --------------------------------------------------------------------------------


def drop_layers_(model: "PreTrainedModel", drop: list[int]) -> list[int]:
    """Remove whole encoder layers, in place; the config's layer count follows.

    Per-layer config lists (``layer_types``, Longformer's ``attention_window``) are
    renumbered for the kept layers (the adapter's ``keep_layers``); removed heads live in the
    structure file, whose module paths follow the kept layers. A shared layer (ALBERT) stays;
    the model runs it fewer times.

    :param drop: layer indices to remove.
    :returns: the kept layers' original indices.
    :raises StageError: when the adapter refuses layer removal, for out-of-range indices, or
        dropping every layer.
    """
    refuse(model, "layers")
    layer_list = find_layer_list(model)
    n = layer_list.count
    drop_set = set(drop)
    if any(not 0 <= i < n for i in drop_set):
        raise StageError(f"layer indices {sorted(drop_set)} out of range for {n} layers", key="layers")
    kept = [i for i in range(n) if i not in drop_set]
    if not kept:
        raise StageError(f"cannot drop all {n} layers", key="layers")
    adapter_for(model).keep_layers(model.config, kept)
    if not layer_list.shared:
        layers = list(get_module(model, layer_list.path))
        set_module(model, layer_list.path, nn.ModuleList([layers[i] for i in kept]))
    return kept


def layer_drop_importance(
    model: "PreTrainedModel", batches: list[dict[str, torch.Tensor]], count: int
) -> tuple[list[int], list[dict[str, Any]]]:
    """Choose ``count`` layers to drop greedily by measured loss (Sajjad et al.'s
    "importance" variant of layer dropping).

    Each round tries removing each remaining layer (the layer list without it) and drops
    the one whose removal raises the task loss on ``batches`` least. Repeats of a shared
    layer (ALBERT) are interchangeable: the last ``count`` are chosen without measuring.

    :returns: ``(original indices to drop, trace)``: the trace lists per round the loss of
        every candidate (``{"round", "base_loss", "candidates": {layer: loss}}``).
    :raises StageError: when the adapter refuses layer removal.
    """
    refuse(model, "layers")
    layer_list = find_layer_list(model)
    if layer_list.shared:
        n = layer_list.count
        return list(range(n - count, n)), []
    path = layer_list.path
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
