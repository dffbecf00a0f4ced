"""Task types: what a model is for, and everything that depends on it.

:class:`Task` (in :mod:`compressor.tasks.base`) is the contract; the built-in tasks live one
per module (:mod:`~compressor.tasks.classification`, :mod:`~compressor.tasks.masked_lm`, ...)
and are registered through the ``compressor_register_tasks`` hook by
:mod:`compressor.tasks.builtin`, as a plugin's would be. :func:`get_task` finds one by name.
"""

from __future__ import annotations

from ..errors import CompressorError
from .base import Metric, Scored, SoftTarget, Task

__all__ = ["Metric", "Scored", "SoftTarget", "Task", "get_task", "task_names"]


def _registry(registry: dict[str, Task] | None) -> dict[str, Task]:
    if registry is not None:
        return registry
    from ..plugins import get_plugins

    return get_plugins().tasks


def task_names(registry: dict[str, Task] | None = None) -> list[str]:
    """Names of the registered tasks, sorted."""
    return sorted(_registry(registry))


def get_task(name: str, registry: dict[str, Task] | None = None) -> Task:
    """The registered task called ``name``.

    :param registry: name -> task (default: the loaded plugins' tasks).
    :raises CompressorError: for an unknown name, listing the known ones.
    """
    tasks = _registry(registry)
    try:
        return tasks[name]
    except KeyError:
        from ..suggest import did_you_mean

        raise CompressorError(
            f"unknown task type {name!r}",
            expected=f"one of {sorted(tasks)}",
            hint=did_you_mean(name, list(tasks)),
        ) from None
