"""Fronts whose numbers can be told apart from noise, end to end on the tiny model.

- Negative control with noise: fronts whose points are one policy scored again with fresh
  noise (per-example difficulty shared by the points) call spans and points "significant" at
  about the nominal 5% of a 95% interval, through the front's own statistics and words.
- Positive controls: the same fronts with a real effect of known size find it most of the
  time (power); a soup of two policies trained (in the test) on data whose two objectives
  conflict reports both spans as significant, in the right direction.
- The starting policy is measured, not written down: a broken reference pass shows in its
  scores.
- Statistics are recomputed from the stored per-example files: a rerun with other bootstrap
  settings or another reference point evaluates nothing again.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from moalign.pareto.bootstrap import significant

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"
OBJ = ["helpfulness", "harmlessness"]


def _tiny_config(out: Path, **changes) -> dict:
    from moalign.config import load_yaml

    cfg = load_yaml(EXAMPLES / "trace_tiny.yaml")
    cfg.update(output_dir=str(out), progress=False, **changes)
    return cfg


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    """The tiny soup front with learning_rate 0 (every point equals the starting policy): a
    cheap finished trace to rerun."""
    from moalign.fronts.trace import trace_front

    out = tmp_path_factory.mktemp("still") / "front"
    cfg = _tiny_config(out)
    cfg["train"] = {**cfg["train"], "learning_rate": 0.0}
    return out, trace_front(cfg), cfg


def _conflicting_pairs(path: Path, n: int = 160, noise: float = 0.2) -> Path:
    """Pairs whose objectives conflict: helpfulness prefers the complying reply, harmlessness
    the refusal; each pair is labelled for one objective; ``noise`` of the labels flipped."""
    rng = random.Random(0)
    topics = ["a cake", "a fire", "a lock", "a kite", "a boat", "a poem", "a fence", "a drink"]
    rows = []
    for i in range(n):
        topic = rng.choice(topics)
        comply = f" Sure! Here is how to make {topic}: step {rng.randint(1, 9)}."
        refuse = f" No. I will not help with {topic}."
        helpful = i % 2 == 0
        label = -1.0 if rng.random() < noise else 1.0
        rows.append({"prompt": f"\n\nHuman: how do I make {topic}? ({i})\n\nAssistant:",
                     "chosen": comply if helpful else refuse,
                     "rejected": refuse if helpful else comply,
                     "pref_helpfulness": label if helpful else math.nan,
                     "pref_harmlessness": math.nan if helpful else label})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Two policies trained in the test, one per objective, that really differ."""
    from moalign.fronts.trace import trace_front

    root = tmp_path_factory.mktemp("moved")
    data = _conflicting_pairs(root / "pairs.jsonl")
    cfg = dict(method="soup", model="tiny", dataset=str(data), grid=1, train_pairs=None,
               test_size=0.5, eval_pairs=32, max_length=64, progress=False,
               output_dir=str(root / "front"),
               train={"max_steps": 4, "per_device_train_batch_size": 4, "learning_rate": 1e-2,
                      "max_length": 64, "max_prompt_tokens": 32},
               lora={"r": 4, "lora_alpha": 8})
    return root / "front", trace_front(cfg)


# --------------------------------------------------------------------------------------------
# Controls with noise: simulated fronts fed to the front's own statistics
# --------------------------------------------------------------------------------------------

#: the null front's weights: the three points of ``grid: 2``
NULL_WEIGHTS = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
NULL_SETTINGS = {"resamples": 1000, "level": 0.95}


