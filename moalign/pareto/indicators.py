"""Pareto dominance, hypervolume, simplex grids and front-quality indicators.

Convention: every objective is **maximized**; a point set is an array ``[N, K]`` (one row per
point, one column per objective). Point ``a`` *dominates* ``b`` when ``a >= b`` in every
objective and ``a > b`` in at least one.

Speed: :func:`is_nondominated`, :func:`hypervolume` and :func:`hypervolume_contributions`
validate their input and then call ``moocore`` (the C library of López-Ibáñez et al.).
``benchmarks/pareto_bench.py`` measures it against pymoo and our own NumPy code on the same
arrays (N = 1e3..1e5, K = 2..5): moocore is the fastest for the non-dominated filter (NumPy
1.2-1.7x slower) and within noise of NumPy for the 2-D hypervolume, so one code path is kept.
The NumPy versions for K = 2 (:func:`_nondominated_2d`, :func:`_hypervolume_2d`) remain as
independent references for the benchmark and the tests.

:class:`ParetoFront` and :class:`FrontPoint` live in :mod:`moalign.pareto.front`.
"""

from __future__ import annotations

from math import comb
from typing import Any

import numpy as np

from moalign.errors import MoalignError

__all__ = [
    "ParetoError",
    "hypervolume",
    "hypervolume_contributions",
    "igd",
    "igd_plus",
    "is_nondominated",
    "n_nondominated",
    "simplex_extremes",
    "simplex_grid",
    "simplex_uniform",
    "spacing",
]

# moocore's compile-time limits on the number of objectives
_MAX_OBJECTIVES_NONDOMINATED = 255
_MAX_OBJECTIVES_HYPERVOLUME = 31
# largest simplex grid simplex_grid builds unless told otherwise
_MAX_GRID_POINTS = 10_000_000
# elements of the [chunk, N, K] temporary used by igd_plus
_CHUNK_ELEMENTS = 4_000_000

class ParetoError(MoalignError, ValueError):
    """A point set, reference point or grid size is unusable (wrong shape, non-finite, ...)."""


# ---------------------------------------------------------------------------- validation


def _as_points(points: Any, name: str = "points", *, max_k: int | None = None) -> np.ndarray:
    """Return ``points`` as a finite float64 array ``[N, K]`` or raise :class:`ParetoError`."""
    try:
        p = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParetoError(f"{name} must be a 2-D array of numbers [N, K], got {type(points).__name__}") from None
    if p.ndim != 2 or p.shape[1] == 0:
        raise ParetoError(
            f"{name} must be a 2-D array [N, K] (one row per point, one column per objective, "
            f"K >= 1), got shape {p.shape}"
        )
    if max_k is not None and p.shape[1] > max_k:
        raise ParetoError(f"{name} has {p.shape[1]} objectives; at most {max_k} are supported")
    if not np.isfinite(p).all():
        row, col = np.argwhere(~np.isfinite(p))[0]
        raise ParetoError(f"{name} has a non-finite value {p[row, col]} at row {row}, objective column {col}")
    return p


