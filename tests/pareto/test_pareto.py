"""Tests of moalign.pareto: dominance, hypervolume, simplex grids and indicators.

Oracles: a brute-force O(N^2) dominance check and pymoo's compiled ``find_non_dominated``
(independent of moocore, which moalign delegates to) for the non-dominated mask; an exact
cell-counting hypervolume (tests below) for the hypervolume, since pymoo's HV itself calls
moocore; moocore's ``igd`` / ``igd_plus`` (moalign has its own code for those) and pymoo's
spacing indicator.
"""

from __future__ import annotations

import itertools
import math

import moocore
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import moalign
from moalign.pareto import (
    ParetoError,
    hypervolume,
    hypervolume_contributions,
    igd,
    igd_plus,
    is_nondominated,
    n_nondominated,
    simplex_extremes,
    simplex_grid,
    simplex_uniform,
    spacing,
)
from moalign.pareto import indicators as pareto

# ---------------------------------------------------------------------------- oracles


def brute_nondominated(p: np.ndarray) -> np.ndarray:
    ge = np.all(p[:, None, :] >= p[None, :, :], axis=2)  # ge[j, i]: j >= i everywhere
    gt = np.any(p[:, None, :] > p[None, :, :], axis=2)
    return ~np.any(ge & gt, axis=0)


def pymoo_nondominated(p: np.ndarray) -> np.ndarray:
    from pymoo.functions import load_function

    idx = load_function("find_non_dominated")(np.ascontiguousarray(-p))  # pymoo minimizes
    mask = np.zeros(len(p), dtype=bool)
    mask[np.asarray(idx, dtype=int)] = True
    return mask


def cell_hypervolume(p: np.ndarray, ref: np.ndarray) -> float:
    """Exact HV by cutting space at every coordinate and summing the dominated cells."""
    p = p[np.all(p > ref, axis=1)]
    if len(p) == 0:
        return 0.0
    cuts = [np.unique(np.r_[ref[k], p[:, k]]) for k in range(p.shape[1])]
    upper = np.stack(np.meshgrid(*[c[1:] for c in cuts], indexing="ij"), axis=-1)
    width = np.prod(np.stack(np.meshgrid(*[np.diff(c) for c in cuts], indexing="ij"), axis=-1), axis=-1)
    covered = np.zeros(upper.shape[:-1], dtype=bool)
    for q in p:
        covered |= np.all(upper <= q, axis=-1)
    return float(width[covered].sum())


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# coarse values make ties and exact duplicates common; fine values exercise general position
coarse = st.integers(-8, 8).map(lambda v: v / 4)
fine = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def point_sets(draw, max_n: int = 12, kmin: int = 2, kmax: int = 5, min_n: int = 1):
    k = draw(st.integers(kmin, kmax))
    n = draw(st.integers(min_n, max_n))
    elements = draw(st.sampled_from([coarse, fine]))
    return draw(arrays(np.float64, (n, k), elements=elements))


# ---------------------------------------------------------------------------- dominance


@settings(max_examples=150, deadline=None)
@given(point_sets(max_n=40))
def test_is_nondominated_matches_brute_force_and_pymoo(p):
    mask = is_nondominated(p)
    assert mask.dtype == bool and mask.shape == (len(p),)
    np.testing.assert_array_equal(mask, brute_nondominated(p))
    np.testing.assert_array_equal(mask, pymoo_nondominated(p))


@settings(max_examples=100, deadline=None)
@given(point_sets(max_n=60, kmin=2, kmax=2))
def test_numpy_reference_2d_matches(p):
    np.testing.assert_array_equal(pareto._nondominated_2d(p), brute_nondominated(p))


def test_duplicates_of_a_nondominated_point_are_all_kept():
    p = np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_array_equal(is_nondominated(p), [True, True, True, False, False])
    assert n_nondominated(p) == 3
    # the rule does not depend on the row order
    perm = [4, 2, 0, 3, 1]
    np.testing.assert_array_equal(is_nondominated(p[perm]), is_nondominated(p)[perm])


