"""Drawing fronts: scatter, non-dominated staircase, intervals, the starting policy.

:func:`draw_fronts` draws fronts that :func:`moalign.pareto.front.plot_fronts` has already
checked (same objectives, one common reference point); it reads only the attributes it draws
(``objectives``, ``points``, ``scores_array``, ``nondominated``, ``metadata``), so it does not
import :mod:`moalign.pareto.front`. Uses matplotlib's Agg canvas directly: it works headless
and leaves pyplot's global state alone.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from moalign.storage.files import atomic_write_bytes

__all__ = ["draw_fronts"]


def _staircase(pts: np.ndarray, ref: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Boundary of the region dominated by the non-dominated ``pts`` [M, 2] (maximization)."""
    order = np.lexsort((-pts[:, 1], pts[:, 0]))
    x, y = pts[order, 0], pts[order, 1]
    xs, ys = [], []
    if ref is not None:
        xs.append(ref[0])
        ys.append(y[0])
    for i in range(len(x)):
        xs += [x[i], x[i]]
        ys += [y[i], y[i + 1] if i + 1 < len(x) else (ref[1] if ref is not None else y[i])]
    return np.array(xs), np.array(ys)


def _error_bars(front: Any) -> np.ndarray:
    """``[2, N, K]`` distances below / above each score: the bootstrap interval where the
    point has one, else one standard error each way, else 0."""
    scores = front.scores_array
    out = np.zeros((2,) + scores.shape)
    for n, point in enumerate(front.points):
        for k, o in enumerate(front.objectives):
            ci = (point.ci or {}).get(o)
            if ci is not None:
                out[0, n, k], out[1, n, k] = scores[n, k] - ci[0], ci[1] - scores[n, k]
            elif o in point.stderr:
                out[:, n, k] = point.stderr[o]
    return np.maximum(out, 0.0)


def _draw_2d(ax: Any, front: Any, i: int, j: int, color: Any, marker: str, label: str,
             ref: np.ndarray | None, staircase: bool, annotate: bool) -> None:
    scores = front.scores_array
    nd = front.nondominated
    err = _error_bars(front)
    if staircase and nd.any():
        sx, sy = _staircase(scores[nd][:, [i, j]], None)
        ax.plot(sx, sy, color=color, lw=1.2, alpha=0.8)
        if ref is not None:  # the hypervolume: only points beyond the reference enclose any
            inside = nd & np.all(scores[:, [i, j]] > ref[[i, j]], axis=1)
            if inside.any():
                fx, fy = _staircase(scores[inside][:, [i, j]], ref[[i, j]])
                ax.fill_between(fx, fy, ref[j], color=color, alpha=0.12, step=None, lw=0)
    for mask, col, lab in ((~nd, "0.65", None), (nd, color, label)):
        if mask.any():
            ax.errorbar(scores[mask, i], scores[mask, j], xerr=err[:, mask, i],
                        yerr=err[:, mask, j], fmt=marker, color=col, ecolor=col,
                        elinewidth=0.8, capsize=2, ms=6, label=lab, zorder=3)
    if annotate:
        for point, (x, y) in zip(front.points, scores[:, [i, j]], strict=True):
            ax.annotate(point.label(), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    baseline = front.metadata.get("baseline") if isinstance(front.metadata, Mapping) else None
    if isinstance(baseline, Mapping) and isinstance(baseline.get("scores"), Mapping):
        names = (front.objectives[i], front.objectives[j])
        if all(isinstance(baseline["scores"].get(n), Real) for n in names):
            ax.plot(*(baseline["scores"][n] for n in names), marker="*", ms=11, ls="none",
                    color="black", zorder=4, label="starting policy" if annotate else None)
            if annotate:
                ax.legend(fontsize=8, loc="lower left")


def draw_fronts(fronts: Sequence[Any], path: str | os.PathLike, labels: Sequence[str],
                ref: np.ndarray | None, hypervolumes: Sequence[float] | None) -> Path:
    """Draw checked fronts into one figure at ``path`` (format from the suffix)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    objectives = fronts[0].objectives
    k = len(objectives)
    if hypervolumes is not None:
        labels = [f"{lab} (HV {hv:.4g})" for lab, hv in zip(labels, hypervolumes, strict=True)]
    several = len(fronts) > 1
    annotate = sum(len(f) for f in fronts) <= 60
    markers = "osD^vP*Xh<>"

    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    ncols = min(len(pairs), 3)
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(5.2 * ncols if k > 2 else 6.4, 4.6 * nrows if k > 2 else 5.2),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (i, j) in zip(axes, pairs, strict=False):
        if ref is not None:
            ax.axvline(ref[i], color="0.5", lw=0.7, ls=":", zorder=1)
            ax.axhline(ref[j], color="0.5", lw=0.7, ls=":", zorder=1)
        for n, f in enumerate(fronts):
            _draw_2d(ax, f, i, j, f"C{n % 10}", markers[n % len(markers)], labels[n], ref,
                     staircase=k == 2, annotate=annotate)
        ax.set_xlabel(f"{objectives[i]} (higher is better)")
        ax.set_ylabel(f"{objectives[j]} (higher is better)")
        ax.grid(alpha=0.3)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    if several:
        axes[0].legend(fontsize=8, loc="best")
    title = "Pareto fronts" if several else f"{fronts[0].method} front"
    if ref is not None:
        hv = "" if several or hypervolumes is None else f": hypervolume {hypervolumes[0]:.4g}"
        title += f"{hv} (reference point {[round(float(v), 6) for v in ref]}, dotted)"
    title += "\ndominated points in grey; bars: bootstrap intervals (else ± 1 stderr)"
    fig.suptitle(title, fontsize=10)
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120)
    return atomic_write_bytes(Path(path), buf.getvalue())
