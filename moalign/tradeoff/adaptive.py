"""Adaptive front filling: put the next weight vector where the measured front has its largest gap."""

from __future__ import annotations

from collections.abc import Mapping
from math import comb
from typing import Any

import numpy as np

from moalign.errors import CheckpointError, ConfigError, WeightsError
from moalign.tradeoff.schedule_base import Schedule, ScheduleExhausted, rng_from_state, rng_state
from moalign.weights import as_weights

__all__ = ["AdaptiveFront", "default_grid_divisions"]

_SAME = 1e-9  # two weight vectors closer than this (max-norm) are the same


def default_grid_divisions(k: int, max_points: int = 100) -> int:
    """The largest ``n <= 10`` whose simplex grid has at most ``max_points`` points (at least 1)."""
    n = 10
    while n > 1 and comb(n + k - 1, k - 1) > max_points:
        n -= 1
    return n


class AdaptiveFront(Schedule):
    """Chooses each next weight vector (one training run each) where the front is sparsest.

    ``tell({"weights": w, "scores": s})`` reports a finished run: its weights ``[K]`` and
    measured per-objective scores ``[K]`` (maximized). ``ask()`` returns one vector of
    ``candidates`` (default: the Das-Dennis grid :func:`moalign.pareto.simplex_grid` with the
    :func:`default_grid_divisions`; an ``int`` ``n`` gives the grid with ``n`` divisions; or an
    explicit ``[M, K]`` array), never one already asked or told. The rule, in order:

    1. **Anchors.** The candidates nearest to each vertex ``e_1 .. e_K`` of the simplex (one
       objective at full weight), in objective order, until all have been asked.
    2. **Largest gap.** Let ``F`` be the told points that are non-dominated and strictly
       dominate ``ref``. Two points ``i, j`` of ``F`` are *neighbours* when no other point of
       ``F`` lies in the box ``[min(s_i, s_j), max(s_i, s_j)]`` they span (for K = 2: adjacent
       on the front). The gap between neighbours is the hypervolume contribution of their
       local ideal point ``u = max(s_i, s_j)`` added to ``F`` (for K = 2: the area of the box
       between them), computed exactly as ``vol([ref, u]) - HV(min(F, u))``. Going through the
       pairs by decreasing positive gap (ties: first told first), the first pair with an
       untried candidate inside the ball whose diameter is the segment ``[w_i, w_j]`` gives
       the answer: the untried candidate nearest the midpoint ``(w_i + w_j) / 2`` (ties: lowest
       candidate index).
    3. **Space filling.** Otherwise (fewer than two front points, no positive gap, or no
       untried candidate between any pair): the untried candidate farthest (Euclidean) from
       every weight asked or told so far; ties broken at random with ``seed``.

    Points whose scores do not strictly dominate ``ref`` are left out of the front, so choose
    ``ref`` strictly below every score a run can reach (e.g. the starting model's scores minus
    a margin); a single-objective run that scores exactly ``ref`` on the other objectives would
    otherwise not count. When every candidate has been asked, ``ask()`` raises :class:`ScheduleExhausted` (see
    :attr:`done`). Each ``ask()`` marks its answer as asked, so calling it twice before a
    ``tell`` gives two different vectors (runs can go in parallel).
    """

    kind = "adaptive"

    def __init__(self, k: int, ref: Any, candidates: Any = None, seed: int = 0):
        super().__init__(k)
        from moalign.pareto import simplex_grid

        k = self.num_objectives
        r = np.asarray(ref, dtype=np.float64)
        if r.shape != (k,) or not np.all(np.isfinite(r)):
            raise ConfigError(f"adaptive: ref must be a finite vector of {k} numbers, got {ref!r}")
        self.ref = r
        if candidates is None:
            candidates = default_grid_divisions(k)
        if isinstance(candidates, (int, np.integer)) and not isinstance(candidates, bool):
            cand = simplex_grid(k, int(candidates))
        else:
            arr = np.asarray(candidates, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[0] == 0:
                raise ConfigError(f"adaptive: candidates must be an int or an [M, {k}] array, got shape {arr.shape}")
            cand = np.stack([as_weights(row, k, name=f"candidate {i}") for i, row in enumerate(arr)])
        self.candidates = cand
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"adaptive: seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self.asked = np.zeros(len(cand), dtype=bool)
        self.weights_seen: list[np.ndarray] = []  # every weight asked or told, in order
        self.told_weights: list[np.ndarray] = []
        self.told_scores: list[np.ndarray] = []

    # -- public -------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True when every candidate has been asked."""
        return bool(self.asked.all())

    def __len__(self) -> int:
        return len(self.candidates)

    def ask(self) -> np.ndarray:
        if self.done:
            raise ScheduleExhausted(
                f"adaptive: all {len(self.candidates)} candidate weight vectors have been asked"
            )
        index = self._next_index()
        self.asked[index] = True
        w = self.candidates[index].copy()
        self.weights_seen.append(w)
        return w

    def tell(self, metrics: Mapping[str, Any]) -> None:
        w = as_weights(self._need(metrics, "weights"), self.num_objectives, name="adaptive: told weights")
        s = np.asarray(self._need(metrics, "scores"), dtype=np.float64).reshape(-1)
        if s.shape != (self.num_objectives,) or not np.all(np.isfinite(s)):
            raise ConfigError(
                f"adaptive: scores must be {self.num_objectives} finite numbers, got {metrics['scores']!r}"
            )
        self.told_weights.append(w)
        self.told_scores.append(s)
        self.weights_seen.append(w)
        self.asked |= np.abs(self.candidates - w).max(axis=1) <= _SAME

    # -- the rule -----------------------------------------------------------------------------
    def _next_index(self) -> int:
        free = ~self.asked
        for vertex in np.eye(self.num_objectives):
            nearest = int(np.argmin(np.linalg.norm(self.candidates - vertex, axis=1)))
            if free[nearest]:
                return nearest
        for i, j, _ in self.gaps():
            wi, wj = self.told_weights[i], self.told_weights[j]
            mid = 0.5 * (wi + wj)
            dist = np.linalg.norm(self.candidates - mid, axis=1)
            inside = free & (dist <= 0.5 * np.linalg.norm(wi - wj) + 1e-12)
            if inside.any():
                return int(np.flatnonzero(inside)[np.argmin(dist[inside])])
        return self._farthest(free)

    def _farthest(self, free: np.ndarray) -> int:
        idx = np.flatnonzero(free)
        if not self.weights_seen:
            return int(self._rng.choice(idx))
        seen = np.stack(self.weights_seen)
        d = np.linalg.norm(self.candidates[idx, None, :] - seen[None, :, :], axis=2).min(axis=1)
        best = idx[d >= d.max() - 1e-12]
        return int(best[0]) if len(best) == 1 else int(self._rng.choice(best))

    def gaps(self) -> list[tuple[int, int, float]]:
        """Neighbouring front pairs ``(i, j, gap)`` (indices into the told points), largest gap first.

        Only pairs with a positive gap are listed; see the class docstring for the definitions.
        """
        from moalign.pareto import hypervolume, is_nondominated

        if len(self.told_scores) < 2:
            return []
        scores = np.stack(self.told_scores)
        front = np.flatnonzero(is_nondominated(scores) & np.all(scores > self.ref, axis=1))
        if len(front) < 2:
            return []
        pts = scores[front]
        n = len(pts)
        a_idx, b_idx = np.triu_indices(n, k=1)
        lo = np.minimum(pts[a_idx], pts[b_idx])  # [pairs, K]
        hi = np.maximum(pts[a_idx], pts[b_idx])
        inside = np.all((pts[None] >= lo[:, None]) & (pts[None] <= hi[:, None]), axis=2)  # [pairs, n]
        inside[np.arange(len(a_idx)), a_idx] = False
        inside[np.arange(len(a_idx)), b_idx] = False
        out = []
        for p in np.flatnonzero(~inside.any(axis=1)):
            u = hi[p]
            # contribution of u added to the front: the part of box [ref, u] the front leaves empty
            gap = float(np.prod(u - self.ref)) - hypervolume(np.minimum(pts, u), self.ref)
            if gap > 1e-15 * float(np.prod(u - self.ref)):
                out.append((int(front[a_idx[p]]), int(front[b_idx[p]]), gap))
        out.sort(key=lambda t: -t[2])  # stable: ties keep told order
        return out

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "ref": self.ref.tolist(),
            "candidates": self.candidates.tolist(),
            "seed": self.seed,
            "asked": [int(i) for i in np.flatnonzero(self.asked)],
            "weights_seen": [w.tolist() for w in self.weights_seen],
            "told_weights": [w.tolist() for w in self.told_weights],
            "told_scores": [s.tolist() for s in self.told_scores],
            "rng": rng_state(self._rng),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        try:
            cand = np.asarray(state["candidates"], dtype=np.float64)
            if cand.shape != self.candidates.shape or not np.allclose(cand, self.candidates, atol=1e-12):
                raise CheckpointError("adaptive state has different candidate weight vectors")
            if not np.allclose(state["ref"], self.ref):
                raise CheckpointError(f"adaptive state has ref {state['ref']}, this schedule {self.ref.tolist()}")
            self.asked = np.zeros(len(cand), dtype=bool)
            self.asked[np.asarray(state["asked"], dtype=np.int64)] = True
            self.weights_seen = [np.asarray(w, dtype=np.float64) for w in state["weights_seen"]]
            self.told_weights = [np.asarray(w, dtype=np.float64) for w in state["told_weights"]]
            self.told_scores = [np.asarray(s, dtype=np.float64) for s in state["told_scores"]]
            self.seed = int(state["seed"])
            self._rng = rng_from_state(state["rng"])
        except (KeyError, TypeError, ValueError, IndexError, WeightsError) as exc:
            raise CheckpointError(f"adaptive schedule state is malformed: {exc}") from None
