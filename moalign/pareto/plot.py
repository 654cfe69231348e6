"""Drawing fronts so that a person reads them at a glance.

:func:`draw_fronts` draws fronts that :func:`moalign.pareto.front.plot_fronts` has already
checked (same objectives, one common reference point); it reads only the attributes it draws
(``objectives``, ``points``, ``scores_array``, ``nondominated``, ``metadata``, the bootstrap
fields), so it does not import :mod:`moalign.pareto.front`. What it draws:

- every point with its bootstrap interval on each axis (``ci`` of front.json; ± 1 standard
  error for a front without intervals); dominated points hollow; the non-dominated ones joined
  by their staircase (K = 2);
- the starting policy as a star, with the region it dominates shaded: a point in the shade is
  worse than the start on both objectives;
- the reference point as dotted lines when it is not the start (and in view);
- labels (the weights) that never overlap (:mod:`moalign.pareto.labels`);
- axes fitted to the points, their intervals and the start, not to the reference point;
- a caption with the hypervolume and its interval, and each objective's span, in words.

Uses matplotlib's Agg canvas directly: it works headless and leaves pyplot's state alone.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from moalign.pareto.labels import place_labels
from moalign.pareto.summary import verdict
from moalign.storage.files import atomic_write_bytes

__all__ = ["build_figure", "draw_fronts"]

_MARKERS = "osD^vP*Xh<>"
_DPI = 120


def _staircase(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The steps joining the non-dominated ``pts`` [M, 2] (maximization), left to right."""
    order = np.lexsort((-pts[:, 1], pts[:, 0]))
    x, y = pts[order, 0], pts[order, 1]
    xs, ys = [], []
    for i in range(len(x)):
        xs += [x[i], x[i]]
        ys += [y[i - 1] if i else y[i], y[i]]
    return np.array(xs[1:]), np.array(ys[1:])


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


def _baseline(front: Any) -> dict[str, float] | None:
    base = front.metadata.get("baseline") if isinstance(front.metadata, Mapping) else None
    if isinstance(base, Mapping) and isinstance(base.get("scores"), Mapping):
        scores = base["scores"]
        if all(isinstance(scores.get(o), Real) for o in front.objectives):
            return {o: float(scores[o]) for o in front.objectives}
    return None


def _limits(fronts: Sequence[Any], k: int) -> tuple[float, float]:
    """Axis range of objective ``k``: the points with their bars and the starting policies,
    padded; never widened to reach the reference point."""
    lo, hi = [], []
    for f in fronts:
        if not len(f):
            continue
        err = _error_bars(f)
        s = f.scores_array[:, k]
        lo.append(float(np.min(s - err[0, :, k])))
        hi.append(float(np.max(s + err[1, :, k])))
        base = _baseline(f)
        if base is not None:
            lo.append(base[f.objectives[k]])
            hi.append(base[f.objectives[k]])
    if not lo:
        return 0.0, 1.0
    a, b = min(lo), max(hi)
    span = max(b - a, 1e-3 * max(1.0, abs(a), abs(b)))
    return a - 0.08 * span, b + 0.08 * span


def _same(a: Sequence[float] | None, b: Sequence[float] | None) -> bool:
    return a is not None and b is not None and np.allclose(a, b, rtol=0, atol=1e-12)


