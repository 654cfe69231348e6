"""A measured Pareto front: trained policies with their scores, saved as ``front.json``.

:class:`ParetoFront` holds one :class:`FrontPoint` per trained policy (the weights or condition
that produced it, its per-objective scores and standard errors, its checkpoint) plus the
objectives, the tracing method, the reference point of the hypervolume and the cost. The
non-dominated flags and the hypervolume are always *derived* from the scores, never stored as
independent state. :meth:`ParetoFront.save` then :meth:`ParetoFront.load` returns an equal
object (floats included). The ``front.json`` schema::

    {"objectives": ["helpfulness", "harmlessness"],
     "method": "soup", "reference_point": [0.0, 0.0], "hypervolume": 0.3355,
     "points": [{"id": "w0.30-0.70", "weights": [0.3, 0.7],
                 "scores": {"helpfulness": 0.61, "harmlessness": 0.55},
                 "stderr": {"helpfulness": 0.02, "harmlessness": 0.03},
                 "nondominated": true, "checkpoint": "points/w0.30-0.70/adapter/soup"}],
     "cost": {"train_seconds": 0.0, "eval_seconds": 0.0, "train_steps": 0}}

Optional keys: ``metadata`` (front and point), ``condition`` (point, instead of or besides
``weights``, which is then ``null``); ``reference_point`` and ``hypervolume`` may be ``null``.
``nondominated`` and ``hypervolume`` are written from the scores and ignored when read.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from moalign.errors import CheckpointError, WeightsError
from moalign.pareto.indicators import (
    ParetoError,
    hypervolume,
    hypervolume_contributions,
    is_nondominated,
)
from moalign.storage.files import atomic_write_bytes, atomic_write_json
from moalign.weights import as_weights

__all__ = ["FrontPoint", "ParetoFront", "plot_fronts"]

_COST_DEFAULT: dict[str, float | int] = {"train_seconds": 0.0, "eval_seconds": 0.0, "train_steps": 0}
_FRONT_KEYS = {"objectives", "method", "reference_point", "hypervolume", "points", "cost", "metadata"}
_POINT_KEYS = {"id", "weights", "condition", "scores", "stderr", "nondominated", "checkpoint", "metadata"}


def _number(value: Any, where: str, *, nonnegative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ParetoError(f"{where} must be a finite number, got {value!r}")
    if nonnegative and value < 0:
        raise ParetoError(f"{where} must be >= 0, got {value!r}")
    return float(value)


@dataclass
class FrontPoint:
    """One trained policy on a front.

    ``weights`` ``[K]`` (on the simplex) or ``condition`` (any JSON-able dict, e.g. a decoding
    mixture) says what produced it; ``scores`` and ``stderr`` map objective name -> value (a
    missing stderr is unknown); ``checkpoint`` is the policy's folder, relative to the front
    file; ``metadata`` holds any other JSON-able facts (seed, steps, ...).
    """

    id: str
    scores: dict[str, float]
    stderr: dict[str, float] = field(default_factory=dict)
    weights: list[float] | None = None
    condition: dict[str, Any] | None = None
    checkpoint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def _validate(self, objectives: Sequence[str], where: str) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ParetoError(f"{where}.id must be a non-empty string, got {self.id!r}")
        where = f"{where} (id {self.id!r})"
        if not isinstance(self.scores, Mapping):
            raise ParetoError(f"{where}.scores must be a mapping objective -> score")
        missing = [o for o in objectives if o not in self.scores]
        extra = [o for o in self.scores if o not in objectives]
        if missing or extra:
            raise ParetoError(f"{where}.scores: missing objectives {missing}, unknown objectives {extra}")
        self.scores = {o: _number(self.scores[o], f"{where}.scores[{o!r}]") for o in objectives}
        if not isinstance(self.stderr, Mapping):
            raise ParetoError(f"{where}.stderr must be a mapping objective -> standard error")
        extra = [o for o in self.stderr if o not in objectives]
        if extra:
            raise ParetoError(f"{where}.stderr: unknown objectives {extra}")
        self.stderr = {
            o: _number(self.stderr[o], f"{where}.stderr[{o!r}]", nonnegative=True)
            for o in objectives if o in self.stderr
        }
        if self.weights is not None:
            try:
                as_weights(self.weights, len(objectives), name=f"{where}.weights")
            except WeightsError as exc:
                raise ParetoError(str(exc)) from None
            self.weights = [float(w) for w in self.weights]
        if self.condition is not None and not isinstance(self.condition, Mapping):
            raise ParetoError(f"{where}.condition must be a mapping, got {type(self.condition).__name__}")
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, (str, os.PathLike)):
                raise ParetoError(f"{where}.checkpoint must be a path string, got {self.checkpoint!r}")
            self.checkpoint = str(self.checkpoint)
        if not isinstance(self.metadata, Mapping):
            raise ParetoError(f"{where}.metadata must be a mapping")

    def to_dict(self, nondominated: bool) -> dict[str, Any]:
        """The point's ``front.json`` entry (``nondominated`` is computed by the front)."""
        out: dict[str, Any] = {"id": self.id, "weights": self.weights}
        if self.condition is not None:
            out["condition"] = dict(self.condition)
        out.update(scores=dict(self.scores), stderr=dict(self.stderr), nondominated=bool(nondominated),
                   checkpoint=self.checkpoint)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    def label(self, digits: int = 2) -> str:
        """Short text naming what produced the point: weights, else condition, else id."""
        if self.weights is not None:
            return "(" + ", ".join(f"{w:.{digits}f}" for w in self.weights) + ")"
        if self.condition:
            return ",".join(f"{k}={v}" for k, v in self.condition.items())
        return self.id


