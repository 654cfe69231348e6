"""Weight conditioning: how a weight vector is shown to a policy, in training and at evaluation.

A *conditioned* policy (Rewards-in-Context, Yang et al. 2024; Directional Preference Alignment,
Wang et al. 2024) reads the trade-off it should make from its input, so one training run serves
every weight vector. Training (:class:`~moalign.trainers.MultiObjectiveDPOTrainer` with
``conditioning="prompt"``) and evaluation (``trace_front`` with the ``conditioned`` method, or
:func:`moalign.evaluation.implicit_reward_accuracy` with ``transform_prompt=``) both go through
:func:`apply_condition`, so the model sees the same text in both.

The exact text. For objectives ``["helpfulness", "harmlessness"]`` and weights ``(0.3, 0.7)``,
:func:`format_condition` returns::

    Objective weights: helpfulness=0.30, harmlessness=0.70

objectives in the given order, each weight with two decimals (``digits``), ``", "`` between
them. Plain ASCII, no special tokens, so every tokenizer encodes it the same way in any context.

That is the ``"full"`` form, the default. The ``"nonzero"`` form (config field
``condition_format: nonzero``) leaves out the objectives whose rounded weight is 0, so weights
``(1, 0)`` read ``Objective weights: helpfulness=1.00``. In the full form two weight vectors
that swap their values show the same tokens in another order (``a=1.00, b=0.00`` and
``a=0.00, b=1.00``), and a small model, which tells prompts apart by the tokens they hold far
more easily than by where they stand, barely tells them apart; in the nonzero form the
vertices name different objectives. The tiny test model follows its condition after conditioned
GRPO in the nonzero form and not in the full one (``tests/fronts/test_conditioned_learns.py``).
Training, front evaluation and export read the same ``condition_format``, as they read
``condition_style``.

:func:`apply_condition` places the condition line:

- chat prompts (lists of ``{"role", "content"}`` messages), ``style="system"``: as a system
  message in front of the conversation, or, when the conversation already starts with a system
  message, as the first line of that message (``"<condition>\\n<original system content>"``);
- chat prompts, ``style="prefix"``: as the first line of the first user message;
- plain-text prompts (either style): as the first line of the prompt (``"<condition>\\n<prompt>"``).

Weights are shown rounded, so a trainer first rounds them with :func:`quantize_weights` (which
keeps the sum at exactly 1) and uses the rounded weights in the loss too: the text then tells the
model exactly the weights its loss used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from moalign.errors import DataError
from moalign.weights import as_weights

__all__ = [
    "CONDITION_FORMATS",
    "condition_field_problems",
    "CONDITION_HEADER",
    "CONDITION_STYLES",
    "WEIGHTS_COLUMN",
    "apply_condition",
    "format_condition",
    "has_condition",
    "quantize_weights",
]

#: First words of every condition line.
CONDITION_HEADER = "Objective weights:"
#: Where :func:`apply_condition` can put the condition in a chat prompt.
CONDITION_STYLES = ("system", "prefix")
#: How the condition lists the weights: every objective, or only those weighted above 0.
CONDITION_FORMATS = ("full", "nonzero")


def condition_field_problems(style: object, format: object, alpha: object) -> list[str]:
    """Problems of the condition fields every conditioned trainer shares: ``condition_style``,
    ``condition_format`` and ``dirichlet_alpha`` (the concentration of the per-pair or
    per-prompt weight draws)."""
    problems = []
    if style not in CONDITION_STYLES:
        problems.append(f"'condition_style' must be one of {list(CONDITION_STYLES)}, got {style!r}")
    if format not in CONDITION_FORMATS:
        problems.append(f"'condition_format' must be one of {list(CONDITION_FORMATS)}, got "
                        f"{format!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        problems.append(f"'dirichlet_alpha' must be a number > 0, got {alpha!r}")
    return problems


#: Dataset column holding each pair's weight vector (a list of K floats) in conditioned training.
WEIGHTS_COLUMN = "condition_weights"


def quantize_weights(weights: Any, digits: int = 2) -> np.ndarray:
    """Round a simplex vector to ``digits`` decimals while keeping its sum exactly 1.

    Largest-remainder rounding (Hamilton's method): every weight is floored to the grid
    ``10**-digits``, then the units still missing go to the largest remainders (ties to the
    lower index). The result is on the simplex and equal to what :func:`format_condition` prints.
    """
    w = as_weights(weights)
    scale = 10**digits
    scaled = w * scale
    units = np.floor(scaled + 1e-9).astype(np.int64)
    missing = int(scale - units.sum())
    if missing > 0:
        order = np.argsort(-(scaled - units), kind="stable")
        units[order[:missing]] += 1
    return units.astype(np.float64) / scale


def format_condition(weights: Any, objectives: Sequence[str], digits: int = 2, *,
                     form: str = "full") -> str:
    """The condition line, e.g. ``"Objective weights: helpfulness=0.30, harmlessness=0.70"``.

    ``weights`` must be on the simplex with one entry per objective; they are printed rounded
    with :func:`quantize_weights`, so the printed numbers sum to 1. ``form`` is one of
    :data:`CONDITION_FORMATS` (module docstring): ``"nonzero"`` leaves out the objectives whose
    rounded weight is 0.
    """
    if form not in CONDITION_FORMATS:
        raise DataError(f"unknown condition format {form!r}; choose one of "
                        f"{list(CONDITION_FORMATS)}")
    names = [str(n) for n in objectives]
    if not names:
        raise DataError("format_condition needs at least one objective name")
    w = quantize_weights(as_weights(weights, len(names)), digits)
    shown = [(name, value) for name, value in zip(names, w, strict=True)
             if form == "full" or value > 0]
    body = ", ".join(f"{name}={value:.{digits}f}" for name, value in shown)
    return f"{CONDITION_HEADER} {body}"


def has_condition(prompt: Any) -> bool:
    """Whether ``prompt`` (text or chat messages) already carries a condition line."""
    if isinstance(prompt, str):
        return prompt.startswith(CONDITION_HEADER)
    messages = list(prompt)
    return any(
        isinstance(m, Mapping) and str(m.get("content", "")).startswith(CONDITION_HEADER)
        for m in messages[:2]
    )


def apply_condition(
    prompt: Any,
    weights: Any,
    objectives: Sequence[str],
    style: str = "system",
    *,
    digits: int = 2,
    form: str = "full",
) -> Any:
    """Return ``prompt`` with the weight condition added (see the module docstring for the text;
    ``form``: one of :data:`CONDITION_FORMATS`).

    ``prompt`` is a string or a list of chat messages (the input is not modified). A prompt that
    already carries a condition is an error (a condition is never stacked).
    """
    if style not in CONDITION_STYLES:
        raise DataError(f"unknown condition style {style!r}; choose one of {list(CONDITION_STYLES)}")
    condition = format_condition(weights, objectives, digits, form=form)
    if isinstance(prompt, str):
        if has_condition(prompt):
            raise DataError(f"prompt already carries a weight condition: {prompt[:80]!r}")
        return f"{condition}\n{prompt}"
    if not isinstance(prompt, Sequence) or not all(isinstance(m, Mapping) for m in prompt):
        raise DataError(
            f"a prompt must be a string or a list of chat messages, got {type(prompt).__name__}"
        )
    messages = [dict(m) for m in prompt]
    if has_condition(messages):
        raise DataError("prompt already carries a weight condition in its first messages")
    if style == "system":
        if messages and messages[0].get("role") == "system":
            messages[0]["content"] = f"{condition}\n{messages[0].get('content', '')}"
        else:
            messages.insert(0, {"role": "system", "content": condition})
        return messages
    for message in messages:
        if message.get("role") == "user":
            message["content"] = f"{condition}\n{message.get('content', '')}"
            return messages
    raise DataError("style='prefix' needs a user message in the prompt to put the condition in")
