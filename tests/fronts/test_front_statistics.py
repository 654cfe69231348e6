"""Fronts whose numbers can be told apart from noise, end to end on the tiny model.

- Negative control: the soup front of ``examples/configs/trace_tiny.yaml`` with
  ``learning_rate: 0`` (every point is the start) reports no span and no hypervolume gain as
  significant, and says so in words.
- Positive control: a soup of two policies trained (in the test) on data whose two objectives
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

from moalign.pareto.bootstrap import read_per_example, significant

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"
OBJ = ["helpfulness", "harmlessness"]


def _tiny_config(out: Path, **changes) -> dict:
    from moalign.config import load_yaml

    cfg = load_yaml(EXAMPLES / "trace_tiny.yaml")
    cfg.update(output_dir=str(out), progress=False, **changes)
    return cfg


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    """The tiny soup front with learning_rate 0: every point equals the starting policy."""
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


def test_negative_control_nothing_is_beyond_noise(still):
    out, front, _ = still
    assert front.metadata["reference"] == "baseline" and front.reference_point == [0.5, 0.5]
    for objective, t in front.tradeoff.items():
        assert not significant(t["ci"]), (objective, t)
    assert not significant(front.hypervolume_gain["ci"]) and front.hypervolume() == 0.0
    assert all(not significant(ci) for p in front.points for ci in p.delta_ci.values())
    # every point is the start, pair by pair (the adapters are exactly zero)
    base = read_per_example(out / front.metadata["baseline"]["per_example"], OBJ)
    for p in front.points:
        np.testing.assert_array_equal(read_per_example(out / p.per_example, OBJ), base)
    text = front.to_table()
    assert ": significant" not in text and text.count("within noise") == 3
    assert "warning: no point differs from the starting policy beyond noise" in text


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

    ctx._reference_logprobs = None
    monkeypatch.setattr(evaluate, "_reference_logprobs", off_by_one_token)
    broken = evaluate.evaluate_front_policy(cfg, ctx, Policy(ctx.base))
    assert all(broken["scores"][o] != 0.5 for o in OBJ)


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
