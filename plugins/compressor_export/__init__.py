"""Built-in ``export.onnx`` strategy of compressor: ONNX export with torch.onnx, optional ONNX
Runtime graph optimisation, and a logit parity check against the PyTorch model.

Registered through the ``compressor`` entry-point group like any third-party plugin.
"""

from .plugin import ExportOnnx, ExportOnnxConfig

__all__ = ["ExportOnnx", "ExportOnnxConfig"]
