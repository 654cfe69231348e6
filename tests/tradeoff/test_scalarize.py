"""Scalarizers, normalizers and Lagrangian constraints: hand-computed cases and oracles."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from moalign.errors import (
    CheckpointError,
    ConfigError,
    ObjectiveError,
    UnknownObjectiveError,
    WeightsError,
)
from moalign.scalarize import (
    LagrangianConstraints,
    Scalarizer,
    available_scalarizers,
    chain,
    get_scalarizer,
    linear,
    normalize,
    register_scalarizer,
    tchebycheff,
)

NAN = float("nan")


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


# ------------------------------------------------------------------------------ linear

def test_linear_hand_computed_shared_and_per_example_weights():
    r = t([[1.0, 2.0], [3.0, -1.0]])
    assert torch.allclose(linear()(r, [0.25, 0.75]), t([1.75, 0.0]))
    per_example = t([[1.0, 0.0], [0.5, 0.5]])
    assert torch.allclose(linear()(r, per_example), t([1.0, 1.0]))


def test_linear_nan_renormalizes_over_scored_objectives():
    r = t([[NAN, 2.0, 4.0], [1.0, NAN, NAN], [NAN, NAN, NAN], [1.0, 2.0, 4.0]])
    w = [0.5, 0.25, 0.25]
    out = linear()(r, w)
    # row 0: (0.25*2 + 0.25*4) / 0.5 = 3; row 1: only objective 0 scored -> 1; row 2: NaN
    assert out[0].item() == pytest.approx(3.0)
    assert out[1].item() == pytest.approx(1.0)
    assert math.isnan(out[2].item())
    assert out[3].item() == pytest.approx(0.5 + 0.5 + 1.0)
    # the only scored objective has weight 0: nothing the weights care about was scored
    assert math.isnan(linear()(t([[NAN, 5.0]]), [1.0, 0.0]).item())
    # an unscored objective of weight 0 changes nothing
    assert linear()(t([[5.0, NAN]]), [1.0, 0.0]).item() == pytest.approx(5.0)


def test_nan_entries_give_zero_gradient_not_nan():
    r = t([[NAN, 2.0], [1.0, 3.0]]).requires_grad_(True)
    for scalarizer in (linear(), tchebycheff(ideal=[4.0, 4.0], rho=0.1)):
        r.grad = None
        scalarizer(r, [0.5, 0.5]).sum().backward()
        assert torch.isfinite(r.grad).all()
        assert r.grad[0, 0].item() == 0.0
    r.grad = None
    linear()(r, [0.5, 0.5]).sum().backward()
    assert torch.allclose(r.grad, t([[0.0, 1.0], [0.5, 0.5]]))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 5), st.integers(0, 10_000))
def test_linear_matches_numpy_weighted_sum(b, k, seed):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(b, k))
    w = rng.dirichlet(np.ones(k))
    out = linear()(torch.tensor(r), w).numpy()
    np.testing.assert_allclose(out, r @ w, rtol=1e-12, atol=1e-12)
    # the same vector given per example gives the same signal
    out2 = linear()(torch.tensor(r), np.tile(w, (b, 1))).numpy()
    np.testing.assert_allclose(out2, out, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ Tchebycheff

def test_tchebycheff_hand_computed_plain_and_augmented():
    r = t([[1.0, 0.0], [2.0, 1.5]])
    plain = tchebycheff(ideal=[2.0, 2.0])(r, [0.5, 0.5])
    # row 0: -max(0.5*1, 0.5*2) = -1 ; row 1: -max(0, 0.25) = -0.25
    assert torch.allclose(plain, t([-1.0, -0.25]))
    aug = tchebycheff(ideal=[2.0, 2.0], rho=0.1)(r, [0.5, 0.5])
    # + 0.1 * (0.5*1 + 0.5*0) and + 0.1 * (0.5*2 + 0.5*1.5)
    assert torch.allclose(aug, t([-0.95, -0.075]))
    assert torch.allclose(get_scalarizer({"name": "augmented_tchebycheff", "ideal": [2, 2], "rho": 0.1})(r, [0.5, 0.5]), aug)


def test_tchebycheff_nan_uses_scored_objectives_only():
    r = t([[NAN, 1.0], [NAN, NAN]])
    out = tchebycheff(ideal=[3.0, 3.0])(r, [0.5, 0.5])
    # row 0: only objective 1, weight renormalized to 1: -(3 - 1) = -2
    assert out[0].item() == pytest.approx(-2.0)
    assert math.isnan(out[1].item())


def test_tchebycheff_online_ideal_is_a_running_max_updated_only_in_training():
    s = tchebycheff()
    out = s(t([[1.0, 0.0], [0.0, 2.0]]), [0.5, 0.5])
    # ideal = (1, 2): row 0: -max(0, 1) ; row 1: -max(0.5, 0)
    assert torch.allclose(out, t([-1.0, -0.5]))
    s(t([[3.0, NAN]]), [0.5, 0.5])
    assert s.state_dict()["ideal"] == [3.0, 2.0]
    s.eval()
    out = s(t([[10.0, 0.0]]), [0.5, 0.5])
    assert s.state_dict()["ideal"] == [3.0, 2.0]  # frozen in eval mode
    assert out.item() == pytest.approx(-1.0)  # -max(0.5*(3-10), 0.5*2)
    # state round-trip through JSON restores the same ideal
    s2 = tchebycheff()
    s2.load_state_dict(json.loads(json.dumps(s.state_dict())))
    s2.eval()
    assert torch.allclose(s2(t([[1.0, 1.0]]), [0.5, 0.5]), s(t([[1.0, 1.0]]), [0.5, 0.5]))


def test_tchebycheff_finds_a_point_in_a_concave_dent_that_no_linear_weight_finds():
    # A and B are the extremes; C lies below the segment AB but is non-dominated
    points = t([[1.0, 0.0], [0.0, 1.0], [0.4, 0.4], [0.3, 0.1]])  # D is dominated by C
    dent = 2
    grid = np.linspace(0.0, 1.0, 1001)
    lin = linear()
    linear_choices = {int(torch.argmax(lin(points, [a, 1 - a]))) for a in grid}
    assert dent not in linear_choices
    assert linear_choices == {0, 1}
    cheb = tchebycheff(ideal=[1.0, 1.0])
    cheb_choices = {int(torch.argmax(cheb(points, [a, 1 - a]))) for a in grid}
    assert dent in cheb_choices
    assert 3 not in cheb_choices  # a dominated point is never the unique maximizer


def test_tchebycheff_reaches_every_point_of_a_nonconvex_front():
    # front x^p + y^p = 1 with p = 0.5 (strictly non-convex): linear weights only reach the ends
    theta = np.linspace(0.05, 0.95, 19)
    x = theta**2
    y = (1 - theta) ** 2
    pts = torch.tensor(np.column_stack([x, y]))
    ideal = np.array([1.0, 1.0])
    cheb = tchebycheff(ideal=ideal)
    for i in range(len(theta)):
        w = 1.0 / (ideal - pts[i].numpy())
        w = w / w.sum()
        assert int(torch.argmax(cheb(pts, w))) == i
    lin_hits = {int(torch.argmax(linear()(pts, [a, 1 - a]))) for a in np.linspace(0, 1, 501)}
    assert lin_hits <= {0, len(theta) - 1}


# ------------------------------------------------------------------------------ normalizers

def test_running_normalize_matches_statistics_of_everything_seen():
    rng = np.random.default_rng(0)
    a = rng.normal(3.0, 2.0, size=(7, 3))
    b = rng.normal(-1.0, 0.5, size=(5, 3))
    a[2, 1] = NAN
    b[0, 0] = NAN
    norm = normalize("running", eps=1e-6)
    norm(torch.tensor(a))
    out = norm(torch.tensor(b)).numpy()
    seen = np.vstack([a, b])
    expected = (b - np.nanmean(seen, 0)) / (np.nanstd(seen, 0) + 1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-10, equal_nan=True)
    assert np.isnan(out[0, 0])
    assert norm.state_dict()["count"] == [11.0, 11.0, 12.0]


def test_running_normalize_ema_hand_computed_and_eval_freezes():
    norm = normalize("running", momentum=0.5, eps=1e-12)
    norm(t([[0.0], [2.0]]))  # first batch initializes: mean 1, var 1
    out = norm(t([[4.0], [6.0]]))  # batch mean 5, var 1; delta 4
    # mean = 1 + 0.5*4 = 3 ; var = 0.5*(1 + 0.5*16) + 0.5*1 = 5
    state = norm.state_dict()
    assert state["mean"] == pytest.approx([3.0])
    assert state["var"] == pytest.approx([5.0])
    assert torch.allclose(out, (t([[4.0], [6.0]]) - 3.0) / math.sqrt(5.0))
    norm.eval()
    norm(t([[100.0]]))
    assert norm.state_dict()["mean"] == pytest.approx([3.0])


def test_group_normalize_matches_a_per_group_loop():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(12, 2))
    r[3, 0] = NAN
    groups = np.array([7, 7, 7, 7, 2, 2, 2, 2, 9, 9, 9, 5])
    out = normalize("group", eps=1e-6)(torch.tensor(r), groups=torch.tensor(groups)).numpy()
    for g in np.unique(groups):
        rows = groups == g
        for k in range(2):
            col = r[rows, k]
            ok = ~np.isnan(col)
            if ok.sum() == 1:
                expected = np.where(ok, 0.0, NAN)
            else:
                expected = (col - col[ok].mean()) / (col[ok].std(ddof=1) + 1e-6)
            np.testing.assert_allclose(out[rows, k], expected, rtol=1e-10, equal_nan=True)
    assert out[11, 0] == 0.0  # a group of one completion


def test_group_normalized_linear_is_normalize_then_weight():
    r = t([[1.0, 10.0], [3.0, 30.0], [0.0, 0.0], [2.0, 50.0]])
    groups = torch.tensor([0, 0, 1, 1])
    composed = get_scalarizer("group_normalized_linear")(r, [0.3, 0.7], groups=groups)
    manual = linear()(normalize("group")(r, groups=groups), [0.3, 0.7])
    assert torch.allclose(composed, manual)
    # within each pair, normalization puts both objectives at -1/sqrt(2), +1/sqrt(2)
    assert torch.allclose(composed, t([-1.0, 1.0, -1.0, 1.0]) / math.sqrt(2), atol=1e-5)


def test_chain_state_round_trip_continues_like_uninterrupted():
    rng = np.random.default_rng(2)
    batches = [torch.tensor(rng.normal(size=(6, 3))) for _ in range(4)]
    w = [0.2, 0.3, 0.5]

    def make():
        return chain(normalize("running", momentum=0.3), tchebycheff(rho=0.05))

    full = make()
    expected = [full(b, w) for b in batches]
    first = make()
    for b in batches[:2]:
        first(b, w)
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for b, e in zip(batches[2:], expected[2:], strict=True):
        assert torch.allclose(resumed(b, w), e)


# ------------------------------------------------------------------------------ registry & errors

def test_get_scalarizer_names_mappings_instances(monkeypatch):
    assert {"linear", "tchebycheff", "augmented_tchebycheff", "group_normalized_linear"} <= set(
        available_scalarizers()
    )
    for name in available_scalarizers():
        assert isinstance(get_scalarizer(name), Scalarizer)
    s = linear()
    assert get_scalarizer(s) is s
    r = t([[1.0, 2.0], [3.0, 5.0]])
    with_norm = get_scalarizer({"name": "linear", "normalize": "batch"})
    assert torch.allclose(with_norm(r, [0.5, 0.5]), linear()(normalize("batch")(r), [0.5, 0.5]))
    from moalign.tradeoff import scalarize

    monkeypatch.setattr(scalarize.SCALARIZERS, "registered", dict(scalarize.SCALARIZERS.registered))
    register_scalarizer("first_only", lambda: chain(normalize("batch"), linear()))
    assert "first_only" in available_scalarizers()
    assert torch.allclose(get_scalarizer("first_only")(r, [1.0, 0.0]), t([-1.0, 1.0]) / math.sqrt(2), atol=1e-5)
    with pytest.raises(ConfigError, match="already registered"):
        register_scalarizer("linear", lambda: linear())


def test_get_scalarizer_errors_name_the_problem():
    with pytest.raises(ConfigError, match="did you mean 'tchebycheff'"):
        get_scalarizer("tchebychef")
    with pytest.raises(ConfigError, match="'alpha'"):
        get_scalarizer({"name": "linear", "alpha": 1})
    with pytest.raises(ConfigError, match="rho"):
        get_scalarizer({"name": "tchebycheff", "rho": -1})
    with pytest.raises(ConfigError, match="unknown normalization"):
        normalize("zscore")
    with pytest.raises(ConfigError, match="must end with a Scalarizer"):
        chain(normalize(), normalize())


@pytest.mark.parametrize(
    "weights, pattern",
    [
        ([0.5, 0.4], r"sum to 1.*0\.9"),
        ([0.5, 0.5, 0.0], r"3 entries but there are 2"),
        ([1.5, -0.5], r"non-negative.*-0\.5"),
        ([NAN, 1.0], r"non-finite"),
        ([[0.5, 0.5], [0.9, 0.3]], r"row 1 .*0\.9, 0\.3"),
        ([[0.5, 0.5]], r"shape \[2, 2\]"),
        (None, r"required"),
    ],
)
def test_bad_weights_raise_weights_error_naming_the_value(weights, pattern):
    r = t([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(WeightsError, match=pattern):
        linear()(r, weights)


def test_bad_rewards_and_groups_raise_clear_errors():
    with pytest.raises(ObjectiveError, match=r"\[B, K\].*\(3,\)"):
        linear()(t([1.0, 2.0, 3.0]), [1.0])
    with pytest.raises(ObjectiveError, match="row 1, objective 0") as info:
        linear()(t([[1.0, 2.0], [math.inf, 0.0]]), [0.5, 0.5])
    assert info.value.index == 1
    with pytest.raises(ObjectiveError, match="needs groups="):
        normalize("group")(t([[1.0]]))
    with pytest.raises(ObjectiveError, match=r"shape \[2\]"):
        normalize("group")(t([[1.0], [2.0]]), groups=torch.tensor([0, 0, 1]))
    with pytest.raises(ObjectiveError, match="integer ids"):
        normalize("group")(t([[1.0], [2.0]]), groups=torch.tensor([0.0, 1.0]))
    s = tchebycheff(ideal=[1.0, 1.0])
    with pytest.raises(ObjectiveError, match="3 objectives .* set up for 2"):
        s(t([[1.0, 1.0, 1.0]]), [0.2, 0.3, 0.5])
    with pytest.raises(CheckpointError, match="'linear'"):
        s.load_state_dict(linear().state_dict())


# ------------------------------------------------------------------------------ Lagrangian

def test_lagrangian_multiplier_rises_while_violated_and_falls_to_zero_once_satisfied():
    lag = LagrangianConstraints({"harmlessness": 0.5}, names=["helpfulness", "harmlessness"], lr=0.1)
    history = []
    for _ in range(5):  # harmlessness mean 0.2 < 0.5: violated by 0.3
        history.append(lag.update(torch.tensor([0.9, 0.2]))[1].item())
    assert history == pytest.approx([0.03, 0.06, 0.09, 0.12, 0.15])
    assert lag.multipliers[0].item() == 0.0  # unconstrained objective
    for _ in range(4):  # mean 0.9 >= 0.5: satisfied by 0.4, each step lowers lambda by 0.04
        history.append(lag.update(torch.tensor([0.9, 0.9]))[1].item())
    assert history[5:] == pytest.approx([0.11, 0.07, 0.03, 0.0])
    lag.update(torch.tensor([0.9, 0.9]))
    assert lag.multipliers[1].item() == 0.0  # projected: never negative


def test_lagrangian_combine_hand_computed_and_nan():
    lag = LagrangianConstraints({1: 0.0}, num_objectives=2, init=1.0)
    signal = t([2.0, 2.0, 2.0])
    rewards = t([[0.0, 4.0], [0.0, -2.0], [0.0, NAN]])
    # (2 + 1*4) / (1 + 1) = 3 ; (2 - 2) / 2 = 0 ; unscored constraint: 2 / 1
    assert torch.allclose(lag.combine(signal, rewards), t([3.0, 0.0, 2.0]))


def test_lagrangian_clip_nan_means_and_state_round_trip():
    lag = LagrangianConstraints({0: 1.0}, num_objectives=2, lr=1.0, max_multiplier=0.5)
    assert lag.update([0.0, 0.0])[0].item() == 0.5  # clipped at max_multiplier
    assert lag.update([NAN, 0.0])[0].item() == 0.5  # nothing measured: unchanged
    lag.update_from_rewards(t([[0.8, 1.0], [NAN, 1.0]]))  # nanmean 0.8: lambda + 0.2 -> clip 0.5
    state = json.loads(json.dumps(lag.state_dict()))
    other = LagrangianConstraints({0: 1.0}, num_objectives=2, lr=1.0, max_multiplier=0.5)
    other.load_state_dict(state)
    assert torch.equal(other.multipliers, lag.multipliers)
    with pytest.raises(CheckpointError, match="thresholds"):
        LagrangianConstraints({0: 2.0}, num_objectives=2).load_state_dict(state)


def test_lagrangian_bad_constraints_name_the_value():
    with pytest.raises(UnknownObjectiveError, match="'safety'.*helpfulness"):
        LagrangianConstraints({"safety": 0.5}, names=["helpfulness", "harmlessness"])
    with pytest.raises(UnknownObjectiveError, match="index 3.*2 objectives"):
        LagrangianConstraints({3: 0.5}, num_objectives=2)
    with pytest.raises(ConfigError, match="pass names"):
        LagrangianConstraints({"harmlessness": 0.5}, num_objectives=2)
    with pytest.raises(ConfigError, match="threshold of 0"):
        LagrangianConstraints({0: NAN}, num_objectives=2)
    with pytest.raises(ConfigError, match="lr"):
        LagrangianConstraints({0: 0.5}, num_objectives=2, lr=0.0)
    lag = LagrangianConstraints({0: 0.5}, num_objectives=2)
    with pytest.raises(ObjectiveError, match="3 entries, expected 2"):
        lag.update([0.1, 0.2, 0.3])
    with pytest.raises(ObjectiveError, match=r"\[2, 2\]"):
        lag.combine(t([1.0, 2.0]), t([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]))
