"""The objective registry: one entry-point group, the door for built-ins and plugins alike.

Objectives are discovered through the entry-point group ``moalign.objectives`` (name ->
``module:Class``). The built-in ones (top-level package ``objectives``) register there exactly
like a third-party package; :func:`register_objective` is the in-process equivalent for code
that is not installed. :func:`load_objective` builds one from a name, ``"name:k=v"``, a mapping
or an explicit ``"module:Class"``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from moalign._plugins import IDENTIFIER, Registry
from moalign.errors import ObjectiveError, UnknownObjectiveError
from moalign.objective.base import Objective

ENTRY_POINT_GROUP = "moalign.objectives"

__all__ = [
    "ENTRY_POINT_GROUP",
    "OBJECTIVES",
    "available_objectives",
    "describe_objectives",
    "get_objective_class",
    "load_objective",
    "objective_name",
    "refresh_entry_points",
    "register_objective",
]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

def _accept(name: str, cls: Any, where: str) -> type[Objective]:
    """An objective class under ``name``: an :class:`Objective` subclass whose own ``name`` is
    unset (it is then set) or equal to ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise ObjectiveError(f"objective '{name}': {where} is not an Objective subclass "
                             f"(got {cls!r})", objective=name)
    if not cls.name:
        cls.name = name
    elif cls.name != name:
        raise ObjectiveError(f"objective '{name}': {where} declares name '{cls.name}'",
                             objective=name)
    return cls


#: Every objective by name: the entry points of ``moalign.objectives`` and in-process
#: registrations (:func:`register_objective`).
OBJECTIVES = Registry(
    "objective", group=ENTRY_POINT_GROUP, accept=_accept, name_pattern=IDENTIFIER,
    error=lambda message, name: ObjectiveError(message, objective=name),
    unknown=lambda message, name: UnknownObjectiveError(message, objective=name),
)
_registered = OBJECTIVES.registered  # in-process registrations (tests may reset them)
_NAME_RE = re.compile(IDENTIFIER)
_check_name = OBJECTIVES.check_name  # an objective name's rule (reward models use it too)


def register_objective(name: str):
    """Class decorator registering an :class:`Objective` subclass under ``name`` in-process.

    Registering a different class under a name already taken (in-process or by an entry
    point) raises :class:`ObjectiveError`.
    """
    _check_name(name)

    def decorator(cls: type[Objective]) -> type[Objective]:
        if not (isinstance(cls, type) and issubclass(cls, Objective)):
            raise ObjectiveError(
                f"@register_objective('{name}') must decorate an Objective subclass, "
                f"got {cls!r}",
                objective=name,
            )
        return OBJECTIVES.register(name, cls)

    return decorator


def refresh_entry_points() -> None:
    """Forget the cached entry points (after installing a plugin package in-process)."""
    OBJECTIVES.refresh()


def available_objectives() -> list[str]:
    """Names of every objective that :func:`load_objective` can build, sorted."""
    return OBJECTIVES.names()


def get_objective_class(name: str) -> type[Objective]:
    """Return the class registered under ``name`` (importing its entry point if needed)."""
    return OBJECTIVES[name]


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = spec.partition(":")
    kwargs: dict[str, Any] = {}
    if rest.strip():
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ObjectiveError(
                    f"cannot parse objective spec '{spec}': expected 'name:key=value,...', "
                    f"got '{part}'",
                    objective=name.strip(),
                )
            kwargs[key.strip()] = _parse_value(value.strip())
    return name.strip(), kwargs


def load_objective(spec: str | Mapping[str, Any] | Objective, **kwargs: Any) -> Objective:
    """Build an objective from a name, a ``"name:key=value,..."`` string, or a dict.

    A dict holds ``name`` plus constructor arguments (``{"name": "length", "target": 80}``).
    A string of the form ``"package.module:Class"`` imports that class explicitly (only what
    the user wrote is imported). Keyword arguments override those of the spec. An
    :class:`Objective` instance is returned as it is.
    """
    if isinstance(spec, Objective):
        if kwargs:
            raise ObjectiveError(
                f"cannot apply arguments {sorted(kwargs)} to an already built objective",
                objective=spec.__name__,
            )
        return spec
    if isinstance(spec, Mapping):
        spec_kwargs = dict(spec)
        name = spec_kwargs.pop("name", None)
        if not isinstance(name, str):
            raise ObjectiveError(f"objective spec {dict(spec)!r} has no 'name' key")
    elif isinstance(spec, str):
        if re.match(r"^[\w.]+\.[\w.]*:[A-Za-z_]\w*$", spec.strip()):
            return _load_dotted(spec.strip(), kwargs)
        name, spec_kwargs = _parse_spec(spec)
    else:
        raise ObjectiveError(
            f"an objective spec is a name, a 'name:key=value' string or a dict; got "
            f"{type(spec).__name__}"
        )
    cls = get_objective_class(name)
    spec_kwargs.update(kwargs)
    return _build(cls, spec_kwargs, name)


def objective_name(spec: Any) -> str | None:
    """The name of the objective a spec builds, without building it: a dict's ``name``, the
    part of ``"name:key=value"`` before the colon, an explicit ``"package.module:Class"``'s
    class name (its ``name`` attribute; the class is imported, as the user asked), an
    :class:`Objective`'s own name; ``None`` for anything else or a class that cannot be
    imported (:func:`load_objective` then says why)."""
    if isinstance(spec, Objective):
        return spec.__name__
    if isinstance(spec, Mapping):
        name = spec.get("name")
        return name if isinstance(name, str) else None
    if not isinstance(spec, str):
        return None
    if re.match(r"^[\w.]+\.[\w.]*:[A-Za-z_]\w*$", spec.strip()):
        module_name, _, attr = spec.strip().partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except Exception:
            return None
        return (getattr(cls, "name", "") or attr) if isinstance(cls, type) else None
    return spec.partition(":")[0].strip()


def _build(cls: type[Objective], kwargs: dict[str, Any], name: str) -> Objective:
    """``cls(**kwargs)``; whatever the plugin's constructor raises names the objective."""
    try:
        return cls(**kwargs)
    except ObjectiveError:
        raise
    except (TypeError, ValueError) as exc:
        raise ObjectiveError(f"objective '{name}': bad arguments: {exc}", objective=name) from exc
    except Exception as exc:
        raise ObjectiveError(f"objective '{name}' could not be built: {type(exc).__name__}: "
                             f"{exc}", objective=name) from exc


def _load_dotted(path: str, kwargs: dict[str, Any]) -> Objective:
    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownObjectiveError(
            f"cannot import objective '{path}': {exc}", objective=path
        ) from exc
    except Exception as exc:  # the plugin's module itself fails while importing
        raise ObjectiveError(f"cannot import objective '{path}': importing '{module_name}' "
                             f"raised {type(exc).__name__}: {exc}", objective=path) from exc
    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        raise ObjectiveError(f"'{path}' is not an Objective subclass", objective=path)
    return _build(cls, kwargs, path)


def describe_objectives() -> list[tuple[str, str, str]]:
    """``(name, source, description)`` for every available objective (imports plugins)."""
    rows = []
    for name in available_objectives():
        source = OBJECTIVES.source(name)
        try:
            cls = get_objective_class(name)
            desc = cls.description or (cls.__doc__ or "").strip().splitlines()[0:1]
            desc = desc if isinstance(desc, str) else (desc[0] if desc else "")
        except ObjectiveError as exc:
            desc = f"(cannot load: {exc})"
        rows.append((name, source, desc))
    return rows
