"""Answer verification: final-answer extraction and numeric / symbolic equivalence.

The checks behind the ``reasoning_accuracy`` objective and the GSM8K / MATH-500 loaders:
:mod:`moalign.verify.answers` is the public face (:func:`extract_answer`, :func:`is_correct`,
:func:`answers_match`); where the answer is found is :mod:`~moalign.verify.extract`, what is
removed from it :mod:`~moalign.verify.normalize`, its structure (tuples, intervals,
inequalities, sets, relations) :mod:`~moalign.verify.structures`, the comparison
:mod:`~moalign.verify.compare` over expressions that :mod:`~moalign.verify.latex_math` parses
with sympy on a whitelisted grammar (no ``eval``). :mod:`~moalign.verify.second_opinion` adds
Hugging Face's ``math-verify`` as an optional second verifier (extra ``moalign[math]``).
"""

from __future__ import annotations

from moalign.verify.answers import *  # noqa: F403
from moalign.verify.answers import __all__ as _answers_all
from moalign.verify.second_opinion import VERIFIERS, check_answer

__all__ = [*_answers_all, "VERIFIERS", "check_answer"]
