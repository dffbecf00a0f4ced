"""Model size: parameter count and bytes of the weight files on disk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..artifact import Artifact
    from .backends import Backend


def measure_size(backend: "Backend", artifact: "Artifact") -> dict[str, Any]:
    """Size of one model.

    :param backend: the loaded model (counts parameters: unique PyTorch parameter tensors'
        elements, or ONNX initializer elements).
    :param artifact: the model directory (:meth:`Artifact.size_bytes` counts weight files).
    :returns: ``{"params": count, "disk_bytes": bytes, "disk_mb": bytes / 1e6,
        "structure": ... | None, "sparsity": fraction | None}``. ``structure`` describes a
        PyTorch encoder as :func:`compressor.architectures.structure_summary` does (layers,
        heads and FFN widths per layer, fraction of zeros in the encoder layers' Linear
        weights overall and per layer); ``None`` for other backends and for architectures
        it does not know. ``sparsity`` repeats ``structure["sparsity"]``.
    """
    disk_bytes = int(artifact.size_bytes())
    structure = model_structure(backend)
    return {
        "params": int(backend.num_parameters()),
        "disk_bytes": disk_bytes,
        "disk_mb": disk_bytes / 1e6,
        "structure": structure,
        "sparsity": structure["sparsity"] if structure else None,
    }


def model_structure(backend: "Backend") -> dict[str, Any] | None:
    """:func:`compressor.architectures.structure_summary` of a PyTorch backend's model, or
    ``None`` (not a ``torch.nn.Module``, or an encoder layout it cannot find)."""
    from ..errors import CompressorError

    model = getattr(backend, "model", None)
    try:
        from torch import nn
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not isinstance(model, nn.Module) or getattr(model, "config", None) is None:
        return None
    from ..architectures import structure_summary

    try:
        return structure_summary(model)
    except CompressorError:
        return None
