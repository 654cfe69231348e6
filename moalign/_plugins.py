"""The one registry of named things.

Every named family of moalign is a :class:`Registry`: objectives (entry-point group
``moalign.objectives``), dataset adapters (``moalign.datasets``), scalarizers, schedules,
trainers, front methods, named datasets and the subcommands of ``moalign``. A registry holds

- what was registered in-process (:meth:`Registry.register`): an object, or a
  ``"module:attr"`` path imported on first use;
- for a family with an entry-point ``group``, the entry points installed packages declare there
  (read once, lazily, and imported only when their name is asked for). moalign's own objectives
  and adapters are declared in its ``pyproject.toml`` through the same group a third-party
  package uses.

Built-ins and plugins go through the same door and are checked the same way (``accept``); an
unknown name raises the family's own error type with one message shape:
``unknown <kind> '<name>'; did you mean '<close>'? (available: ...)``, whose hint is the one
:func:`moalign.errors.did_you_mean` (re-exported here).

A registry is a read-only mapping: ``name in reg``, ``reg[name]`` (raises the unknown-name
error), ``reg.get(name)`` (``None`` when unknown), iteration in registration order (installed
entry points after, by name), and :meth:`Registry.names` sorted.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from moalign.errors import ConfigError, MoalignError, did_you_mean

__all__ = ["IDENTIFIER", "Registry", "did_you_mean"]

#: Names of the families users type in configs: lowercase letters, digits and underscores.
IDENTIFIER = r"^[a-z][a-z0-9_]*$"


class _Clash:
    """Stands for a name that several installed packages provide: loading it raises, listing
    every provider."""

    def __init__(self, name: str, values: list[str]):
        self.name, self.values, self.value = name, values, " | ".join(values)


def qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _config_error(message: str, name: Any) -> MoalignError:
    return ConfigError(message)


class Registry(Mapping[str, Any]):
    """The things of one ``kind`` ("objective", "scalarizer", ...) by name.

    ``group``: the entry-point group installed packages declare their plugins in (``None``: a
    family registered in-process only). ``accept(name, obj, where)`` checks what a registration
    or an entry point provides and returns what the registry stores (raising, naming
    ``where``, when it does not fit). ``error(message, name)`` and ``unknown(message, name)``
    build the exceptions for a broken or clashing plugin and for an unknown name (default:
    :class:`~moalign.errors.ConfigError` for both). ``name_pattern``: a regular expression every
    registered name must match (``None``: any string).
    """

    def __init__(self, kind: str, *, group: str | None = None,
                 accept: Callable[[str, Any, str], Any] | None = None,
                 error: Callable[[str, Any], MoalignError] = _config_error,
                 unknown: Callable[[str, Any], MoalignError] | None = None,
                 name_pattern: str | None = None):
        self.kind, self.group = kind, group
        self.accept = accept or (lambda name, obj, where: obj)
        self._error, self._unknown_error = error, unknown or error
        self._name_re = re.compile(name_pattern) if name_pattern else None
        #: in-process registrations: the accepted object, or an EntryPoint for a lazy path
        self.registered: dict[str, Any] = {}
        self.loaded: dict[str, Any] = {}  # entry points and paths already imported (a cache)
        self._entry_points: dict[str, Any] | None = None

    # ---------------------------------------------------------------- registering ----------

    def check_name(self, name: Any) -> None:
        """Raise the family's error for a name that ``name_pattern`` does not allow."""
        if self._name_re is not None and not (isinstance(name, str) and self._name_re.match(name)):
            raise self._error(f"invalid {self.kind} name {name!r}: use lowercase letters, digits "
                              "and underscores, starting with a letter", str(name))

    def register(self, name: str, obj: Any = None, *, path: str | None = None) -> Any:
        """Register ``obj`` (or the ``"module:attr"`` ``path``, imported on first use) under
        ``name``; returns ``obj``. A different object under a name that is taken (in-process or
        by an entry point) is an error."""
        self.check_name(name)
        if path is not None:
            obj = EntryPoint(name=name, value=path, group=self.group or self.kind)
        who = obj.value.replace(":", ".") if isinstance(obj, EntryPoint) else qualname(obj)
        previous = self.registered.get(name)
        if previous is not None and previous is not obj:
            was = (previous.value.replace(":", ".") if isinstance(previous, EntryPoint)
                   else qualname(previous))
            if was != who:
                raise self._error(f"{self.kind} name '{name}' is already registered by {was}; "
                                  f"cannot register {who}", name)
        ep = self.entry_points().get(name)
        if ep is not None and ep.value.replace(":", ".") != who:
            raise self._error(f"{self.kind} name '{name}' is already provided by the entry point "
                              f"'{ep.value}'; cannot register {who}", name)
        if isinstance(obj, EntryPoint):
            self.registered[name] = obj
            self.loaded.pop(name, None)
            return None
        self.registered[name] = self.accept(name, obj, f"@register('{name}')")
        return obj

    # ---------------------------------------------------------------- entry points ---------

    def entry_points(self) -> dict[str, Any]:
        """The group's installed entry points by name, read once (not imported)."""
        if self._entry_points is None:
            found: dict[str, Any] = {}
            clashes: dict[str, set[str]] = {}
            for ep in entry_points(group=self.group) if self.group else ():
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

    def source(self, name: str) -> str:
        """Where ``name`` comes from: an entry point's or a path's ``module:attr``, or
        ``registered in-process``."""
        found = self.registered.get(name, self.entry_points().get(name))
        return found.value if isinstance(found, (EntryPoint, _Clash)) else "registered in-process"

    # ---------------------------------------------------------------- looking up -----------

    def names(self) -> list[str]:
        """Every available name, sorted."""
        return sorted(self)

    def __iter__(self) -> Iterator[str]:
        yield from self.registered
        yield from sorted(n for n in self.entry_points() if n not in self.registered)

    def __len__(self) -> int:
        return len(set(self.registered) | set(self.entry_points()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.registered or name in self.entry_points())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        """What ``name`` provides, or ``default`` when no such name is known (a broken plugin
        still raises)."""
        return self[name] if name in self else default

    def __getitem__(self, name: str) -> Any:
        """What ``name`` provides, importing its entry point or path on first use."""
        if not isinstance(name, str):
            raise self.unknown(name)
        if name in self.loaded:
            return self.loaded[name]
        found = self.registered.get(name, self.entry_points().get(name))
        if found is None:
            raise self.unknown(name)
        if not isinstance(found, (EntryPoint, _Clash)):
            return found
        if isinstance(found, _Clash):
            raise self._error(f"{self.kind} name '{name}' is provided by several installed "
                              f"packages ({', '.join(found.values)}); uninstall one of them", name)
        if name in self.registered:  # a path registered in-process: moalign's own code
            self.loaded[name] = self.accept(name, found.load(), f"path '{found.value}'")
            return self.loaded[name]
        try:
            obj = found.load()
        except MoalignError:
            raise
        except Exception as exc:  # an installed package's plugin: name it
            raise self._error(f"{self.kind} '{name}': cannot import its entry point "
                              f"'{found.value}': {type(exc).__name__}: {exc}", name) from exc
        self.loaded[name] = self.accept(name, obj, f"entry point '{found.value}'")
        return self.loaded[name]

    def unknown_message(self, name: Any) -> str:
        """``unknown <kind> '<name>'; did you mean '<close>'? (available: ...)``."""
        shown = f"'{name}'" if isinstance(name, str) else repr(name)
        names = self.names()
        return (f"unknown {self.kind} {shown}{did_you_mean(name, names)} "
                f"(available: {', '.join(names) or 'none'})")

    def unknown(self, name: Any) -> MoalignError:
        """The family's error for an unknown ``name``."""
        return self._unknown_error(self.unknown_message(name), name)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self)})"
