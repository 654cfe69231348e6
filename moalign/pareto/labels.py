"""Point labels that never overlap: an offset search in display space, leader lines when far.

:func:`place_labels` runs after the axes' limits and the figure's layout are fixed. For each
point in turn it tries positions on rings of growing radius around the point (16 directions
each) and takes the nearest where the label's box stays inside the axes and touches no label
placed before and no marker, preferring (at a small cost in distance) one that crosses no
interval bar; a label placed beyond the first rings gets a thin leader line to its point. Boxes are measured with the renderer, so the check is on the pixels
that are drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["LABEL_GID", "place_labels"]

#: ``gid`` of every label artist (tests find the labels of a figure by it)
LABEL_GID = "point-label"
#: distances (pixels) from a point to its label, tried in order
_RINGS = (4, 9, 16, 26, 40, 58, 80, 110, 150)
#: directions tried on each ring (degrees, counter-clockwise from the right)
_ANGLES = (45, -45, 135, -135, 0, 180, 90, -90, 22, -22, 158, -158, 68, -68, 112, -112)
#: beyond this distance (pixels) a leader line joins the label to its point
_LEADER_FROM = 12
_PAD = 2.0


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _box(px: float, py: float, w: float, h: float, r: float, angle: float):
    """``(box, ha, va, anchor)``: a ``w`` x ``h`` box whose nearest side or corner is ``r``
    pixels from ``(px, py)`` in direction ``angle``."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    ax, ay = px + r * c, py + r * s
    x0, ha = _start(ax, w, c, "left", "right")
    y0, va = _start(ay, h, s, "bottom", "top")
    return (x0, y0, x0 + w, y0 + h), ha, va, (ax, ay)


def _start(anchor: float, size: float, direction: float, after: str, before: str
           ) -> tuple[float, str]:
    """Along one axis, where a box of ``size`` starts and its alignment name: after the anchor
    (``direction`` clearly positive), before it (clearly negative) or centred on it."""
    if direction > 0.3:
        return anchor, after
    if direction < -0.3:
        return anchor - size, before
    return anchor - size / 2, "center"


def place_labels(ax: Any, points: Sequence[tuple[float, float]], texts: Sequence[str], *,
                 renderer: Any, colors: Sequence[Any] | None = None, fontsize: float = 7,
                 marker_px: float = 5.0, obstacles: Sequence[tuple[float, float]] = (),
                 soft: Sequence[tuple[float, float, float, float]] = ()) -> list[Any]:
    """Annotate ``points`` (data coordinates) with ``texts`` on ``ax`` without overlaps (see
    the module docstring); returns the annotation artists (``gid`` :data:`LABEL_GID`).

    A label never covers another label, a point's marker or one of ``obstacles`` (more
    markers, data coordinates, twice the size: e.g. the starting policy's star), and avoids
    the ``soft`` boxes (data coordinates ``(x0, y0, x1, y1)``, e.g. interval bars) where it
    can do so without going far.
    """
    fig = ax.figure
    to_pt = 72.0 / fig.dpi
    frame = ax.get_window_extent(renderer)
    inside = (frame.x0 + _PAD, frame.y0 + _PAD, frame.x1 - _PAD, frame.y1 - _PAD)
    disp = [tuple(ax.transData.transform(p)) for p in points]
    placed: list[tuple[float, float, float, float]] = []
    markers = [(x - marker_px, y - marker_px, x + marker_px, y + marker_px) for x, y in disp]
    for x, y in (ax.transData.transform(o) for o in obstacles):
        r = 2 * marker_px
        markers.append((x - r, y - r, x + r, y + r))
    thin = []
    for x0, y0, x1, y1 in soft:
        (a, b), (c, d) = ax.transData.transform([(x0, y0), (x1, y1)])
        thin.append((min(a, c) - 1, min(b, d) - 1, max(a, c) + 1, max(b, d) + 1))
    out = []
    for n, ((px, py), text) in enumerate(zip(disp, texts, strict=True)):
        probe = ax.text(0, 0, text, fontsize=fontsize)
        ext = probe.get_window_extent(renderer)
        probe.remove()
        w, h = ext.width + 2 * _PAD, ext.height + 2 * _PAD
        best, best_cost = None, math.inf
        for r in _RINGS:
            for angle in _ANGLES:
                box, ha, va, anchor = _box(px, py, w, h, r, angle)
                outside = (max(inside[0] - box[0], 0) + max(box[2] - inside[2], 0)
                           + max(inside[1] - box[1], 0) + max(box[3] - inside[3], 0))
                hard = sum(_overlap(box, o) for o in placed + markers)
                cost = (1e6 * outside + 1e3 * hard + sum(_overlap(box, o) for o in thin)
                        + 1.5 * r)
                if cost < best_cost:
                    best, best_cost = (box, ha, va, anchor, r), cost
        box, ha, va, (axx, ayy), r = best
        color = colors[n] if colors is not None else "0.2"
        leader = dict(arrowstyle="-", lw=0.5, color=color, shrinkA=0, shrinkB=3) \
            if r > _LEADER_FROM else None
        # the text's anchor sits _PAD inside the measured box, on the side facing the point
        dx = {"left": _PAD, "right": -_PAD, "center": 0.0}[ha]
        dy = {"bottom": _PAD, "top": -_PAD, "center": 0.0}[va]
        ann = ax.annotate(text, (points[n][0], points[n][1]), textcoords="offset points",
                          xytext=((axx - px + dx) * to_pt, (ayy - py + dy) * to_pt),
                          ha=ha, va=va, fontsize=fontsize, color=color, arrowprops=leader,
                          annotation_clip=False, zorder=5, gid=LABEL_GID)
        ann.set_in_layout(False)
        placed.append(box)
        out.append(ann)
    return out
