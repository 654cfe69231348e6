"""The text of a front: its table and, in words, what is and is not beyond noise.

:func:`front_table` is :meth:`ParetoFront.to_table <moalign.pareto.ParetoFront.to_table>`: one
line on the front, one row per point (each score with its bootstrap interval, or ± its
standard error for a front without intervals), the starting policy's row, then, for a front
with intervals (:meth:`~moalign.pareto.ParetoFront.attach_intervals`), :func:`noise_lines`:

- per objective, its **span** (score at the point with the most weight on it minus the score
  at the point with the least) with its interval, and "significant" (the interval excludes 0)
  or "within noise";
- the hypervolume with its interval, and whether the front's gain over the starting policy
  alone is beyond noise;
- per objective, the points that differ from the starting policy beyond noise, and a warning
  when no point does on any objective.

Reads only the attributes it prints, so it does not import :mod:`moalign.pareto.front`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from moalign.pareto.bootstrap import significant

__all__ = ["front_table", "noise_lines", "verdict"]

_REFERENCE_WORDS = {"baseline": "the starting policy's scores", "chance": "chance level",
                    "explicit": "given"}


def verdict(ci: Any) -> str:
    """``"significant"`` when the interval excludes 0, else ``"within noise"``."""
    return "significant" if significant(ci) else "within noise"


def _ci(ci: Any, signed: bool = False) -> str:
    f = "+.3g" if signed else ".3g"
    return f"[{ci[0]:{f}}, {ci[1]:{f}}]"


def _cell(score: float, ci: Any, stderr: Any, digits: int) -> str:
    text = f"{score:.{digits}g}"
    if ci is not None:
        return f"{text} {_ci(ci)}"
    if stderr is not None:
        return f"{text} ± {stderr:.2g}"
    return text


def _baseline(front: Any) -> Mapping[str, Any] | None:
    base = front.metadata.get("baseline") if isinstance(front.metadata, Mapping) else None
    if isinstance(base, Mapping) and isinstance(base.get("scores"), Mapping) \
            and all(o in base["scores"] for o in front.objectives):
        return base
    return None


def _head(front: Any) -> str:
    nd = int(front.nondominated.sum())
    text = f"{front.method} front, {len(front)} points ({nd} non-dominated, marked *)"
    if front.reference_point is not None:
        text += f", hypervolume {front.hypervolume():.6g}"
        if front.hypervolume_ci is not None:
            text += f" {_ci(front.hypervolume_ci)}"
        kind = _REFERENCE_WORDS.get(front.metadata.get("reference"))
        text += f" (reference point {front.reference_point}{': ' + kind if kind else ''})"
    return text


def front_table(front: Any, digits: int = 4) -> str:
    """Aligned text table (``*``: non-dominated) with the noise lines of a bootstrapped front."""
    mask = front.nondominated
    header = ["", "id", "weights/condition", *front.objectives, "checkpoint"]
    rows = []
    for point, nd in zip(front.points, mask, strict=True):
        cells = [_cell(point.scores[o], point.ci.get(o), point.stderr.get(o), digits)
                 for o in front.objectives]
        label = point.label() if (point.weights is not None or point.condition) else "-"
        rows.append(["*" if nd else "", point.id, label, *cells, point.checkpoint or "-"])
    base = _baseline(front)
    if base is not None:
        cells = [_cell(base["scores"][o], (base.get("ci") or {}).get(o),
                       (base.get("stderr") or {}).get(o), digits) for o in front.objectives]
        rows.append(["", "baseline", "(starting policy)", *cells, "-"])
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = [_head(front)]
    for r in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join([*lines, *noise_lines(front)])


def noise_lines(front: Any) -> list[str]:
    """What is and is not beyond noise, in words (empty for a front without intervals)."""
    if front.bootstrap is None or front.hypervolume_ci is None:
        return []
    b = front.bootstrap
    n = front.metadata.get("examples")
    over = f" over {n} held-out examples" if n else ""
    lines = [f"paired bootstrap{over} ({b['resamples']} resamples, seed {b['seed']}), "
             f"{b['level']:.0%} intervals; significant = the interval excludes 0:"]
    width = max(len(o) for o in front.objectives)
    for o in front.objectives:
        t = (front.tradeoff or {}).get(o)
        if t is None:
            lines.append(f"  {o:<{width}}  no span (every point puts the same weight on it)")
            continue
        lines.append(f"  {o:<{width}}  span {t['span']:+.3g} {_ci(t['ci'], True)} from "
                     f"{t['from']} to {t['to']} (least to most weight on it): {verdict(t['ci'])}")
    hv = f"  hypervolume {front.hypervolume():.4g} {_ci(front.hypervolume_ci)}"
    gain = front.hypervolume_gain
    if gain is not None:
        if front.metadata.get("reference") == "baseline":
            hv += (" against the starting policy's scores, so it is the gain over the starting"
                   f" policy: {verdict(gain['ci'])}")
        else:
            hv += (f"; gain over the starting policy alone {gain['value']:+.3g} "
                   f"{_ci(gain['ci'], True)}: {verdict(gain['ci'])}")
    lines.append(hv)
    if _baseline(front) is None:
        return lines
    moved = False
    for o in front.objectives:
        beyond = [(p.id, p.scores[o] - _baseline(front)["scores"][o], p.delta_ci[o])
                  for p in front.points if significant(p.delta_ci.get(o))]
        moved = moved or bool(beyond)
        shown = ", ".join(f"{pid} {d:+.3g} {_ci(ci, True)}" for pid, d, ci in beyond) or "none"
        lines.append(f"  {o:<{width}}  points beyond noise vs the starting policy: {shown}")
    if not moved:
        lines.append("warning: no point differs from the starting policy beyond noise on any "
                     "objective; this front cannot be told apart from the start")
    return lines
