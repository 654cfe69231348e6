"""Answer verification: final-answer extraction and numeric / symbolic equivalence.

The checks behind the ``reasoning_accuracy`` objective and the GSM8K / MATH-500 loaders:
:mod:`moalign.verify.answers` finds the final answer of a reply (``\\boxed{}``, ``####``, "the
answer is", the last number) and compares it with a reference; :mod:`moalign.verify.latex_math`
decides symbolic equivalence on a whitelisted LaTeX grammar with sympy (no ``eval``).
"""

from __future__ import annotations

from moalign.verify.answers import *  # noqa: F403
from moalign.verify.answers import __all__  # noqa: F401
