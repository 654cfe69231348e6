"""Final answers of math problems: extraction, normalization and equivalence.

Used by the ``reasoning_accuracy`` objective to grade verifiable answers in the styles of
GSM8K (Cobbe et al. 2021, a solution ending in ``#### n``) and MATH (Hendrycks et al. 2021,
an answer in ``\\boxed{...}``). This module is the public face of the package:

- :func:`extract_answer` finds the final answer in a completion (:mod:`moalign.verify.extract`:
  boxes, several boxes, ``#### n``, "the answer is", "Final Answer: ...", the last math
  segment, the last number);
- :func:`normalize_answer` / :func:`parse_number` (:mod:`moalign.verify.normalize`) remove
  what does not change an answer's meaning and read plain numbers;
- :func:`answers_match` compares two answers: as normalized strings, as numbers with a relative
  tolerance (a decimal comma where it cannot be a thousands separator), and structurally and
  symbolically (:mod:`moalign.verify.compare`: tuples, intervals, inequalities, sets, lists,
  ``\\pm``, equations and chains, expressions parsed without evaluating untrusted text).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from moalign.verify.compare import equivalent
from moalign.verify.extract import (
    ANSWER_FORMATS,
    check_format,
    extract_answer,
    extract_boxed,
    final_boxes,
    parse_reference,
)
from moalign.verify.normalize import decimal_comma, loose_number, normalize_answer, parse_number
from moalign.verify.structures import Relation, parse

__all__ = [
    "ANSWER_FORMATS",
    "answers_match",
    "extract_answer",
    "extract_boxed",
    "final_boxes",
    "is_correct",
    "normalize_answer",
    "parse_number",
    "parse_reference",
]


# --------------------------------------------------------------------------------------------
# Equivalence
# --------------------------------------------------------------------------------------------


def _close(a: float, b: float, tolerance: float) -> bool:
    """Equal within ``tolerance`` (relative); two whole numbers must be equal exactly."""
    if a.is_integer() and b.is_integer():
        return a == b
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=1e-12)


def _integer(answer: str) -> int | None:
    s = normalize_answer(answer).replace(" ", "")
    return int(s) if re.fullmatch(r"[-+]?\d+", s) else None


def _decimal(answer: str) -> Decimal | None:
    s = normalize_answer(answer).replace(" ", "")
    return Decimal(s) if re.fullmatch(r"[-+]?\d*\.\d+", s) else None


def _numbers_match(pred: str, reference: str, ref_value: float, tolerance: float) -> bool:
    exact = _integer(pred), _integer(reference)
    if None not in exact:  # whole numbers of any size compare exactly
        return exact[0] == exact[1]
    decimals = _decimal(pred), _decimal(reference)
    if None not in decimals and decimals[0].as_tuple().exponent == decimals[1].as_tuple().exponent:
        return decimals[0] == decimals[1]  # same decimal places: 1234567.6 is not 1234567.5
    if re.search(r"=|\\approx", pred) and not _names_value(pred):
        return False  # "2x = 10" is an equation, not the number 10
    value = loose_number(pred)
    if value is None:
        value = decimal_comma(pred)  # 1000,99 against a single number
    if value is None:
        return False
    if _close(value, ref_value, tolerance):
        return True
    if "%" in pred and _close(value / 100.0, ref_value, tolerance):
        return True  # 25% for 0.25
    return "%" in reference and _close(value, ref_value / 100.0, tolerance)  # 0.5 for 50%


def _names_value(pred: str) -> bool:
    """Whether a relation such as ``x = 18`` or ``3 \\cdot 6 = 18`` states its last side."""
    try:
        relation = parse(normalize_answer(pred))
    except RecursionError:
        return False
    return not isinstance(relation, Relation) or relation.names_answer


def answers_match(
    predicted: str, reference: str, *, answer_format: str = "math", tolerance: float = 1e-6
) -> bool:
    """Whether two extracted answers are equivalent.

    ``gsm8k`` compares numbers only; ``plain`` compares normalized strings and numbers;
    ``math`` and ``auto`` also compare structures (tuples, intervals, inequalities, sets,
    lists, ``\\pm``, equations) and expressions symbolically. Numbers match within
    ``tolerance`` (relative); whole numbers exactly.
    """
    check_format(answer_format)
    ref_value = parse_number(reference)
    if ref_value is not None and _numbers_match(predicted, reference, ref_value, tolerance):
        return True
    if answer_format == "gsm8k" or (ref_value is not None and parse_number(predicted) is not None):
        return False  # two plain numbers: the numeric comparison is the verdict
    a, b = normalize_answer(predicted), normalize_answer(reference)
    if _same_text(a, b):
        return True
    if answer_format == "plain":
        return False
    return equivalent(a, b, tolerance)


def _same_text(a: str, b: str) -> bool:
    if a.replace(" ", "") == b.replace(" ", ""):
        return True
    words = re.compile(r"[A-Za-z][A-Za-z ]+")
    return bool(words.fullmatch(a) and words.fullmatch(b) and a.lower() == b.lower())


def is_correct(
    completion: str, reference: Any, *, answer_format: str = "auto", tolerance: float = 1e-6
) -> bool | None:
    """Whether ``completion`` states the final answer of ``reference``.

    ``None`` when the reference is missing or empty; ``False`` when the completion states no
    answer.
    """
    ref = parse_reference(reference, answer_format)
    if ref is None:
        return None
    if answer_format == "auto" and isinstance(reference, str) and "####" in reference:
        answer_format = "gsm8k" if parse_number(ref) is not None else "auto"
    predicted = extract_answer(completion, answer_format)
    if predicted is None:
        return False
    return answers_match(predicted, ref, answer_format=answer_format, tolerance=tolerance)
