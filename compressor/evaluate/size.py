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
    :returns: ``{"params": count, "disk_bytes": bytes, "disk_mb": bytes / 1e6}``.
    """
    disk_bytes = int(artifact.size_bytes())
    return {
        "params": int(backend.num_parameters()),
        "disk_bytes": disk_bytes,
        "disk_mb": disk_bytes / 1e6,
    }
