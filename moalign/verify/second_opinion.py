"""The choice of verifier: moalign's own, Hugging Face's ``math-verify``, or both.

``math-verify`` (the verifier of TRL's and open-r1's math rewards) is an optional extra,
``pip install 'moalign[math]'``, imported only when asked for. Its time limits use
``signal.alarm``, which works on the main thread only: there it gets moalign's budget (rounded up
to whole seconds); on any other thread its own limits are turned off (``parsing_timeout=None``,
``timeout_seconds=None``) and the call runs in a helper thread that moalign waits on for
``budget_s`` seconds at most: a call still running then counts as a reject (the helper finishes
in the background).

- :func:`check_answer` grades one completion with the chosen verifier: ``"moalign"``,
  ``"math-verify"``, or ``"both"`` (moalign first, math-verify only where moalign rejects).
- :func:`math_verify_correct` is the math-verify verdict alone.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from moalign.errors import MoalignError
from moalign.verify.answers import is_correct
from moalign.verify.extract import parse_reference

__all__ = [
    "INSTALL_MATH",
    "VERIFIERS",
    "MissingExtraError",
    "check_answer",
    "math_verify_available",
    "math_verify_correct",
    "math_verify_module",
]

#: Values of ``verifier``.
VERIFIERS = ("moalign", "math-verify", "both")
INSTALL_MATH = "pip install 'moalign[math]'"


class MissingExtraError(MoalignError, ImportError):
    """An optional extra that a chosen option needs is not installed."""


def math_verify_module() -> Any:
    """The ``math_verify`` module, or :class:`MissingExtraError` naming the extra."""
    try:
        import math_verify
    except ImportError as exc:
        raise MissingExtraError(
            f"verifier 'math-verify' needs the optional extra 'math': {INSTALL_MATH} ({exc})"
        ) from None
    return math_verify


def math_verify_available() -> bool:
    try:
        math_verify_module()
    except MissingExtraError:
        return False
    return True


def _verdict(module: Any, gold: str, completion: str, seconds: int | None) -> bool:
    parsed_gold = module.parse(gold, extraction_mode="first_match", parsing_timeout=seconds)
    if not parsed_gold:
        return False
    parsed = module.parse(completion, parsing_timeout=seconds)
    return bool(parsed) and bool(module.verify(parsed_gold, parsed, timeout_seconds=seconds))


def _within(budget_s: float, call: Any) -> bool:
    """``call()`` in a daemon thread, waited on for ``budget_s`` seconds; False past that."""
    result: list[bool] = []

    def run() -> None:
        try:
            result.append(bool(call()))
        except Exception:  # math-verify and sympy raise many types on odd input
            result.append(False)

    worker = threading.Thread(target=run, name="moalign-math-verify", daemon=True)
    worker.start()
    worker.join(budget_s)
    return bool(result and result[0])


def math_verify_correct(
    completion: str, reference: Any, *, answer_format: str = "auto", budget_s: float = 5.0
) -> bool | None:
    """math-verify's verdict on ``completion`` against ``reference`` (reduced to its final
    answer as for moalign: the number after ``####``, the content of the last box).

    ``None`` when the reference is missing or empty; :class:`MissingExtraError` when
    math-verify is not installed.
    """
    ref = parse_reference(reference, answer_format)
    if ref is None:
        return None
    module = math_verify_module()
    gold = f"${ref}$"
    if threading.current_thread() is threading.main_thread():
        try:
            return _verdict(module, gold, completion, max(1, math.ceil(budget_s)))
        except Exception:  # a timeout or a parser error is a reject
            return False
    return _within(budget_s, lambda: _verdict(module, gold, completion, None))


def check_answer(
    completion: str,
    reference: Any,
    *,
    verifier: str = "moalign",
    answer_format: str = "auto",
    tolerance: float = 1e-6,
    budget_s: float = 5.0,
) -> bool | None:
    """Whether ``completion`` states the final answer of ``reference``, by ``verifier``
    (see the module docstring); ``None`` when the reference is missing or empty."""
    if verifier not in VERIFIERS:
        raise ValueError(f"unknown verifier {verifier!r}; expected one of {', '.join(VERIFIERS)}")
    if verifier == "math-verify":
        return math_verify_correct(
            completion, reference, answer_format=answer_format, budget_s=budget_s
        )
    verdict = is_correct(completion, reference, answer_format=answer_format, tolerance=tolerance)
    if verifier == "moalign" or verdict is None or verdict:
        return verdict
    return math_verify_correct(completion, reference, answer_format=answer_format, budget_s=budget_s)
