"""Truncated-SVD factorisation of Linear layers (heavy half of the plugin: torch, onnx)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressor import StageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from compressor import Artifact, StageContext, Strategy

    from .plugin import LowRankConfig


def choose_rank(singular_values: "torch.Tensor", *, rank: int | None, energy: float | None) -> int:
    """Rank to keep for one matrix.

    :param singular_values: 1-D tensor of singular values in decreasing order.
    :param rank: a fixed rank (clamped to ``len(singular_values)``), or ``None``.
    :param energy: fraction in (0, 1] of ``sum(s_i^2)`` to keep, or ``None``.
    :returns: the smallest ``r >= 1`` with ``sum(s[:r]^2) >= energy * sum(s^2)``, or the
        fixed rank.
    """
    import torch

    n = int(singular_values.numel())
    if rank is not None:
        return min(rank, n)
    sq = singular_values.double() ** 2
    total = float(sq.sum())
    if total == 0.0:
        return 1
    cumulative = torch.cumsum(sq, 0) / total
    # smallest r with cumulative[r-1] >= energy (tolerance for float rounding at energy=1)
    r = int(torch.searchsorted(cumulative, torch.tensor(energy - 1e-12, dtype=torch.float64)).item()) + 1
    return max(1, min(r, n))


def _low_rank_module(linear: "torch.nn.Linear", r: int, u: Any, s: Any, vh: Any) -> "torch.nn.Module":
    import torch
    from torch import nn

    root = s[:r].sqrt()
    down = nn.Linear(linear.in_features, r, bias=False)
    up = nn.Linear(r, linear.out_features, bias=linear.bias is not None)
    dtype = linear.weight.dtype
    with torch.no_grad():
        down.weight.copy_((root[:, None] * vh[:r]).to(dtype))
        up.weight.copy_((u[:, :r] * root[None, :]).to(dtype))
        if linear.bias is not None:
            up.bias.copy_(linear.bias)
    return nn.Sequential(down, up)


@dataclass
class FactorReport:
    """What :func:`factorize_` did.

    :ivar ranks: qualified module name -> rank kept, for every factored layer.
    :ivar dense: names of matched layers kept dense (factoring would not save enough).
    :ivar params_before: weight + bias elements of the matched Linear layers before.
    :ivar params_after: the same after (factored layers as two, dense ones unchanged).
    :ivar relative_errors: name -> ``||W - W_r||_F / ||W||_F`` for every factored layer.
    """

    ranks: dict[str, int] = field(default_factory=dict)
    dense: list[str] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    relative_errors: dict[str, float] = field(default_factory=dict)


def factorize_(
    model: "torch.nn.Module",
    *,
    rank: int | None = None,
    energy: float | None = None,
    modules: str,
    min_saving: float = 0.0,
) -> FactorReport:
    """Replace matching ``nn.Linear`` layers of ``model`` in place by rank-r factor pairs.

    ``W`` (out x in) is decomposed in float64 (``torch.linalg.svd``), truncated to ``r`` and
    split symmetrically: ``down.weight = sqrt(S_r) V_r^T`` (r x in, no bias),
    ``up.weight = U_r sqrt(S_r)`` (out x r, the original bias), stored in the layer's dtype.
    A layer is factored only if ``r * (in + out) + out <= (1 - min_saving) * (in * out) + out``.

    :param model: any PyTorch module; modified in place.
    :param rank: fixed rank (exclusive with ``energy``).
    :param energy: fraction of ``sum(s_i^2)`` kept per layer (exclusive with ``rank``).
    :param modules: regular expression (``re.search``) on qualified module names.
    :param min_saving: fraction of a layer's weight elements that factoring must save.
    :returns: a :class:`FactorReport`.
    """
    import torch
    from torch import nn

    pattern = re.compile(modules)
    report = FactorReport()
    targets = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and pattern.search(name)
    ]
    for name, linear in targets:
        out_f, in_f = linear.weight.shape
        bias = out_f if linear.bias is not None else 0
        report.params_before += in_f * out_f + bias
        w = linear.weight.detach().double()
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        r = choose_rank(s, rank=rank, energy=energy)
        if r * (in_f + out_f) > (1.0 - min_saving) * in_f * out_f:
            report.dense.append(name)
            report.params_after += in_f * out_f + bias
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _low_rank_module(linear, r, u, s, vh))
        report.ranks[name] = r
        report.params_after += r * (in_f + out_f) + bias
        err = float((s[r:] ** 2).sum().sqrt() / (s ** 2).sum().sqrt()) if float(s.sum()) > 0 else 0.0
        report.relative_errors[name] = err
    return report


def run_lowrank(
    strategy: "Strategy", artifact: "Artifact", config: "LowRankConfig", context: "StageContext"
) -> "Artifact":
    """Implementation of :meth:`compressor_lowrank.plugin.LowRankSVD.apply`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(artifact.path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise StageError(
            f"lowrank.svd cannot load artifact {artifact.name!r} at {path} as a sequence "
            f"classifier with its tokenizer: {exc}",
            hint="the input must be a Hugging Face model folder (save_pretrained) holding its tokenizer",
        ) from exc
    model.eval()
    linear_names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not any(re.search(config.modules, n) for n in linear_names):
        raise StageError(
            f"no Linear layer of {artifact.name!r} matches modules={config.modules!r}",
            key="config.modules",
            expected=f"a regular expression matching some of {linear_names[:6]}...",
        )
    with torch.no_grad():
        report = factorize_(
            model,
            rank=config.rank,
            energy=config.energy,
            modules=config.modules,
            min_saving=config.min_saving,
        )
    if not report.ranks:
        what = f"rank={config.rank}" if config.rank is not None else f"energy={config.energy}"
        raise StageError(
            f"with {what}, none of the {len(report.dense)} matched layers of {artifact.name!r} "
            "would get smaller, so nothing was factored",
            key="config.rank" if config.rank is not None else "config.energy",
            expected="a rank below in*out/(in+out) of the layers (e.g. below 192 for 384x384), "
            "or a lower energy",
        )
    context.logger.info(
        "%s: factored %d Linear layers (%d kept dense), %d -> %d parameters in them",
        context.stage_name, len(report.ranks), len(report.dense), report.params_before, report.params_after,
    )
    _export_onnx(model, tokenizer, Path(context.output_dir))
    tokenizer.save_pretrained(context.output_dir)
    errors = list(report.relative_errors.values())
    return context.new_artifact(
        artifact,
        strategy.name,
        config,
        format="onnx",
        extra={
            "factored_layers": len(report.ranks),
            "dense_layers": len(report.dense),
            "ranks": report.ranks,
            "linear_params_before": report.params_before,
            "linear_params_after": report.params_after,
            "mean_relative_error": sum(errors) / len(errors),
            "reference": "Noach & Goldberg 2020, Compressing Pre-trained Language Models by Matrix Decomposition",
        },
    )


def _export_onnx(model: "torch.nn.Module", tokenizer: Any, out_dir: Path) -> None:
    """Export the (factored) classifier into ``out_dir/model.onnx`` + ``config.json`` with the
    core's ``torch.onnx`` exporter (:func:`compressor.onnx_export.export_module`)."""
    from compressor.onnx_export import ONNX_FILE, export_module

    export_module(model.eval(), tokenizer, out_dir / ONNX_FILE)
    model.config.save_pretrained(out_dir)
