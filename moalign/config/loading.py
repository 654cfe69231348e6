"""Configuration files: YAML + ``--key value`` overrides, validated against a dataclass.

Every command of the CLI reads its configuration the same way:

1. :func:`load_yaml` reads the file with a safe loader (no arbitrary Python objects);
2. :func:`parse_overrides` turns ``--key value`` pairs into a mapping (values are parsed as
   YAML scalars, so ``--beta 0.2`` is a float and ``--weights [0.3,0.7]`` a list);
3. :func:`build_config` checks every key and type against the target dataclass and raises
   **one** :class:`~moalign.errors.ConfigError` listing every problem, with a "did you mean"
   for misspelled keys, before any model or data is loaded.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from moalign.errors import ConfigError, did_you_mean

T = TypeVar("T")

__all__ = ["build_config", "load_yaml", "merge", "parse_overrides"]


def _unique_key_loader() -> type:
    """A ``yaml.SafeLoader`` that refuses a mapping setting the same key twice (plain YAML keeps
    the last value silently), naming the key and both lines."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(f"key '{key}' is set twice, on line {seen[key]} and on "
                                      f"line {line}; keep one")
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (safe loader: plain data only); a missing file, a non-mapping or a
    key set twice is a :class:`ConfigError`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        loader = _unique_key_loader()(path.read_text(encoding="utf-8"))
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse YAML: {exc}", source=str(path)) from None
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys to values, got {type(data).__name__}",
            source=str(path),
        )
    return _numbers(data)


# YAML 1.1 reads ``1e-3`` (no dot in the mantissa) as a string; people mean a number.
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def _numbers(value: Any) -> Any:
    """Turn strings written like ``1e-3`` into floats, recursively."""
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _parse_value(flag: str, text: str, problems: list[str]) -> Any:
    """The YAML value of ``--flag text``. Text that YAML cannot read stays a string, except
    text that starts like a list (``[``) or a mapping (``{``): that is a problem naming the
    flag, never a string that happens to look like a broken list."""
    import yaml

    try:
        return _numbers(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        start = text.lstrip()[:1]
        if start not in ("[", "{"):
            return text
        kind = "list" if start == "[" else "mapping"
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        example = "[0.3, 0.7]" if kind == "list" else "{r: 8, alpha: 16}"
        problems.append(f"'--{flag}': {text!r} looks like a {kind} but does not parse "
                        f"({reason}); write it whole, e.g. '{example}' (quoted in the shell)")
        return _UNPARSED


#: What a malformed list or mapping override parses to (reported, never used).
_UNPARSED = object()


def parse_overrides(argv: Sequence[str]) -> dict[str, Any]:
    """Parse ``["--key", "value", "--flag", "--a.b=3"]`` into ``{"key": ..., "flag": True, "a": {"b": 3}}``.

    Dashes in keys become underscores; a key with no value is ``True``. A value that starts
    like a list or a mapping (``[``, ``{``) but does not parse is a :class:`ConfigError` naming
    its flag (so ``--weights [0.5,0.5`` is refused, not read as a string).
    """
    out: dict[str, Any] = {}
    problems: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or len(token) == 2:
            problems.append(f"unexpected argument '{token}' (overrides are written --key value)")
            i += 1
            continue
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                i += 1
            else:
                value = "true"
        i += 1
        key = key.replace("-", "_")
        target = out
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                problems.append(f"override '--{key}' conflicts with an earlier value")
                break
        else:
            parsed = _parse_value(token[2:].partition("=")[0], value, problems)
            if parsed is not _UNPARSED:
                target[leaf] = parsed
    if problems:
        raise ConfigError(problems, source="command line")
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into ``base`` (nested mappings merge, others replace)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_type(value: Any, tp: Any) -> tuple[bool, Any]:
    """Return (ok, coerced value) for a few common annotations; unknown ones pass."""
    if tp is Any or tp is typing.Any:
        return True, value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        for a in args:
            if a is type(None):
                continue
            ok, v = _check_type(value, a)
            if ok:
                return True, v
        return False, value
    if origin is Literal:
        return value in args, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if origin in (list, Sequence, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        if args and origin is not tuple:
            coerced = []
            for item in value:
                ok, v = _check_type(item, args[0])
                if not ok:
                    return False, value
                coerced.append(v)
            return True, coerced
        return True, list(value)
    if origin in (dict, Mapping) or tp is dict:
        return isinstance(value, Mapping), value
    return True, value


def build_config(cls: type[T], data: Mapping[str, Any], *, source: str | None = None,
                 extra_keys: Sequence[str] = ()) -> T:
    """Instantiate dataclass ``cls`` from ``data``, reporting every problem at once.

    Unknown keys (with a suggestion), values of the wrong type and errors raised by the
    dataclass's own ``__post_init__`` become one :class:`ConfigError`. ``extra_keys`` are
    accepted and ignored (keys consumed by the caller, such as ``trainer``).
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    known = sorted(set(fields) | set(extra_keys))
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in extra_keys:
            continue
        if key not in fields:
            problems.append(f"unknown key '{key}'{did_you_mean(key, known)}")
            continue
        ok, coerced = _check_type(value, hints.get(key, Any))
        if not ok:
            problems.append(
                f"'{key}' must be {_type_name(hints.get(key))}, got {value!r} "
                f"({type(value).__name__})"
            )
            continue
        kwargs[key] = coerced
    if problems:
        raise ConfigError(problems, source=source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=source) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), source=source) from None
