"""compressor-lowrank: a third-party compressor plugin (truncated-SVD low-rank factorisation).

The strategy ``lowrank.svd`` is registered through the entry point in ``pyproject.toml``;
:func:`compressor_lowrank.svd.factorize_` is usable on its own on any PyTorch model.
"""

from .plugin import LowRankConfig, LowRankSVD

__all__ = ["LowRankConfig", "LowRankSVD"]
__version__ = "0.1.0"
