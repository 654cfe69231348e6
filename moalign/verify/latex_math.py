"""Symbolic equivalence of LaTeX math answers (MATH-style), safely.

:func:`equivalent` decides whether two normalized answers (see
:func:`moalign.verify.answers.normalize_answer`) denote the same mathematical object:

- structures are compared element-wise: tuples and intervals in order (with their brackets),
  sets, unions, comma lists and ``\\pm`` expansions in any order, ``pmatrix`` as a tuple;
- expressions are translated from LaTeX to a small whitelisted arithmetic language by hand
  (:func:`latex_to_expression`), parsed with sympy without evaluation, checked for sizes that
  would be expensive (huge integers, huge powers), then compared numerically: directly when
  they are constants, at fixed sample points when they have variables;
- equations are compared as equations (``5x + 2y = 4`` and ``10x + 4y - 8 = 0`` are the same
  plane); ``x = 5`` matches ``5``.

Untrusted text is never evaluated: only the output of the translator, which contains nothing
but numbers, operators, parentheses and whitelisted names, reaches sympy's parser.
"""

from __future__ import annotations

import cmath
import functools
import re
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["equivalent", "latex_to_expression", "to_sympy"]

_FUNCTIONS = {
    "sin",
    "cos",
    "tan",
    "cot",
    "sec",
    "csc",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "log",
    "ln",
    "exp",
}
_CONSTANTS = {"pi": "pi", "infty": "oo", "infinity": "oo"}
_GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "theta",
    "lambda",
    "mu",
    "phi",
    "psi",
    "omega",
    "rho",
    "sigma",
    "tau",
}
_OPERATORS = {"cdot": "*", "times": "*", "div": "/"}
_IGNORED = {"left", "right", "displaystyle", "big", "Big", "bigl", "bigr", "!", ",", ";", ":", " "}
_TEXT = {"text", "textbf", "mbox", "mathrm", "textrm", "operatorname"}
_MAX_LENGTH = 300  # characters of an expression handed to the parser
_MAX_DIGITS = 60  # digits of one integer literal
_MAX_EXPONENT = 1000.0  # |exponent| of a power with a numeric exponent
_MAX_ANSWER = 1000  # characters of an answer compared beyond plain text


class _Unsupported(ValueError):
    """The LaTeX uses something the translator does not handle."""


class _OutOfTime(Exception):
    """A comparison ran past its time budget."""


# --------------------------------------------------------------------------------------------
# LaTeX -> whitelisted expression text
# --------------------------------------------------------------------------------------------


