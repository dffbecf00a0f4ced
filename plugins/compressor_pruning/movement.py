"""Movement pruning (Sanh, Wolf and Rush 2020, "Movement Pruning: Adaptive Sparsity by
Fine-Tuning"), hard (top-k) variant (heavy: torch, transformers).

Every prunable weight ``W`` (:func:`~compressor_pruning.magnitude.prunable_weights`, shape
``(out, in)``) gets a score matrix ``S`` of one score per block (``(out/bh, in/bw)``; blocks of
1 x 1 are the unstructured case). The forward pass uses ``W * M`` with
``M = Top_v(S)``: 1 for the scores in the top ``v`` fraction (per matrix, or over all
matrices), 0 elsewhere, each block's score broadcast over its ``bh x bw`` weights. The top-k
is not differentiable; the straight-through estimator passes the gradient through it, so

``dL/dS_ij = sum over the block of (dL/dW'_kl * W_kl)``, with ``W' = W * M``,

and a score grows when its weights move away from zero during fine-tuning and shrinks when
they move towards it: the model keeps what fine-tuning needs, not what is large. Scores start
at zero and train with their own learning rate (the paper uses 1e-2); the kept fraction ``v``
follows Zhu and Gupta's cubic schedule (:func:`~compressor_pruning.magnitude.cubic_sparsity`),
with full density before ``begin_fraction`` of the steps and the final sparsity after
``end_fraction``. At the end the masks are made permanent: ``W * M`` is written as dense
weights with zeros, reloadable with transformers, and the evaluator measures whether that
is any faster (it usually is not; see :mod:`~compressor_pruning.magnitude`).

The parametrisation is :func:`torch.nn.utils.parametrize.register_parametrization`, so the
Linear modules, their names and transformers' own code stay as they are while training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from compressor.errors import StageError

from .magnitude import cubic_sparsity, prunable_weights

if TYPE_CHECKING:  # pragma: no cover
    from transformers import TrainerCallback


class StraightThroughMask(torch.autograd.Function):
    """``scores >= threshold`` as a float mask; the backward pass is the identity."""

    @staticmethod
    def forward(ctx: Any, scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (scores >= threshold).to(scores.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad, None


class MovementMask(nn.Module):
    """Parametrisation ``W -> W * M(S)`` of one Linear weight, with trainable block scores.

    :param shape: the weight's shape ``(out, in)``.
    :param block: ``(bh, bw)``, dividing ``out`` and ``in``.
    :ivar scores: float32 parameter of shape ``(out // bh, in // bw)``, initialised to 0.
    :ivar threshold: the score a block needs to be kept (``-inf``: all kept); set by
        :class:`MovementPruner`.
    """

    def __init__(self, shape: tuple[int, int], block: tuple[int, int]) -> None:
        super().__init__()
        bh, bw = block
        self.block = block
        self.scores = nn.Parameter(torch.zeros(shape[0] // bh, shape[1] // bw))
        self.register_buffer("threshold", torch.tensor(float("-inf")), persistent=False)

    def mask(self) -> torch.Tensor:
        """The 0/1 mask of the weight's shape (gradients flow to ``scores`` straight through)."""
        m = StraightThroughMask.apply(self.scores, self.threshold)
        bh, bw = self.block
        if bh > 1:
            m = m.repeat_interleave(bh, dim=0)
        if bw > 1:
            m = m.repeat_interleave(bw, dim=1)
        return m

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return weight * self.mask().to(weight.dtype)


def _kept_threshold(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """The ``keep``-th largest value of ``scores`` (``+inf`` for keep 0, ``-inf`` for all)."""
    n = scores.numel()
    if keep >= n:
        return torch.tensor(float("-inf"))
    if keep <= 0:
        return torch.tensor(float("inf"))
    return torch.kthvalue(scores.flatten().float(), n - keep + 1).values


class MovementPruner:
    """Movement-pruning masks on every prunable Linear of ``model``.

    :param model: a transformers encoder (layout from :func:`compressor.architectures.encoder_layout`).
    :param block: ``(bh, bw)`` block of weights sharing one score; ``(1, 1)`` unstructured.
    :param scope: ``"per-layer"`` (every matrix keeps the same fraction, as the reference
        implementation's TopKBinarizer) or ``"global"`` (one ranking over all matrices).
    :raises StageError: if a weight's shape is not divisible by the block.
    """

    def __init__(self, model: nn.Module, *, block: tuple[int, int] = (1, 1), scope: str = "per-layer") -> None:
        self.model = model
        self.scope = scope
        self.block = block
        self.masks: dict[str, MovementMask] = {}
        self.modules: dict[str, nn.Linear] = {}
        named = dict(model.named_modules())
        for name, weight in prunable_weights(model).items():
            out_f, in_f = weight.shape
            if out_f % block[0] or in_f % block[1]:
                raise StageError(
                    f"block {list(block)} does not divide the weight {name} of shape {list(weight.shape)}",
                    key="block",
                    expected="a block shape whose sides divide every encoder Linear weight "
                    "(e.g. [32, 32] for hidden sizes that are multiples of 32)",
                )
            module = named[name[: -len(".weight")]]
            mask = MovementMask((out_f, in_f), block).to(weight.device)
            parametrize.register_parametrization(module, "weight", mask)
            self.masks[name] = mask
            self.modules[name] = module
        self.sparsity = 0.0

    def score_parameters(self) -> list[nn.Parameter]:
        """The trainable scores (give them their own optimiser group and learning rate)."""
        return [m.scores for m in self.masks.values()]

    @torch.no_grad()
    def set_sparsity(self, sparsity: float) -> None:
        """Set every mask's threshold so that ``sparsity`` of the weights are masked out.

        Per block: a matrix of ``n`` blocks keeps ``round((1 - sparsity) * n)`` of them
        (per-layer), or all matrices together keep that fraction of all blocks (global).
        Ties at the threshold are kept, so the sparsity reached can fall short of the
        target by the tied blocks (scores are continuous, ties are rare after a few steps).
        """
        self.sparsity = float(sparsity)
        if self.scope == "global":
            flat = torch.cat([m.scores.detach().flatten() for m in self.masks.values()])
            threshold = _kept_threshold(flat, int(round((1.0 - sparsity) * flat.numel())))
            for m in self.masks.values():
                m.threshold.copy_(threshold)
        else:
            for m in self.masks.values():
                keep = int(round((1.0 - sparsity) * m.scores.numel()))
                m.threshold.copy_(_kept_threshold(m.scores.detach(), keep))

    @torch.no_grad()
    def masked_fraction(self) -> float:
        """Fraction of prunable weights currently masked out (0 to 1)."""
        total = zeros = 0
        for m in self.masks.values():
            mask = m.mask()
            total += mask.numel()
            zeros += int((mask == 0).sum())
        return zeros / total if total else 0.0

    def make_permanent(self) -> None:
        """Replace every parametrised weight by ``W * M`` and drop the scores."""
        for module in self.modules.values():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        self.masks.clear()


def movement_callback(
    pruner: MovementPruner,
    *,
    final: float,
    initial: float,
    begin_fraction: float,
    end_fraction: float,
) -> "TrainerCallback":
    """A :class:`transformers.TrainerCallback` running the cubic schedule on ``pruner``.

    Before every optimiser step the target sparsity of that step is set (the masks' top-k
    then follows the scores as they train); at the end of training the final sparsity.
    ``history`` records ``(step, target, measured)`` each time the target changes by at least
    a hundredth, and at the end.
    """
    from transformers import TrainerCallback

    class MovementPruningCallback(TrainerCallback):
        def __init__(self) -> None:
            self.begin = self.end = 0
            self.history: list[tuple[int, float, float]] = []
            self._last_logged = -1.0

        def _set(self, step: int, target: float, *, log: bool = False) -> None:
            pruner.set_sparsity(target)
            if log or abs(target - self._last_logged) >= 0.01:
                self._last_logged = target
                self.history.append((step, round(target, 6), round(pruner.masked_fraction(), 6)))

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            total = max(int(state.max_steps), 1)
            self.begin = int(round(begin_fraction * total))
            self.end = max(int(round(end_fraction * total)), self.begin + 1)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            self._set(step, cubic_sparsity(step, initial=initial, final=final, begin=self.begin, end=self.end))

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._set(state.global_step, final, log=True)

    return MovementPruningCallback()


LABEL_KEYS = ("labels", "start_positions", "end_positions")
"""Batch keys holding gold targets; the teacher gets the batch without them."""