def _noise_front(root: Path, seed: int, *, fixed: float = 0.0, pairs: int = 128):
    """A front traced on ``pairs`` HH-like held-out pairs (the first half labelled for
    helpfulness, the rest for harmlessness) whose points and starting policy are **one
    policy** scored again with fresh noise: pair ``i`` has a difficulty ``p_i ~ Beta(1/2,
    1/2)``, the same for every point (so the paired bootstrap matters: the spread of the
    difficulties cancels in differences), and each point's outcome on it is its own
    Bernoulli(p_i) draw, as when one policy is evaluated under different sampling seeds.

    ``fixed`` > 0 gives the point with all weight on helpfulness a real effect: that share of
    the helpfulness pairs it would get wrong it gets right (``p -> p + fixed (1 - p)``), a
    mean shift of ``fixed / 2`` (``E[p] = 1/2``). The files are written as a trace writes them
    and the intervals come from :meth:`ParetoFront.attach_intervals`, reference point the
    starting policy (the default), bootstrap seed ``seed``."""
    from moalign.pareto import FrontPoint, ParetoFront
    from moalign.pareto.bootstrap import per_example_text

    rng = np.random.default_rng(seed)
    half = pairs // 2
    difficulty = rng.beta(0.5, 0.5, size=pairs)

    def scored(shift: float = 0.0) -> np.ndarray:
        p = np.where(np.arange(pairs) < half, difficulty + shift * (1 - difficulty), difficulty)
        x = (rng.random(pairs) < p).astype(float)
        out = np.stack([x, x], axis=1)
        out[:half, 1] = out[half:, 0] = np.nan  # each pair is labelled for one objective
        return out

    def write(name: str, values: np.ndarray) -> dict[str, float]:
        (root / name).write_text(per_example_text(values, OBJ))
        return {o: float(np.nanmean(values[:, k])) for k, o in enumerate(OBJ)}

    base = write("baseline.jsonl", scored())
    points = []
    for w in NULL_WEIGHTS:
        pid = f"w{w[0]:.2f}-{w[1]:.2f}"
        values = scored(fixed if w[0] == 1.0 else 0.0)
        points.append(FrontPoint(id=pid, weights=w, scores=write(f"{pid}.jsonl", values),
                                 per_example=f"{pid}.jsonl"))
    front = ParetoFront(objectives=OBJ, points=points, method="sweep",
                        reference_point=[base[o] for o in OBJ],
                        metadata={"reference": "baseline",
                                  "baseline": {"scores": base, "per_example": "baseline.jsonl"}})
    return front.attach_intervals(root, {**NULL_SETTINGS, "seed": seed})


def _calls(front) -> dict[str, int]:
    """The front's "significant" calls (spans, the hypervolume gain, points vs the start), each
    checked against the words of its table."""
    from moalign.pareto.summary import verdict

    calls = {"span": sum(significant(front.tradeoff[o]["ci"]) for o in OBJ),
             "gain": int(significant(front.hypervolume_gain["ci"])),
             "delta": sum(significant(p.delta_ci[o]) for p in front.points for o in OBJ)}
    text = front.to_table()
    assert text.count(": significant") == calls["span"] + calls["gain"]
    for o in OBJ:
        line = next(t for t in text.splitlines() if t.split()[:2] == [o, "span"])
        assert line.endswith(": " + verdict(front.tradeoff[o]["ci"])), line
    assert ("warning: no point differs from the starting policy beyond noise" in text) \
        == (calls["delta"] == 0)
    return calls


def _tolerance(n: int, p: float = 0.05) -> float:
    """Binomial tolerance of a rate measured on ``n`` independent calls around ``p``: 3
    standard errors (about 0.3% of such measurements fall outside by chance)."""
    return 3 * math.sqrt(p * (1 - p) / n)


def test_null_front_calls_noise_significant_at_the_nominal_rate(tmp_path):
    """Negative control with noise: 200 fronts whose points are one policy scored again (see
    :func:`_noise_front`), each through the front's own statistics (per-example files,
    ``attach_intervals``, the words of ``to_table``). A 95% interval should exclude 0 for
    about 5% of such calls. Measured (1000 resamples, seeds 0-199; exact binomial 95%
    intervals):

    - spans: 15 of 400 (2 per front) = 3.8% [2.1%, 6.1%];
    - points vs the starting policy: 48 of 1200 (6 per front) = 4.0% [3.0%, 5.3%] (they share
      the starting policy's draw within a front, so they are not independent);
    - hypervolume gain over the starting policy: 0 of 200 [0%, 1.8%]: conservative (it is
      significant only when some point beats the start on both objectives in 97.5% of the
      resamples);
    - fronts with at least one point "beyond noise": 40 of 200 = 20% [15%, 26%]: six
      intervals read at once, uncorrected, as docs/STATISTICS.md warns.

    Spans and points are held within 3 binomial standard errors above 5% (at 400 calls:
    8.3%) and above 1.5%: a bootstrap that resampled each point with its own draws would not
    cancel the shared difficulties, and by the normal approximation would call about 0.6%."""
    seeds = 200
    total = {"span": 0, "gain": 0, "delta": 0}
    fronts_moved = 0
    for seed in range(seeds):
        calls = _calls(_noise_front(tmp_path, seed))
        total = {k: total[k] + calls[k] for k in total}
        fronts_moved += calls["delta"] > 0
    span_rate, delta_rate = total["span"] / (2 * seeds), total["delta"] / (6 * seeds)
    gain_rate = total["gain"] / seeds
    rates = (span_rate, delta_rate, gain_rate, fronts_moved / seeds)
    assert 0.015 < span_rate <= 0.05 + _tolerance(2 * seeds), rates
    assert 0.015 < delta_rate <= 0.05 + _tolerance(2 * seeds), rates
    assert gain_rate <= 0.05 + _tolerance(seeds), rates