def _group(s: str, i: int) -> tuple[str, int]:
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{":
            depth += 1
        elif s[j] == "}":
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    raise _Unsupported("unbalanced braces")


def _argument(s: str, i: int) -> tuple[str, int]:
    """One macro argument starting at ``s[i]``: a ``{group}``, a command, or one character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        raise _Unsupported("missing argument")
    if s[i] == "{":
        inner, i = _group(s, i)
        return _translate(inner), i
    if s[i] == "\\":
        match = re.match(r"\\([a-zA-Z]+)", s[i:])
        if not match:
            raise _Unsupported("bad command")
        return _translate(match.group(0)), i + len(match.group(0))
    return _translate(s[i]), i + 1


def _translate(s: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        ch = s[i]
        if ch == "\\":
            match = re.match(r"\\([a-zA-Z]+|.)", s[i:])
            name = match.group(1)
            i += len(match.group(0))
            if name == "frac":
                num, i = _argument(s, i)
                den, i = _argument(s, i)
                out.append(f"(({num})/({den}))")
            elif name == "sqrt":
                degree = None
                if i < len(s) and s[i] == "[":
                    end = s.index("]", i)
                    degree, i = _translate(s[i + 1 : end]), end + 1
                arg, i = _argument(s, i)
                out.append(f"(({arg})**(1/({degree})))" if degree else f"sqrt({arg})")
            elif name in _FUNCTIONS:
                out.append(f" {'log' if name == 'ln' else name} ")
            elif name in _CONSTANTS:
                out.append(f" {_CONSTANTS[name]} ")
            elif name in _GREEK:
                out.append(f" {name} ")
            elif name in _OPERATORS:
                out.append(_OPERATORS[name])
            elif name in _TEXT:
                _, i = _group(s, i) if i < len(s) and s[i] == "{" else ("", i)
            elif name in ("{", "}"):
                out.append("(" if name == "{" else ")")
            elif name not in _IGNORED:
                raise _Unsupported(f"\\{name}")
            continue
        if ch == "^":
            arg, i = _argument(s, i + 1)
            out.append(f"**({arg})")
            continue
        if ch in "{[":
            out.append("(")
        elif ch in "}]":
            out.append(")")
        elif ch.isalpha() and ch.isascii():
            out.append(f" {ch} ")
        elif ch.isdigit() or ch in ".+-*/() ":
            out.append(ch)
        else:
            raise _Unsupported(repr(ch))
        i += 1
    return "".join(out)


_MIXED_NUMBER = re.compile(r"(-?)(\d+)\s*\\frac\s*\{(\d+)\}\s*\{(\d+)\}")


def latex_to_expression(latex: str) -> str | None:
    """Translate LaTeX math to expression text over numbers, ``+ - * / ** ( )`` and
    whitelisted names, or ``None`` if it uses anything else. ``1\\frac{4}{5}`` (a mixed
    number) becomes ``(1+4/5)``; single letters are variables (``i`` is the imaginary unit)."""
    s = latex.strip()
    mixed = _MIXED_NUMBER.fullmatch(s)
    if mixed:
        sign, whole, num, den = mixed.groups()
        return f"{sign}({whole}+({num})/({den}))"
    try:
        text = _translate(s)
    except (_Unsupported, ValueError):
        return None
    text = re.sub(r"\s+", " ", text).strip()
    if not text or len(text) > _MAX_LENGTH or "_" in text:
        return None
    if any(len(d) > _MAX_DIGITS for d in re.findall(r"\d+", text)):
        return None
    allowed = _FUNCTIONS | _GREEK | {"sqrt", "pi", "oo"}
    for word in re.findall(r"[A-Za-z]+", text):
        if len(word) > 1 and word not in allowed:
            return None
    return text


# --------------------------------------------------------------------------------------------
# Parsing with sympy (no evaluation), size guard, numeric comparison
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _parser() -> tuple[Any, dict, dict, tuple]:
    import sympy
    from sympy.parsing import sympy_parser as sp

    names: dict[str, Any] = {
        c: sympy.Symbol(c) for c in "abcdefghjklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    }
    names.update({g: sympy.Symbol(g) for g in _GREEK})
    names.update(i=sympy.I, pi=sympy.pi, oo=sympy.oo, sqrt=sympy.sqrt, log=sympy.log, exp=sympy.exp)
    names.update(
        {f: getattr(sympy, f) for f in _FUNCTIONS - {"ln", "log", "exp"} if not f.startswith("arc")}
    )
    names.update(arcsin=sympy.asin, arccos=sympy.acos, arctan=sympy.atan)
    builtins = {
        k: getattr(sympy, k)
        for k in ("Integer", "Float", "Rational", "Symbol", "Add", "Mul", "Pow")
    }
    builtins["__builtins__"] = {}
    transformations = (sp.auto_number, sp.implicit_multiplication, sp.implicit_application)
    return sympy, names, builtins, transformations


def _too_big(expr: Any) -> bool:
    """True if evaluating ``expr`` could build huge numbers (powers with large exponents)."""
    sympy = _parser()[0]
    for node in sympy.postorder_traversal(expr):
        if isinstance(node, sympy.Pow) and node.exp.is_number:
            try:
                size = abs(complex(node.exp.evalf(15)))
            except (TypeError, ValueError):
                return True
            base_trivial = node.base.is_number and node.base in (0, 1, -1)
            if size > _MAX_EXPONENT and not base_trivial:
                return True
    return False


@functools.lru_cache(maxsize=4096)
def to_sympy(latex: str) -> Any | None:
    """A sympy expression (unevaluated) for a LaTeX answer, or ``None`` when it cannot be
    translated or would be too expensive to evaluate."""
    text = latex_to_expression(latex)
    if text is None:
        return None
    sympy, names, builtins, transformations = _parser()
    from sympy.parsing.sympy_parser import parse_expr

    try:
        expr = parse_expr(
            text,
            local_dict=dict(names),
            global_dict=dict(builtins),
            transformations=transformations,
            evaluate=False,
        )
    except Exception:  # sympy raises many types on malformed input
        return None
    if not isinstance(expr, sympy.Basic) or _too_big(expr):
        return None
    return expr


#: sample points for expressions with variables (values avoid integers and zero)
_POINTS = ((0.3719, 1.1583, -0.7331), (1.6171, -0.4421, 2.2939), (-1.2763, 0.8807, 0.5363))


def _values(expr: Any, symbols: list[Any]) -> list[complex | None]:
    sympy = _parser()[0]
    infinities = (sympy.oo, sympy.zoo)
    out: list[complex | None] = []
    for point in _POINTS:
        subs = {s: point[j % 3] + 0.1 * (j // 3) for j, s in enumerate(symbols)}
        try:
            value = complex(expr.evalf(30, subs=subs))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            value = None
        if value is not None and (
            cmath.isnan(value) or (cmath.isinf(value) and not expr.has(*infinities))
        ):
            value = None  # undefined here, or finite but beyond float range
        out.append(value)
    return out


def _close(a: complex, b: complex, tolerance: float) -> bool:
    if cmath.isinf(a) or cmath.isinf(b):
        return a == b
    if a.imag == b.imag == 0 and a.real.is_integer() and b.real.is_integer():
        return a == b  # whole numbers compare exactly
    return cmath.isclose(a, b, rel_tol=tolerance, abs_tol=1e-9)


def _same_value(a: Any, b: Any, tolerance: float) -> bool:
    if a == b:
        return True
    if a.is_Integer and b.is_Integer:  # literal whole numbers of any size: exactly
        return False
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    pairs = [
        (x, y)
        for x, y in zip(_values(a, symbols), _values(b, symbols), strict=True)
        if x is not None and y is not None
    ]
    needed = 1 if not symbols else 2
    return len(pairs) >= needed and all(_close(x, y, tolerance) for x, y in pairs)


def _proportional(a: Any, b: Any, tolerance: float) -> bool:
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    ratios = [
        x / y
        for x, y in zip(_values(a, symbols), _values(b, symbols), strict=True)
        if x is not None and y is not None and abs(y) > 1e-12
    ]
    return (
        len(ratios) >= 2
        and abs(ratios[0]) > 1e-12
        and all(_close(r, ratios[0], tolerance) for r in ratios)
    )


def _equation(s: str) -> tuple[str, str] | None:
    if s.count("=") != 1 or re.search(r"[<>]|\\[lg]e|\\neq", s):
        return None
    lhs, rhs = s.split("=")
    return lhs.strip(), rhs.strip()


def _atoms_equivalent(a: str, b: str, tolerance: float) -> bool:
    if a.replace(" ", "") == b.replace(" ", ""):
        return True
    ea, eb = _equation(a), _equation(b)
    if ea and eb:
        da = _difference(*ea)
        db = _difference(*eb)
        return da is not None and db is not None and _proportional(da, db, tolerance)
    if ea or eb:  # "x = 5" against "5"
        (lhs, rhs), other = (ea, b) if ea else (eb, a)
        return bool(re.fullmatch(r"[A-Za-z]", lhs)) and _atoms_equivalent(rhs, other, tolerance)
    x, y = to_sympy(a), to_sympy(b)
    return x is not None and y is not None and _same_value(x, y, tolerance)


def _difference(lhs: str, rhs: str) -> Any | None:
    x, y = to_sympy(lhs), to_sympy(rhs)
    if x is None or y is None:
        return None
    sympy = _parser()[0]
    return sympy.Add(x, sympy.Mul(-1, y, evaluate=False), evaluate=False)


# --------------------------------------------------------------------------------------------
# Structures: tuples, intervals, sets, unions, lists, \pm, matrices
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seq:
    kind: str  # "ordered" (tuple / interval / vector) or "unordered" (set, list, union)
    brackets: str  # opening + closing bracket of an ordered sequence, "" otherwise
    items: tuple[Any, ...]


_PM = "\u00b1"  # marks the two values of a \\pm expression


def _split_top(s: str, separator: str) -> list[str]:
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if s.startswith("\\{", i) or s.startswith("\\}", i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        ch = s[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(separator, i):
            parts.append(s[start:i])
            start = i + len(separator)
            i = start
            continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _encloses(s: str) -> bool:
    """True if the bracket opening ``s`` closes at its very end."""
    depth = 0
    for i, ch in enumerate(s):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            return i == len(s) - 1
    return False


def _structure(s: str) -> Any:
    s = s.strip()
    matrix = re.fullmatch(r"\\begin\{[pbv]?matrix\}(.*)\\end\{[pbv]?matrix\}", s, re.DOTALL)
    if matrix:
        rows = [r for r in (row.strip() for row in matrix.group(1).split("\\\\")) if r]
        cells = [tuple(_structure(c) for c in row.split("&")) for row in rows]
        if all(len(r) == 1 for r in cells) or len(cells) == 1:
            flat = tuple(c for row in cells for c in row)
            return _Seq("ordered", "()", flat)
        return _Seq("ordered", "()", tuple(_Seq("ordered", "()", r) for r in cells))
    union = _split_top(s, "\\cup")
    if len(union) > 1:
        return _Seq("unordered", "", tuple(_structure(p) for p in union))
    if s.startswith("\\{") and s.endswith("\\}"):
        return _Seq("unordered", "", _flatten(_split_top(s[2:-2], ",")))
    if len(s) > 1 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        inner = _split_top(s[1:-1], ",")
        if len(inner) > 1:
            return _Seq("ordered", s[0] + s[-1], tuple(_structure(p) for p in inner))
    parts = _split_top(s, ",")
    if len(parts) > 1:
        return _Seq("unordered", "", _flatten(parts))
    for pm in ("\\pm", "\\mp"):
        if len(_split_top(s, pm)) == 2:
            head, tail = _split_top(s, pm)
            return _Seq("unordered", _PM, (f"{head}+{tail}", f"{head}-{tail}"))
    return s


def _flatten(parts: list[str]) -> tuple[Any, ...]:
    """Elements of a set or list; a ``\\pm`` element counts as its two values."""
    items: list[Any] = []
    for part in parts:
        item = _structure(part)
        if isinstance(item, _Seq) and item.brackets == _PM:
            items.extend(item.items)
        else:
            items.append(item)
    return tuple(items)


def _match(a: Any, b: Any, tolerance: float, deadline: float) -> bool:
    if time.monotonic() > deadline:
        raise _OutOfTime
    if isinstance(a, str) and isinstance(b, str):
        return _atoms_equivalent(a, b, tolerance)
    if not (isinstance(a, _Seq) and isinstance(b, _Seq)):
        return False
    brackets_a, brackets_b = (x.brackets.replace(_PM, "") for x in (a, b))
    if a.kind != b.kind or brackets_a != brackets_b or len(a.items) != len(b.items):
        return False
    if a.kind == "ordered":
        return all(_match(x, y, tolerance, deadline) for x, y in zip(a.items, b.items, strict=True))
    unused = list(b.items)
    for x in a.items:
        hit = next((k for k, y in enumerate(unused) if _match(x, y, tolerance, deadline)), None)
        if hit is None:
            return False
        unused.pop(hit)
    return True


def equivalent(a: str, b: str, tolerance: float = 1e-6, budget_s: float = 2.0) -> bool:
    """Whether two normalized LaTeX answers denote the same object (see the module doc).

    Answers longer than a few hundred characters are compared as text only, and a comparison
    that takes longer than ``budget_s`` seconds (checked between elements) counts as a mismatch.
    """
    if max(len(a), len(b)) > _MAX_ANSWER:
        return a.replace(" ", "") == b.replace(" ", "")
    try:
        return _match(_structure(a), _structure(b), tolerance, time.monotonic() + budget_s)
    except (_OutOfTime, RecursionError):
        return False