def _as_ref(ref: Any, k: int, name: str = "reference point") -> np.ndarray:
    """Return ``ref`` as a finite float64 vector of length ``k`` or raise :class:`ParetoError`."""
    try:
        r = np.asarray(ref, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParetoError(f"{name} must be a vector of {k} numbers, got {ref!r}") from None
    if r.ndim != 1 or r.shape[0] != k:
        raise ParetoError(f"{name} must be a vector of length {k} (one value per objective), got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ParetoError(f"{name} must be finite, got {r.tolist()}")
    return r


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParetoError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------- dominance


def is_nondominated(points: Any) -> np.ndarray:
    """Boolean mask ``[N]``: True where no other point dominates the row (maximization).

    Duplicate rule: exact duplicates never dominate each other, so **every copy** of a
    non-dominated point is kept (True). The mask is therefore permutation-equivariant: it
    does not depend on the order of the rows.

    Complexity: O(N log N) for K = 2 and 3 and O(N log^{K-2} N) for K >= 4 (the dimension-sweep
    algorithms of Kung, Luccio & Preparata 1975, as implemented in moocore).
    """
    p = _as_points(points, max_k=_MAX_OBJECTIVES_NONDOMINATED)
    if p.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    if p.shape[1] == 1:
        return p[:, 0] == p[:, 0].max()
    import moocore

    return moocore.is_nondominated(p, maximise=True, keep_weakly=True)


def n_nondominated(points: Any) -> int:
    """Number of rows of ``points`` that no other row dominates (copies of a point each count)."""
    return int(np.count_nonzero(is_nondominated(points)))


def _nondominated_2d(p: np.ndarray) -> np.ndarray:
    """NumPy reference for K = 2 (same duplicate rule): one lexicographic sort, O(N log N).

    Sorted by x descending (ties: y descending), a point is dominated iff a point with the
    same x has a larger y, or a point with a strictly larger x has a y at least as large.
    """
    n = p.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    x, y = p[:, 0], p[:, 1]
    order = np.lexsort((-y, -x))
    xs, ys = x[order], y[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    group = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    best_in_group = ys[starts][group]
    best_before = np.full(starts.size, -np.inf)
    best_before[1:] = np.maximum.accumulate(ys)[starts[1:] - 1]
    dominated = (ys < best_in_group) | (best_before[group] >= ys)
    mask = np.empty(n, dtype=bool)
    mask[order] = ~dominated
    return mask


# ---------------------------------------------------------------------------- hypervolume


def hypervolume(points: Any, ref: Any) -> float:
    """Exact hypervolume (maximization): the volume of the union of boxes ``[ref, p]``.

    ``ref`` ``[K]`` is the reference point; store it with the front so fronts of different
    methods stay comparable. A point that does not strictly dominate ``ref`` (``p_k > ref_k``
    for every k) encloses no volume and contributes nothing. Documented result: when no point
    strictly dominates ``ref`` (including an empty set) the hypervolume is ``0.0``; this is not
    an error. Non-finite points, a wrong shape or a ``ref`` of the wrong length raise
    :class:`ParetoError`.

    Algorithms (moocore): O(N log N) dimension sweep for K = 2, HV3D+ for K = 3, HV4D+ for
    K = 4 (Guerreiro & Fonseca 2018), inclusion-exclusion or the recursive algorithm of
    Fonseca, Paquete & López-Ibáñez (2006) for K >= 5.
    """
    p = _as_points(points, max_k=_MAX_OBJECTIVES_HYPERVOLUME)
    r = _as_ref(ref, p.shape[1])
    if p.shape[0] == 0:
        return 0.0
    import moocore

    # moocore minimizes; negating both is cheaper than its ``maximise=True`` path
    return float(moocore.hypervolume(np.negative(p), ref=np.negative(r)))


def _hypervolume_2d(p: np.ndarray, r: np.ndarray) -> float:
    """NumPy reference for K = 2: sort by x descending, sum the slabs a running max of y adds."""
    keep = (p[:, 0] > r[0]) & (p[:, 1] > r[1])
    q = p[keep]
    if q.shape[0] == 0:
        return 0.0
    order = np.argsort(-q[:, 0], kind="stable")
    top = np.maximum.accumulate(q[order, 1])
    heights = np.diff(np.r_[r[1], top])
    return float(np.dot(q[order, 0] - r[0], heights))


def hypervolume_contributions(points: Any, ref: Any) -> np.ndarray:
    """Exclusive hypervolume contribution of each point: ``HV(X) - HV(X without that row)``.

    A dominated point, a point that does not strictly dominate ``ref`` and each copy of a
    duplicated point contribute 0 (removing it leaves the volume unchanged). A dominated point
    still *reduces* the contribution of the point that dominates it, exactly as the definition
    says. Used by the adaptive weight schedule to find the largest gap in a front.
    """
    p = _as_points(points, max_k=_MAX_OBJECTIVES_HYPERVOLUME)
    r = _as_ref(ref, p.shape[1])
    n = p.shape[0]
    if n == 0:
        return np.zeros(0)
    if p.shape[1] == 1:
        gains = np.zeros(n)
        values = np.maximum(p[:, 0], r[0])
        best = int(np.argmax(values))
        second = np.max(np.delete(values, best)) if n > 1 else r[0]
        gains[best] = values[best] - second
        return gains
    import moocore

    return moocore.hv_contributions(np.negative(p), ref=np.negative(r), ignore_dominated=False)


# ---------------------------------------------------------------------------- simplex


def simplex_grid(k: int, n: int, *, max_points: int = _MAX_GRID_POINTS) -> np.ndarray:
    """Das-Dennis lattice on the probability simplex: every weight vector with entries in
    multiples of ``1/n`` (Das & Dennis 1998).

    Returns ``[M, k]`` with ``M = C(n + k - 1, k - 1)`` rows, each summing to 1, in
    lexicographically descending order of the integer counts (the first row is
    ``[1, 0, ..., 0]``, the last ``[0, ..., 0, 1]``). Raises :class:`ParetoError` when ``k`` or
    ``n`` is not a positive integer or when ``M`` exceeds ``max_points``.
    """
    k = _check_int(k, "k (number of objectives)", 1)
    n = _check_int(n, "n (divisions of the simplex)", 1)
    m = comb(n + k - 1, k - 1)
    if m > max_points:
        raise ParetoError(f"simplex_grid(k={k}, n={n}) would have {m} points (more than max_points={max_points})")
    cache: dict[tuple[int, int], np.ndarray] = {}

    def counts(dims: int, total: int) -> np.ndarray:
        # all non-negative integer vectors of length dims summing to total, first entry descending
        key = (dims, total)
        if key not in cache:
            if dims == 1:
                cache[key] = np.array([[total]], dtype=np.int64)
            else:
                blocks = []
                for first in range(total, -1, -1):
                    rest = counts(dims - 1, total - first)
                    blocks.append(np.column_stack([np.full(rest.shape[0], first, dtype=np.int64), rest]))
                cache[key] = np.concatenate(blocks)
        return cache[key]

    return counts(k, n) / float(n)


def simplex_extremes(k: int) -> np.ndarray:
    """The ``k`` vertices of the simplex (one objective at full weight each): ``[k, k]`` identity."""
    return np.eye(_check_int(k, "k (number of objectives)", 1))


def simplex_uniform(k: int, m: int, seed: int | None = None) -> np.ndarray:
    """``m`` weight vectors drawn uniformly from the simplex (Dirichlet(1, ..., 1)), ``[m, k]``.

    Normalized exponential draws (Rubinstein 1982) from ``numpy.random.default_rng(seed)``, so a
    seed gives the same vectors on every run.
    """
    k = _check_int(k, "k (number of objectives)", 1)
    m = _check_int(m, "m (number of weight vectors)", 0)
    draws = np.random.default_rng(seed).standard_exponential((m, k))
    return draws / draws.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------- indicators


def _pair(points: Any, reference_front: Any) -> tuple[np.ndarray, np.ndarray]:
    a = _as_points(points)
    z = _as_points(reference_front, "reference_front")
    if a.shape[1] != z.shape[1]:
        raise ParetoError(
            f"points have {a.shape[1]} objectives but reference_front has {z.shape[1]}"
        )
    if a.shape[0] == 0 or z.shape[0] == 0:
        raise ParetoError("points and reference_front must each hold at least one point")
    return a, z


def igd(points: Any, reference_front: Any) -> float:
    """Inverted generational distance: mean over the reference front of the Euclidean distance
    to the nearest point (Coello & Reyes Sierra 2004). Lower is better; 0 when every reference
    point is reached."""
    from scipy.spatial import cKDTree

    a, z = _pair(points, reference_front)
    distances, _ = cKDTree(a).query(z, k=1)
    return float(np.mean(distances))


def igd_plus(points: Any, reference_front: Any) -> float:
    """IGD+ (Ishibuchi, Masuda, Tanigaki & Nojima 2015), maximization form.

    For a reference point ``z`` and a point ``a`` only the shortfall counts:
    ``d+(z, a) = sqrt(sum_k max(z_k - a_k, 0)^2)``; IGD+ is the mean over ``z`` of the smallest
    ``d+``. Weakly Pareto compliant, unlike IGD. Lower is better.
    """
    a, z = _pair(points, reference_front)
    chunk = max(1, _CHUNK_ELEMENTS // (a.shape[0] * a.shape[1]))
    best = np.empty(z.shape[0])
    for start in range(0, z.shape[0], chunk):
        shortfall = np.maximum(z[start : start + chunk, None, :] - a[None, :, :], 0.0)
        best[start : start + chunk] = np.sqrt(np.min(np.sum(shortfall**2, axis=2), axis=1))
    return float(np.mean(best))


def spacing(points: Any) -> float:
    """Schott's (1995) spacing: the sample standard deviation (divisor ``N - 1``) of each
    point's L1 distance to its nearest neighbour. 0 for evenly spaced points; needs N >= 2."""
    from scipy.spatial import cKDTree

    p = _as_points(points)
    if p.shape[0] < 2:
        raise ParetoError(f"spacing needs at least 2 points, got {p.shape[0]}")
    distances, _ = cKDTree(p).query(p, k=2, p=1)
    nearest = distances[:, 1]
    return float(np.sqrt(np.sum((nearest - nearest.mean()) ** 2) / (p.shape[0] - 1)))
