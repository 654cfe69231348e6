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
    """Train one run per weight vector of the front, then yield each run as a point."""
    grid = ctx.cfg.weight_vectors()
    names = [ctx.run(format_weights(w).replace(".", "_"), weights=w.tolist()) for w in grid]
    for w, name in zip(grid, names):
        yield format_weights(w), w, Policy(ctx.adapter(name), adapter=name,
                                           checkpoint=f"runs/{name}/adapter")