@dataclass
class ParetoFront:
    """A front of trained policies, measured on K objectives (all maximized).

    ``method`` names how it was traced (``sweep``, ``soup``, ``conditioned``, ``decoding``, ...);
    ``reference_point`` ``[K]`` is the default reference of :meth:`hypervolume`; ``cost`` holds
    ``train_seconds``, ``eval_seconds`` and ``train_steps`` (more keys allowed).
    """

    objectives: list[str]
    points: list[FrontPoint] = field(default_factory=list)
    method: str = "custom"
    reference_point: list[float] | None = None
    cost: dict[str, float | int] = field(default_factory=lambda: dict(_COST_DEFAULT))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.objectives, (list, tuple)):  # anything else: validate() names it
            self.objectives = list(self.objectives)
        self.points = list(self.points)
        self.validate()

    def validate(self) -> None:
        """Check every field; raise :class:`~moalign.pareto.ParetoError` naming the bad one."""
        objs = self.objectives
        if not isinstance(objs, list) or not objs or not all(isinstance(o, str) and o for o in objs):
            raise ParetoError(f"objectives must be a non-empty list of names, got {objs!r}")
        if len(set(objs)) != len(objs):
            raise ParetoError(f"objectives must be unique, got {objs}")
        if not isinstance(self.method, str) or not self.method:
            raise ParetoError(f"method must be a non-empty string, got {self.method!r}")
        if self.reference_point is not None:
            ref = self.reference_point
            if isinstance(ref, (str, bytes)) or not isinstance(ref, (Sequence, np.ndarray)) or len(ref) != len(objs):
                raise ParetoError(f"reference_point must have {len(objs)} values (one per objective), got {ref!r}")
            self.reference_point = [_number(v, f"reference_point[{i}]") for i, v in enumerate(ref)]
        if not isinstance(self.cost, Mapping):
            raise ParetoError("cost must be a mapping with train_seconds, eval_seconds, train_steps")
        self.cost = {**_COST_DEFAULT, **self.cost}
        for key, value in self.cost.items():
            _number(value, f"cost[{key!r}]", nonnegative=True)
        if not isinstance(self.metadata, Mapping):
            raise ParetoError("metadata must be a mapping")
        seen: set[str] = set()
        for i, point in enumerate(self.points):
            if not isinstance(point, FrontPoint):
                raise ParetoError(f"points[{i}] must be a FrontPoint, got {type(point).__name__}")
            point._validate(objs, f"points[{i}]")
            if point.id in seen:
                raise ParetoError(f"points[{i}].id {point.id!r} is used by another point")
            seen.add(point.id)

    # ------------------------------------------------------------------ access

    def add(self, point: FrontPoint) -> FrontPoint:
        """Append a point after validating it against this front's objectives and ids."""
        point._validate(self.objectives, f"points[{len(self.points)}]")
        if any(p.id == point.id for p in self.points):
            raise ParetoError(f"a point with id {point.id!r} is already on the front")
        self.points.append(point)
        return point

    def get(self, point_id: str) -> FrontPoint:
        """The point with this id (``KeyError`` naming it if absent)."""
        for point in self.points:
            if point.id == point_id:
                return point
        raise KeyError(f"no point with id {point_id!r} on the front (ids: {[p.id for p in self.points]})")

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[FrontPoint]:
        return iter(self.points)

    @property
    def scores_array(self) -> np.ndarray:
        """Scores ``[N, K]`` (float64), columns in the order of ``objectives``."""
        k = len(self.objectives)
        return np.array([[p.scores[o] for o in self.objectives] for p in self.points], dtype=np.float64).reshape(-1, k)

    @property
    def stderr_array(self) -> np.ndarray:
        """Standard errors ``[N, K]``; NaN where unknown."""
        k = len(self.objectives)
        rows = [[p.stderr.get(o, math.nan) for o in self.objectives] for p in self.points]
        return np.array(rows, dtype=np.float64).reshape(-1, k)

    @property
    def nondominated(self) -> np.ndarray:
        """Mask ``[N]`` of points no other point dominates (every copy of a tie is kept)."""
        return is_nondominated(self.scores_array)

    def _ref(self, ref: Any) -> Any:
        if ref is None:
            ref = self.reference_point
        if ref is None:
            raise ParetoError("this front has no reference_point; pass ref=[...] (one value per objective)")
        return ref

    def hypervolume(self, ref: Any = None) -> float:
        """Hypervolume of the scores against ``ref`` (default: the stored ``reference_point``)."""
        return hypervolume(self.scores_array, self._ref(ref))

    def hypervolume_contributions(self, ref: Any = None) -> np.ndarray:
        """Exclusive hypervolume contribution of each point (see :func:`moalign.pareto.hypervolume_contributions`)."""
        return hypervolume_contributions(self.scores_array, self._ref(ref))

    # ------------------------------------------------------------------ front.json

    def to_dict(self) -> dict[str, Any]:
        """The ``front.json`` content, with ``nondominated`` and ``hypervolume`` derived."""
        self.validate()
        mask = self.nondominated
        out: dict[str, Any] = {
            "objectives": list(self.objectives),
            "method": self.method,
            "reference_point": None if self.reference_point is None else list(self.reference_point),
            "hypervolume": None if self.reference_point is None else self.hypervolume(),
            "points": [p.to_dict(bool(m)) for p, m in zip(self.points, mask, strict=True)],
            "cost": dict(self.cost),
        }
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "front") -> ParetoFront:
        """Build a front from ``front.json`` content; :class:`~moalign.errors.CheckpointError`
        naming ``source`` and the missing or bad field otherwise."""
        def bad(msg: str) -> CheckpointError:
            return CheckpointError(f"{source}: {msg}")

        if not isinstance(data, Mapping):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        for key in ("objectives", "points"):
            if key not in data:
                raise bad(f"missing field {key!r}")
        unknown = sorted(set(data) - _FRONT_KEYS)
        if unknown:
            raise bad(f"unknown field(s) {unknown}; expected {sorted(_FRONT_KEYS)}")
        if not isinstance(data["points"], list):
            raise bad("field 'points' must be a list")
        hv = data.get("hypervolume")
        if hv is not None and (isinstance(hv, bool) or not isinstance(hv, Real)):
            raise bad(f"field 'hypervolume' must be a number or null, got {hv!r}")
        points = []
        for i, entry in enumerate(data["points"]):
            if not isinstance(entry, Mapping):
                raise bad(f"points[{i}] must be an object")
            for key in ("id", "scores"):
                if key not in entry:
                    raise bad(f"points[{i}] is missing field {key!r}")
            unknown = sorted(set(entry) - _POINT_KEYS)
            if unknown:
                raise bad(f"points[{i}] has unknown field(s) {unknown}; expected {sorted(_POINT_KEYS)}")
            if not isinstance(entry.get("nondominated", False), bool):
                raise bad(f"points[{i}].nondominated must be true or false")
            points.append(FrontPoint(
                id=entry["id"], scores=entry["scores"], stderr=entry.get("stderr", {}),
                weights=entry.get("weights"), condition=entry.get("condition"),
                checkpoint=entry.get("checkpoint"), metadata=entry.get("metadata", {}),
            ))
        try:
            return cls(
                objectives=data["objectives"], points=points, method=data.get("method", "custom"),
                reference_point=data.get("reference_point"),
                cost=data.get("cost", dict(_COST_DEFAULT)), metadata=data.get("metadata", {}),
            )
        except ParetoError as exc:
            raise bad(str(exc)) from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``front.json`` atomically (a reader never sees a half-written file).

        ``path`` is the file, or an existing folder to write ``front.json`` into.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "front.json"
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ParetoFront:
        """Read a ``front.json`` written by :meth:`save` (or by hand in the same schema); ``path``
        may also be the folder holding it. Raises :class:`~moalign.errors.CheckpointError`
        naming the file and the missing or bad field."""
        path = Path(path)
        if path.is_dir():
            path = path / "front.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such front file") from None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, source=str(path))

    # ------------------------------------------------------------------ display

    def to_table(self, digits: int = 4) -> str:
        """Aligned text table: one row per point, ``*`` marks the non-dominated ones."""
        mask = self.nondominated
        header = ["", "id", "weights/condition", *self.objectives, "checkpoint"]
        rows = []
        for point, nd in zip(self.points, mask, strict=True):
            cells = []
            for o in self.objectives:
                s = f"{point.scores[o]:.{digits}g}"
                if o in point.stderr:
                    s += f" ± {point.stderr[o]:.2g}"
                cells.append(s)
            label = point.label() if (point.weights is not None or point.condition) else "-"
            rows.append(["*" if nd else "", point.id, label, *cells, point.checkpoint or "-"])
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
        lines = [self._summary()]
        for r in [header, *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        return "\n".join(lines)

    def _summary(self) -> str:
        text = f"{self.method} front, {len(self)} points ({int(self.nondominated.sum())} non-dominated, marked *)"
        if self.reference_point is not None:
            text += f", hypervolume {self.hypervolume():.6g} (reference point {self.reference_point})"
        return text

    def plot(self, path: str | os.PathLike, *, others: Sequence[ParetoFront] | None = None,
             labels: Sequence[str] | None = None) -> Path:
        """Save a figure of this front (and of ``others`` on the same axes) to ``path``.

        K = 2: scatter with the non-dominated staircase, dominated points greyed, weights
        annotated, hypervolume in the title. K >= 3: a grid of pairwise panels. The format
        follows the suffix (``.png``, ``.pdf``, ``.svg``). See :func:`plot_fronts`.
        """
        return plot_fronts([self, *(others or [])], path, labels=labels)


# ---------------------------------------------------------------------- plotting


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


def _draw_2d(ax: Any, front: ParetoFront, i: int, j: int, color: Any, marker: str, label: str,
             ref: np.ndarray | None, staircase: bool, annotate: bool) -> None:
    scores = front.scores_array
    nd = front.nondominated
    err = np.nan_to_num(front.stderr_array, nan=0.0)
    if staircase and nd.any():
        sx, sy = _staircase(scores[nd][:, [i, j]], None if ref is None else ref[[i, j]])
        ax.plot(sx, sy, color=color, lw=1.2, alpha=0.8)
        if ref is not None:
            ax.fill_between(sx, sy, ref[j], color=color, alpha=0.08, step=None, lw=0)
    for mask, col, lab in ((~nd, "0.65", None), (nd, color, label)):
        if mask.any():
            ax.errorbar(scores[mask, i], scores[mask, j], xerr=err[mask, i], yerr=err[mask, j], fmt=marker,
                        color=col, ecolor=col, elinewidth=0.8, capsize=2, ms=6, label=lab, zorder=3)
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


def plot_fronts(fronts: Sequence[ParetoFront], path: str | os.PathLike,
                labels: Sequence[str] | None = None) -> Path:
    """Plot one or several fronts measured on the same objectives into one figure at ``path``.

    Hypervolumes are all computed against the first front's ``reference_point`` (when it has
    one), so the numbers in the legend are comparable. Uses matplotlib's Agg canvas directly,
    so it works headless and leaves pyplot's global state alone. Returns ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fronts = list(fronts)
    if not fronts or not all(isinstance(f, ParetoFront) for f in fronts):
        raise ParetoError("plot_fronts needs a non-empty list of ParetoFront objects")
    objectives = fronts[0].objectives
    for n, f in enumerate(fronts[1:], start=1):
        if f.objectives != objectives:
            raise ParetoError(f"front {n} has objectives {f.objectives}, front 0 has {objectives}")
    k = len(objectives)
    if k < 2:
        raise ParetoError(f"plotting needs at least 2 objectives, got {objectives}")
    if labels is None:
        labels = [f.method for f in fronts]
    if len(labels) != len(fronts):
        raise ParetoError(f"got {len(labels)} labels for {len(fronts)} fronts")
    ref = None if fronts[0].reference_point is None else np.asarray(fronts[0].reference_point)
    if ref is not None:
        labels = [f"{lab} (HV {f.hypervolume(ref):.4g})" for lab, f in zip(labels, fronts, strict=True)]
    several = len(fronts) > 1
    annotate = sum(len(f) for f in fronts) <= 60
    markers = "osD^vP*Xh<>"

    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    ncols = min(len(pairs), 3)
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(5.2 * ncols if k > 2 else 6.4, 4.6 * nrows if k > 2 else 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (i, j) in zip(axes, pairs, strict=False):
        for n, f in enumerate(fronts):
            color = f"C{n % 10}"
            _draw_2d(ax, f, i, j, color, markers[n % len(markers)], labels[n], ref, staircase=k == 2,
                     annotate=annotate)
        ax.set_xlabel(f"{objectives[i]} (higher is better)")
        ax.set_ylabel(f"{objectives[j]} (higher is better)")
        ax.grid(alpha=0.3)
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    if several:
        axes[0].legend(fontsize=8, loc="best")
    title = "Pareto fronts" if several else f"{fronts[0].method} front"
    if ref is not None:
        hv = "" if several else f": hypervolume {fronts[0].hypervolume(ref):.4g}"
        title += f"{hv} (reference point {[float(v) for v in ref]})"
    title += "; dominated points in grey"
    fig.suptitle(title, fontsize=10)
    return _save_figure(fig, Path(path))


def _save_figure(fig: Any, path: Path) -> Path:
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=120)
    return atomic_write_bytes(path, buf.getvalue())
