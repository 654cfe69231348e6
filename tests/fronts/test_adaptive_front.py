"""Adaptive fronts (``weights: adaptive``): each point after the starting grid goes where the
measured front's hypervolume gap is largest, and the choices are part of the trace's state.

The front is a GRPO sweep on the ASCII-share task (:mod:`ascii_task`): a starting grid of the two
vertices, then two adaptive points. The choices are checked against hypervolume contributions
computed here from the stored scores (not with the code under test): for neighbouring front
points ``a, b``, the hypervolume their local ideal point ``max(a, b)`` would add.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign.pareto import hypervolume
from tests.support import ascii_task

pytestmark = pytest.mark.slow  # every test reads one traced adaptive front (about a minute)

OBJ = ["ascii_share", "other_share"]
REF = [0.0, 0.0]


@pytest.fixture(scope="module")
def adaptive(tmp_path_factory):
    from moalign.fronts.trace import trace_front

    ascii_task.register()
    out = tmp_path_factory.mktemp("adaptive") / "front"
    cfg = ascii_task.front_config(out, grid=1, weights="adaptive", points=4, reference_point=REF)
    trace_front(cfg)
    return out, cfg


def _contributions(points: list[dict]) -> list[tuple[float, str, str]]:
    """``(hypervolume added by the local ideal point, id, id)`` for neighbouring points of the
    2-objective front of ``points`` (non-dominated, beyond the reference), largest first."""
    scores = np.array([[p["scores"][o] for o in OBJ] for p in points])
    keep = [i for i, s in enumerate(scores)
            if np.all(s > REF) and not any(np.all(t >= s) and np.any(t > s) for t in scores)]
    order = sorted(keep, key=lambda i: scores[i, 0])
    base = hypervolume(scores[keep], REF)
    out = []
    for i, j in zip(order, order[1:]):
        ideal = np.maximum(scores[i], scores[j])
        gain = hypervolume(np.vstack([scores[keep], ideal]), REF) - base
        out.append((float(gain), points[i]["id"], points[j]["id"]))
    return sorted(out, reverse=True)


def test_adaptive_points_fill_the_largest_hypervolume_gap(adaptive):
    out, _ = adaptive
    front = json.loads((out / "front.json").read_text())
    points = front["points"]
    ids = [p["id"] for p in points]
    assert ids[:2] == ["w1.00-0.00", "w0.00-1.00"]  # the starting grid (grid 1)
    assert len(ids) == 4 and len(set(ids)) == 4
    state = json.loads((out / "adaptive.json").read_text())
    assert [c["point"] for c in state["chosen"]] == ids[2:]
    by_id = {p["id"]: p for p in points}
    for n, choice in enumerate(state["chosen"]):
        before = points[: 2 + n]
        assert choice["after"] == [p["id"] for p in before]
        gains = _contributions(before)
        assert gains and gains[0][0] > 0
        if len(gains) > 1:
            assert gains[0][0] > gains[1][0] * 1.5  # the largest gap is clearly the largest
        _, a, b = gains[0]
        low, high = sorted([by_id[a]["weights"][0], by_id[b]["weights"][0]])
        w = by_id[choice["point"]]["weights"][0]
        assert low < w < high, (choice, gains)  # between the two points of the largest gap
        assert w == pytest.approx((low + high) / 2, abs=0.05 + 1e-9)  # nearest the midpoint
        assert choice["rule"] == "largest_gap" and set(choice["between"]) == {a, b}
        assert choice["gap"] == pytest.approx(gains[0][0], rel=1e-9, abs=1e-12)
    # one run per point, each at its own weights
    assert len(list((out / "runs").iterdir())) == 4


def test_adaptive_rerun_reuses_its_choices_and_computes_nothing(adaptive, monkeypatch):
    import moalign.fronts.runs
    import moalign.fronts.trace
    from moalign.fronts.trace import trace_front

    out, cfg = adaptive
    state = (out / "adaptive.json").read_text()

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished run or point was recomputed")

    monkeypatch.setattr(moalign.fronts.runs, "train_run", forbidden)
    monkeypatch.setattr(moalign.fronts.trace, "evaluate_front_policy", forbidden)
    again = trace_front(cfg)
    assert [p.id for p in again.points] == \
        [p["id"] for p in json.loads((out / "front.json").read_text())["points"]]
    assert (out / "adaptive.json").read_text() == state


def test_a_recorded_choice_is_kept_even_if_the_rule_would_now_choose_otherwise(adaptive,
                                                                               tmp_path):
    """The choices are the trace's state: a resumed trace follows adaptive.json."""
    import shutil

    from moalign.fronts.trace import trace_front

    out, cfg = adaptive
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    state = json.loads((copy / "adaptive.json").read_text())
    third = state["chosen"][0]["point"]
    state["chosen"] = [{**state["chosen"][0], "weights": [0.25, 0.75], "point": "w0.25-0.75"}]
    (copy / "adaptive.json").write_text(json.dumps(state))
    shutil.rmtree(copy / "points" / third)
    shutil.rmtree(copy / "points" / state_point(out, 1))
    front = trace_front({**cfg, "output_dir": str(copy)})
    assert [p.id for p in front.points][2] == "w0.25-0.75"


def state_point(out, n: int) -> str:
    return json.loads((out / "adaptive.json").read_text())["chosen"][n]["point"]