def test_weak_dominance_counts():
    # equal in one objective, better in the other: dominated
    np.testing.assert_array_equal(is_nondominated([[1, 1], [1, 2]]), [False, True])
    np.testing.assert_array_equal(is_nondominated([[1, 1, 1], [1, 1, 0]]), [True, False])


def test_single_objective_and_empty():
    np.testing.assert_array_equal(is_nondominated([[1.0], [3.0], [3.0], [2.0]]), [False, True, True, False])
    assert is_nondominated(np.zeros((0, 3))).shape == (0,)
    assert n_nondominated(np.zeros((0, 2))) == 0


# ---------------------------------------------------------------------------- hypervolume


@settings(max_examples=150, deadline=None)
@given(point_sets(max_n=7), st.data())
def test_hypervolume_matches_exact_cell_count(p, data):
    k = p.shape[1]
    ref = data.draw(arrays(np.float64, (k,), elements=coarse))
    assert close(hypervolume(p, ref), cell_hypervolume(p, ref))


@settings(max_examples=100, deadline=None)
@given(point_sets(max_n=200, kmin=2, kmax=2), arrays(np.float64, (2,), elements=coarse))
def test_hypervolume_2d_matches_numpy_reference(p, ref):
    assert close(hypervolume(p, ref), pareto._hypervolume_2d(p, ref))


def test_hypervolume_hand_computed():
    # staircase of three unit-wide columns of heights 3, 2, 1
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [0, 0]) == pytest.approx(6.0, rel=1e-15)
    # unit cube plus a 2 x 0.5 x 0.5 box overlapping it in a 1 x 0.5 x 0.5 block
    assert hypervolume([[1, 1, 1], [2, 0.5, 0.5]], [0, 0, 0]) == pytest.approx(1.25, rel=1e-15)
    # reference point not at the origin; one point beyond it in objective 1 only
    assert hypervolume([[3, 4], [5, 0]], [1, 1]) == pytest.approx(6.0, rel=1e-15)
    assert hypervolume([[2.0], [5.0]], [1.0]) == pytest.approx(4.0)


def test_points_not_strictly_dominating_ref_contribute_nothing():
    assert hypervolume([[1, 0], [0, 1], [-1, 5]], [0, 0]) == 0.0
    assert hypervolume([[1, 1], [1, 0], [5, 0]], [0, 0]) == pytest.approx(1.0)
    # documented result: a reference point that nothing dominates gives 0.0, not an error
    assert hypervolume([[1, 2], [2, 1]], [10, 10]) == 0.0
    assert hypervolume(np.zeros((0, 3)), [0, 0, 0]) == 0.0


@settings(max_examples=100, deadline=None)
@given(point_sets(max_n=10), st.data())
def test_hypervolume_invariances(p, data):
    k = p.shape[1]
    ref = np.full(k, -11.0)
    base = hypervolume(p, ref)
    # adding a point dominated by (or equal to) an existing one changes nothing
    i = data.draw(st.integers(0, len(p) - 1))
    worse = p[i] - data.draw(arrays(np.float64, (k,), elements=st.sampled_from([0.0, 0.25, 3.0])))
    assert close(hypervolume(np.vstack([p, worse]), ref), base)
    # permutation invariance
    perm = data.draw(st.permutations(range(len(p))))
    assert close(hypervolume(p[list(perm)], ref), base)
    # improving a point never lowers the hypervolume
    better = p.copy()
    better[i] += data.draw(arrays(np.float64, (k,), elements=st.sampled_from([0.0, 0.5, 2.0])))
    assert hypervolume(better, ref) >= base - 1e-9 * abs(base)


def test_hypervolume_strictly_increases_when_a_nondominated_point_improves():
    p = np.array([[1.0, 3.0, 0.5], [2.0, 2.0, 2.0], [3.0, 0.5, 1.0]])
    before = hypervolume(p, [0, 0, 0])
    p[1] += 0.1
    assert hypervolume(p, [0, 0, 0]) > before


def test_hypervolume_large_front_is_consistent_with_reference_2d():
    rng = np.random.default_rng(0)
    p = rng.random((20_000, 2))
    assert close(hypervolume(p, [0, 0]), pareto._hypervolume_2d(p, np.zeros(2)))


