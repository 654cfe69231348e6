"""A front with per-example scores: intervals attached, stored, loaded, printed and compared.

Old front.json files (without any bootstrap key) still load and save unchanged; fronts with
different reference points are refused by every comparison unless told to recompute both.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from moalign.errors import CheckpointError
from moalign.pareto import FrontPoint, ParetoError, ParetoFront, plot_fronts
from moalign.pareto.bootstrap import per_example_text, read_per_example
from moalign.pareto.front import common_reference, hypervolume_difference

OBJ = ["helpfulness", "harmlessness"]
OLD_FRONT = {  # as moalign wrote it before intervals existed
    "objectives": OBJ, "method": "soup", "reference_point": [0.0, 0.0], "hypervolume": 0.3,
    "points": [{"id": "w1.00-0.00", "weights": [1.0, 0.0],
                "scores": {"helpfulness": 0.6, "harmlessness": 0.45},
                "stderr": {"helpfulness": 0.06, "harmlessness": 0.06}, "nondominated": True,
                "checkpoint": "points/w1.00-0.00/adapter/soup"}],
    "cost": {"train_seconds": 1.0, "eval_seconds": 2.0, "train_steps": 4},
    "metadata": {"baseline": {"scores": {"helpfulness": 0.5, "harmlessness": 0.5},
                              "stderr": {"helpfulness": 0.0, "harmlessness": 0.0}}},
}


def _hh_like(rng: np.random.Generator, p_help: float, p_harm: float, n: int = 60) -> np.ndarray:
    """Per-pair outcomes: the first half labelled for helpfulness, the rest for harmlessness."""
    x = np.full((2 * n, 2), np.nan)
    x[:n, 0] = rng.binomial(1, p_help, n)
    x[n:, 1] = rng.binomial(1, p_harm, n)
    return x


def _traced(root, per_point: dict[str, np.ndarray], baseline: np.ndarray | None,
            reference: str = "baseline") -> ParetoFront:
    """A front as trace_front writes it: per-example files beside front.json."""
    points = []
    for pid, x in per_point.items():
        (root / "points" / pid).mkdir(parents=True, exist_ok=True)
        (root / "points" / pid / "scores.jsonl").write_text(per_example_text(x, OBJ))
        w = float(pid[1:5])
        points.append(FrontPoint(pid, {o: float(np.nanmean(x[:, k])) for k, o in enumerate(OBJ)},
                                 weights=[w, 1 - w], per_example=f"points/{pid}/scores.jsonl"))
    metadata = {"reference": reference}
    ref = [0.5, 0.5]
    if baseline is not None:
        (root / "baseline").mkdir(parents=True, exist_ok=True)
        (root / "baseline" / "scores.jsonl").write_text(per_example_text(baseline, OBJ))
        scores = {o: float(np.nanmean(baseline[:, k])) for k, o in enumerate(OBJ)}
        metadata["baseline"] = {"scores": scores, "per_example": "baseline/scores.jsonl"}
        ref = [scores[o] for o in OBJ] if reference == "baseline" else ref
    front = ParetoFront(OBJ, points, method="soup", reference_point=ref, metadata=metadata)
    front.attach_intervals(root, {"resamples": 1000, "level": 0.95, "seed": 0})
    front.save(root / "front.json")
    return front


@pytest.fixture
def conflict(tmp_path):
    """A front whose two ends really differ: helpfulness 0.85 vs 0.35, harmlessness the reverse."""
    rng = np.random.default_rng(0)
    start = _hh_like(rng, 0.5, 0.5) * 0 + 0.5
    points = {"w1.00-0.00": _hh_like(rng, 0.85, 0.35), "w0.50-0.50": _hh_like(rng, 0.6, 0.6),
              "w0.00-1.00": _hh_like(rng, 0.35, 0.85)}
    return _traced(tmp_path / "conflict", points, start)


def test_an_old_front_json_still_loads_and_saves_unchanged(tmp_path):
    path = tmp_path / "front.json"
    path.write_text(json.dumps(OLD_FRONT))
    front = ParetoFront.load(path)
    assert front.hypervolume_ci is None and front.tradeoff is None and front.bootstrap is None
    assert front.points[0].ci == {} and front.points[0].per_example is None
    data = front.to_dict()
    assert set(data) == set(OLD_FRONT) and set(data["points"][0]) == set(OLD_FRONT["points"][0])
    assert "paired bootstrap" not in front.to_table() and "0.6 ± 0.06" in front.to_table()
    with pytest.raises(CheckpointError, match="no per-example scores"):
        front.attach_intervals()


def test_attached_intervals_round_trip_and_reproduce_the_scores(conflict, tmp_path):
    root = tmp_path / "conflict"
    data = json.loads((root / "front.json").read_text())
    assert data["bootstrap"] == {"resamples": 1000, "level": 0.95, "seed": 0}
    assert list(data)[:6] == ["objectives", "method", "reference_point", "hypervolume",
                              "hypervolume_ci", "hypervolume_gain"]
    loaded = ParetoFront.load(root)
    assert loaded == conflict and loaded.root == root
    for p in data["points"]:
        per = read_per_example(root / p["per_example"], OBJ)
        for k, o in enumerate(OBJ):
            assert p["scores"][o] == np.nanmean(per[:, k])
            assert p["ci"][o][0] <= p["scores"][o] <= p["ci"][o][1]
    assert data["metadata"]["baseline"]["ci"] == {o: [0.5, 0.5] for o in OBJ}
    assert data["metadata"]["examples"] == 120
    # recomputing from the files gives the same numbers
    again = ParetoFront.load(root).attach_intervals()
    assert again.to_dict() == loaded.to_dict()


def test_a_front_whose_ends_differ_reports_significant_spans(conflict):
    t = conflict.tradeoff
    assert t["helpfulness"]["from"] == "w0.00-1.00" and t["helpfulness"]["to"] == "w1.00-0.00"
    for o in OBJ:
        assert t[o]["span"] > 0.3 and t[o]["ci"][0] > 0
    text = conflict.to_table()
    assert text.count(": significant") >= 2
    assert "points beyond noise vs the starting policy: w1.00-0.00" in text
    assert "warning" not in text
    mid = conflict.get("w0.50-0.50")
    assert conflict.hypervolume() == pytest.approx(
        (mid.scores["helpfulness"] - 0.5) * (mid.scores["harmlessness"] - 0.5))


def test_a_front_equal_to_the_start_reports_nothing_beyond_noise(tmp_path):
    rng = np.random.default_rng(1)
    start = _hh_like(rng, 0.5, 0.5)
    front = _traced(tmp_path / "flat", {"w1.00-0.00": start, "w0.00-1.00": start.copy()}, start)
    assert all(e["span"] == 0 and e["ci"] == [0.0, 0.0] for e in front.tradeoff.values())
    assert front.hypervolume_ci == [0.0, 0.0]
    text = front.to_table()
    assert text.count("within noise") == 3 and ": significant" not in text
    assert "warning: no point differs from the starting policy beyond noise" in text


def test_bad_interval_fields_are_named(conflict):
    data = conflict.to_dict()
    cases = [
        (lambda d: d.update(hypervolume_ci=[0.2, 0.1]), "hypervolume_ci must have lo <= hi"),
        (lambda d: d.update(hypervolume_ci=[0.1]), r"hypervolume_ci must be an interval"),
        (lambda d: d["points"][0]["ci"].update(honesty=[0, 1]), r"ci: unknown objectives \['honesty'\]"),
        (lambda d: d["tradeoff"]["helpfulness"].update(to="nope"), "'nope' is not a point"),
        (lambda d: d["tradeoff"]["helpfulness"].pop("ci"), "exactly the keys span, ci, from, to"),
        (lambda d: d.update(bootstrap={"resamples": 5}), "bootstrap: 'bootstrap.resamples'"),
        (lambda d: d["metadata"].update(reference="origin"), "metadata.reference must be one of"),
        (lambda d: d.update(hypervolume_gain={"value": 1}), "hypervolume_gain must be"),
    ]
    for mutate, match in cases:
        bad = json.loads(json.dumps(data))
        mutate(bad)
        with pytest.raises(CheckpointError, match=match):
            ParetoFront.from_dict(bad)


def test_adding_a_point_drops_the_front_level_intervals(conflict):
    conflict.add(FrontPoint("extra", {"helpfulness": 0.9, "harmlessness": 0.9}, weights=[0.2, 0.8]))
    assert conflict.hypervolume_ci is None and conflict.tradeoff is None


def test_comparisons_refuse_different_reference_points(conflict, tmp_path):
    other = ParetoFront.from_dict({**conflict.to_dict(), "reference_point": [0.0, 0.0],
                                   "metadata": {**conflict.metadata, "reference": "explicit"}})
    with pytest.raises(ParetoError, match=r"reference point \[0.0, 0.0\].*not comparable"):
        plot_fronts([conflict, other], tmp_path / "x.png")
    with pytest.raises(ParetoError, match="not comparable"):
        common_reference([conflict, other])
    assert not (tmp_path / "x.png").exists()
    # told to recompute both at one reference point: allowed
    assert plot_fronts([conflict, other], tmp_path / "x.png", reference_point=[0.2, 0.2]).is_file()
    assert common_reference([conflict, other], [0.2, 0.2]) == [0.2, 0.2]
    with pytest.raises(ParetoError, match="2 finite numbers"):
        common_reference([conflict], [0.2])
    # a front without a reference point is measured at the others'
    bare = ParetoFront(OBJ, [FrontPoint("x", {"helpfulness": 0.7, "harmlessness": 0.7})])
    assert common_reference([conflict, bare]) == conflict.reference_point


def test_hypervolume_difference_is_paired_and_refuses_other_examples(conflict, tmp_path):
    root = tmp_path / "conflict"
    same = ParetoFront.load(root)
    d = hypervolume_difference(same, ParetoFront.load(root))
    assert d["value"] == 0.0 and d["ci"] == [0.0, 0.0] and not d["significant"]
    # a second front on the same examples whose middle point wins 15 more pairs per objective
    per = {p.id: read_per_example(root / p.per_example, OBJ) for p in same.points}
    better = per["w0.50-0.50"].copy()
    better[np.flatnonzero(better[:, 0] == 0)[:15], 0] = 1.0
    better[np.flatnonzero(better[:, 1] == 0)[:15], 1] = 1.0
    base = read_per_example(root / "baseline" / "scores.jsonl", OBJ)
    second = _traced(tmp_path / "second", {**per, "w0.50-0.50": better}, base)
    d = hypervolume_difference(ParetoFront.load(root), ParetoFront.load(tmp_path / "second"))
    assert d["value"] > 0 and d["ci"][0] <= d["value"] <= d["ci"][1]
    assert d["value"] == pytest.approx(second.hypervolume() - same.hypervolume())
    assert d["significant"]  # paired: the change is 15 pairs per objective, nothing else
    fewer = _traced(tmp_path / "fewer", {k: v[:100] for k, v in per.items()}, base[:100])
    with pytest.raises(ParetoError, match="different example sets"):
        hypervolume_difference(ParetoFront.load(root), ParetoFront.load(tmp_path / "fewer"))
    assert len(read_per_example(tmp_path / "fewer" / fewer.points[0].per_example, OBJ)) == 100
    mixed = ParetoFront.load(tmp_path / "fewer")
    mixed.metadata["heldout"] = {"examples": 100, "sha256": "a"}
    same.metadata["heldout"] = {"examples": 120, "sha256": "b"}
    with pytest.raises(ParetoError, match="different held-out examples"):
        hypervolume_difference(same, mixed)
