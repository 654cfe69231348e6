"""LaTeX math expressions as sympy values, safely (no ``eval``).

- expressions are translated from LaTeX to a small whitelisted arithmetic language by hand
  (:func:`latex_to_expression`), parsed with sympy without evaluation, checked for sizes that
  would be expensive (huge integers, huge powers), then compared numerically: directly when
  they are constants, at fixed sample points when they have variables;
- :func:`same_value` compares two such values (whole numbers exactly, others within a relative
  tolerance), :func:`proportional` two equations' differences (``5x + 2y = 4`` and
  ``10x + 4y - 8 = 0`` are the same plane), :func:`linear` reads ``a x + b``.

Structures (tuples, sets, intervals, relations) are :mod:`moalign.verify.structures`; untrusted text is never evaluated: only the output of the translator, which contains nothing
but numbers, operators, parentheses and whitelisted names, reaches sympy's parser.
"""

from __future__ import annotations

import cmath
import functools
import math
import re
from typing import Any

from moalign.verify.normalize import _matching_brace

__all__ = [
    "GREEK",
    "Unsupported",
    "latex_to_expression",
    "linear",
    "proportional",
    "same_value",
    "to_sympy",
]

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
GREEK = frozenset(_GREEK)


class Unsupported(ValueError):
    """The LaTeX uses something the translator does not handle."""


_Unsupported = Unsupported


# --------------------------------------------------------------------------------------------
# LaTeX -> whitelisted expression text
# --------------------------------------------------------------------------------------------


def _group(s: str, i: int) -> tuple[str, int]:
    """The braced group opening at ``s[i]`` and the index after it."""
    j = _matching_brace(s, i)
    if j < 0:
        raise _Unsupported("unbalanced braces")
    return s[i + 1 : j], j + 1


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


def _integer_argument(s: str, i: int) -> tuple[int, int]:
    text, i = _argument(s, i)
    digits = text.replace("(", "").replace(")", "").strip()
    if not digits.isdigit() or len(digits) > 4:
        raise _Unsupported("\\binom of anything but small whole numbers")
    return int(digits), i


def _translate(s: str) -> str:
    out: list[str] = []
    i = 0
    bar_open = False  # |x| is Abs(x)
    while i < len(s):
        ch = s[i]
        if ch == "|" or s.startswith(("\\lvert", "\\rvert", "\\vert"), i):
            out.append(")" if bar_open else " Abs(")
            bar_open = not bar_open
            i += 1 if ch == "|" else len(re.match(r"\\[a-z]+", s[i:]).group(0))
            continue
        if ch == "\\":
            match = re.match(r"\\([a-zA-Z]+|.)", s[i:], re.DOTALL)
            if match is None:
                raise _Unsupported("a lone backslash")
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
            elif name in ("binom", "dbinom", "tbinom"):
                n, i = _integer_argument(s, i)
                k, i = _integer_argument(s, i)
                out.append(f"({math.comb(n, k)})")
            elif name == "log" and i < len(s) and s[i] == "_":  # \log_2 8 = log(8)/log(2)
                base, i = _argument(s, i + 1)
                out.append(f" (1/log({base}))*log ")
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
    if bar_open:
        raise _Unsupported("unbalanced |")
    return "".join(out)


_FACTORIAL = re.compile(r"(?<![\d.])(\d{1,2})\s*!")


def _factorial(match: re.Match) -> str:
    n = int(match.group(1))
    return f"({math.factorial(n)})" if n <= 40 else match.group(0)


_MIXED_NUMBER = re.compile(r"(-?)(\d+)\s*\\frac\s*\{(\d+)\}\s*\{(\d+)\}")


