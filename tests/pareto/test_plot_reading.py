"""The front figure reads at a glance: labels never overlap (measured on the rendered boxes),
axes fit the data rather than the reference point, the start and the region it dominates are
drawn, and the caption carries the hypervolume with its interval."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moalign.pareto.front import FrontPoint, ParetoFront
from moalign.pareto.labels import LABEL_GID
from moalign.pareto.plot import build_figure


def _cluster(n: int = 11, k: int = 2, spread: float = 0.004, seed: int = 0,
             method: str = "soup") -> ParetoFront:
    """``n`` points packed in a few hundredths, labels far wider than the gaps between them."""
    rng = np.random.default_rng(seed)
    names = ["helpfulness", "harmlessness", "honesty"][:k]
    points = []
    for i, w in enumerate(np.linspace(0, 1, n)):
        weights = [float(w), float(1 - w)] + [0.0] * (k - 2)
        scores = {o: 0.5 + (spread if j == 0 else -spread) * i + rng.normal(0, 0.002)
                  for j, o in enumerate(names)}
        points.append(FrontPoint(id=f"p{i}", weights=weights, scores=scores,
                                 stderr={o: 0.01 for o in names}))
    return ParetoFront(objectives=names, points=points, method=method,
                       reference_point=[0.5] * k,
                       metadata={"baseline": {"scores": {o: 0.5 for o in names}},
                                 "reference": "baseline"})


def _label_boxes(fig):
    """The rendered box of every label's text (without its leader line), per axes."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    by_axes = {}
    for ax in fig.axes:
        texts = [t for t in ax.texts if t.get_gid() == LABEL_GID]
        by_axes[ax] = [Text.get_window_extent(t, renderer) for t in texts]
    return by_axes


def _intersect(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


@pytest.mark.parametrize("case", ["cluster", "two_fronts", "three_objectives"])
def test_rendered_labels_never_intersect_and_stay_in_the_axes(case):
    if case == "cluster":
        fronts, names = [_cluster()], ["soup"]
    elif case == "two_fronts":
        fronts, names = [_cluster(), _cluster(seed=1, method="sweep")], ["soup", "sweep"]
    else:
        fronts, names = [_cluster(n=8, k=3)], ["soup"]
    ref = np.asarray(fronts[0].reference_point)
    fig = build_figure(fronts, names, ref, [f.hypervolume(ref) for f in fronts])
    boxes = _label_boxes(fig)
    total = sum(len(f) for f in fronts)
    assert sum(len(b) for b in boxes.values()) == total * (1 if fronts[0].objectives[2:] == []
                                                           else 3)
    for ax, bs in boxes.items():
        frame = ax.get_window_extent(fig.canvas.get_renderer())
        for a, b in itertools.combinations(bs, 2):
            assert _intersect(a, b) == 0.0, (case, a, b)
        for a in bs:
            assert frame.x0 - 1 <= a.x0 and a.x1 <= frame.x1 + 1
            assert frame.y0 - 1 <= a.y0 and a.y1 <= frame.y1 + 1


def test_negative_control_labels_at_a_fixed_offset_do_intersect():
    """Why the search is needed: the old fixed (4, 4) offset overlaps on this front."""
    fig = build_figure([_cluster()], ["soup"], np.array([0.5, 0.5]), [0.0])
    ax = fig.axes[0]
    for t in [t for t in ax.texts if t.get_gid() == LABEL_GID]:
        t.remove()
    front = _cluster()
    naive = [ax.annotate(p.label(), xy, textcoords="offset points", xytext=(4, 4), fontsize=7)
             for p, xy in zip(front.points, front.scores_array)]
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    bs = [t.get_window_extent(renderer) for t in naive]
    assert any(_intersect(a, b) > 0 for a, b in itertools.combinations(bs, 2))


def test_axes_fit_the_data_not_a_far_reference_point():
    front = _cluster()
    fig = build_figure([front], ["soup"], np.array([0.0, 0.0]), [front.hypervolume([0, 0])])
    ax = fig.axes[0]
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert 0.45 < x0 < 0.5 < x1 < 0.6 and 0.42 < y0 < 0.5 < y1 < 0.55
    assert not ax.collections or all(type(c).__name__ != "FillBetweenPolyCollection"
                                     for c in ax.collections)  # no shaded hypervolume


def test_start_region_and_caption_with_the_hypervolume_interval():
    front = _cluster()
    front.hypervolume_ci = [0.0, 0.0123]
    front.hypervolume_gain = {"value": 0.0, "ci": [0.0, 0.0123]}
    front.tradeoff = {"helpfulness": {"span": 0.04, "ci": [0.01, 0.07], "from": "p0", "to": "p10"}}
    front.bootstrap = {"resamples": 2000, "level": 0.95, "seed": 0}
    fig = build_figure([front], ["soup"], np.array([0.5, 0.5]), [0.0])
    text = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert "hypervolume 0 [0, 0.0123] over the starting policy (gain: within noise)" in text
    assert "helpfulness span +0.04 [+0.01, +0.07] significant" in text
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "starting policy" in legend and "dominated by the starting policy" in legend
    shade = [p for p in ax.patches if p.get_label() == "dominated by the starting policy"]
    assert len(shade) == 1
    x, y = shade[0].get_x() + shade[0].get_width(), shade[0].get_y() + shade[0].get_height()
    assert (x, y) == pytest.approx((0.5, 0.5))  # the start is the shade's upper-right corner
