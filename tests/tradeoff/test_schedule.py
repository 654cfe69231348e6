"""Weight schedules and MGDA: simplex invariants, state round-trips, hand-computed cases, oracles."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from moalign.errors import CheckpointError, ConfigError, WeightsError
from moalign.pareto import hypervolume, simplex_grid
from moalign.schedule import (
    AdaptiveFront,
    AnnealedWeights,
    DirichletWeights,
    FixedWeights,
    GridSweep,
    MGDAWeights,
    Schedule,
    ScheduleExhausted,
    available_schedules,
    get_schedule,
    min_norm_weights,
    min_norm_weights_from_gram,
    register_schedule,
)


def assert_on_simplex(w: np.ndarray, k: int) -> None:
    assert isinstance(w, np.ndarray) and w.dtype == np.float64 and w.shape == (k,)
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    assert abs(w.sum() - 1.0) <= 1e-12


def concave_scores(w: np.ndarray) -> np.ndarray:
    """A made-up response of a training run to its weights (monotone in each weight)."""
    return np.sqrt(w + 0.01) + 0.05 * w.sum()


# ------------------------------------------------------------------------------ simplex property

@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 5), seed=st.integers(0, 2**31 - 1), alpha=st.floats(0.02, 20.0))
def test_dirichlet_asks_are_always_on_the_simplex(k, seed, alpha):
    sched = DirichletWeights(k, alpha=alpha, seed=seed)
    for w in [sched.ask(), *sched.ask_batch(16)]:
        assert_on_simplex(w, k)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 4), n=st.integers(1, 6))
def test_grid_sweep_yields_the_whole_grid_on_the_simplex(k, n):
    sweep = GridSweep(k, n)
    asked = list(sweep)
    assert len(asked) == len(sweep) == math.comb(n + k - 1, k - 1)
    np.testing.assert_array_equal(np.stack(asked), simplex_grid(k, n))
    for w in asked:
        assert_on_simplex(w, k)
    assert sweep.done
    with pytest.raises(ScheduleExhausted, match=f"all {len(sweep)} weight vectors"):
        sweep.ask()


simplex_vectors = st.integers(2, 5).flatmap(
    lambda k: st.tuples(
        st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 1e-3),
        st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k).filter(lambda v: sum(v) > 1e-3),
    )
)


@settings(max_examples=40, deadline=None)
@given(pair=simplex_vectors, steps=st.integers(1, 50), t=st.integers(0, 80),
       kind=st.sampled_from(["linear", "cosine"]))
def test_annealed_and_fixed_asks_are_on_the_simplex(pair, steps, t, kind):
    start, end = (np.array(v) / sum(v) for v in pair)
    k = len(start)
    sched = AnnealedWeights(start, end, steps, kind=kind)
    sched.tell({"step": t})
    assert_on_simplex(sched.ask(), k)
    assert_on_simplex(FixedWeights(start).ask(), k)


@settings(max_examples=20, deadline=None)
@given(k=st.integers(2, 4), seed=st.integers(0, 1000))
def test_adaptive_and_mgda_asks_are_on_the_simplex(k, seed):
    rng = np.random.default_rng(seed)
    front = AdaptiveFront(k, ref=np.full(k, -1.0), candidates=3, seed=seed)
    while not front.done:
        w = front.ask()
        assert_on_simplex(w, k)
        front.tell({"weights": w, "scores": rng.normal(size=k)})
    mgda = MGDAWeights(k)
    assert_on_simplex(mgda.ask(), k)
    mgda.tell({"gradients": torch.tensor(rng.normal(size=(k, 7)))})
    assert_on_simplex(mgda.ask(), k)


# ------------------------------------------------------------------------------ state round-trips

def _drive(sched: Schedule, i: int, w: np.ndarray) -> None:
    rng = np.random.default_rng(i)
    if isinstance(sched, AdaptiveFront):
        sched.tell({"weights": w, "scores": concave_scores(w)})
    elif isinstance(sched, MGDAWeights):
        sched.tell({"gradients": torch.tensor(rng.normal(size=(sched.num_objectives, 5)))})
    elif isinstance(sched, AnnealedWeights) and i == 3:
        sched.tell({"step": 7})
    else:
        sched.tell({"loss": 1.0})


FACTORIES = {
    "fixed": lambda: FixedWeights([0.2, 0.3, 0.5]),
    "sweep": lambda: GridSweep(3, 3),
    "dirichlet": lambda: DirichletWeights(3, alpha=[0.5, 1.0, 2.0], seed=11),
    "anneal": lambda: AnnealedWeights([1, 0, 0], [0, 0.5, 0.5], steps=8, kind="cosine"),
    "adaptive": lambda: AdaptiveFront(3, ref=[0.0, 0.0, 0.0], candidates=3, seed=5),
    "mgda": lambda: MGDAWeights(3),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_state_round_trip_continues_the_same_stream(name):
    make = FACTORIES[name]
    steps, cut = 9, 4
    full = make()
    expected = []
    for i in range(steps):
        w = full.ask()
        expected.append(w)
        _drive(full, i, w)

    first = make()
    for i in range(cut):
        _drive(first, i, first.ask())
    state = json.loads(json.dumps(first.state_dict()))  # JSON-serializable
    resumed = make()
    resumed.load_state_dict(state)
    for i in range(cut, steps):
        w = resumed.ask()
        np.testing.assert_array_equal(w, expected[i])
        _drive(resumed, i, w)
    assert len({tuple(np.round(w, 12)) for w in expected}) > 1 or name == "fixed"


def test_loading_a_state_of_another_kind_or_size_is_an_error():
    with pytest.raises(CheckpointError, match="'sweep'.*'dirichlet'"):
        DirichletWeights(3).load_state_dict(GridSweep(3, 2).state_dict())
    with pytest.raises(CheckpointError, match="2 objectives"):
        DirichletWeights(3).load_state_dict(DirichletWeights(2).state_dict())
    with pytest.raises(CheckpointError, match="n=2"):
        GridSweep(3, 3).load_state_dict(GridSweep(3, 2).state_dict())


# ------------------------------------------------------------------------------ hand-computed

def test_annealed_weights_hand_computed():
    lin = AnnealedWeights([1, 0], [0, 1], steps=4)
    got = [lin.ask()[0] for _ in range(6)]
    assert got == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0, 0.0])
    cos = AnnealedWeights([1, 0], [0, 1], steps=4, kind="cosine")
    cos.tell({"step": 1})
    assert cos.ask() == pytest.approx([0.5 + 0.5 * math.cos(math.pi / 4), 0.5 - 0.5 * math.cos(math.pi / 4)])
    cos.tell({"step": 2})
    assert cos.ask() == pytest.approx([0.5, 0.5])


def test_dirichlet_is_seeded_and_has_the_right_mean():
    a = DirichletWeights(3, alpha=[1.0, 2.0, 5.0], seed=3)
    b = DirichletWeights(3, alpha=[1.0, 2.0, 5.0], seed=3)
    np.testing.assert_array_equal(a.ask_batch(5), b.ask_batch(5))
    assert not np.array_equal(a.ask_batch(5), DirichletWeights(3, alpha=[1.0, 2.0, 5.0], seed=4).ask_batch(5))
    mean = a.ask_batch(20_000).mean(axis=0)
    np.testing.assert_allclose(mean, [1 / 8, 2 / 8, 5 / 8], atol=0.01)


def test_adaptive_front_follows_the_documented_rule():
    front = AdaptiveFront(2, ref=[0.0, 0.0], candidates=4)
    scores = {
        (1.0, 0.0): [1.0, 0.1],
        (0.0, 1.0): [0.1, 1.0],
        (0.5, 0.5): [0.8, 0.3],
        (0.25, 0.75): [0.5, 0.8],
    }
    asked = []
    for _ in range(4):
        w = front.ask()
        asked.append(tuple(w))
        if len(asked) == 4:
            break
        front.tell({"weights": w, "scores": scores[tuple(w)]})
        if len(asked) == 3:
            # neighbours (A, C) box 0.2 x 0.2, (C, B) box 0.7 x 0.7; (A, B) encloses C
            gaps = front.gaps()
            assert [(i, j) for i, j, _ in gaps] == [(1, 2), (0, 2)]
            assert [g for *_, g in gaps] == pytest.approx([0.49, 0.04])
    # anchors first, then the midpoint of the only gap, then the largest gap (C, B)
    assert asked == [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.25, 0.75)]
    front.tell({"weights": asked[-1], "scores": scores[asked[-1]]})
    # largest gap now C-D (0.3 x 0.5) and D-B (0.4 x 0.2) have no untried candidate between
    # their weights, so the next pair, A-C, gives its midpoint (0.75, 0.25)
    assert [round(g, 12) for *_, g in front.gaps()] == [0.15, 0.08, 0.04]
    assert tuple(front.ask()) == (0.75, 0.25)
    assert front.done
    with pytest.raises(ScheduleExhausted, match="all 5 candidate"):
        front.ask()


def test_adaptive_front_skips_a_gap_with_no_candidate_between_its_weights():
    front = AdaptiveFront(2, ref=[0.0, 0.0], candidates=8)  # first weights 1, 0.875, ..., 0
    told = [((1.0, 0.0), (1.0, 0.1)), ((0.0, 1.0), (0.1, 1.0)), ((0.5, 0.5), (0.8, 0.3)),
            ((0.375, 0.625), (0.6, 0.75)), ((0.25, 0.75), (0.5, 0.8))]
    for w, s in told:
        front.tell({"weights": w, "scores": s})
    # gaps: (0.5,0.5)-(0.375,0.625) 0.2 x 0.45 is largest, but no untried grid weight lies
    # between them (0.625 is nearest their midpoint yet outside); next (0.25,0.75)-(0,1): 0.08
    assert [round(g, 12) for *_, g in front.gaps()] == [0.09, 0.08, 0.04, 0.005]
    assert tuple(front.ask()) == (0.125, 0.875)


def test_adaptive_front_falls_back_to_space_filling_without_a_front():
    front = AdaptiveFront(2, ref=[0.0, 0.0], candidates=4)
    for s in ([1.0, 1.0], [0.5, 0.5]):  # the second run is dominated: no pair to measure
        front.tell({"weights": front.ask(), "scores": s})
    assert front.gaps() == []
    assert tuple(front.ask()) == (0.5, 0.5)  # farthest from both vertices


@pytest.mark.parametrize("k", [2, 3])
def test_adaptive_gaps_are_hypervolume_gains_of_neighbour_local_ideals(k):
    rng = np.random.default_rng(k)
    pts = rng.dirichlet(np.ones(k), size=12) ** 0.5  # a non-dominated cloud on a concave shell
    front = AdaptiveFront(k, ref=np.zeros(k), candidates=2)
    for i, p in enumerate(pts):
        front.tell({"weights": np.eye(k)[i % k], "scores": p})
    gaps = front.gaps()
    assert gaps
    base = hypervolume(pts, np.zeros(k))
    for i, j, gap in gaps:
        hi = np.maximum(pts[i], pts[j])
        assert gap == pytest.approx(hypervolume(np.vstack([pts, hi]), np.zeros(k)) - base, rel=1e-9)
        lo = np.minimum(pts[i], pts[j])
        others = np.delete(pts, [i, j], axis=0)
        assert not np.any(np.all((others >= lo) & (others <= hi), axis=1))
    if k == 2:  # neighbours are exactly the adjacent points along the front
        order = np.argsort(pts[:, 0])
        adjacent = {tuple(sorted((int(a), int(b)))) for a, b in zip(order[:-1], order[1:], strict=True)}
        assert {(i, j) for i, j, _ in gaps} == adjacent


# ------------------------------------------------------------------------------ MGDA

def test_mgda_two_conflicting_gradients_hand_computed():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    w = min_norm_weights(g)
    # closed form: w1 = (G22 - G12) / (G11 + G22 - 2 G12) = 3 / 5
    assert w.tolist() == pytest.approx([0.6, 0.4])
    d = w @ g
    inner = (g @ d).tolist()
    assert all(x >= 0 for x in inner)
    assert inner == pytest.approx([0.2, 0.2])  # both equal ||d||^2 = 0.2


def test_mgda_identical_gradients_return_that_gradient():
    g = torch.tensor([3.0, -4.0, 0.5])
    for k in (2, 4):
        grads = g.repeat(k, 1)
        d = min_norm_weights(grads) @ grads
        assert torch.allclose(d, g)


def test_mgda_pareto_stationary_and_redundant_gradients():
    opposite = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    assert torch.allclose(min_norm_weights(opposite) @ opposite, torch.zeros(2), atol=1e-7)
    # the third gradient is the min-norm point of the hull itself
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [2.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(min_norm_weights(g) @ g, torch.tensor([0.5, 0.5], dtype=torch.float64))


def _slsqp_min_norm(gram: np.ndarray) -> np.ndarray:
    k = len(gram)
    gram = gram / np.max(np.diag(gram))  # SLSQP's tolerances are absolute
    res = minimize(
        lambda w: w @ gram @ w, np.full(k, 1.0 / k), jac=lambda w: 2 * gram @ w, method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(k)}],
        options={"ftol": 1e-14, "maxiter": 2000},
    )
    assert res.success, res.message
    return res.x


@pytest.mark.parametrize("seed", range(30))
def test_mgda_frank_wolfe_matches_scipy_slsqp(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 9))
    p = int(rng.integers(2, 40))
    g = rng.normal(size=(k, p)) + rng.normal(size=p)  # a shared component makes it interesting
    gram = g @ g.T
    w = min_norm_weights(torch.tensor(g)).numpy()
    ref = _slsqp_min_norm(gram)
    f, f_ref = w @ gram @ w, ref @ gram @ ref
    scale = np.max(np.diag(gram))
    assert f <= f_ref + 1e-9 * scale  # never worse than SLSQP
    assert f == pytest.approx(f_ref, abs=1e-9 * scale)
    # the min-norm point d is unique even when the weights are not
    np.testing.assert_allclose(w @ g, ref @ g, atol=1e-5 * np.sqrt(scale))


@settings(max_examples=40, deadline=None)
@given(k=st.integers(2, 7), p=st.integers(1, 20), seed=st.integers(0, 10_000))
def test_mgda_direction_is_a_common_ascent_direction(k, p, seed):
    g = np.random.default_rng(seed).normal(size=(k, p))
    w = min_norm_weights_from_gram(g @ g.T)
    d = w @ g
    scale = np.max(np.sum(g * g, axis=1))
    assert np.all(g @ d >= d @ d - 1e-9 * scale)


def test_mgda_inputs_outputs_and_schedule():
    parts = [torch.randn(2, 3), torch.randn(6)]
    w = min_norm_weights(parts)
    assert w.dtype == torch.float32 and w.shape == (2,)
    assert min_norm_weights(torch.randn(3, 5, dtype=torch.bfloat16)).dtype == torch.float32
    with pytest.raises(ConfigError, match=r"\[K, P\]"):
        min_norm_weights(torch.randn(5))
    bad = torch.randn(3, 4)
    bad[2, 1] = float("nan")
    with pytest.raises(ConfigError, match="objective 2"):
        min_norm_weights(bad)
    sched = MGDAWeights(2)
    assert sched.ask().tolist() == [0.5, 0.5]
    sched.tell({"gram": [[1.0, -1.0], [-1.0, 2.0]]})
    assert sched.ask() == pytest.approx([0.6, 0.4])
    with pytest.raises(ConfigError, match="2 objectives"):
        sched.tell({"gradients": torch.randn(3, 4)})
    with pytest.raises(ConfigError, match="'gradients'"):
        sched.tell({"loss": 1.0})


# ------------------------------------------------------------------------------ registry & errors

def test_get_schedule_registry(monkeypatch):
    assert set(available_schedules()) >= {"fixed", "sweep", "dirichlet", "anneal", "adaptive", "mgda"}
    assert get_schedule("fixed", 4).ask() == pytest.approx([0.25] * 4)
    assert get_schedule([0.3, 0.7], 2).ask() == pytest.approx([0.3, 0.7])
    assert len(get_schedule({"name": "sweep", "n": 10}, 2)) == 11
    assert isinstance(get_schedule("dirichlet", 3), DirichletWeights)
    assert isinstance(get_schedule("mgda", 3), MGDAWeights)
    anneal = get_schedule({"name": "anneal", "start": [1, 0], "end": [0, 1], "steps": 2}, 2)
    assert anneal.ask() == pytest.approx([1, 0])
    adaptive = get_schedule({"name": "adaptive", "ref": [0, 0]}, 2)
    assert isinstance(adaptive, AdaptiveFront) and len(adaptive) == 11
    sched = GridSweep(2, 3)
    assert get_schedule(sched, 2) is sched
    from moalign.tradeoff import schedule as schedule_module

    monkeypatch.setattr(schedule_module.SCHEDULES, "registered", dict(schedule_module.SCHEDULES.registered))
    register_schedule("always_first", lambda k: FixedWeights(np.eye(k)[0]))
    assert get_schedule("always_first", 3).ask().tolist() == [1.0, 0.0, 0.0]


def test_get_schedule_errors_name_the_problem():
    with pytest.raises(ConfigError, match="did you mean 'sweep'"):
        get_schedule("swep", 2)
    with pytest.raises(ConfigError, match=r"needs \['start', 'end', 'steps'\]"):
        get_schedule("anneal", 2)
    with pytest.raises(ConfigError, match=r"does not take \['m'\]"):
        get_schedule({"name": "sweep", "m": 3}, 2)
    with pytest.raises(ConfigError, match="for 3 objectives, not 2"):
        get_schedule(GridSweep(3, 2), 2)
    with pytest.raises(WeightsError, match="3 entries but there are 2"):
        get_schedule([0.2, 0.3, 0.5], 2)
    with pytest.raises(ConfigError, match="number of objectives"):
        get_schedule("fixed", 0)


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda: FixedWeights([0.5, 0.6]), WeightsError, r"sum to 1.*1\.1"),
        (lambda: FixedWeights([1.2, -0.2]), WeightsError, r"non-negative.*-0\.2"),
        (lambda: AnnealedWeights([1, 0], [0, 0, 1], 5), WeightsError, r"end has 3 entries"),
        (lambda: AnnealedWeights([1, 0], [0, 1], 0), ConfigError, r"steps .* got 0"),
        (lambda: AnnealedWeights([1, 0], [0, 1], 3, kind="exp"), ConfigError, r"'exp'"),
        (lambda: DirichletWeights(3, alpha=0.0), ConfigError, r"alpha .* got 0\.0"),
        (lambda: DirichletWeights(3, alpha=[1, 2]), ConfigError, r"3 positive numbers"),
        (lambda: GridSweep(2, 0), ConfigError, r"n .* got 0"),
        (lambda: AdaptiveFront(2, ref=[0, 0, 0]), ConfigError, r"ref .* 2 numbers"),
        (lambda: AdaptiveFront(2, ref=[0, 0], candidates=[[0.5, 0.6]]), WeightsError, r"candidate 0"),
    ],
)
def test_bad_schedule_arguments_raise_clear_errors(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


def test_bad_tell_metrics_raise_clear_errors():
    front = AdaptiveFront(2, ref=[0, 0])
    with pytest.raises(ConfigError, match="'scores'"):
        front.tell({"weights": [0.5, 0.5]})
    with pytest.raises(ConfigError, match="2 finite numbers"):
        front.tell({"weights": [0.5, 0.5], "scores": [1.0, 2.0, 3.0]})
    with pytest.raises(WeightsError, match="sum to 1"):
        front.tell({"weights": [0.5, 0.4], "scores": [1.0, 2.0]})
    with pytest.raises(ConfigError, match="mapping"):
        FixedWeights([1.0]).tell([1, 2])
    with pytest.raises(ConfigError, match="step must be"):
        AnnealedWeights([1, 0], [0, 1], 3).tell({"step": -1})
