"""Task types: what a model is for, and everything that depends on it.

:class:`Task` (in :mod:`compressor.tasks.base`) is the contract; the built-in tasks live one
per module (:mod:`~compressor.tasks.classification`, :mod:`~compressor.tasks.masked_lm`, ...)
and are registered through the ``compressor_register_tasks`` hook by
:mod:`compressor.tasks.builtin`, as a plugin's would be. :func:`get_task` finds one by name.

Lookups take the registry to search (``Plugins.tasks``). Without one they search the tasks in
use: those of the plugins whose :meth:`compressor.plugins.Plugins.scope` is open (a run opens
its plugins' scope, so a plugin's ``get_task(name)`` inside a stage finds the run's tasks),
else the core's built-in tasks. This package never reaches the plugin manager.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

from ..errors import CompressorError
from .base import Metric, Scored, SoftTarget, Task

__all__ = ["Metric", "Scored", "SoftTarget", "Task", "get_task", "task_names"]

_IN_USE: ContextVar[Mapping[str, Task] | None] = ContextVar("compressor_tasks_in_use", default=None)
_BUILTIN: Mapping[str, Task] | None = None


def builtin_tasks() -> Mapping[str, Task]:
    """The core's own tasks (what :mod:`compressor.tasks.builtin` registers), name -> task;
    read-only, built once."""
    global _BUILTIN
    if _BUILTIN is None:
        from .builtin import compressor_register_tasks

        found: dict[str, Task] = {}
        compressor_register_tasks(register=lambda task: found.setdefault(task.name, task))
        _BUILTIN = MappingProxyType(found)
    return _BUILTIN


@contextmanager
def using_tasks(registry: Mapping[str, Task]) -> Iterator[Mapping[str, Task]]:
    """Within the block (this thread or task), lookups without a registry search ``registry``.

    :meth:`compressor.plugins.Plugins.scope` opens it with the plugins' tasks; nested blocks
    restore the outer registry on exit.
    """
    token = _IN_USE.set(registry)
    try:
        yield registry
    finally:
        _IN_USE.reset(token)


def _registry(registry: Mapping[str, Task] | None) -> Mapping[str, Task]:
    if registry is not None:
        return registry
    in_use = _IN_USE.get()
    return in_use if in_use is not None else builtin_tasks()


def task_names(registry: Mapping[str, Task] | None = None) -> list[str]:
    """Names of the registered tasks, sorted.

    :param registry: name -> task (``Plugins.tasks``); default: the tasks in use (see the
        module's docstring).
    """
    return sorted(_registry(registry))


def get_task(name: str, registry: Mapping[str, Task] | None = None) -> Task:
    """The registered task called ``name``.

    :param registry: name -> task (``Plugins.tasks``); default: the tasks in use: those of
        the open :meth:`~compressor.plugins.Plugins.scope` (a run's), else the built-in ones.
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
