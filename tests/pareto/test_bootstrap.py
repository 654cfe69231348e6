"""The paired bootstrap (moalign.pareto.bootstrap) against cases checkable by hand.

- the interval of a Bernoulli mean is close to the normal-approximation one, and covers the
  true mean about 95% of the time over many simulated data sets;
- pairing: two points that differ by a constant on every example get a span interval of
  width 0, while the same points resampled independently would get a wide one;
- an objective's resampled mean uses only the examples that score it (checked against an
  explicit loop over the same draws);
- noisy fronts of points that all equal the start in distribution call a span significant
  about 5% of the time (a negative control with noise), and a real shift nearly always.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from moalign.errors import CheckpointError
from moalign.pareto import ParetoError, hypervolume
from moalign.pareto.bootstrap import (
    batched_hypervolume,
    bootstrap_problems,
    bootstrap_settings,
    front_statistics,
    hypervolume_difference_interval,
    per_example_text,
    percentile_interval,
    read_per_example,
    resampled_means,
    significant,
    span_ends,
)

FAST = {"resamples": 1000, "level": 0.95, "seed": 0}


def test_bernoulli_mean_interval_is_close_to_the_normal_approximation():
    rng = np.random.default_rng(3)
    x = rng.binomial(1, 0.7, size=400).astype(float)
    boot = resampled_means(x[None, :, None], {"resamples": 4000, "level": 0.95, "seed": 1})
    lo, hi = percentile_interval(boot[:, 0, 0], x.mean(), 0.95)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.006)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.006)
    assert boot[:, 0, 0].std() == pytest.approx(se, rel=0.05)


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    reps, n, p = 300, 64, 0.5
    data = rng.binomial(1, p, size=(reps, n)).astype(float)
    covered = 0
    for r in range(reps):
        boot = resampled_means(data[r][None, :, None], {**FAST, "seed": r})
        lo, hi = percentile_interval(boot[:, 0, 0], data[r].mean(), 0.95)
        covered += lo <= p <= hi
    assert 0.90 <= covered / reps <= 0.99  # binomial(300, 0.95): 0.925..0.975 mostly


def test_resampled_means_use_the_examples_that_score_each_objective():
    rng = np.random.default_rng(1)
    x = rng.random((3, 20, 2))
    x[:, ::2, 1] = np.nan  # objective 1 scored on the odd examples only
    x[:, 1::4, 0] = np.nan
    settings = {"resamples": 200, "level": 0.9, "seed": 7}
    boot = resampled_means(x, settings)
    # the same draws, by hand: one [B, N] chunk of integers from the seeded generator
    idx = np.random.default_rng(7).integers(0, 20, size=(200, 20))
    for b in (0, 1, 57, 199):
        for s in range(3):
            for k in range(2):
                drawn = x[s, idx[b], k]
                assert boot[b, s, k] == pytest.approx(np.nanmean(drawn), rel=1e-12)
    # every set is resampled with the same draws: identical sets give identical means
    same = resampled_means(np.stack([x[0], x[0]]), settings)
    np.testing.assert_array_equal(same[:, 0], same[:, 1])


def test_a_resample_without_scored_examples_gives_nan_and_is_skipped():
    x = np.array([[[1.0], [np.nan], [np.nan], [np.nan]]])  # one scored example of four
    boot = resampled_means(x, FAST)
    assert np.isnan(boot).any() and np.nanmin(boot) == np.nanmax(boot) == 1.0
    ci = percentile_interval(boot[:, 0, 0], 1.0, 0.95)
    assert ci.tolist() == [1.0, 1.0]
    assert np.isnan(percentile_interval(np.full(10, np.nan), 0.5, 0.95)).all()


def test_constant_difference_on_every_example_has_a_span_of_width_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(100, 2))
    scores = np.stack([a, a + [0.1, -0.2]])  # point 1 = point 0 shifted on every example
    st = front_statistics(scores, weights=[[0.0, 1.0], [1.0, 0.0]], reference=[-5.0, -5.0],
                          settings=FAST)
    lo0, hi0, span0, ci0 = st.spans[0]
    assert (lo0, hi0) == (0, 1) and span0 == pytest.approx(0.1)
    assert ci0 == pytest.approx([0.1, 0.1], abs=1e-12)
    assert st.spans[1][2] == pytest.approx(0.2) and np.ptp(st.spans[1][3]) < 1e-12
    assert significant(ci0)
    # each point alone is far from certain: its interval is ~ 4 standard errors wide
    width = np.ptp(st.point_ci[0, 0])
    assert width == pytest.approx(2 * 1.96 * a[:, 0].std() / 10, rel=0.15)
    # unpaired (each point resampled with its own draws) the difference would be that noisy
    b0 = resampled_means(scores[:1], {**FAST, "seed": 1})[:, 0, 0]
    b1 = resampled_means(scores[1:], {**FAST, "seed": 2})[:, 0, 0]
    unpaired = percentile_interval(b1 - b0, 0.1, 0.95)
    assert np.ptp(unpaired) > 0.3 and not significant(unpaired)


def test_spans_are_not_significant_for_points_that_only_differ_by_noise():
    """Negative control with noise: five points, each its own Bernoulli(0.5) draw on the same
    64 + 64 pairs (HH-like: each pair labels one objective). A 95% interval must call the span
    significant in about 5% of such fronts, and a real shift of 0.3 in nearly all."""
    rng = np.random.default_rng(5)
    weights = np.array([[1, 0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0, 1]])
    reps, hits, shifted = 120, 0, 0
    for r in range(reps):
        x = rng.binomial(1, 0.5, size=(5, 128, 2)).astype(float)
        x[:, :64, 1] = np.nan
        x[:, 64:, 0] = np.nan
        st = front_statistics(x, weights=weights, reference=[0.0, 0.0], settings={**FAST, "seed": r})
        hits += sum(significant(s[3]) for s in st.spans.values())
        x[0, :64, 0] = rng.binomial(1, 0.8, size=64)  # the helpfulness end really moved
        st = front_statistics(x, weights=weights, reference=[0.0, 0.0], settings={**FAST, "seed": r})
        shifted += significant(st.spans[0][3])
    assert hits / (2 * reps) <= 0.10
    assert shifted / reps >= 0.9


def test_front_statistics_against_the_baseline():
    base = np.full((40, 2), 0.5)
    base[:20, 1] = base[20:, 0] = np.nan
    same = np.stack([base, base, base])
    st = front_statistics(same, weights=[[1, 0], [0.5, 0.5], [0, 1]], baseline=base,
                          reference="baseline", settings=FAST)
    assert st.hypervolume == 0.0 and st.hypervolume_ci.tolist() == [0.0, 0.0]
    assert st.gain == 0.0 and not significant(st.gain_ci)
    assert all(not significant(s[3]) for s in st.spans.values())
    assert np.all(st.delta_ci == 0.0) and np.all(st.baseline_ci == 0.5)
    better = same.copy()
    better[1] = np.where(np.isfinite(base), 1.0, np.nan)  # the middle point wins every pair
    st = front_statistics(better, weights=[[1, 0], [0.5, 0.5], [0, 1]], baseline=base,
                          reference="baseline", settings=FAST)
    assert st.hypervolume == pytest.approx(0.25) and significant(st.gain_ci)
    assert st.delta_ci[1].tolist() == [[0.5, 0.5], [0.5, 0.5]]
    with pytest.raises(ParetoError, match="same examples"):
        front_statistics(same, baseline=base[:10], reference="baseline")
    with pytest.raises(ParetoError, match="needs the baseline"):
        front_statistics(same, reference="baseline")


def test_every_interval_contains_its_estimate():
    rng = np.random.default_rng(4)
    for r in range(20):
        x = rng.binomial(1, rng.uniform(0.3, 0.7, size=(4, 1, 2)), size=(4, 30, 2)).astype(float)
        base = rng.binomial(1, 0.5, size=(30, 2)).astype(float)
        st = front_statistics(x, weights=[[1, 0], [0.6, 0.4], [0.3, 0.7], [0, 1]], baseline=base,
                              reference="baseline", settings={**FAST, "seed": r})
        est = x.mean(axis=1)
        assert np.all(st.point_ci[..., 0] <= est) and np.all(est <= st.point_ci[..., 1])
        assert st.hypervolume_ci[0] <= st.hypervolume <= st.hypervolume_ci[1]
        assert st.gain_ci[0] <= st.gain <= st.gain_ci[1]
        for _, _, span, ci in st.spans.values():
            assert ci[0] <= span <= ci[1]


def test_hypervolume_difference_of_two_fronts_is_paired():
    rng = np.random.default_rng(6)
    a = rng.random((3, 50, 2))
    value, ci = hypervolume_difference_interval(a, a.copy(), reference=[0.0, 0.0], settings=FAST)
    assert value == 0.0 and ci.tolist() == [0.0, 0.0]
    value, ci = hypervolume_difference_interval(a, a + 0.05, reference=[0.0, 0.0], settings=FAST)
    hv = hypervolume(a.mean(axis=1), [0, 0])
    assert value == pytest.approx(hypervolume(a.mean(axis=1) + 0.05, [0, 0]) - hv)
    assert significant(ci) and ci[0] <= value <= ci[1]
    with pytest.raises(ParetoError, match="different example sets"):
        hypervolume_difference_interval(a, a[:, :10], reference=[0.0, 0.0])


@pytest.mark.parametrize("k", [2, 3])
def test_batched_hypervolume_matches_hypervolume(k):
    rng = np.random.default_rng(k)
    pts, refs = rng.random((60, 5, k)), rng.random((60, k)) * 0.6
    pts[3] = refs[3] - 0.1  # nothing dominates the reference: 0
    got = batched_hypervolume(pts, refs)
    assert got[3] == 0.0
    np.testing.assert_allclose(got, [hypervolume(p, r) for p, r in zip(pts, refs)], atol=1e-12)
    pts[7, 0, 0] = np.nan
    assert np.isnan(batched_hypervolume(pts, refs)[7])


def test_span_ends():
    assert span_ends([[1, 0], [0.5, 0.5], [0, 1]]) == [(2, 0), (0, 2)]
    assert span_ends([[0.5, 0.5], [0.5, 0.5]]) == [None, None]
    three = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0.5, 0.5]]
    assert span_ends(three)[0] == (1, 0)  # the first of the points with no weight on it


def test_settings_are_checked():
    assert bootstrap_settings() == {"resamples": 2000, "level": 0.95, "seed": 0}
    assert bootstrap_settings({"resamples": 500})["resamples"] == 500
    problems = bootstrap_problems({"resample": 10, "level": 95, "seed": -1})
    assert "unknown key 'resample'; did you mean 'resamples'?" in problems[0]
    assert any("'bootstrap.level' must be a number strictly between 0 and 1" in p for p in problems)
    assert any("'bootstrap.seed' must be an integer >= 0" in p for p in problems)
    assert bootstrap_problems({"resamples": 10})[0].startswith("'bootstrap.resamples' must be")
    assert bootstrap_problems([1]) and bootstrap_problems({"level": True})
    with pytest.raises(ParetoError, match="resamples"):
        bootstrap_settings({"resamples": 2.5})


def test_per_example_files_round_trip_exactly(tmp_path):
    x = np.array([[0.1 + 0.2, np.nan], [np.nan, 1 / 3], [1.0, 0.0]])
    path = tmp_path / "scores.jsonl"
    path.write_text(per_example_text(x, ["a", "b"]))
    assert path.read_text().splitlines()[0] == '{"a": 0.30000000000000004, "b": null}'
    np.testing.assert_array_equal(read_per_example(path, ["a", "b"]), x)
    for text, match in [('{"a": 1}\n', "one key per objective"), ('{"a": 1, "b": "x"}\n', "finite"),
                        ('{"a": 1, "b": NaN}\n', "finite"), ("{not json\n", "not JSON"), ("", "no example")]:
        path.write_text(text)
        with pytest.raises(CheckpointError, match=match) as info:
            read_per_example(path, ["a", "b"])
        assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="is missing"):
        read_per_example(tmp_path / "none.jsonl", ["a", "b"])
