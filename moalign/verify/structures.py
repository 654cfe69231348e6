"""Answers as structures: tuples, intervals, sets, lists, unions, ``\\pm``, matrices, relations.

:func:`parse` turns a normalized answer (see :mod:`moalign.verify.normalize`) into a tree whose
leaves are expression texts (or :class:`Value` numbers computed here):

- :class:`Seq` ``ordered``: tuples, vectors, ``pmatrix``, intervals (with their brackets);
  ``unordered``: sets (``\\{1,3\\}`` or ``{1,3}``; a union of sets is one set), lists
  (``1, 3``, ``-12;-11;-10``, ``19, 46, and 82``), unions, the two values of ``a \\pm b``;
- :class:`Relation`: an equation or a chain (``x = 5+5+1 = 11``, ``x \\approx 11``); when its
  left side names the answer (``x``, ``f(x)``, ``(p,q)``, ``S_{ABC}:S``, ``AB``) or the chain
  has three sides or more, the answer is its last side (and the exact side before a final
  ``\\approx``);
- an inequality in one variable is the interval it describes: ``x \\ge 5`` is ``[5, \\infty)``,
  ``-x > -1`` is ``(-\\infty, 1)``, ``-2 \\le x \\le 7`` is ``[-2, 7]``, and ``x < 2 or x > 3`` a
  union; ``a:b`` is the ratio ``a/b``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from moalign.verify.latex_math import GREEK, linear, to_sympy

__all__ = ["PM", "Relation", "Seq", "Value", "compact", "names_answer", "parse", "split_top"]


@dataclass(frozen=True)
class Seq:
    kind: str  # "ordered" (tuple / interval / vector) or "unordered" (set, list, union)
    brackets: str  # opening + closing bracket of an ordered sequence, "" otherwise
    items: tuple[Any, ...]


@dataclass(frozen=True)
class Value:
    """A number computed while parsing (an endpoint of an interval read from an inequality)."""

    expr: Any


@dataclass(frozen=True)
class Relation:
    """``lhs = ... = value``: ``values`` are the candidate answers (parsed), ``names_answer``
    whether they stand for the answer, ``sides`` the two sides of a single ``=``."""

    lhs: str
    values: tuple[Any, ...]
    names_answer: bool
    sides: tuple[str, str] | None


PM = "\u00b1"  # marks the two values of a \\pm expression
_MAX_DEPTH = 12

_LIST_SEP = re.compile(r",\s*(?:and|or)\s+|,|;|\s(?:and|or)\s")
_COMMA = re.compile(r",")
_SEMICOLON = re.compile(r";")
_UNION = re.compile(r"\\cup(?![A-Za-z])")
_PLUS_MINUS = re.compile(r"\\(?:pm|mp)(?![A-Za-z])")
_RELATION = re.compile(r"=|\\approx(?![A-Za-z])|\\neq?(?![A-Za-z])|\\[lg]e(?![A-Za-z])|<|>")
_RATIO = re.compile(r"(?<!\\):")
_FLIP = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le"}
_LABEL_COMMANDS = re.compile(
    r"\\(?:angle|measuredangle|triangle|overline|overrightarrow|vec|widehat|hat|bar|tilde|"
    + "|".join(sorted(GREEK))
    + r")(?![A-Za-z])"
)


def compact(s: str) -> str:
    return s.replace(" ", "")


# --------------------------------------------------------------------------------------------
# Splitting at the top level
# --------------------------------------------------------------------------------------------


def _blank(s: str) -> str:
    """``s`` with every bracketed group (brackets included) blanked out by NUL characters
    (which no separator pattern matches); same length."""
    out = list(s)
    depth = i = 0
    while i < len(s):
        if s.startswith("\\{", i) or s.startswith("\\}", i):
            depth += 1 if s[i + 1] == "{" else -1
            out[i] = out[i + 1] = "\0"
            i += 2
            continue
        ch = s[i]
        if ch in "([{":
            depth += 1
            out[i] = "\0"
        elif ch in ")]}":
            depth -= 1
            out[i] = "\0"
        elif depth > 0:
            out[i] = "\0"
        i += 1
    return "".join(out)


def split_top(s: str, pattern: re.Pattern) -> list[str]:
    """``s`` split where ``pattern`` matches outside brackets."""
    parts, start = [], 0
    for match in pattern.finditer(_blank(s)):
        parts.append(s[start : match.start()])
        start = match.end()
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _split_keep(s: str, pattern: re.Pattern) -> tuple[list[str], list[str]]:
    parts, seps, start = [], [], 0
    for match in pattern.finditer(_blank(s)):
        parts.append(s[start : match.start()].strip())
        seps.append(s[match.start() : match.end()])
        start = match.end()
    parts.append(s[start:].strip())
    return parts, seps


def _encloses(s: str) -> bool:
    """True if the bracket opening ``s`` (``\\{`` counts as one) closes at its very end."""
    depth = i = 0
    while i < len(s):
        step = 2 if s.startswith(("\\{", "\\}"), i) else 1
        ch = s[i + step - 1]
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            return i + step == len(s)
        i += step
    return False


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def parse(s: str) -> Any:
    """The structure of a normalized answer (see the module docstring)."""
    return _parse(s, 0)


def _parse(s: str, depth: int) -> Any:
    s = re.sub(r"^(?:=|\\approx(?![A-Za-z]))\s*", "", s.strip())
    if depth > _MAX_DEPTH:
        raise RecursionError("answer nested too deeply")
    matrix = re.fullmatch(r"\\begin\{[pbvB]?matrix\}(.*)\\end\{[pbvB]?matrix\}", s, re.DOTALL)
    if matrix:
        rows = [r for r in (row.strip() for row in matrix.group(1).split("\\\\")) if r]
        cells = [tuple(_parse(c, depth + 1) for c in row.split("&")) for row in rows]
        if all(len(r) == 1 for r in cells) or len(cells) == 1:
            return Seq("ordered", "()", tuple(c for row in cells for c in row))
        return Seq("ordered", "()", tuple(Seq("ordered", "()", r) for r in cells))
    parts = split_top(s, _LIST_SEP)
    if len(parts) > 1 and all(parts):
        return Seq("unordered", "", _flatten(parts, depth))
    union = split_top(s, _UNION)
    if len(union) > 1 and all(union):
        parts = [_parse(p, depth + 1) for p in union]
        if all(isinstance(p, Seq) and p.kind == "unordered" and not p.brackets for p in parts):
            return Seq("unordered", "", _unique(x for p in parts for x in p.items))  # {1,3}∪{2}
        return Seq("unordered", "", tuple(parts))
    relation = _relation(s, depth)
    if relation is not None:
        return relation
    for opening, size in (("\\{", 2), ("{", 1)):
        if s.startswith(opening) and len(s) > 2 * size and _encloses(s):
            inner = s[size:-size]
            if size == 2 or len(split_top(inner, _LIST_SEP)) > 1:
                return Seq("unordered", "", _unique(_flatten(split_top(inner, _LIST_SEP), depth)))
    if len(s) > 1 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        inner = split_top(s[1:-1], _COMMA)
        if len(inner) == 1:
            inner = split_top(s[1:-1], _SEMICOLON)
        if len(inner) > 1:
            return Seq("ordered", s[0] + s[-1], tuple(_parse(p, depth + 1) for p in inner))
    pm = split_top(s, _PLUS_MINUS)
    if len(pm) == 2 and pm[1]:
        head, tail = pm
        return Seq("unordered", PM, (f"{head}+{tail}", f"{head}-{tail}"))
    ratio = split_top(s, _RATIO)
    if len(ratio) == 2 and all(ratio):
        return f"\\frac{{{ratio[0]}}}{{{ratio[1]}}}"
    return s


def _unique(items: Any) -> tuple[Any, ...]:
    """The items of a set, each written once (``\\{1, 1, 2\\}`` is ``\\{1, 2\\}``)."""
    out: list[Any] = []
    for item in items:
        key = compact(item) if isinstance(item, str) else item
        if all((compact(o) if isinstance(o, str) else o) != key for o in out):
            out.append(item)
    return tuple(out)


def _flatten(parts: list[str], depth: int) -> tuple[Any, ...]:
    """Elements of a set or list; a ``\\pm`` element counts as its two values."""
    items: list[Any] = []
    for part in parts:
        item = _parse(part, depth + 1)
        if isinstance(item, Seq) and item.brackets == PM:
            items.extend(item.items)
        else:
            items.append(item)
    return tuple(items)


# --------------------------------------------------------------------------------------------
# Relations: equations, chains, inequalities
# --------------------------------------------------------------------------------------------


def names_answer(lhs: str) -> bool:
    """Whether the left side of ``lhs = value`` only names the answer: a letter or a name
    (``x``, ``x_1``, ``AB``, ``\\angle ABC``, ``\\theta``), a function value (``f(x)``,
    ``f^{-1}(4)``), a tuple or a ratio of such (``(p,q)``, ``S_{MBCN}:S``)."""
    s = lhs.strip()
    if len(s) > 1 and s[0] == "(" and s[-1] == ")" and _encloses(s):
        items = split_top(s[1:-1], _COMMA)
        return len(items) > 1 and all(names_answer(p) for p in items)
    ratio = split_top(s, _RATIO)
    if len(ratio) > 1:
        return all(ratio) and all(names_answer(p) for p in ratio)
    t = re.sub(r"\\(?:text|mathrm|operatorname|mbox)\s*\{[^{}]*\}", "a", s)
    t = re.sub(r"_\{[^{}]*\}|_\\?\w+", "", t)
    t = re.sub(r"\^\{?-1\}?", "", t)
    t = _LABEL_COMMANDS.sub("a", t)
    t = re.sub(r"[{}' ]", "", t)
    t = re.sub(r"([A-Za-z])\([^()]*\)", r"\1", t)  # f(x), P(2)
    return bool(re.fullmatch(r"[A-Za-z]{1,12}", t))


def _constant(text: str) -> bool:
    expr = to_sympy(text)
    return expr is not None and not expr.free_symbols


def _relation(s: str, depth: int) -> Any:
    pieces, ops = _split_keep(s, _RELATION)
    if not ops or not all(pieces):
        return None
    ops = [op.strip() for op in ops]
    if all(op in ("=", "\\approx") for op in ops):
        values = [_parse(pieces[-1], depth + 1)]
        if ops[-1] == "\\approx" and len(pieces) > 2:
            values.append(_parse(pieces[-2], depth + 1))
        named = len(pieces) > 2 or names_answer(pieces[0]) or _constant(pieces[0])
        sides = (pieces[0], pieces[1]) if ops == ["="] else None
        return Relation(pieces[0], tuple(values), named, sides)
    if all(op in _FLIP for op in ops):
        return _interval(pieces, ops)
    return None


def _interval(pieces: list[str], ops: list[str]) -> Seq | None:
    """The interval of ``x`` described by ``x > 1``, ``5 \\ge x``, ``-2 \\le x < 7``, ``-x > -1``."""
    if len(pieces) > 3:
        return None
    exprs = [to_sympy(p) for p in pieces]
    if any(e is None for e in exprs):
        return None
    variable = [k for k, e in enumerate(exprs) if e.free_symbols]
    if len(variable) != 1 or len(exprs[variable[0]].free_symbols) != 1:
        return None
    k = variable[0]
    if len(pieces) == 3 and k != 1:
        return None
    coefficients = linear(exprs[k], next(iter(exprs[k].free_symbols)))
    if coefficients is None:
        return None
    a, b = coefficients
    bounds: dict[str, tuple[Any, bool]] = {}
    for i, op in enumerate(ops):
        other, relation = (exprs[i + 1], op) if i == k else (exprs[i], _FLIP[op])
        if a < 0:
            relation = _FLIP[relation]
        side = "upper" if relation in ("<", "\\le") else "lower"
        if side in bounds:
            return None
        bounds[side] = ((other - b) / a, relation in ("\\le", "\\ge"))
    import sympy

    lower = bounds.get("lower", (-sympy.oo, False))
    upper = bounds.get("upper", (sympy.oo, False))
    brackets = ("[" if lower[1] else "(") + ("]" if upper[1] else ")")
    return Seq("ordered", brackets, (Value(lower[0]), Value(upper[0])))
