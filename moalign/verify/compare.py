"""Whether two normalized answers denote the same mathematical object, within a time budget.

Structures (:mod:`moalign.verify.structures`) are compared element-wise: ordered ones in order
and with the same brackets, unordered ones in any order (a set also matches a value when
each of its elements does: ``\\{5\\}`` is 5); relations by the value they give the answer, or as equations (``5x + 2y = 4`` and
``10x + 4y - 8 = 0`` are the same plane); expressions through
:mod:`moalign.verify.latex_math` (sympy, no ``eval``).
"""

from __future__ import annotations

import time
from typing import Any

from moalign.verify.latex_math import proportional, same_value, to_sympy
from moalign.verify.structures import PM, Relation, Seq, Value, compact, parse

__all__ = ["equivalent"]

_MAX_ANSWER = 1000  # characters of an answer compared beyond plain text


class _OutOfTime(Exception):
    """A comparison ran past its time budget."""


def _expr(atom: Any) -> Any | None:
    return atom.expr if isinstance(atom, Value) else to_sympy(atom)


def _atoms(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, str) and isinstance(b, str) and compact(a) == compact(b):
        return True
    x = _expr(a)
    y = _expr(b) if x is not None else None
    return y is not None and same_value(x, y, tolerance)


def _difference(lhs: str, rhs: str) -> Any | None:
    x, y = to_sympy(lhs), to_sympy(rhs)
    if x is None or y is None:
        return None
    import sympy

    return sympy.Add(x, sympy.Mul(-1, y, evaluate=False), evaluate=False)


def _relation(a: Relation, b: Any, tolerance: float, deadline: float) -> bool:
    if not isinstance(b, Relation):
        return a.names_answer and any(_match(v, b, tolerance, deadline) for v in a.values)
    if a.sides and b.sides:
        da, db = _difference(*a.sides), _difference(*b.sides)
        if da is not None and db is not None and proportional(da, db, tolerance):
            return True
    if a.names_answer and b.names_answer and compact(a.lhs) == compact(b.lhs):
        return any(_match(x, y, tolerance, deadline) for x in a.values for y in b.values)
    return False


def _match(a: Any, b: Any, tolerance: float, deadline: float) -> bool:
    if time.monotonic() > deadline:
        raise _OutOfTime
    if isinstance(a, Relation):
        return _relation(a, b, tolerance, deadline)
    if isinstance(b, Relation):
        return _relation(b, a, tolerance, deadline)
    a_seq, b_seq = isinstance(a, Seq), isinstance(b, Seq)
    if not (a_seq or b_seq):
        return _atoms(a, b, tolerance)
    if a_seq != b_seq:  # {5} and 5; "15\frac{39}{40} or \frac{639}{40}" and 639/40
        seq, other = (a, b) if a_seq else (b, a)
        return seq.kind == "unordered" and all(
            _match(item, other, tolerance, deadline) for item in seq.items
        )
    brackets_a, brackets_b = (x.brackets.replace(PM, "") for x in (a, b))
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
    """Whether two normalized answers denote the same object (see the module docstring).

    Answers longer than a thousand characters are compared as text only, and a comparison that
    takes longer than ``budget_s`` seconds (checked between elements) counts as a mismatch.
    """
    if max(len(a), len(b)) > _MAX_ANSWER:
        return compact(a) == compact(b)
    deadline = time.monotonic() + budget_s
    try:
        return _match(parse(a), parse(b), tolerance, deadline)
    except (_OutOfTime, RecursionError):
        return False
