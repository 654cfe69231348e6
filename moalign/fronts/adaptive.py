"""Adaptive fronts (``weights: adaptive``): each next point goes where the measured front has
its largest hypervolume gap.

The trace starts with the simplex grid of ``grid`` divisions (its vertices included), measures
those points, and then, until the front has ``points`` points, asks
:class:`moalign.tradeoff.adaptive.AdaptiveFront` for the next weight vector, told the weights
and measured scores of every point so far and using the front's own reference point: between
the two neighbouring front points whose local ideal point would add the most hypervolume, the
candidate nearest their weights' midpoint (candidates: the grid of :func:`candidate_divisions`,
a refinement of the starting grid).

The choices are part of the trace's state: ``adaptive.json`` in the output folder lists every
chosen weight vector with the gap it filled, written (atomically) before that point's run
starts. A resumed trace takes its choices from there and asks only for the ones not yet made,
so it never recomputes a finished run or point and never changes its mind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from moalign.errors import CheckpointError
from moalign.storage.checkpoints import read_json
from moalign.storage.files import atomic_write_json
from moalign.weights import format_weights

__all__ = ["STATE_FILE", "adaptive_weights", "candidate_divisions"]

#: The adaptive trace's state, in the output folder.
STATE_FILE = "adaptive.json"
#: Candidate grids are at least this fine (divisions of the simplex).
_MIN_DIVISIONS = 20


def candidate_divisions(grid: int) -> int:
    """Divisions of the candidates' grid: the smallest multiple of ``grid`` that is at least 20
    (so every starting point is a candidate; at most 100 divisions, as point ids have 2
    decimals)."""
    return grid * max(1, -(-_MIN_DIVISIONS // grid))


def _chosen(path: Any, k: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    state = read_json(path, required=("chosen",), what="adaptive front state",
                      hint=f"delete '{path}' and the points after the starting grid to redo them")
    chosen = state["chosen"]
    if not isinstance(chosen, list) or not all(
            isinstance(c, dict) and len(c.get("weights", ())) == k for c in chosen):
        raise CheckpointError(f"adaptive front state '{path}' is malformed: 'chosen' must list "
                              f"entries with {k} weights")
    return chosen


def _filled(gaps: list[tuple[int, int, float]], weights: list[np.ndarray], w: np.ndarray,
            ids: list[str]) -> dict[str, Any]:
    """Which gap the choice ``w`` fills: the first pair (by decreasing gap) whose weights'
    ball holds ``w`` (AdaptiveFront's rule), or ``space_filling`` when none does."""
    for a, b, gap in gaps:
        mid, radius = 0.5 * (weights[a] + weights[b]), 0.5 * np.linalg.norm(weights[a] - weights[b])
        if np.linalg.norm(w - mid) <= radius + 1e-12:
            return {"rule": "largest_gap", "gap": gap, "between": [ids[a], ids[b]],
                    "largest": gap >= gaps[0][2]}
    return {"rule": "space_filling"}


def adaptive_weights(ctx: Any) -> Iterator[np.ndarray]:
    """The starting grid, then each adaptive choice (see the module docstring). Consumed
    lazily: before each choice, ``ctx.measured`` must hold every point yielded so far."""
    from moalign.pareto.indicators import simplex_grid
    from moalign.tradeoff.adaptive import AdaptiveFront

    cfg = ctx.cfg
    k = len(ctx.names)
    start = simplex_grid(k, cfg.grid)
    yield from start
    path = ctx.out / STATE_FILE
    chosen = _chosen(path, k)
    candidates = simplex_grid(k, candidate_divisions(cfg.grid))
    for i in range(cfg.points - len(start)):
        if i < len(chosen):  # decided before this trace was interrupted
            yield np.asarray(chosen[i]["weights"], dtype=np.float64)
            continue
        front = AdaptiveFront(k, ref=ctx.reference_point, candidates=candidates, seed=cfg.seed)
        told = ctx.measured[: len(start) + i]
        if len(told) != len(start) + i:
            raise RuntimeError("adaptive_weights needs every point measured before the next choice")
        for w, scores in told:
            front.tell({"weights": w, "scores": [scores[n] for n in ctx.names]})
        gaps = front.gaps()
        w = front.ask()
        ids = [format_weights(t) for t, _ in told]
        entry: dict[str, Any] = {"weights": w.tolist(), "point": format_weights(w),
                                 "after": ids, "reference_point": list(ctx.reference_point)}
        entry.update(_filled(gaps, [t for t, _ in told], w, ids))
        chosen.append(entry)
        atomic_write_json(path, {"grid": cfg.grid, "points": cfg.points,
                                 "candidate_divisions": candidate_divisions(cfg.grid),
                                 "chosen": chosen})
        yield w
