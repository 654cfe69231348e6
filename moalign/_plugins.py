"""The one plugin mechanism: a named group of Python entry points plus in-process registrations.

Objectives (group ``moalign.objectives``) and dataset adapters (group ``moalign.datasets``) are
both found this way; the built-in ones are declared in moalign's own ``pyproject.toml`` through
the same group a third-party package uses, so there is one door for everyone. Entry points are
read once, lazily, and imported only when their name is asked for.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from moalign.errors import MoalignError

__all__ = ["PluginRegistry"]


class _Clash:
    """Stands for a name that several installed packages provide: loading it raises, listing
    every provider."""

    def __init__(self, name: str, values: list[str]):
        self.name, self.values, self.value = name, values, " | ".join(values)


def qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class PluginRegistry:
    """Plugins of one ``kind`` ("objective", "dataset adapter") from entry-point ``group``.

    ``accept(name, obj, where)`` checks what an entry point or a registration provides and
    returns what the registry stores (it raises, naming ``where``, when ``obj`` does not fit).
    ``error(message, name)`` and ``unknown(message, name)`` build the exceptions raised for a
    broken plugin and for an unknown name (with a "did you mean" and the available names).
    """

    def __init__(self, group: str, kind: str, *, accept: Callable[[str, Any, str], Any],
                 error: Callable[[str, str], MoalignError],
                 unknown: Callable[[str, str], MoalignError]):
        self.group, self.kind = group, kind
        self.accept, self._error, self._unknown_error = accept, error, unknown
        self.registered: dict[str, Any] = {}
        self.loaded: dict[str, Any] = {}  # entry points already imported (a cache)
        self._entry_points: dict[str, Any] | None = None

    def entry_points(self) -> dict[str, EntryPoint]:
        """The group's entry points by name, read once (not imported)."""
        if self._entry_points is None:
            found: dict[str, Any] = {}
            clashes: dict[str, set[str]] = {}
            for ep in entry_points(group=self.group):
                if ep.name in found and found[ep.name].value != ep.value:
                    clashes.setdefault(ep.name, {found[ep.name].value}).add(ep.value)
                    continue
                found[ep.name] = ep
            for name, values in clashes.items():
                found[name] = _Clash(name, sorted(values))
            self._entry_points = found
        return self._entry_points

    def refresh(self) -> None:
        """Forget the cached entry points (after installing a plugin package in-process)."""
        self._entry_points = None
        self.loaded.clear()
        importlib.invalidate_caches()

    def names(self) -> list[str]:
        """Every available name, sorted."""
        return sorted(set(self.registered) | set(self.entry_points()))

    def source(self, name: str) -> str:
        ep = self.entry_points().get(name)
        return ep.value if ep is not None else "registered in-process"

    def register(self, name: str, obj: Any) -> Any:
        """Register ``obj`` under ``name`` in-process; a different object under a name that is
        taken (in-process or by an entry point) is an error."""
        previous = self.registered.get(name)
        if previous is not None and previous is not obj and qualname(previous) != qualname(obj):
            raise self._error(f"{self.kind} name '{name}' is already registered by "
                              f"{qualname(previous)}; cannot register {qualname(obj)}", name)
        ep = self.entry_points().get(name)
        if ep is not None and ep.value.replace(":", ".") != qualname(obj):
            raise self._error(f"{self.kind} name '{name}' is already provided by the entry point "
                              f"'{ep.value}'; cannot register {qualname(obj)}", name)
        self.registered[name] = self.accept(name, obj, f"@register('{name}')")
        return obj

    def get(self, name: str) -> Any:
        """What ``name`` provides, importing its entry point on first use."""
        if name in self.registered:
            return self.registered[name]
        if name in self.loaded:
            return self.loaded[name]
        ep = self.entry_points().get(name)
        if ep is None:
            raise self._unknown(name)
        if isinstance(ep, _Clash):
            raise self._error(f"{self.kind} name '{name}' is provided by several installed "
                              f"packages ({', '.join(ep.values)}); uninstall one of them", name)
        try:
            obj = ep.load()
        except MoalignError:
            raise
        except Exception as exc:
            raise self._error(f"{self.kind} '{name}': cannot import its entry point '{ep.value}': "
                              f"{type(exc).__name__}: {exc}", name) from exc
        self.loaded[name] = self.accept(name, obj, f"entry point '{ep.value}'")
        return self.loaded[name]

    def _unknown(self, name: str) -> MoalignError:
        names = self.names()
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return self._unknown_error(
            f"unknown {self.kind} '{name}'.{hint} Available: {', '.join(names) or 'none'}", name)
