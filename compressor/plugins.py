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
"""

from __future__ import annotations

import importlib
import logging
import os
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
    :ivar backends: artifact format -> evaluation backend class registered by a plugin
        (the core's own ``"pytorch"`` and ``"onnx"`` backends are not listed here).
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
        from .strategy import Strategy, StrategyConfig

        for impl in self.pm.hook.compressor_register_strategies.get_hookimpls():
            owner = impl.plugin_name

            def register_strategy(cls: Any, _owner: str = owner) -> None:
                if not (isinstance(cls, type) and issubclass(cls, Strategy)):
                    raise PluginError(f"plugin {_owner!r} registered {cls!r}, not a Strategy subclass")
                if not cls.name:
                    raise PluginError(f"plugin {_owner!r}: strategy {cls.__name__} has no name")
                if not (isinstance(cls.Config, type) and issubclass(cls.Config, StrategyConfig)):
                    raise PluginError(
                        f"plugin {_owner!r}: strategy {cls.name!r} Config must subclass StrategyConfig"
                    )
                if cls.name in self.strategies:
                    raise PluginError(
                        f"strategy {cls.name!r} registered twice "
                        f"(by {self._owner_of('strategies', cls.name)!r} and {_owner!r})"
                    )
                self.strategies[cls.name] = cls
                self.infos[_owner].strategies.append(cls.name)

            impl.function(**_opt_in(impl, register=register_strategy))

        for impl in self.pm.hook.compressor_register_model_sources.get_hookimpls():
            owner = impl.plugin_name

            def register_source(src: Any, _owner: str = owner) -> None:
                if src.name in self.model_sources:
                    raise PluginError(f"model source {src.name!r} registered twice (by {_owner!r})")
                self.model_sources[src.name] = src
                self.infos[_owner].model_sources.append(src.name)

            impl.function(**_opt_in(impl, register=register_source))

        for impl in self.pm.hook.compressor_register_datasets.get_hookimpls():
            owner = impl.plugin_name

            def register_dataset(spec: Any, _owner: str = owner) -> None:
                if spec.name in self.datasets:
                    raise PluginError(f"data set {spec.name!r} registered twice (by {_owner!r})")
                self.datasets[spec.name] = spec
                self.infos[_owner].datasets.append(spec.name)

            impl.function(**_opt_in(impl, register=register_dataset))

        for impl in self.pm.hook.compressor_register_backends.get_hookimpls():
            owner = impl.plugin_name

            def register_backend(cls: Any, _owner: str = owner) -> None:
                from .evaluate.backends import Backend

                if not (isinstance(cls, type) and issubclass(cls, Backend)):
                    raise PluginError(f"plugin {_owner!r} registered {cls!r}, not a Backend subclass")
                formats = tuple(getattr(cls, "formats", ()) or ())
                if not formats or not all(isinstance(f, str) and f for f in formats):
                    raise PluginError(
                        f"plugin {_owner!r}: backend {cls.__name__} lists no artifact formats",
                        hint="set the class attribute formats = ('my-format',)",
                    )
                for fmt in formats:
                    if fmt in self.backends and self._owner_of("backends", fmt) in DEFAULT_PLUGINS:
                        raise PluginError(
                            f"plugin {_owner!r}: backend {cls.__name__} claims format {fmt!r}, "
                            "which the core's own backend loads",
                            hint="name a format of your own",
                        )
                    if fmt in self.backends:
                        raise PluginError(
                            f"backend for format {fmt!r} registered twice "
                            f"(by {self._owner_of('backends', fmt)!r} and {_owner!r})"
                        )
                for fmt in formats:
                    self.backends[fmt] = cls
                    self.infos[_owner].backends.append(fmt)

            impl.function(**_opt_in(impl, register=register_backend))

        for impl in self.pm.hook.compressor_register_architectures.get_hookimpls():
            owner = impl.plugin_name

            def register_architecture(adapter: Any, _owner: str = owner) -> None:
                types = tuple(getattr(adapter, "model_types", ()) or ())
                if not types or not all(isinstance(t, str) and t for t in types):
                    raise PluginError(
                        f"plugin {_owner!r}: architecture adapter {adapter!r} lists no model types",
                        hint="set model_types = ('my-model-type',) (config.model_type values)",
                    )
                for model_type in types:
                    if model_type in self.architectures:
                        raise PluginError(
                            f"architecture {model_type!r} registered twice "
                            f"(by {self._owner_of('architectures', model_type)!r} and {_owner!r})"
                        )
                for model_type in types:
                    self.architectures[model_type] = adapter
                    self.infos[_owner].architectures.append(model_type)

            impl.function(**_opt_in(impl, register=register_architecture))

        for impl in self.pm.hook.compressor_register_tasks.get_hookimpls():
            owner = impl.plugin_name

            def register_task(task: Any, _owner: str = owner) -> None:
                from .tasks import Task

                if not isinstance(task, Task):
                    raise PluginError(f"plugin {_owner!r} registered {task!r}, not a compressor.tasks.Task")
                if not task.name:
                    raise PluginError(f"plugin {_owner!r}: task {type(task).__name__} has no name")
                if task.name in self.tasks:
                    raise PluginError(
                        f"task {task.name!r} registered twice "
                        f"(by {self._owner_of('tasks', task.name)!r} and {_owner!r})"
                    )
                self.tasks[task.name] = task
                self.infos[_owner].tasks.append(task.name)

            impl.function(**_opt_in(impl, register=register_task))

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


def _opt_in(impl: Any, **available: Any) -> dict[str, Any]:
    return {k: v for k, v in available.items() if k in impl.argnames}


_cached: Plugins | None = None


def get_plugins(*, reload: bool = False) -> Plugins:
    """Return the process-wide loaded :class:`Plugins` (loaded on first call)."""
    global _cached
    if _cached is None or reload:
        _cached = Plugins().load()
    return _cached
