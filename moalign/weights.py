"""Weight vectors on the probability simplex: the one validation every entry point uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from moalign.errors import WeightsError

__all__ = ["as_weights", "format_weights"]


def as_weights(
    weights: Any, k: int | None = None, *, name: str = "weights", atol: float = 1e-6
) -> np.ndarray:
    """Validate a weight vector and return it as a float64 array of shape ``[K]``.

    Non-negative, finite, summing to 1 within ``atol`` (then renormalized exactly), and of
    length ``k`` when given.
    Raises :class:`~moalign.errors.WeightsError` naming the problem.
    """
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise WeightsError(f"{name} must be a vector of numbers, got {weights!r}") from None
    if w.ndim != 1 or w.size == 0:
        raise WeightsError(f"{name} must be a non-empty 1-D vector, got shape {w.shape}")
    if k is not None and w.size != k:
        raise WeightsError(f"{name} has {w.size} entries but there are {k} objectives: {w.tolist()}")
    if not np.all(np.isfinite(w)):
        raise WeightsError(f"{name} contains a non-finite value: {w.tolist()}")
    if np.any(w < 0):
        raise WeightsError(f"{name} must be non-negative, got {w.tolist()}")
    total = float(w.sum())
    if abs(total - 1.0) > atol:
        raise WeightsError(f"{name} must sum to 1 (a point on the simplex), got sum {total:g}: {w.tolist()}")
    return w / total


def format_weights(weights: Sequence[float], digits: int = 2) -> str:
    """Stable identifier of a weight vector, as used for front point ids: ``"w0.30-0.70"``."""
    return "w" + "-".join(f"{float(x):.{digits}f}" for x in weights)