@settings(max_examples=80, deadline=None)
@given(point_sets(max_n=8, kmin=1, kmax=4))
def test_contributions_equal_leave_one_out(p):
    ref = np.full(p.shape[1], -5.0)
    total = hypervolume(p, ref)
    expected = [total - hypervolume(np.delete(p, i, axis=0), ref) for i in range(len(p))]
    np.testing.assert_allclose(hypervolume_contributions(p, ref), expected, rtol=1e-9, atol=1e-9)


def test_contributions_hand_case():
    p = np.array([[1.0, 2.0], [2.0, 1.0], [1.0, 2.0], [0.5, 0.5], [3.0, -1.0]])
    np.testing.assert_allclose(hypervolume_contributions(p, [0, 0]), [0, 1, 0, 0, 0])
    np.testing.assert_allclose(hypervolume_contributions([[3.0], [1.0], [2.0]], [0.0]), [1, 0, 0])


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("points", "ref", "match"),
    [
        ([[1.0, np.nan], [0.0, 1.0]], [0, 0], r"non-finite value nan at row 0, objective column 1"),
        ([[1.0, 2.0], [np.inf, 1.0]], [0, 0], r"non-finite value inf at row 1, objective column 0"),
        ([1.0, 2.0], [0, 0], r"2-D array .* got shape \(2,\)"),
        (np.zeros((2, 2, 2)), [0, 0], r"2-D array .* got shape \(2, 2, 2\)"),
        (np.zeros((3, 0)), [], r"K >= 1"),
        ([["a", "b"]], [0, 0], r"array of numbers"),
        ([[1.0, 2.0]], [0, 0, 0], r"reference point must be a vector of length 2 .* got shape \(3,\)"),
        ([[1.0, 2.0]], 0.0, r"reference point must be a vector of length 2"),
        ([[1.0, 2.0]], [0, np.nan], r"reference point must be finite"),
    ],
)
def test_bad_input_names_the_problem(points, ref, match):
    with pytest.raises(ParetoError, match=match) as info:
        hypervolume(points, ref)
    assert isinstance(info.value, ValueError) and isinstance(info.value, moalign.MoalignError)
    if np.ndim(ref) == 1 and len(ref) == 2 and "reference" not in match:
        with pytest.raises(ParetoError, match=match):
            is_nondominated(points)


# ---------------------------------------------------------------------------- simplex


@pytest.mark.parametrize(("k", "n"), [(1, 1), (1, 5), (2, 1), (2, 10), (3, 4), (4, 6), (5, 3), (6, 12)])
def test_simplex_grid_is_the_das_dennis_lattice(k, n):
    grid = simplex_grid(k, n)
    assert grid.shape == (math.comb(n + k - 1, k - 1), k)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    counts = grid * n
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    assert grid.min() >= 0
    assert len({tuple(np.round(counts).astype(int)) for counts in counts}) == len(grid)  # all distinct
    expected = {c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n}
    assert {tuple(r) for r in np.round(counts).astype(int)} == expected
    np.testing.assert_array_equal(grid[0], np.eye(k)[0])
    np.testing.assert_array_equal(grid[-1], np.eye(k)[-1])


def test_simplex_grid_small_case_in_order():
    np.testing.assert_allclose(simplex_grid(2, 4), [[1, 0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0, 1]])


@pytest.mark.parametrize(("k", "n"), [(0, 3), (3, 0), (2.5, 3), (3, -1), (True, 3), ("3", 2)])
def test_simplex_grid_rejects_bad_sizes(k, n):
    with pytest.raises(ParetoError, match=r"must be an integer >= 1"):
        simplex_grid(k, n)


def test_simplex_grid_refuses_huge_grids():
    with pytest.raises(ParetoError, match=rf"would have {math.comb(29, 9)} points"):
        simplex_grid(10, 20, max_points=1_000_000)