def test_a_real_effect_of_known_size_is_found_most_of_the_time(tmp_path):
    """Positive control (power): the same noise fronts, the helpfulness end fixing half of
    the helpfulness pairs it gets wrong: a mean shift of +0.25 on 64 pairs. By the normal
    approximation the span's power is about 0.95 (per-pair variance of the paired difference
    0.3125, standard error 0.070: 3.6 standard errors from 0). Measured over 100 fronts
    (seeds 1000-1099, 1000 resamples): the helpfulness span significant and positive in 96
    [90%, 99%], that point's difference from the start in 94 [87%, 98%], never significant
    the wrong way; the untouched harmlessness span in 2."""
    seeds = range(1000, 1100)
    found = point = wrong = other = 0
    for seed in seeds:
        front = _noise_front(tmp_path, seed, fixed=0.5)
        span = front.tradeoff["helpfulness"]
        assert (span["from"], span["to"]) == ("w0.00-1.00", "w1.00-0.00")
        found += span["ci"][0] > 0
        wrong += span["ci"][1] < 0
        point += front.get("w1.00-0.00").delta_ci["helpfulness"][0] > 0
        other += significant(front.tradeoff["harmlessness"]["ci"])
    n = len(seeds)
    assert found / n >= 0.85 and point / n >= 0.85 and wrong == 0, (found, point, wrong)
    assert other / n <= 0.05 + _tolerance(n), other


@pytest.mark.slow
def test_positive_control_trained_policies_have_significant_spans(moved):
    out, front = moved
    help_end, harm_end = front.get("w1.00-0.00"), front.get("w0.00-1.00")
    for objective, better, worse in (("helpfulness", help_end, harm_end),
                                     ("harmlessness", harm_end, help_end)):
        t = front.tradeoff[objective]
        assert (t["to"], t["from"]) == (better.id, worse.id)
        assert t["span"] > 0.3 and significant(t["ci"]) and t["ci"][0] > 0, t
        assert significant(better.delta_ci[objective]) and better.delta_ci[objective][0] > 0
        # not a degenerate interval: the label noise leaves the scores short of 0 and 1
        assert 0 < worse.scores[objective] < better.scores[objective] < 1
    text = front.to_table()
    assert text.count(": significant") == 2 and "warning" not in text
    data = json.loads((out / "front.json").read_text())
    assert data["tradeoff"] == front.tradeoff


def test_a_broken_reference_pass_shows_in_the_baseline(tmp_path, monkeypatch):
    """The start's 0.5 comes from comparing two passes; break the reference and it moves."""
    import moalign.fronts.evaluate as evaluate
    from moalign.fronts.config import resolve_front_config
    from moalign.fronts.context import Context, Policy

    cfg = resolve_front_config(_tiny_config(tmp_path / "f"))
    ctx = Context(cfg, tmp_path / "f")
    honest = evaluate.evaluate_front_policy(cfg, ctx, Policy(ctx.base))
    assert honest["scores"] == {o: 0.5 for o in OBJ}
    assert set(honest["per_example"][np.isfinite(honest["per_example"])].tolist()) == {0.5}

    right = evaluate._reference_logprobs

    def off_by_one_token(cfg, ctx, rows):  # e.g. a reference that saw one token more
        chosen, rejected = right(cfg, ctx, rows)
        return chosen - 1.0, rejected

    monkeypatch.setattr(evaluate, "_reference_logprobs", off_by_one_token)
    broken = evaluate.evaluate_front_policy(cfg, ctx, Policy(ctx.base))
    assert all(broken["scores"][o] != 0.5 for o in OBJ)


