"""The one config checker: YAML + ``--key value`` mappings checked against config dataclasses.

A command reads a YAML file plus ``--key value`` overrides (:func:`read_config`), then checks the
whole mapping **before any model or data loads** and raises one
:class:`~moalign.errors.ConfigError` listing every problem:

- :func:`check_fields` checks each key on its own against the fields of one or more config
  dataclasses (so one bad key does not hide the others; unknown keys get a "did you mean"),
  then :func:`build_checked` builds the dataclass from the good keys and adds the problems its
  ``__post_init__`` reports;
- :func:`load_command_config` does both for a config whose ``problems()`` method lists what it
  finds wrong (``moalign sft`` and ``moalign reward``);
- :func:`range_problems` checks numeric keys against their allowed :class:`Range` (steps, batch
  sizes, rates, evaluation counts, lengths), naming the key and the range; the tables of ranges
  live with the configs that own the keys;
- the domain checks live with their domain and return problem lists the commands combine:
  :func:`moalign.models.model_problems`, :func:`moalign.data.dataset_problems`,
  :func:`moalign.objective.objective_problems`, :func:`moalign.models.lora_problems`,
  :func:`moalign.weights.weight_problems`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from moalign.config.loading import build_config, load_yaml, merge
from moalign.errors import ConfigError, did_you_mean  # did_you_mean: re-exported

T = TypeVar("T")

__all__ = [
    "Range",
    "build_checked",
    "check_fields",
    "defaults_of",
    "did_you_mean",
    "keys_epilog",
    "load_command_config",
    "raise_problems",
    "range_problems",
    "read_config",
]

# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_config(path: str | None, overrides: Mapping[str, Any],
                base: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """``base`` <- the YAML file at ``path`` <- ``overrides``; returns (mapping, source name)."""
    data = dict(base or {})
    source = "command line"
    if path is not None:
        data = merge(data, load_yaml(path))
        source = f"{path} + command line" if overrides else str(path)
    return merge(data, overrides), source


def raise_problems(problems: Iterable[str], source: str | None) -> None:
    """Raise one :class:`ConfigError` with the distinct ``problems`` (in order), if any."""
    unique = list(dict.fromkeys(problems))
    if unique:
        raise ConfigError(unique, source=source)


# --------------------------------------------------------------------------------------------
# Numeric ranges
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric key allows: ``low`` / ``high`` bounds (inclusive, or exclusive with
    ``low_open`` / ``high_open``), ``also`` values allowed outside them (``note`` says what they
    mean, e.g. TRL's ``max_steps: -1``), and ``None`` when ``none``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    also: tuple[float, ...] = ()
    note: str = ""
    none: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            text = (f"in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            text = f"{'<' if self.high_open else '<='} {self.high:g}"
        else:
            text = "a finite number"
        extra = [f"{v:g}{': ' + self.note if self.note else ''}" for v in self.also]
        if self.none:
            extra.append("null")
        return text + (f" (or {', '.join(extra)})" if extra else "")

    def allows(self, value: float) -> bool:
        if value in self.also:
            return True
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def range_problems(values: Any, ranges: Mapping[str, Range], *, prefix: str = "") -> list[str]:
    """``'<key>' must be <range>, got <value>`` for each key of ``ranges`` whose value in
    ``values`` (a mapping, or an object's attributes) is a number outside its range. Keys that
    are absent, and values that are not numbers (the type check reports those), are skipped."""
    problems = []
    for key, allowed in ranges.items():
        if isinstance(values, Mapping):
            if key not in values:
                continue
            value = values[key]
        elif hasattr(values, key):
            value = getattr(values, key)
        else:
            continue
        if value is None:
            if not allowed.none:
                problems.append(f"{prefix}'{key}' must be {allowed.describe()}, got null")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not allowed.allows(value):
            problems.append(f"{prefix}'{key}' must be {allowed.describe()}, got {value!r}")
    return problems


# --------------------------------------------------------------------------------------------
# Keys and types against config dataclasses
# --------------------------------------------------------------------------------------------


def _hints(classes: Sequence[type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.init and f.name not in out:
                out[f.name] = hints.get(f.name, Any)
    return out


def _list_item_type(tp: Any) -> Any:
    """``X`` for ``list[X]`` / ``list[X] | None``, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        items = [_list_item_type(a) for a in typing.get_args(tp) if a is not type(None)]
        items = [a for a in items if a is not None]
        return items[0] if len(items) == 1 else None
    if typing.get_origin(tp) is list and typing.get_args(tp):
        return typing.get_args(tp)[0]
    return None


def _coerce_list(value: Any, tp: Any) -> Any:
    """``"a,b"`` for a ``list[str]`` field (``--objectives a,b``) and ``"0.3,0.7"`` for a
    ``list[float]`` one become lists; anything else is left for the type check."""
    item = _list_item_type(tp)
    if not isinstance(value, str) or item not in (str, float):
        return value
    parts = [p.strip() for p in value.strip().strip("[]").split(",") if p.strip()]
    if item is str:
        return parts
    try:
        return [float(p) for p in parts]
    except ValueError:
        return value


def check_fields(classes: Sequence[type], data: Mapping[str, Any], *,
                 prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """Check every key of ``data`` on its own against the fields of ``classes`` (the first class
    that declares a field gives its type). Returns ``(good values, problems)``; problems name
    the key (``prefix`` is put in front, e.g. ``"train: "``)."""
    hints = _hints(classes)
    probe = dataclasses.make_dataclass(
        "Config", [(name, tp, dataclasses.field(default=None)) for name, tp in hints.items()])
    good: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in data.items():
        try:
            checked = build_config(probe, {key: value})
        except ConfigError as exc:
            coerced = _coerce_list(value, hints[key]) if key in hints else value
            try:
                checked = build_config(probe, {key: coerced})
            except ConfigError:
                problems.extend(prefix + p for p in exc.problems)
                continue
        good[key] = getattr(checked, key)
    return good, problems


def build_checked(cls: type, values: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Build ``cls(**values)``; returns ``(object or None, the problems it reported)``."""
    try:
        return build_config(cls, values), []
    except ConfigError as exc:
        return None, list(exc.problems)


def defaults_of(cls: type) -> dict[str, Any]:
    """Default value of every field of a dataclass that has one."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def keys_epilog(cls: type, head: str = "configuration keys (YAML or --key value)") -> str:
    """``--help`` text listing the fields of config dataclass ``cls`` with their defaults."""
    parts = [f"{name}={value!r}" for name, value in defaults_of(cls).items()]
    return f"{head}: " + ", ".join(parts)


def _unchecked(cls: type) -> type:
    """``cls`` without its ``__post_init__`` checks, to check keys and types alone."""
    return dataclasses.make_dataclass(
        f"_Unchecked{cls.__name__}", [], bases=(cls,), namespace={"__post_init__": lambda self: None}
    )


def load_command_config(cls: type[T], config_path: str | None, overrides: Mapping[str, Any]) -> T:
    """Build config dataclass ``cls`` (which defines ``problems()``) from a YAML file plus
    ``--key value`` overrides, collecting every problem before raising one ``ConfigError``."""
    mapping, source = read_config(config_path, overrides)
    raw_cls = _unchecked(cls)
    good, problems = check_fields([raw_cls], mapping)
    raw = build_config(raw_cls, good)
    problems.extend(p for p in raw.problems() if p not in problems)
    raise_problems(problems, source)
    return cls(**{f.name: getattr(raw, f.name) for f in dataclasses.fields(cls) if f.init})