def latex_to_expression(latex: str) -> str | None:
    """Translate LaTeX math to expression text over numbers, ``+ - * / ** ( )`` and
    whitelisted names, or ``None`` if it uses anything else. ``1\\frac{4}{5}`` (a mixed
    number) becomes ``(1+4/5)``; single letters are variables (``i`` is the imaginary unit,
    ``e`` Euler's number); ``|x|`` is ``Abs(x)``, ``\\log_b x`` is ``log(x)/log(b)``, and
    ``\\binom{n}{k}`` / ``n!`` of small whole numbers are computed here, exactly."""
    s = latex.strip()
    if "!" in s:  # 5! (small whole numbers only; "\\!" is a space)
        s = _FACTORIAL.sub(_factorial, s)
        if re.search(r"(?<!\\)!", s):
            return None
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
    if re.search(r"\d\s+\.?\d", text):  # "2 1" is two numbers, not a product
        return None
    if re.search(r"\(\s*\)", text):  # "()" would be an empty tuple
        return None
    allowed = _FUNCTIONS | _GREEK | {"sqrt", "pi", "oo", "Abs"}
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
        c: sympy.Symbol(c) for c in "abcdfghjklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    }
    names.update({g: sympy.Symbol(g) for g in _GREEK})
    names.update(i=sympy.I, e=sympy.E, pi=sympy.pi, oo=sympy.oo, sqrt=sympy.sqrt, Abs=sympy.Abs)
    names.update(log=sympy.log, exp=sympy.exp)
    names.update(
        {f: getattr(sympy, f) for f in _FUNCTIONS - {"ln", "log", "exp"} if not f.startswith("arc")}
    )
    names.update(arcsin=sympy.asin, arccos=sympy.acos, arctan=sympy.atan)
    builtins = {
        k: getattr(sympy, k)
        for k in ("Integer", "Float", "Rational", "Symbol", "Add", "Mul", "Pow")
    }
    builtins["__builtins__"] = {}
    transformations = (
        sp.auto_number,
        sp.implicit_multiplication,
        sp.implicit_application,
        sp.function_exponentiation,  # sin**2 x -> sin(x)**2
    )
    return sympy, names, builtins, transformations


def _too_big(expr: Any) -> bool:
    """True if evaluating ``expr`` could build huge numbers (powers with large exponents), or
    if it is not made of values only."""
    sympy = _parser()[0]
    for node in sympy.postorder_traversal(expr):
        if not isinstance(node, sympy.Basic) or isinstance(node, type):
            return True  # a bare function name used as a value ("\\sin \\log")
        if isinstance(node, sympy.Pow) and node.exp.is_number:
            try:
                size = abs(complex(node.exp.evalf(15)))
            except Exception:  # not a plain number: refuse
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
    try:
        refused = not isinstance(expr, sympy.Expr) or _too_big(expr) or expr.has(sympy.Tuple)
    except Exception:  # a function name used as a value ("\\log \\sin") has no args to walk
        refused = True
    if refused:
        return None
    return expr


#: sample points for expressions with variables (values avoid integers and zero)
_POINTS = ((0.3719, 1.1583, -0.7331), (1.6171, -0.4421, 2.2939), (-1.2763, 0.8807, 0.5363))


def _values(expr: Any, symbols: list[Any]) -> list[complex | None]:
    sympy = _parser()[0]
    infinities = (sympy.oo, sympy.zoo)
    out: list[complex | None] = []
    for point in _POINTS[: 1 if not symbols else None]:  # a constant: one evaluation
        subs = {s: point[j % 3] + 0.1 * (j // 3) for j, s in enumerate(symbols)}
        try:
            value = complex(expr.evalf(30, subs=subs))
        except Exception:  # sympy raises many types where a value is undefined
            value = None
        if value is not None and (
            cmath.isnan(value) or (cmath.isinf(value) and not expr.has(*infinities))
        ):
            value = None  # undefined here, or finite but beyond float range
        out.append(value)
    return out * len(_POINTS) if not symbols else out


def _close(a: complex, b: complex, tolerance: float) -> bool:
    if cmath.isinf(a) or cmath.isinf(b):
        return a == b
    if a.imag == b.imag == 0 and a.real.is_integer() and b.real.is_integer():
        return a == b  # whole numbers compare exactly
    return cmath.isclose(a, b, rel_tol=tolerance, abs_tol=1e-9)


def same_value(a: Any, b: Any, tolerance: float) -> bool:
    """Whether two sympy values are equal: as constants, or at every sample point where both
    are defined (at least two) when they have variables."""
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


def proportional(a: Any, b: Any, tolerance: float) -> bool:
    """Whether ``a == c * b`` for one nonzero constant ``c`` (two equations' differences)."""
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


def linear(expr: Any, symbol: Any) -> tuple[Any, Any] | None:
    """``(a, b)`` with ``expr == a * symbol + b`` and ``a`` a nonzero real number, or ``None``."""
    sympy = _parser()[0]
    for node in sympy.preorder_traversal(expr):  # (x+1)^{1000} is not linear: do not expand it
        if isinstance(node, sympy.Pow) and node.base.has(symbol) and node.exp != 1:
            return None
    try:
        poly = sympy.Poly(sympy.expand(expr), symbol)
    except Exception:  # sympy raises many types on non-polynomial input
        return None
    if poly.degree() != 1:
        return None
    a, b = poly.all_coeffs()
    if not (a.is_number and b.is_number and a.is_real and b.is_real) or a == 0:
        return None
    return a, b
