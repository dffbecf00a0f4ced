"""Unstructured magnitude pruning, one-shot or gradual (heavy: torch, transformers).

Masks zero the smallest-magnitude weights of the encoder layers' Linear matrices
(attention projections and FFN; biases, embeddings, norms and the task head stay dense),
ranked globally or per matrix. Gradual pruning follows the cubic schedule of Zhu and Gupta
(2017), "To prune, or not to prune":

``s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0))**3`` for ``t_0 <= t <= t_1``,

updated every ``frequency`` optimiser steps while fine-tuning with transformers' Trainer
(:class:`GradualPruningCallback`); masked weights are re-zeroed after every step so the
optimiser cannot revive them. At the end the masks are permanent: the weights are zeros in a
dense safetensors file that any transformers version loads.

Zeros in dense matrices do not make plain PyTorch faster: the evaluator measures latency,
and the report flags "no measured speedup". What does shrink is the size in a sparse
format: :func:`write_bitmask` stores each weight as a bitmask plus its non-zero values
(the layout of compressed-tensors' ``sparse-bitmask`` format).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressor.architectures import linear_weights, refuse

if TYPE_CHECKING:  # pragma: no cover
    from transformers import TrainerCallback

BITMASK_FILE = "model.safetensors.bitmask"
"""Sparse-aware copy of the weights written next to ``model.safetensors`` (safetensors
format; not counted as a weight file by the evaluator's dense disk size)."""


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights magnitude pruning touches: ``weight`` of every Linear inside the encoder layers.

    :returns: state-dict-style name -> parameter (2-D, ``(out, in)``).
    :raises StageError: when the architecture's adapter refuses the ``weights`` role (its
        layers hold no :class:`torch.nn.Linear`).
    """
    refuse(model, "weights")
    return linear_weights(model)


def cubic_sparsity(step: int, *, initial: float, final: float, begin: int, end: int) -> float:
    """Zhu & Gupta (2017) sparsity at optimiser step ``step``.

    :returns: ``initial`` before ``begin``, ``final`` from ``end`` on, and
        ``final + (initial - final) * (1 - (step - begin) / (end - begin))**3`` between.
    """
    if step <= begin:
        return initial
    if step >= end or end <= begin:
        return final
    frac = (step - begin) / (end - begin)
    return final + (initial - final) * (1.0 - frac) ** 3


@torch.no_grad()
def magnitude_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Boolean keep-masks zeroing the ``sparsity`` fraction of smallest ``|w|``.

    :param weights: name -> weight tensor.
    :param sparsity: fraction in ``[0, 1)`` of weights to zero.
    :param scope: ``"global"`` (one threshold over all weights; layers end with different
        sparsities) or ``"per-layer"`` (the same fraction of every matrix).
    :returns: name -> bool tensor of the weight's shape (``True`` = kept). Ties at the
        threshold are broken by index so exactly ``round(sparsity * n)`` weights are zeroed.
    """

    def mask_of(flat: torch.Tensor, k: int) -> torch.Tensor:
        keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
        if k > 0:
            keep[torch.argsort(flat, stable=True)[:k]] = False
        return keep

    if scope == "per-layer":
        return {
            n: mask_of(w.detach().abs().flatten().float(), int(round(sparsity * w.numel()))).view_as(w)
            for n, w in weights.items()
        }
    flat = torch.cat([w.detach().abs().flatten().float() for w in weights.values()])
    keep = mask_of(flat, int(round(sparsity * flat.numel())))
    out, start = {}, 0
    for n, w in weights.items():
        out[n] = keep[start : start + w.numel()].view_as(w)
        start += w.numel()
    return out


