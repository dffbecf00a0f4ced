"""``compressor tune``: the fastest model whose loss against a reference is bounded with a
stated confidence, found by an Optuna search over a recipe's ``search:`` space.

- :mod:`compressor.tune.space`: its checks against the stages, and each trial's recipe;
- :mod:`compressor.tune.bound`: pass/fail by the paired interval, what the data can certify;
- :mod:`compressor.tune.tuner`: the search (trials, shared stages, resume, test scoring);
- :mod:`compressor.tune.report`: the report, the plot and the model card's section.

The ``search:`` block's models are :mod:`compressor.search` (the recipe reads them).
See docs/tune.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXIT_NOTHING_PASSES", "NothingPasses", "SearchConfig", "TuneResult", "tune"]


def __getattr__(name: str) -> Any:
    if name == "SearchConfig":
        from ..search import SearchConfig

        return SearchConfig
    if name in ("tune", "TuneResult", "NothingPasses", "EXIT_NOTHING_PASSES"):
        from . import tuner

        return getattr(tuner, name)
    raise AttributeError(name)
