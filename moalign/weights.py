"""Weight vectors on the probability simplex: the one validation every entry point uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from moalign.errors import WeightsError

__all__ = ["as_weights", "format_weights", "weight_problems"]


def weight_problems(weights: Any, k: int | None = None, *, name: str = "weights",
                    atol: float = 1e-6) -> list[str]:
    """Every problem with a weight vector, as messages naming it (empty: on the simplex).

    A weight vector is non-empty, one-dimensional, finite, non-negative, sums to 1 within
    ``atol`` and has ``k`` entries when ``k`` is given. Configs collect these problems with
    their others; :func:`as_weights` raises them.
    """
    shown = f"'{name}'" if name.isidentifier() else name  # a config key is quoted
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        return [f"{shown} must be a vector of numbers, got {weights!r}"]
    if isinstance(weights, (str, bytes)) or w.ndim != 1 or w.size == 0:
        return [f"{shown} must be a non-empty 1-D vector of numbers, got {weights!r}"]
    problems = []
    if k is not None and w.size != k:
        problems.append(f"{shown} has {w.size} entries but there are {k} objectives: {w.tolist()}")
    if not np.all(np.isfinite(w)):
        problems.append(f"{shown} contains a non-finite value: {w.tolist()}")
    elif np.any(w < 0):
        problems.append(f"{shown} must be non-negative, got {w.tolist()}")
    elif abs(float(w.sum()) - 1.0) > atol:
        problems.append(f"{shown} must sum to 1 (a point on the simplex), got sum "
                        f"{float(w.sum()):g}: {w.tolist()}")
    return problems


def as_weights(
    weights: Any, k: int | None = None, *, name: str = "weights", atol: float = 1e-6
) -> np.ndarray:
    """Validate a weight vector and return it as a float64 array of shape ``[K]``.

    The checks are those of :func:`weight_problems`; the vector is then renormalized exactly.
    Raises :class:`~moalign.errors.WeightsError` naming every problem.
    """
    problems = weight_problems(weights, k, name=name, atol=atol)
    if problems:
        raise WeightsError("; ".join(problems))
    w = np.asarray(weights, dtype=np.float64)
    return w / float(w.sum())


def format_weights(weights: Sequence[float], digits: int = 2) -> str:
    """Stable identifier of a weight vector, as used for front point ids: ``"w0.30-0.70"``."""
    return "w" + "-".join(f"{float(x):.{digits}f}" for x in weights)