def _draw_panel(ax: Any, fronts: Sequence[Any], i: int, j: int, names: Sequence[str],
                ref: np.ndarray | None, staircase: bool) -> dict[str, list]:
    """Draw one pair of objectives; returns what the labels must avoid and the labels:
    ``{"labels": [(xy, text, color)], "starts": [xy], "bars": [(x0, y0, x1, y1)]}``."""
    from matplotlib.patches import Rectangle

    xlim, ylim = _limits(fronts, i), _limits(fronts, j)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    several = len(fronts) > 1
    labels, starts, bars = [], [], []
    for n, f in enumerate(fronts):
        color = f"C{n % 10}"
        marker = _MARKERS[n % len(_MARKERS)]
        scores, nd, err = f.scores_array, f.nondominated, _error_bars(f)
        base = _baseline(f)
        if base is not None:
            bx, by = base[f.objectives[i]], base[f.objectives[j]]
            if not any(np.allclose((bx, by), s) for s in starts):
                starts.append((bx, by))
                big = 10 * (xlim[1] - xlim[0] + ylim[1] - ylim[0])
                ax.add_patch(Rectangle((bx - big, by - big), big, big, color="0.5", alpha=0.13,
                                       lw=0, zorder=0,
                                       label=None if len(starts) > 1 else
                                       "dominated by the starting policy"))
                ax.plot(bx, by, marker="*", ms=13, ls="none", color="black", zorder=4,
                        label=None if len(starts) > 1 else "starting policy")
        if staircase and nd.any():
            sx, sy = _staircase(scores[nd][:, [i, j]])
            ax.plot(sx, sy, color=color, lw=1.0, alpha=0.7, zorder=2)
        front_label = names[n] if several else "non-dominated"
        grey = color if several else "0.5"
        for mask, filled, lab in ((nd, True, front_label),
                                  (~nd, False, None if several else "dominated")):
            if mask.any():
                c = color if filled else grey
                ax.errorbar(scores[mask, i], scores[mask, j], xerr=err[:, mask, i],
                            yerr=err[:, mask, j], fmt=marker, color=c, ecolor=c,
                            mfc=c if filled else "white", elinewidth=0.8, capsize=2.5, ms=6.5,
                            label=lab, zorder=3)
        for p, (x, y), lo, hi in zip(f.points, scores[:, [i, j]], err[0][:, [i, j]],
                                     err[1][:, [i, j]], strict=True):
            labels.append(((x, y), p.label(), color if several else "0.15"))
            bars += [(x - lo[0], y, x + hi[0], y), (x, y - lo[1], x, y + hi[1])]
    if ref is not None and not any(_same([ref[i], ref[j]], s) for s in starts):
        if xlim[0] <= ref[i] <= xlim[1]:
            ax.axvline(ref[i], color="0.4", lw=0.8, ls=":", zorder=1, label="reference point")
        if ylim[0] <= ref[j] <= ylim[1]:
            ax.axhline(ref[j], color="0.4", lw=0.8, ls=":", zorder=1)
    ax.set_xlabel(f"{fronts[0].objectives[i]} (higher is better)")
    ax.set_ylabel(f"{fronts[0].objectives[j]} (higher is better)")
    ax.grid(alpha=0.25, zorder=0)
    return {"labels": labels, "starts": starts, "bars": bars}


def _num(v: float, signed: bool = False) -> str:
    """2 decimals for scores of moderate size (accuracies), 3 significant digits otherwise."""
    sign = "+" if signed else ""
    return f"{v:{sign}.2f}" if 0.01 <= abs(v) < 100 or v == 0 else f"{v:{sign}.3g}"


def _ci_text(ci: Sequence[float], signed: bool = False) -> str:
    return f"[{_num(ci[0], signed)}, {_num(ci[1], signed)}]"