@torch.no_grad()
def apply_masks_(weights: dict[str, nn.Parameter], masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked-out weights in place."""
    for n, w in weights.items():
        w.mul_(masks[n].to(w.dtype))


def sparsity_of(weights: dict[str, torch.Tensor]) -> float:
    """Fraction of exact zeros among ``weights``."""
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    return zeros / total if total else 0.0


def gradual_callback(
    model: nn.Module,
    *,
    final: float,
    initial: float,
    scope: str,
    begin_fraction: float,
    end_fraction: float,
    frequency: int,
) -> "TrainerCallback":
    """A :class:`transformers.TrainerCallback` running the cubic schedule during training.

    At ``on_train_begin`` it learns the total number of optimiser steps; every
    ``frequency`` steps between ``begin_fraction`` and ``end_fraction`` of them it recomputes
    the masks for the scheduled sparsity; after every step it re-applies the current masks;
    at ``on_train_end`` it applies the final sparsity. ``history`` records ``(step, target,
    measured)`` at each update.
    """
    from transformers import TrainerCallback

    weights = prunable_weights(model)

    class GradualPruningCallback(TrainerCallback):
        def __init__(self) -> None:
            self.masks: dict[str, torch.Tensor] | None = None
            self.begin = self.end = 0
            self.history: list[tuple[int, float, float]] = []

        def _update(self, step: int, target: float) -> None:
            self.masks = magnitude_masks(weights, target, scope)
            apply_masks_(weights, self.masks)
            self.history.append((step, round(target, 6), round(sparsity_of(weights), 6)))

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            total = max(int(state.max_steps), 1)
            self.begin = int(round(begin_fraction * total))
            self.end = max(int(round(end_fraction * total)), self.begin + 1)
            self._update(state.global_step, cubic_sparsity(
                state.global_step, initial=initial, final=final, begin=self.begin, end=self.end))

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            if self.begin <= step <= self.end and (step - self.begin) % frequency == 0:
                self._update(step, cubic_sparsity(step, initial=initial, final=final, begin=self.begin, end=self.end))
            elif self.masks is not None:
                apply_masks_(weights, self.masks)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._update(state.global_step, final)

    return GradualPruningCallback()


def write_bitmask(model: nn.Module, folder: str | Path) -> tuple[Path, int]:
    """Write the model's weights in a sparse-aware layout: ``folder/model.safetensors.bitmask``.

    Every tensor with at least one zero in :func:`prunable_weights` is stored as
    ``<name>.bitmask`` (uint8, ``numpy.packbits`` of the row-major non-zero pattern),
    ``<name>.values`` (the non-zero values, original dtype) and ``<name>.shape`` (int64);
    every other tensor of the state dict is stored as is. A dense float32 weight of
    sparsity ``s`` takes ``n/8 + 4n(1-s)`` bytes instead of ``4n``.

    :returns: ``(path, bytes on disk)``.
    """
    import numpy as np
    from safetensors.torch import save_file

    sparse_names = set(prunable_weights(model))
    tensors: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        if name in sparse_names and bool((t == 0).any()):
            nz = (t != 0).flatten()
            tensors[f"{name}.bitmask"] = torch.from_numpy(np.packbits(nz.numpy().astype(np.uint8)))
            tensors[f"{name}.values"] = t.flatten()[nz].clone()
            tensors[f"{name}.shape"] = torch.tensor(list(t.shape), dtype=torch.int64)
        else:
            tensors[name] = t.clone()
    path = Path(folder) / BITMASK_FILE
    save_file(tensors, str(path), metadata={"format": "compressor-sparse-bitmask", "version": "1"})
    return path, path.stat().st_size


def read_bitmask(path: str | Path) -> dict[str, torch.Tensor]:
    """Dense state dict from a file written by :func:`write_bitmask`."""
    import numpy as np
    from safetensors.torch import load_file

    raw = load_file(str(path))
    out: dict[str, torch.Tensor] = {}
    for key, t in raw.items():
        if key.endswith(".bitmask"):
            name = key[: -len(".bitmask")]
            shape = raw[f"{name}.shape"].tolist()
            n = int(np.prod(shape))
            nz = torch.from_numpy(np.unpackbits(t.numpy())[:n].astype(bool))
            values = raw[f"{name}.values"]
            dense = torch.zeros(n, dtype=values.dtype)
            dense[nz] = values
            out[name] = dense.view(shape)
        elif not (key.endswith(".values") or key.endswith(".shape")):
            out[key] = t
    return out
