"""The ``sweep`` method: one training run per weight vector (the MORLHF baseline; MODPO's
sweep, Zhou et al. 2023). The most expensive method and the reference the others are judged by.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from moalign.fronts.context import Context, Policy
from moalign.weights import format_weights

__all__ = ["policies"]


def policies(ctx: Context) -> Iterator[tuple[str, np.ndarray, Policy]]:
    """One run of the front's trainer per weight vector, each yielded as its point once trained
    (consumed lazily: an adaptive front chooses the next vector from the points measured)."""
    for w in ctx.weight_vectors():
        name = ctx.run(format_weights(w).replace(".", "_"), weights=w.tolist())
        yield format_weights(w), w, ctx.policy(name)