def test_simplex_extremes_and_uniform():
    np.testing.assert_array_equal(simplex_extremes(3), np.eye(3))
    w = simplex_uniform(3, 20_000, seed=1)
    assert w.shape == (20_000, 3) and w.min() >= 0
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(w, simplex_uniform(3, 20_000, seed=1))
    assert not np.array_equal(w, simplex_uniform(3, 20_000, seed=2))
    # uniform on the 2-simplex: each coordinate is Beta(1, 2): mean 1/3, variance 1/18
    np.testing.assert_allclose(w.mean(axis=0), 1 / 3, atol=0.01)
    np.testing.assert_allclose(w.var(axis=0), 1 / 18, atol=0.004)
    assert simplex_uniform(2, 0, seed=0).shape == (0, 2)
    with pytest.raises(ParetoError, match="k"):
        simplex_uniform(0, 3)


# ---------------------------------------------------------------------------- indicators


def test_igd_and_igd_plus_hand_cases():
    front = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert igd(front, front) == 0.0 and igd_plus(front, front) == 0.0
    assert igd([[0.0, 0.0]], front) == pytest.approx(1.0)
    assert igd_plus([[0.0, 0.0]], front) == pytest.approx(1.0)
    # a point beyond the reference front: IGD still counts the distance, IGD+ does not
    assert igd([[1.0, 1.0]], front) == pytest.approx(1.0)
    assert igd_plus([[1.0, 1.0]], front) == 0.0
    # Ishibuchi et al. (2015), example 4, in maximization form (negated): A is better than B,
    # IGD says the opposite, IGD+ agrees
    z = -np.array([[10, 0], [6, 1], [2, 2], [1, 6], [0, 10]], dtype=float)
    a = -np.array([[4, 2], [3, 3], [2, 4]], dtype=float)
    b = -np.array([[8, 2], [4, 4], [2, 8]], dtype=float)
    assert igd(a, z) > igd(b, z)
    assert igd_plus(a, z) < igd_plus(b, z)


@settings(max_examples=60, deadline=None)
@given(point_sets(max_n=15, min_n=1), st.data())
def test_igd_matches_moocore(p, data):
    z = data.draw(arrays(np.float64, (data.draw(st.integers(1, 15)), p.shape[1]), elements=fine))
    assert close(igd(p, z), moocore.igd(p, z, maximise=True))
    assert close(igd_plus(p, z), moocore.igd_plus(p, z, maximise=True))


def test_indicator_bad_input():
    with pytest.raises(ParetoError, match="2 objectives but reference_front has 3"):
        igd([[1.0, 2.0]], [[1.0, 2.0, 3.0]])
    with pytest.raises(ParetoError, match="at least one point"):
        igd_plus(np.zeros((0, 2)), [[1.0, 2.0]])
    with pytest.raises(ParetoError, match="reference_front has a non-finite value"):
        igd([[1.0, 2.0]], [[1.0, np.nan]])
    with pytest.raises(ParetoError, match="at least 2 points"):
        spacing([[1.0, 2.0]])


def test_spacing_hand_cases():
    assert spacing([[0, 0], [1, 0], [2, 0], [3, 0]]) == 0.0
    # nearest L1 distances 1, 1, 2: mean 4/3, sample variance 1/3
    assert spacing([[0, 0], [1, 0], [3, 0]]) == pytest.approx(math.sqrt(1 / 3))
    # L1, not Euclidean: nearest distances 2, 2, 8, mean 4, squared deviations 4 + 4 + 16
    assert spacing([[0, 0], [1, 1], [5, 5]]) == pytest.approx(math.sqrt(24 / 2))


@settings(max_examples=40, deadline=None)
@given(point_sets(max_n=20, min_n=2))
def test_spacing_matches_pymoo_up_to_divisor(p):
    from pymoo.indicators.spacing import SpacingIndicator

    n = len(p)
    theirs = SpacingIndicator(zero_to_one=False).do(p) * math.sqrt(n / (n - 1))  # pymoo divides by n
    assert math.isclose(spacing(p), theirs, rel_tol=1e-9, abs_tol=1e-9)


# ---------------------------------------------------------------------------- exports


def test_front_classes_are_reexported():
    import moalign.pareto as package
    from moalign.pareto import front as paretofront

    assert package.ParetoFront is paretofront.ParetoFront is moalign.ParetoFront
    assert package.FrontPoint is paretofront.FrontPoint
    assert package.plot_fronts is paretofront.plot_fronts
    assert package.hypervolume is pareto.hypervolume
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018
