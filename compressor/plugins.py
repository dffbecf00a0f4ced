"""The plugin manager: built-in and third-party plugins load through one path.

Every plugin, the built-ins included, is a module named by an entry point in the group
``compressor`` (the core's own model and data sources and its evaluation backends are the
one exception: they are the core's default plugins, loaded first, like pytest's
``default_plugins``). Loading:

1. the core's default plugins :mod:`compressor.sources.builtin` (model sources, data sets)
   and :mod:`compressor.evaluate.builtin` (the ``pytorch`` and ``onnx`` backends);
2. every entry point in group ``compressor``, unless its name is listed in the environment
   variable ``COMPRESSOR_DISABLE_PLUGINS`` (comma-separated);
3. registration hooks are called; duplicates are errors; ``check_pending`` makes a
   misspelled hook implementation fail loudly.

A plugin whose module fails to import is not swallowed: it is recorded in
:attr:`Plugins.failed` with the reason, a warning is logged, ``compressor plugins`` lists it,
and any error about an unknown strategy names it.

Nothing the plugin manager loads imports it back: the core's lookups are given their registries
(``Plugins.tasks``, ``Plugins.architectures``, ...) by the caller, and :meth:`Plugins.scope` makes
a run's registries the ones that lookups given none use (:mod:`compressor.tasks`,
:mod:`compressor.architectures`). Only the entry points (the command line, runs,
recipe loading, the schema and model-card writers, :mod:`compressor.testing`) call
:func:`get_plugins`, for a caller that passes no plugins.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import PluginError

if TYPE_CHECKING:  # pragma: no cover
    from .sources.datasets import DatasetSpec
    from .sources.models import ModelSource
    from .strategy import Strategy

ENTRY_POINT_GROUP = "compressor"
DISABLE_ENV = "COMPRESSOR_DISABLE_PLUGINS"
DEFAULT_PLUGINS = (
    "compressor.sources.builtin",
    "compressor.evaluate.builtin",
    "compressor.architectures.builtin",
    "compressor.tasks.builtin",
)

log = logging.getLogger(__name__)


@dataclass
class PluginInfo:
    """One loaded (or failed) plugin, as ``compressor plugins`` shows it."""

    name: str
    module: str
    package: str | None = None
    version: str | None = None
    strategies: list[str] = field(default_factory=list)
    model_sources: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    disabled: bool = False


class Plugins:
    """Loaded plugins and what they registered.

    :ivar strategies: strategy name -> strategy class.
    :ivar model_sources: source name -> model source object.
    :ivar datasets: data set name -> :class:`~compressor.sources.datasets.DatasetSpec`.
    :ivar backends: artifact format -> evaluation backend class (the core's own
        ``"pytorch"`` and ``"onnx"`` ones included, registered by its default plugin).
    :ivar architectures: ``config.model_type`` -> architecture adapter
        (:class:`compressor.architectures.ArchitectureAdapter`).
    :ivar tasks: task type name -> :class:`compressor.tasks.Task`.
    :ivar infos: plugin name -> :class:`PluginInfo` (loaded, failed and disabled ones).
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.strategies: dict[str, type[Strategy]] = {}
        self.model_sources: dict[str, ModelSource] = {}
        self.datasets: dict[str, DatasetSpec] = {}
        self.backends: dict[str, type] = {}
        self.architectures: dict[str, Any] = {}
        self.tasks: dict[str, Any] = {}
        self.infos: dict[str, PluginInfo] = {}

    # -- loading ---------------------------------------------------------------------------

    @property
    def failed(self) -> dict[str, str]:
        """Plugin name -> reason, for every plugin that failed to load."""
        return {n: i.error for n, i in self.infos.items() if i.error}

    def load(self, *, entry_points_enabled: bool = True, extra: list[tuple[str, Any]] | None = None) -> "Plugins":
        """Load default, entry-point and ``extra`` plugins and run the registration hooks.

        :param entry_points_enabled: read the ``compressor`` entry-point group.
        :param extra: ``(name, module_or_object)`` pairs registered directly (tests use this
            to add a fake plugin).
        :raises PluginError: on duplicate names or invalid registrations.
        """
        blocked = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        for modname in DEFAULT_PLUGINS:
            self._register(modname, importlib.import_module(modname), package="compressor")
        if entry_points_enabled:
            for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                dist = getattr(ep, "dist", None)
                package = dist.metadata["Name"] if dist is not None else None
                version = dist.version if dist is not None else None
                if ep.name in blocked:
                    self.infos[ep.name] = PluginInfo(
                        ep.name, ep.value, package, version, disabled=True
                    )
                    continue
                try:
                    obj = ep.load()
                except Exception as exc:  # noqa: BLE001 - reported, not swallowed
                    reason = f"{type(exc).__name__}: {exc}"
                    log.warning("plugin %r (%s) failed to load: %s", ep.name, ep.value, reason)
                    self.infos[ep.name] = PluginInfo(ep.name, ep.value, package, version, error=reason)
                    continue
                self._register(ep.name, obj, package=package, version=version, module=ep.value)
        for name, obj in extra or []:
            if name in blocked:
                continue
            self._register(name, obj, package=None)
        self.pm.check_pending()
        self._collect()
        return self

    def _register(self, name: str, obj: Any, *, package: str | None, version: str | None = None, module: str | None = None) -> None:
        if name in self.infos and not self.infos[name].error:
            raise PluginError(f"two plugins are named {name!r}", hint="rename one entry point")
        try:
            self.pm.register(obj, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
        if version is None and package:
            try:
                from importlib.metadata import version as _v

                version = _v(package)
            except Exception:  # noqa: BLE001
                version = None
        self.infos[name] = PluginInfo(
            name=name,
            module=module or getattr(obj, "__name__", type(obj).__name__),
            package=package,
            version=version,
            hooks=sorted(
                h.name for h in self.pm.get_hookcallers(obj) or [] if h.name.startswith("compressor_")
            ),
        )

    def _collect(self) -> None:
        """Call every registration hook (:data:`REGISTRATIONS`, in order) with a ``register``
        callback that checks what it is given and files it under its keys."""
        for kind in REGISTRATIONS:
            for impl in getattr(self.pm.hook, kind.hook).get_hookimpls():
                register = functools.partial(self._add, kind, impl.plugin_name)
                impl.function(**_opt_in(impl, register=register))

    def _add(self, kind: "Registration", owner: str, obj: Any) -> None:
        """File ``obj``, registered by plugin ``owner``, under each of its keys.

        :raises PluginError: ``obj`` fails the kind's check, or one of its keys is taken (no
            key is filed then).
        """
        if kind.check is not None:
            kind.check(owner, obj)
        registry = getattr(self, kind.attribute)
        keys = kind.keys(obj)
        for key in keys:
            if key in registry:
                previous = self._owner_of(kind.attribute, key)
                if kind.core_clash is not None and previous in DEFAULT_PLUGINS:
                    raise kind.core_clash(owner, obj, key)
                raise PluginError(f"{kind.noun} {key!r} registered twice (by {previous!r} and {owner!r})")
        for key in keys:
            registry[key] = obj
            getattr(self.infos[owner], kind.attribute).append(key)

    def _owner_of(self, kind: str, name: str) -> str:
        for info in self.infos.values():
            if name in getattr(info, kind):
                return info.name
        return "?"

    # -- lookup ----------------------------------------------------------------------------

    def strategy(self, name: str) -> "type[Strategy]":
        """Return the strategy class registered as ``name``.

        :raises PluginError: with the nearest registered name and any plugin load failures.
        """
        if name in self.strategies:
            return self.strategies[name]
        raise PluginError(
            f"unknown strategy {name!r}",
            expected=f"one of {sorted(self.strategies)}",
            hint=self.unknown_hint(name, self.strategies),
        )

    def unknown_hint(self, name: str, known: Any) -> str | None:
        from .suggest import did_you_mean

        parts = []
        guess = did_you_mean(name, list(known))
        if guess:
            parts.append(guess)
        for pname, reason in self.failed.items():
            parts.append(f"plugin {pname!r} failed to load ({reason})")
        disabled = sorted(i.name for i in self.infos.values() if i.disabled)
        if disabled:
            # a disabled plugin is never imported, so which names it registers is unknown
            parts.append(
                f"{DISABLE_ENV} disables plugin{'s' if len(disabled) > 1 else ''} "
                f"{', '.join(repr(n) for n in disabled)}, which may register it: remove "
                f"{'them' if len(disabled) > 1 else 'it'} from {DISABLE_ENV} to use it"
            )
        return "; ".join(parts) or None

    # -- observers -------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # -- the registries in use -------------------------------------------------------------

    @contextmanager
    def scope(self) -> Iterator["Plugins"]:
        """Within the block, lookups given no registry use these plugins' tasks and adapters.

        :func:`compressor.tasks.get_task` and :attr:`compressor.task.TaskData.task`,
        :func:`compressor.architectures.adapter_for`, ``encoder_layout`` and the other layout
        functions take an optional registry; the core passes it where it has one, and a
        plugin that calls them without one gets the registry of the open scope, else the
        core's built-in tasks and adapters. A run (:class:`compressor.pipeline.Run`), recipe
        validation and :mod:`compressor.testing` open their plugins' scope around what they
        call. The scope is local to the thread (a :class:`contextvars.ContextVar`); nested
        scopes restore the outer one on exit.
        """
        from .architectures.layout import using_adapters
        from .tasks import using_tasks

        with using_tasks(self.tasks), using_adapters(self.architectures):
            yield self


def _opt_in(impl: Any, **available: Any) -> dict[str, Any]:
    return {k: v for k, v in available.items() if k in impl.argnames}


# -- what each registration hook registers -------------------------------------------------


def _check_strategy(owner: str, cls: Any) -> None:
    from .strategy import Strategy, StrategyConfig

    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise PluginError(f"plugin {owner!r} registered {cls!r}, not a Strategy subclass")
    if not cls.name:
        raise PluginError(f"plugin {owner!r}: strategy {cls.__name__} has no name")
    if not (isinstance(cls.Config, type) and issubclass(cls.Config, StrategyConfig)):
        raise PluginError(f"plugin {owner!r}: strategy {cls.name!r} Config must subclass StrategyConfig")


def _check_backend(owner: str, cls: Any) -> None:
    from .evaluate.backends import Backend

    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise PluginError(f"plugin {owner!r} registered {cls!r}, not a Backend subclass")
    formats = tuple(getattr(cls, "formats", ()) or ())
    if not formats or not all(isinstance(f, str) and f for f in formats):
        raise PluginError(
            f"plugin {owner!r}: backend {cls.__name__} lists no artifact formats",
            hint="set the class attribute formats = ('my-format',)",
        )


def _backend_claims_core_format(owner: str, cls: Any, fmt: str) -> PluginError:
    return PluginError(
        f"plugin {owner!r}: backend {cls.__name__} claims format {fmt!r}, "
        "which the core's own backend loads",
        hint="name a format of your own",
    )


def _check_architecture(owner: str, adapter: Any) -> None:
    types = tuple(getattr(adapter, "model_types", ()) or ())
    if not types or not all(isinstance(t, str) and t for t in types):
        raise PluginError(
            f"plugin {owner!r}: architecture adapter {adapter!r} lists no model types",
            hint="set model_types = ('my-model-type',) (config.model_type values)",
        )


def _check_task(owner: str, task: Any) -> None:
    from .tasks import Task

    if not isinstance(task, Task):
        raise PluginError(f"plugin {owner!r} registered {task!r}, not a compressor.tasks.Task")
    if not task.name:
        raise PluginError(f"plugin {owner!r}: task {type(task).__name__} has no name")


@dataclass(frozen=True)
class Registration:
    """What one registration hook registers and where :class:`Plugins` files it.

    :param hook: the hook's name (:mod:`compressor.hookspecs`).
    :param attribute: the :class:`Plugins` registry (key -> object) and the
        :class:`PluginInfo` list (keys per plugin) of that name.
    :param noun: what a key names, for the "registered twice" error.
    :param keys: the keys of one registered object (a strategy's name, a backend's formats).
    :param check: ``check(owner, obj)`` raises a :class:`PluginError` for an object that is
        not what the hook takes; ``None``: anything goes.
    :param core_clash: ``core_clash(owner, obj, key)``: the error for a key that a default
        plugin (the core's own) holds; ``None``: "registered twice" as for any other key.
    """

    hook: str
    attribute: str
    noun: str
    keys: Callable[[Any], tuple[str, ...]]
    check: Callable[[str, Any], None] | None = None
    core_clash: Callable[[str, Any, str], PluginError] | None = None


REGISTRATIONS: tuple[Registration, ...] = (
    Registration("compressor_register_strategies", "strategies", "strategy",
                 lambda cls: (cls.name,), _check_strategy),
    Registration("compressor_register_model_sources", "model_sources", "model source",
                 lambda src: (src.name,)),
    Registration("compressor_register_datasets", "datasets", "data set",
                 lambda spec: (spec.name,)),
    Registration("compressor_register_backends", "backends", "backend for format",
                 lambda cls: tuple(cls.formats), _check_backend, _backend_claims_core_format),
    Registration("compressor_register_architectures", "architectures", "architecture",
                 lambda adapter: tuple(adapter.model_types), _check_architecture),
    Registration("compressor_register_tasks", "tasks", "task",
                 lambda task: (task.name,), _check_task),
)
"""The registration hooks, in the order :class:`Plugins` calls them."""


_cached: Plugins | None = None


def get_plugins(*, reload: bool = False) -> Plugins:
    """Return the process-wide loaded :class:`Plugins` (loaded on first call)."""
    global _cached
    if _cached is None or reload:
        _cached = Plugins().load()
    return _cached
