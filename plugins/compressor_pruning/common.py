"""Shared pieces of the pruning strategies (heavy: torch, transformers).

- :func:`load_task_model`: the input model with the task's head, structure file honoured;
- :func:`importance_batches`: a seeded sample of task examples, tokenised and padded, with
  the task's loss (:class:`TaskBatches`);
- :class:`Gates`: multiplicative gates on the input of Linear layers, whose gradients are
  the importance scores of heads (Michel et al. 2019) and FFN neurons (first-order Taylor,
  Molchanov et al. 2017);
- :func:`save_model`: ``save_pretrained`` plus the structure file when shapes need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from compressor.errors import StageError
from compressor.structure import has_structure
from compressor.training import trainer as training

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

    from compressor.artifact import Artifact
    from compressor.strategy import StageContext
    from compressor.task import TaskData


def load_task_model(artifact: "Artifact", context: "StageContext", data: "TaskData | None" = None) -> "PreTrainedModel":
    """Load a PyTorch model with the task's head (eval mode) through its format's handler
    (:meth:`compressor.StageContext.load_model`: shapes rebuilt from a structure file).

    :param data: the task's data; ``None`` loads a sequence classifier.
    :raises StageError: for a format that holds no PyTorch model, an unloadable folder, or a
        head that does not fit the task (another label count).
    """
    from transformers import AutoModelForSequenceClassification

    auto = data.task.auto_class() if data is not None else AutoModelForSequenceClassification
    model = context.load_model(artifact, auto)
    if data is not None:
        data.task.check_head(model, data, artifact.name)
    model.eval()
    return model


class TaskBatches(list):
    """Importance batches (a list of collated batches) that know the task's loss.

    :param batches: collated batches of the task's tokenised rows.
    :param task: the :class:`compressor.tasks.Task`; :meth:`loss` is its
        :meth:`~compressor.tasks.Task.loss` (the head's loss from the labels; for sentence
        embeddings the distance to the unpruned model's embeddings).
    """

    def __init__(self, batches: list[dict[str, torch.Tensor]], task: Any = None) -> None:
        super().__init__(batches)
        self.task = task

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar loss of ``model`` on ``batch``."""
        if self.task is not None:
            return self.task.loss(model, batch)
        return model(**batch).loss


def batch_loss(batches: Any, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``batches.loss(model, batch)`` for :class:`TaskBatches`, else the head's own loss."""
    if isinstance(batches, TaskBatches):
        return batches.loss(model, batch)
    return model(**batch).loss


def importance_batches(
    context: "StageContext",
    tokenizer: Any,
    *,
    split: str,
    samples: int,
    batch_size: int,
    max_length: int,
    seed: int,
    model: nn.Module | None = None,
) -> TaskBatches:
    """A seeded sample of ``samples`` examples of the task, tokenised into padded batches.

    :param model: the model before pruning: a task without labels stores its outputs in each
        batch (:meth:`compressor.tasks.Task.reference_batch`), the reference the loss
        compares with.
    :returns: :class:`TaskBatches` with the tokenizer's inputs and the task's labels, each
        tensor of shape ``(batch, tokens)`` (sequence labels: ``(batch,)``).
    :raises StageError: when the split is missing, or the task has neither labels nor a loss
        of its own to score parts by.
    """
    data = context.data
    task = data.task
    if not task_has_importance_loss(task):
        raise StageError(
            f"importance scores need a loss; task {data.type!r} has no labels and no loss of its own",
        )
    if split not in data.splits or len(data.splits[split]) == 0:
        raise StageError(f"no (non-empty) split {split!r} for importance scores", expected=str(sorted(data.splits)))
    ds = data.splits[split]
    n = min(samples, len(ds))
    ds = ds.shuffle(seed=seed).select(range(n))
    encoded = training.tokenize_split(ds, tokenizer, max_length, data, progress=False)
    collate = task.collator(tokenizer)
    rows = [encoded[i] for i in range(len(encoded))]
    batches = [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    if model is not None:
        with torch.no_grad():
            batches = [task.reference_batch(model, dict(b)) for b in batches]
    return TaskBatches(batches, task)


def task_has_importance_loss(task: Any) -> bool:
    """Whether a task gives a loss to score parts by: labels for the head's own loss, or
    its own :meth:`~compressor.tasks.Task.loss` (sentence embeddings)."""
    from compressor.tasks import Task

    return bool(task.supervised) or type(task).loss is not Task.loss


class Gates:
    """Multiplicative gates on the input features of some Linear layers.

    Gate ``g`` of a layer has one entry per group of ``group_size`` consecutive input
    features; the layer computes ``W (x * repeat(g, group_size)) + b``. With ``g = 1`` the
    model is unchanged; ``dL/dg_j = sum over tokens of <x_group_j, dL/dx_group_j>``, the
    gradient of the loss with respect to a mask on that group (a head's output when the
    Linear is the attention output projection: Michel et al. 2019's head mask; a neuron's
    activation when it is the FFN output layer). Also records the mean absolute input per
    group over non-padding tokens (activation-based importance).

    Use as a context manager; the hooks are removed on exit.

    :param linears: the Linear modules to gate.
    :param group_size: input features per gate (head size, or 1 for neurons).
    """

    def __init__(self, linears: list[nn.Linear], group_size: int) -> None:
        self.linears = linears
        self.group_size = group_size
        self.gates = [
            torch.ones(m.in_features // group_size, requires_grad=True, device=m.weight.device)
            for m in linears
        ]
        self.grad_abs = [torch.zeros_like(g, requires_grad=False) for g in self.gates]
        self.act_abs = [torch.zeros_like(g, requires_grad=False) for g in self.gates]
        self.tokens = 0
        self.mask: torch.Tensor | None = None
        self._handles: list[Any] = []

    def __enter__(self) -> "Gates":
        for i, m in enumerate(self.linears):
            self._handles.append(m.register_forward_pre_hook(self._hook(i)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, i: int) -> Any:
        def pre(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x = args[0]
            with torch.no_grad():
                groups = x.detach().abs().reshape(*x.shape[:-1], -1, self.group_size).mean(-1)
                if self.mask is not None and groups.dim() == 3 and self.mask.shape == groups.shape[:2]:
                    groups = groups * self.mask.unsqueeze(-1).to(groups.dtype)
                self.act_abs[i] += groups.reshape(-1, groups.shape[-1]).sum(0)
            gate = self.gates[i].repeat_interleave(self.group_size).to(x.dtype)
            return (x * gate, *args[1:])

        return pre

    def accumulate(self, model: nn.Module, batch: dict[str, torch.Tensor], batches: Any = None) -> float:
        """One forward and backward pass on ``batch``; adds ``|dL/dg|`` to :attr:`grad_abs`.

        :param batches: the :class:`TaskBatches` ``batch`` comes from (its task's loss);
            ``None``: the head's own loss.
        :returns: the batch's loss (the task's, e.g. cross-entropy, mean over the batch).
        """
        self.mask = batch.get("attention_mask")
        for g in self.gates:
            g.grad = None
        loss = batch_loss(batches, model, batch)
        loss.backward()
        with torch.no_grad():
            for acc, g in zip(self.grad_abs, self.gates):
                acc += g.grad.abs()
        self.tokens += int(self.mask.sum()) if self.mask is not None else int(batch["input_ids"].numel())
        self.mask = None
        return float(loss.detach())


def gate_scores(
    model: nn.Module,
    linears: list[nn.Linear],
    group_size: int,
    batches: list[dict[str, torch.Tensor]],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Gradient and activation importance of the input groups of ``linears``.

    :returns: ``(gradient, activation)``: per Linear a float32 tensor of one score per
        group: ``sum over batches |dL/dg|`` divided by the number of non-padding tokens
        (as in the reference code of Michel et al., transformers' ``run_bertology.py``),
        and the mean absolute input per token.
    """
    was_training = model.training
    model.eval()  # no dropout: scores are deterministic
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        with Gates(linears, group_size) as gates:
            for batch in batches:
                gates.accumulate(model, batch, batches)
        tokens = max(gates.tokens, 1)
        return [g / tokens for g in gates.grad_abs], [a / tokens for a in gates.act_abs]
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)


def save_model(model: "PreTrainedModel", tokenizer: Any, context: "StageContext") -> bool:
    """Save ``model`` and ``tokenizer`` to the stage's output folder.

    :returns: whether a structure file was needed (see :mod:`compressor.structure`).
    """
    context.save_model(model, tokenizer)
    return has_structure(context.output_dir)


@torch.no_grad()
def mean_loss(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean task loss over ``batches`` (weighted by batch size), eval mode; the task's loss
    for :class:`TaskBatches`, else the head's own."""
    model.eval()
    total = n = 0.0
    for batch in batches:
        b = batch["input_ids"].shape[0]
        total += float(batch_loss(batches, model, batch)) * b
        n += b
    return total / max(n, 1.0)
