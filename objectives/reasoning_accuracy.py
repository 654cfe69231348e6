"""``reasoning_accuracy``: is the final answer of a completion right? (a verifiable objective)

The final answer is extracted from the completion (``\\boxed{}`` or several boxes, ``#### n``,
"the answer is ...", "Final Answer: The final answer is $x$.", the last math segment or number)
and compared with a reference column: numerically with a relative tolerance, structurally
(tuples, intervals and inequalities, sets and lists, ``\\pm``, equations and chains) and
symbolically for MATH-style answers; see :mod:`moalign.verify.answers`. GSM8K (Cobbe et al.
2021) references such as ``"... #### 72"`` are reduced to their final number, MATH (Hendrycks
et al. 2021) references may be bare answers or solutions with a box.

``verifier="math-verify"`` grades with Hugging Face's ``math-verify`` instead, ``"both"`` asks
it only where moalign rejects (optional extra: ``pip install 'moalign[math]'``).

Every answer form it reads, with examples: ``docs/OBJECTIVES.md``, "Answer formats of
``reasoning_accuracy``".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from moalign.errors import ObjectiveError
from moalign.objective import Objective, as_text
from moalign.verify.answers import ANSWER_FORMATS
from moalign.verify.second_opinion import (
    INSTALL_MATH,
    VERIFIERS,
    MissingExtraError,
    check_answer,
    math_verify_module,
)


class ReasoningAccuracy(Objective):
    """1.0 when the completion's final answer equals the reference, else 0.0; ``None`` where
    the reference is missing or empty.

    Args:
        reference_column: dataset column holding the reference answer or solution.
        answer_format: ``"auto"`` (detect GSM8K ``####`` references, otherwise compare as
            MATH answers), ``"gsm8k"`` (numbers only), ``"math"`` (numbers, structures and
            symbolic expressions) or ``"plain"`` (normalized text and numbers, no sympy).
        tolerance: relative tolerance of numeric comparisons (whole numbers compare exactly).
        verifier: ``"moalign"`` (default), ``"math-verify"`` (Hugging Face's verifier; ignores
            ``answer_format`` and ``tolerance`` except for reading the reference) or ``"both"``
            (moalign first, math-verify only on a reject). The last two need the optional
            extra ``moalign[math]``.
    """

    name = "reasoning_accuracy"
    description = "1 if the final answer matches the reference (GSM8K / MATH style), else 0"

    def __init__(
        self,
        reference_column: str = "answer",
        answer_format: str = "auto",
        tolerance: float = 1e-6,
        verifier: str = "moalign",
    ):
        if not isinstance(reference_column, str) or not reference_column.strip():
            raise ObjectiveError(
                f"{self.name}: 'reference_column' must be a non-empty column name, "
                f"got {reference_column!r}",
                objective=self.name,
            )
        if answer_format not in ANSWER_FORMATS:
            raise ObjectiveError(
                f"{self.name}: 'answer_format' must be one of {', '.join(ANSWER_FORMATS)}, "
                f"got {answer_format!r}",
                objective=self.name,
            )
        if (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, (int, float))
            or not math.isfinite(tolerance)
            or not 0 <= tolerance < 1
        ):
            raise ObjectiveError(
                f"{self.name}: 'tolerance' must be a number in [0, 1), got {tolerance!r}",
                objective=self.name,
            )
        if verifier not in VERIFIERS:
            raise ObjectiveError(
                f"{self.name}: 'verifier' must be one of {', '.join(VERIFIERS)}, got {verifier!r}",
                objective=self.name,
            )
        if verifier != "moalign":
            try:
                math_verify_module()
            except MissingExtraError:
                raise ObjectiveError(
                    f"{self.name}: verifier={verifier!r} needs math-verify, which is not "
                    f"installed; install the optional extra 'math': {INSTALL_MATH}",
                    objective=self.name,
                ) from None
        self.verifier = verifier
        self.reference_column = reference_column
        self.answer_format = answer_format
        self.tolerance = float(tolerance)
        self.required_columns = (reference_column,)

    def score(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        references = columns[self.reference_column]
        out: list[float | None] = []
        for completion, reference in zip(completions, references, strict=True):
            verdict = check_answer(
                as_text(completion),
                reference,
                verifier=self.verifier,
                answer_format=self.answer_format,
                tolerance=self.tolerance,
            )
            out.append(None if verdict is None else float(verdict))
        return out

    def __repr__(self) -> str:
        return (
            f"ReasoningAccuracy(reference_column={self.reference_column!r}, "
            f"answer_format={self.answer_format!r}, tolerance={self.tolerance!r}, "
            f"verifier={self.verifier!r})"
        )
