"""Built-in ``finetune`` strategy of compressor, registered through the ``compressor``
entry-point group like any third-party plugin.

The Trainer helpers it uses (tokenisation, arguments, resume, precision checks) live in the
core, :mod:`compressor.training`, shared with every strategy that trains.
"""

from .plugin import FineTune, FineTuneConfig

__all__ = ["FineTune", "FineTuneConfig"]