def _caption(fronts: Sequence[Any], names: Sequence[str], ref: np.ndarray | None,
             hypervolumes: Sequence[float] | None) -> list[str]:
    """Lines under the figure: hypervolume (with its interval when it was computed at this
    reference point), spans, and how to read the marks."""
    lines = []
    for n, f in enumerate(fronts):
        who = f"{names[n]}: " if len(fronts) > 1 else ""
        parts = []
        if hypervolumes is not None:
            text = f"hypervolume {hypervolumes[n]:.3g}"
            stored = _same(ref, f.reference_point)
            if stored and f.hypervolume_ci is not None:
                text += f" [{f.hypervolume_ci[0]:.3g}, {f.hypervolume_ci[1]:.3g}]"
            kind = f.metadata.get("reference") if isinstance(f.metadata, Mapping) else None
            if stored and kind == "baseline":
                text += " over the starting policy"
            elif ref is not None:
                text += f" at reference {[round(float(v), 4) for v in ref]}"
            gain = f.hypervolume_gain if stored else None
            if isinstance(gain, Mapping) and gain.get("ci") is not None:
                text += f" (gain: {verdict(gain['ci'])})"
            parts.append(text)
        for o, t in (f.tradeoff or {}).items():
            if isinstance(t, Mapping) and t.get("ci") is not None:
                parts.append(f"{o} span {_num(t['span'], True)} {_ci_text(t['ci'], True)} "
                             f"{verdict(t['ci'])}")
        if parts:
            lines.append(who + "; ".join(parts))
    weights = f"labels: weights ({', '.join(fronts[0].objectives)})"
    boot = next((f.bootstrap for f in fronts if f.bootstrap), None)
    examples = fronts[0].metadata.get("heldout", {}).get("examples") \
        if isinstance(fronts[0].metadata, Mapping) else None
    if boot:
        on = f" over {examples} held-out examples" if examples else ""
        lines.append(f"bars and [intervals]: {boot['level']:.0%} paired bootstrap{on} "
                     f"({boot['resamples']} resamples); span = score at the point with the most "
                     f"weight on an objective minus at the point with the least; {weights}")
    else:
        lines.append(f"bars: ± 1 standard error; {weights}")
    return lines


def build_figure(fronts: Sequence[Any], labels: Sequence[str], ref: np.ndarray | None,
                 hypervolumes: Sequence[float] | None):
    """The figure of checked fronts (see the module docstring), drawn and laid out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    objectives = fronts[0].objectives
    k = len(objectives)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    ncols = min(len(pairs), 3)
    nrows = math.ceil(len(pairs) / ncols)
    width = 5.4 * ncols if k > 2 else 7.0
    caption = _caption(fronts, labels, ref, hypervolumes)
    wrapped = [w for line in caption for w in textwrap.wrap(line, int(width * 15))]
    bottom = (0.16 * len(wrapped) + 0.06) / (4.8 * nrows + 0.6 + 0.16 * len(wrapped))
    fig = Figure(figsize=(width, 4.8 * nrows + 0.6 + 0.16 * len(wrapped)), dpi=_DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(rect=(0, bottom, 1, 1 - bottom))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    pending = []
    for ax, (i, j) in zip(axes, pairs, strict=False):
        pending.append((ax, _draw_panel(ax, fronts, i, j, labels, ref, staircase=k == 2)))
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7.5, loc="best", framealpha=0.85)
    if len(fronts) > 1:
        title = "Pareto fronts: " + ", ".join(labels)
    else:
        meta = fronts[0].metadata if isinstance(fronts[0].metadata, Mapping) else {}
        bits = [str(meta[key]) for key in ("model", "dataset") if meta.get(key)]
        if meta.get("metric"):
            bits.append(f"{meta['metric']} metric")
        title = f"{fronts[0].method} front" + (f" ({', '.join(bits)})" if bits else "")
    fig.suptitle(title, fontsize=10.5)
    fig.text(0.012, 0.012, "\n".join(wrapped), fontsize=7.5, va="bottom", ha="left",
             color="0.15")
    fig.canvas.draw()  # lay out once, then freeze it: labels are placed in pixels
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    for ax, drawn in pending:
        items = drawn["labels"]
        if sum(len(f) for f in fronts) <= 60 and items:
            place_labels(ax, [xy for xy, _, _ in items], [t for _, t, _ in items],
                         renderer=renderer, colors=[c for _, _, c in items],
                         obstacles=drawn["starts"], soft=drawn["bars"])
    return fig


def draw_fronts(fronts: Sequence[Any], path: str | os.PathLike, labels: Sequence[str],
                ref: np.ndarray | None, hypervolumes: Sequence[float] | None) -> Path:
    """Draw checked fronts into one figure at ``path`` (format from the suffix)."""
    fig = build_figure(fronts, labels, ref, hypervolumes)
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=_DPI)
    return atomic_write_bytes(Path(path), buf.getvalue())
