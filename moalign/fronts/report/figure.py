"""The interactive front of a report: one plotly figure, every point a marker with its hover.

Each front is one trace of markers (one marker per point, named by the front's label), with
its scores' paired-bootstrap intervals as error bars; the start (the trace's baseline) is a
trace of its own. Hovering a point shows its id, its weights, each score with its interval and
its difference to the start with that difference's interval. Two objectives: a scatter; more:
a scatter matrix of every pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["front_figure", "hover_text"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
#: The other markers once a point is clicked (selected): still readable.
UNSELECTED = {"marker": {"opacity": 0.6}}


def _iv(v: Any) -> str:
    return f" [{v[0]:.3f}, {v[1]:.3f}]" if v else ""


def hover_text(front: Any, point: Any) -> str:
    """The hover of one point (HTML lines)."""
    base = ((front.metadata or {}).get("baseline") or {}).get("scores") or {}
    lines = [f"<b>{point.id}</b>"]
    if point.weights is not None:
        lines.append("weights: " + ", ".join(f"{o} {w:.3g}"
                                             for o, w in zip(front.objectives, point.weights)))
    for o in front.objectives:
        line = f"{o}: {point.scores[o]:.4f}{_iv(point.ci.get(o))}"
        if o in base:
            line += f"; vs start {point.scores[o] - base[o]:+.4f}{_iv(point.delta_ci.get(o))}"
        lines.append(line)
    return "<br>".join(lines)


def _error(front: Any, points: Sequence[Any], o: str) -> dict[str, Any] | None:
    if not all(o in p.ci for p in points):
        return None
    return {"type": "data", "symmetric": False,
            "array": [p.ci[o][1] - p.scores[o] for p in points],
            "arrayminus": [p.scores[o] - p.ci[o][0] for p in points], "thickness": 1}


def front_figure(fronts: Sequence[Any], labels: Sequence[str]) -> Any:
    """A ``plotly.graph_objects.Figure`` of several fronts (objectives as in the first)."""
    import plotly.graph_objects as go

    objectives = list(fronts[0].objectives)
    fig = go.Figure()
    for i, (front, label) in enumerate(zip(fronts, labels)):
        color = COLORS[i % len(COLORS)]
        points = list(front.points)
        ids = [p.id for p in points]
        hover = [hover_text(front, p) for p in points]
        symbols = ["circle" if nd else "circle-open" for nd in front.nondominated]
        marker = {"size": 11, "color": color, "symbol": symbols}
        common = {"name": label, "customdata": ids, "hovertext": hover, "hoverinfo": "text",
                  "meta": {"front": i, "kind": "points"}, "legendgroup": label,
                  "unselected": UNSELECTED}
        base = ((front.metadata or {}).get("baseline") or {}).get("scores")
        if len(objectives) == 2:
            x, y = objectives
            fig.add_trace(go.Scatter(
                x=[p.scores[x] for p in points], y=[p.scores[y] for p in points],
                mode="markers+text", text=ids, textposition="top center", marker=marker,
                error_x=_error(front, points, x), error_y=_error(front, points, y), **common))
            if base:
                fig.add_trace(go.Scatter(
                    x=[base[x]], y=[base[y]], mode="markers", name=f"{label}: start",
                    marker={"size": 12, "color": color, "symbol": "x"}, customdata=["start"],
                    hovertext=[f"<b>start</b><br>{x}: {base[x]:.4f}<br>{y}: {base[y]:.4f}"],
                    hoverinfo="text", meta={"front": i, "kind": "start"}, legendgroup=label,
                    unselected=UNSELECTED))
        else:
            dims = [{"label": o, "values": [p.scores[o] for p in points]} for o in objectives]
            fig.add_trace(go.Splom(dimensions=dims, marker=marker, diagonal_visible=False,
                                   **common))
    if len(objectives) == 2:
        fig.update_layout(xaxis_title=f"{objectives[0]} (higher is better)",
                          yaxis_title=f"{objectives[1]} (higher is better)")
    fig.update_layout(template="plotly_white", height=560, clickmode="event+select",
                      legend={"orientation": "h", "y": -0.15},
                      margin={"l": 60, "r": 20, "t": 30, "b": 40})
    return fig
