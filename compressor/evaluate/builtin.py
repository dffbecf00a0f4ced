"""The core's evaluation backends, registered by a default plugin as the core's model sources
and data sets are (:mod:`compressor.sources.builtin`): ``pytorch`` and ``onnx`` artifacts.

The plugin manager loads this module first; third-party formats register the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from .backends import Backend


@hookimpl
def compressor_register_backends(register: Callable[[type["Backend"]], None]) -> None:
    """Register :class:`~compressor.evaluate.backends.PyTorchBackend` (format ``pytorch``)
    and :class:`~compressor.evaluate.backends.OnnxRuntimeBackend` (format ``onnx``)."""
    from .backends import OnnxRuntimeBackend, PyTorchBackend

    register(PyTorchBackend)
    register(OnnxRuntimeBackend)