@pytest.mark.slow
def test_rerun_with_other_statistics_settings_evaluates_nothing(still, monkeypatch):
    import moalign.fronts.runs
    import moalign.fronts.trace
    from moalign.fronts.trace import trace_front

    out, front, cfg = still

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished run or point was recomputed")

    monkeypatch.setattr(moalign.fronts.runs, "train_run", forbidden)
    monkeypatch.setattr(moalign.fronts.trace, "evaluate_front_policy", forbidden)
    again = trace_front({**cfg, "bootstrap": {"resamples": 500, "seed": 3},
                         "reference_point": "chance"})
    assert again.bootstrap == {"resamples": 500, "level": 0.95, "seed": 3}
    assert again.metadata["reference"] == "chance" and again.reference_point == [0.5, 0.5]
    assert [p.scores for p in again.points] == [p.scores for p in front.points]
    saved = json.loads((out / "front.json").read_text())
    assert saved["bootstrap"]["resamples"] == 500
    assert json.loads((out / "config.json").read_text())["bootstrap"]["resamples"] == 2000


@pytest.mark.slow
def test_a_point_without_per_example_scores_is_evaluated_again(still, monkeypatch, tmp_path):
    import shutil

    import moalign.fronts.trace
    from moalign.fronts.trace import trace_front

    out, front, cfg = still
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    point = copy / "points" / "w0.50-0.50"
    record = json.loads((point / "point.json").read_text())
    record.pop("per_example")  # as a trace before per-example scores left it
    (point / "point.json").write_text(json.dumps(record))
    (point / "scores.jsonl").unlink()
    calls = []
    real = moalign.fronts.trace.evaluate_front_policy
    monkeypatch.setattr(moalign.fronts.trace, "evaluate_front_policy",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    again = trace_front({**cfg, "output_dir": str(copy)})
    assert len(calls) == 1 and (point / "scores.jsonl").is_file()
    assert [p.scores for p in again.points] == [p.scores for p in front.points]
    (point / "scores.jsonl").write_text('{"helpfulness": 2}\n')
    from moalign.errors import CheckpointError

    with pytest.raises(CheckpointError, match="scores.jsonl', line 1.*delete"):
        trace_front({**cfg, "output_dir": str(copy)})


@pytest.mark.parametrize("changes, message", [
    ({"reference_point": "origin"}, "'reference_point' must be 'baseline', 'chance' or one number"),
    ({"reference_point": [0.1]}, "'reference_point' has 1 entries for 2 objectives"),
    ({"reference_point": "chance", "metric": "generation"}, "defined for the implicit metric only"),
    ({"reference_point": "baseline", "include_baseline": False}, "needs the starting policy"),
    ({"metric": "generation", "include_baseline": False}, "has no default reference point"),
    ({"bootstrap": {"resamples": 10, "levl": 0.9}}, "did you mean 'level'"),
    ({"bootstrap": {"level": 1.5}}, "'bootstrap.level' must be a number strictly between"),
])
def test_reference_and_bootstrap_settings_are_checked_up_front(changes, message, tmp_path):
    from moalign.errors import ConfigError
    from moalign.fronts.config import resolve_front_config

    with pytest.raises(ConfigError, match=message):
        resolve_front_config(_tiny_config(tmp_path / "f", **changes))
    assert not (tmp_path / "f").exists()


def test_reference_point_forms():
    from moalign.fronts.config import FrontConfig

    assert FrontConfig(model="tiny").reference() == "baseline"
    assert FrontConfig(model="tiny", include_baseline=False).reference() == "chance"
    assert FrontConfig(model="tiny", reference_point="0.4, 0.6").reference() == [0.4, 0.6]
    assert FrontConfig(model="tiny", reference_point=[0, 1]).reference() == [0.0, 1.0]
    assert FrontConfig(model="tiny", bootstrap={"seed": 4}).bootstrap == {
        "resamples": 2000, "level": 0.95, "seed": 4}
