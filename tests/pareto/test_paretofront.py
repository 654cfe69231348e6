"""Tests of ParetoFront: derived flags, front.json round trip and schema errors, table, plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from moalign.errors import CheckpointError
from moalign.pareto import FrontPoint, ParetoError, ParetoFront, hypervolume, plot_fronts
from moalign.pareto.plot import _staircase

OBJ = ["helpfulness", "harmlessness"]

# the example of DESIGN.md section 7, verbatim
DESIGN_EXAMPLE = """
{"objectives": ["helpfulness", "harmlessness"],
 "method": "soup", "reference_point": [0.0, 0.0], "hypervolume": 0.42,
 "points": [{"id": "w0.30-0.70", "weights": [0.3, 0.7],
             "scores": {"helpfulness": 0.61, "harmlessness": 0.55},
             "stderr": {"helpfulness": 0.02, "harmlessness": 0.03},
             "nondominated": true, "checkpoint": "points/w0.30-0.70"}],
 "cost": {"train_seconds": 0.0, "eval_seconds": 0.0, "train_steps": 0}}
"""


def make_front() -> ParetoFront:
    points = [
        FrontPoint("w0.30-0.70", {"helpfulness": 0.1 + 0.2, "harmlessness": 2 / 3},
                   {"helpfulness": 0.02, "harmlessness": 1e-17}, weights=[0.3, 0.7], checkpoint="points/w0.30-0.70"),
        FrontPoint("w0.70-0.30", {"helpfulness": 0.7, "harmlessness": 0.2}, weights=[0.7, 0.3],
                   checkpoint="points/w0.70-0.30", metadata={"seed": 3, "note": "ok"}),
        FrontPoint("w0.50-0.50", {"helpfulness": 0.25, "harmlessness": 0.15}, weights=[0.5, 0.5]),
        FrontPoint("mix", {"helpfulness": 0.7, "harmlessness": 0.2}, condition={"temperature": 0.7, "mix": [0.5, 0.5]}),
    ]
    return ParetoFront(OBJ, points, method="sweep", reference_point=[0.0, -0.1],
                       cost={"train_seconds": 12.5, "eval_seconds": 3.25, "train_steps": 40},
                       metadata={"dataset": "hh-rlhf"})


def test_derived_quantities():
    front = make_front()
    np.testing.assert_array_equal(front.scores_array, [[0.1 + 0.2, 2 / 3], [0.7, 0.2], [0.25, 0.15], [0.7, 0.2]])
    # the duplicate scores of "mix" and "w0.70-0.30" are both kept
    np.testing.assert_array_equal(front.nondominated, [True, True, False, True])
    # staircase by hand: 0.3 x (2/3 + 0.1) + (0.7 - 0.3) x (0.2 + 0.1)
    expected = 0.30000000000000004 * (2 / 3 + 0.1) + (0.7 - 0.30000000000000004) * 0.30000000000000004
    assert front.hypervolume() == pytest.approx(expected, rel=1e-12)
    assert front.hypervolume([0.5, 0.0]) == pytest.approx(0.2 * 0.2)
    assert np.isnan(front.stderr_array[1, 0]) and front.stderr_array[0, 0] == 0.02
    np.testing.assert_allclose(front.hypervolume_contributions(), [0.3 * (2 / 3 - 0.2), 0, 0, 0], atol=1e-12)
    assert len(front) == 4 and [p.id for p in front][-1] == "mix"
    assert front.get("mix").condition["temperature"] == 0.7
    with pytest.raises(KeyError, match="no point with id 'nope'"):
        front.get("nope")


def test_hypervolume_needs_a_reference_point():
    front = ParetoFront(OBJ, [FrontPoint("a", {"helpfulness": 1.0, "harmlessness": 1.0})])
    with pytest.raises(ParetoError, match="no reference_point; pass ref"):
        front.hypervolume()
    assert front.hypervolume([0, 0]) == 1.0
    assert front.to_dict()["hypervolume"] is None


def test_save_load_round_trip_is_exact(tmp_path):
    front = make_front()
    path = front.save(tmp_path / "front.json")
    loaded = ParetoFront.load(path)
    assert loaded == front
    assert loaded.points[0].scores["helpfulness"] == 0.1 + 0.2  # not 0.3: floats are exact
    assert loaded.points[0].stderr["harmlessness"] == 1e-17
    assert isinstance(loaded.cost["train_steps"], int)
    # save -> load -> save gives the same bytes; a folder path means <folder>/front.json
    loaded.save(tmp_path)
    assert (tmp_path / "front.json").read_bytes() == path.read_bytes()
    assert ParetoFront.load(tmp_path) == front


def test_saved_file_follows_the_schema(tmp_path):
    front = make_front()
    data = json.loads(front.save(tmp_path / "f.json").read_text())
    assert list(data) == ["objectives", "method", "reference_point", "hypervolume", "points", "cost", "metadata"]
    assert data["hypervolume"] == hypervolume(front.scores_array, [0.0, -0.1])
    assert [p["nondominated"] for p in data["points"]] == [True, True, False, True]
    first = data["points"][0]
    assert list(first) == ["id", "weights", "scores", "stderr", "nondominated", "checkpoint"]
    assert data["points"][3]["weights"] is None and data["points"][3]["condition"]["mix"] == [0.5, 0.5]
    assert data["cost"] == {"train_seconds": 12.5, "eval_seconds": 3.25, "train_steps": 40}
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_loads_the_design_example_and_rederives_flags(tmp_path):
    path = tmp_path / "front.json"
    path.write_text(DESIGN_EXAMPLE)
    front = ParetoFront.load(path)
    assert front.method == "soup" and front.points[0].checkpoint == "points/w0.30-0.70"
    assert front.hypervolume() == pytest.approx(0.61 * 0.55)  # the stored 0.42 is not trusted
    # stale flags in a hand-edited file are recomputed from the scores
    data = json.loads(DESIGN_EXAMPLE)
    data["points"].append({"id": "b", "weights": [1, 0], "scores": {"helpfulness": 0.1, "harmlessness": 0.1},
                           "nondominated": True})
    path.write_text(json.dumps(data))
    front = ParetoFront.load(path)
    np.testing.assert_array_equal(front.nondominated, [True, False])
    assert front.to_dict()["points"][1]["nondominated"] is False


def _edit(mutate):
    data = json.loads(DESIGN_EXAMPLE)
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("objectives"), r"missing field 'objectives'"),
        (lambda d: d.pop("points"), r"missing field 'points'"),
        (lambda d: d.update(hypervolum=1.0), r"unknown field\(s\) \['hypervolum'\]"),
        (lambda d: d["points"][0].pop("scores"), r"points\[0\] is missing field 'scores'"),
        (lambda d: d["points"][0]["scores"].pop("harmlessness"), r"points\[0\] \(id 'w0.30-0.70'\)\.scores: missing objectives \['harmlessness'\]"),
        (lambda d: d["points"][0]["scores"].update(helpfulness="high"), r"scores\['helpfulness'\] must be a finite number, got 'high'"),
        (lambda d: d["points"][0]["scores"].update(helpfulness=float("nan")), r"scores\['helpfulness'\] must be a finite number"),
        (lambda d: d["points"][0]["stderr"].update(harmlessness=-1), r"stderr\['harmlessness'\] must be >= 0"),
        (lambda d: d["points"][0].update(weights=[0.5, 0.7]), r"weights must sum to 1"),
        (lambda d: d["points"][0].update(weights=[1.0]), r"weights has 1 entries but there are 2 objectives"),
        (lambda d: d["points"][0].update(nondominated="yes"), r"points\[0\]\.nondominated must be true or false"),
        (lambda d: d["points"][0].update(colour="red"), r"points\[0\] has unknown field\(s\) \['colour'\]"),
        (lambda d: d["points"].append(dict(d["points"][0])), r"points\[1\]\.id 'w0.30-0.70' is used by another point"),
        (lambda d: d.update(reference_point=[0.0]), r"reference_point must have 2 values"),
        (lambda d: d.update(objectives=["a", "a"]), r"objectives must be unique"),
        (lambda d: d["cost"].update(train_steps=-3), r"cost\['train_steps'\] must be >= 0"),
        (lambda d: d.update(hypervolume="big"), r"'hypervolume' must be a number or null"),
    ],
)
def test_load_names_the_bad_field(tmp_path, mutate, match):
    path = tmp_path / "front.json"
    path.write_text(json.dumps(_edit(mutate)))
    with pytest.raises(CheckpointError, match=match) as info:
        ParetoFront.load(path)
    assert str(path) in str(info.value)


def test_load_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such front file"):
        ParetoFront.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ParetoFront.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="expected a JSON object, got list"):
        ParetoFront.load(tmp_path / "list.json")


def test_construction_and_add_validate():
    with pytest.raises(ParetoError, match="objectives must be a non-empty list"):
        ParetoFront([])
    with pytest.raises(ParetoError, match=r"unknown objectives \['length'\]"):
        ParetoFront(OBJ, [FrontPoint("a", {"helpfulness": 1, "harmlessness": 1, "length": 3})])
    front = ParetoFront(OBJ, reference_point=np.array([0, 0]))
    assert front.reference_point == [0.0, 0.0] and isinstance(front.reference_point[0], float)
    front.add(FrontPoint("a", {"helpfulness": 1, "harmlessness": 2}, weights=np.array([0.5, 0.5])))
    assert front.points[0].weights == [0.5, 0.5] and front.points[0].scores["helpfulness"] == 1.0
    with pytest.raises(ParetoError, match="id 'a' is already on the front"):
        front.add(FrontPoint("a", {"helpfulness": 0, "harmlessness": 0}))
    with pytest.raises(ParetoError, match=r"weights must be non-negative"):
        front.add(FrontPoint("b", {"helpfulness": 0, "harmlessness": 0}, weights=[1.5, -0.5]))
    assert len(front) == 1


def test_to_table_is_aligned_and_marks_nondominated():
    front = make_front()
    lines = front.to_table().splitlines()
    assert lines[0].startswith("sweep front, 4 points (3 non-dominated")
    assert f"hypervolume {front.hypervolume():.6g}" in lines[0]
    header, rows = lines[1], lines[2:]
    assert len(rows) == 4
    col = header.index("harmlessness")
    for row, nd in zip(rows, front.nondominated, strict=True):
        assert row.startswith("*") == bool(nd)
        assert row[col - 2 : col] == "  " and row[col] != " "  # the column starts at the same place
    assert "0.3 ± 0.02" in rows[0] and "(0.30, 0.70)" in rows[0] and "points/w0.30-0.70" in rows[0]
    assert "temperature=0.7" in rows[3]


def test_staircase_by_hand():
    xs, ys = _staircase(np.array([[2.0, 2.0], [1.0, 3.0], [3.0, 1.0]]))
    np.testing.assert_array_equal(xs, [1, 2, 2, 3, 3])  # the steps between the points only
    np.testing.assert_array_equal(ys, [3, 3, 2, 2, 1])


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_two_and_three_objectives(tmp_path):
    front = make_front()
    assert _is_png(front.plot(tmp_path / "front.png"))
    rng = np.random.default_rng(0)
    three = ParetoFront(["a", "b", "c"], [
        FrontPoint(f"p{i}", dict(zip("abc", rng.random(3).tolist(), strict=True)), {"a": 0.01}) for i in range(12)
    ], reference_point=[0, 0, 0])
    assert _is_png(three.plot(tmp_path / "sub" / "three.png"))
    four = ParetoFront(list("abcd"), [FrontPoint("x", dict.fromkeys("abcd", 1.0))])
    assert four.plot(tmp_path / "four.svg").read_text().lstrip().startswith("<?xml")
    empty = ParetoFront(OBJ)  # no points, no reference point: still a (blank) figure
    assert _is_png(empty.plot(tmp_path / "empty.png"))


def test_plot_comparison_of_fronts(tmp_path):
    a = make_front()
    b = ParetoFront(OBJ, [FrontPoint("x", {"helpfulness": 0.5, "harmlessness": 0.5})], method="soup")
    assert _is_png(a.plot(tmp_path / "cmp.png", others=[b], labels=["sweep", "soup"]))
    assert _is_png(plot_fronts([a, b, a], tmp_path / "cmp3.png"))
    with pytest.raises(ParetoError, match="got 1 labels for 2 fronts"):
        a.plot(tmp_path / "x.png", others=[b], labels=["only one"])
    other = ParetoFront(["x", "y"], [FrontPoint("x", {"x": 0.5, "y": 0.5})])
    with pytest.raises(ParetoError, match=r"front 1 has objectives \['x', 'y'\]"):
        plot_fronts([a, other], tmp_path / "x.png")
    with pytest.raises(ParetoError, match="at least 2 objectives"):
        ParetoFront(["only"], [FrontPoint("x", {"only": 1.0})]).plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_empty_front_round_trips(tmp_path):
    front = ParetoFront(OBJ, method="conditioned", reference_point=[0, 0])
    assert front.hypervolume() == 0.0 and front.scores_array.shape == (0, 2)
    assert front.to_table().startswith("conditioned front, 0 points (0 non-dominated")
    assert ParetoFront.load(front.save(tmp_path / "e.json")) == front
    assert math.isclose(ParetoFront.load(tmp_path / "e.json").hypervolume([-1, -1]), 0.0)
