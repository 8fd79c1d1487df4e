"""The strategy registry: an explicit object, with lazy targets, plugins and "did you mean" errors.

Built-ins are registered as ``"module:attr"`` strings and imported on first use. Third-party
strategies arrive through the entry-point group ``jestbench.strategies``: the group is scanned on the
first lookup (reading metadata only), and a plugin's module is imported only when that strategy is
asked for. A plugin that fails to import yields an error naming the plugin and its package; the
others and the listing are unaffected. A plugin whose name is taken is refused, and a plugin whose
class calls itself by another name than its entry point is registered under the entry point's: both
are kept as *notes* on that name, which ``jestbench strategies`` shows beside it.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from strategies.protocol import Strategy, StrategyError
from strategies.validated import ValidatedStrategy

ENTRY_POINT_GROUP = "jestbench.strategies"

S = TypeVar("S", bound=type[Strategy])


class UnknownStrategyError(StrategyError, LookupError):
    """No strategy is registered under the name; the message lists the closest names."""


class PluginError(StrategyError):
    """A plugin strategy could not be loaded; the message names the plugin and its package."""


@dataclass
class _Entry:
    target: type[Strategy] | str
    package: str | None  # the distribution a plugin came from; None for built-ins and direct registrations

    @property
    def source(self) -> str:
        return f"plugin from {self.package}" if self.package else "built-in"


class Registry:
    """Named selection strategies.

    Args:
        builtins: name -> ``"module:attr"`` of strategies registered up front (imported lazily).
        entry_point_group: the entry-point group scanned for plugins; ``None`` for no plugins.
    """

    def __init__(
        self,
        builtins: Mapping[str, str] | None = None,
        *,
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ) -> None:
        self._entries: dict[str, _Entry] = {}
        self._group = entry_point_group
        self._scanned = entry_point_group is None
        self._plugin_errors: dict[str, str] = {}
        self._notes: dict[str, list[str]] = {}
        for name, target in (builtins or {}).items():
            self.add(name, target)

    # -- registration ---------------------------------------------------------------------------

    def add(self, name: str, target: type[Strategy] | str, *, package: str | None = None) -> None:
        """Register ``target`` (a Strategy subclass or a lazy ``"module:attr"``) under ``name``.

        Registering a name again with the same target is a no-op; with another target it is an error.
        """
        if not name or name != name.strip():
            raise StrategyError(f"invalid strategy name {name!r}")
        existing = self._entries.get(name)
        if existing is not None:
            if _same_target(existing.target, target):
                return
            raise StrategyError(
                f"strategy {name!r} is already registered ({existing.source}: "
                f"{_describe(existing.target)}); refusing to replace it with {_describe(target)}"
            )
        self._entries[name] = _Entry(target, package)

    def register_strategy(self, name: str) -> Callable[[S], S]:
        """Class decorator: ``@registry.register_strategy("my-rule")``."""

        def decorator(cls: S) -> S:
            self.add(name, cls)
            return cls

        return decorator

    # -- lookup ---------------------------------------------------------------------------------

    def list_strategies(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern`` (``"jest*"``), sorted. Imports nothing."""
        self._scan_plugins()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def plugin_errors(self) -> dict[str, str]:
        """Plugins that could not be registered or loaded so far: name -> error message."""
        self._scan_plugins()
        return dict(self._plugin_errors)

    def notes(self) -> dict[str, list[str]]:
        """What a user of each name should know although it works: plugins refused because the name
        was taken, and plugins whose class's ``name`` differs from their entry point's (known once
        loaded). Name -> messages."""
        self._scan_plugins()
        return {name: list(notes) for name, notes in self._notes.items()}

    def source(self, name: str) -> str:
        """``"built-in"`` or ``"plugin from <package>"``."""
        return self._entry(name).source

    def package(self, name: str) -> str | None:
        """The distribution plugin ``name`` came from; ``None`` for built-ins and direct registrations."""
        return self._entry(name).package

    def get_class(self, name: str) -> type[Strategy]:
        """The strategy class registered under ``name``, importing it on first use."""
        entry = self._entry(name)
        if isinstance(entry.target, str):
            entry.target = self._load(name, entry)
            called = entry.target.name
            if entry.package and called and called != name:
                self._notes.setdefault(name, []).append(
                    f"plugin {name!r} from package {entry.package!r}: its class {_describe(entry.target)} "
                    f"calls itself {called!r}; it is registered as {name!r}, the entry point's name "
                    "(make the two agree)"
                )
        return entry.target

    def get_strategy(self, name: str, **params: Any) -> ValidatedStrategy:
        """Build strategy ``name`` with ``params``, validated, wrapped in the selection contract."""
        cls = self.get_class(name)
        return ValidatedStrategy(cls(**params), name)

    # -- internals ------------------------------------------------------------------------------

    def _entry(self, name: str) -> _Entry:
        self._scan_plugins()
        try:
            return self._entries[name]
        except KeyError:
            pass
        if name in self._plugin_errors:
            raise PluginError(self._plugin_errors[name])
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownStrategyError(
            f"unknown strategy {name!r}{hint} (registered: {', '.join(sorted(self._entries))}; "
            "`jestbench strategies` lists them)"
        )

    def _load(self, name: str, entry: _Entry) -> type[Strategy]:
        assert isinstance(entry.target, str)
        module_name, _, attr = entry.target.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except Exception as err:
            where = (
                f"plugin {name!r} from package {entry.package!r}" if entry.package else f"strategy {name!r}"
            )
            message = f"{where} failed to load ({entry.target}): {type(err).__name__}: {err}"
            if entry.package:
                self._plugin_errors[name] = message
                raise PluginError(message) from err
            raise StrategyError(message) from err
        if not (isinstance(obj, type) and issubclass(obj, Strategy)):
            message = f"{entry.target} (strategy {name!r}) is not a Strategy subclass"
            if entry.package:
                message = f"plugin {name!r} from package {entry.package!r}: {message}"
                self._plugin_errors[name] = message
            raise PluginError(message)
        return obj

    def _scan_plugins(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        assert self._group is not None
        for ep in importlib.metadata.entry_points(group=self._group):
            package = ep.dist.name if ep.dist is not None else "<unknown package>"
            taken = self._entries.get(ep.name)
            if taken is not None and not _same_target(taken.target, ep.value):
                self._notes.setdefault(ep.name, []).append(
                    f"plugin {ep.name!r} from package {package!r} ({ep.value}) was refused: {ep.name!r} is "
                    f"already the {taken.source} {_describe(taken.target)}, which is used here; rename the "
                    "plugin's entry point to use it"
                )
                continue
            try:
                self.add(ep.name, ep.value, package=package)
            except StrategyError as err:
                self._plugin_errors[ep.name] = (
                    f"plugin {ep.name!r} from package {package!r} not registered: {err}"
                )


def _same_target(a: type[Strategy] | str, b: type[Strategy] | str) -> bool:
    return _describe(a) == _describe(b)


def _describe(target: type[Strategy] | str) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
