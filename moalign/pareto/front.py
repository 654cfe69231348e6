"""A measured Pareto front: trained policies with their scores, saved as ``front.json``.

:class:`ParetoFront` holds one :class:`FrontPoint` per trained policy (the weights or condition
that produced it, its per-objective scores, standard errors and bootstrap intervals, its
checkpoint and its per-example score file) plus the objectives, the tracing method, the
reference point of the hypervolume and the cost. The non-dominated flags and the hypervolume
are always *derived* from the scores, never stored as independent state; the intervals are
derived from the per-example files by :meth:`ParetoFront.attach_intervals` (a paired bootstrap,
:mod:`moalign.pareto.bootstrap`) and stored. :meth:`ParetoFront.save` then
:meth:`ParetoFront.load` returns an equal object (floats included). The ``front.json`` schema::

    {"objectives": ["helpfulness", "harmlessness"],
     "method": "soup", "reference_point": [0.5, 0.5], "hypervolume": 0.0021,
     "hypervolume_ci": [0.0, 0.0105],
     "hypervolume_gain": {"value": 0.0021, "ci": [0.0, 0.0105]},
     "points": [{"id": "w0.30-0.70", "weights": [0.3, 0.7],
                 "scores": {"helpfulness": 0.61, "harmlessness": 0.55},
                 "stderr": {"helpfulness": 0.02, "harmlessness": 0.03},
                 "ci": {"helpfulness": [0.57, 0.65], "harmlessness": [0.49, 0.61]},
                 "delta_ci": {"helpfulness": [0.06, 0.16], "harmlessness": [-0.02, 0.11]},
                 "nondominated": true, "checkpoint": "points/w0.30-0.70/adapter/soup",
                 "per_example": "points/w0.30-0.70/scores.jsonl"}],
     "tradeoff": {"helpfulness": {"span": 0.2, "ci": [0.08, 0.31],
                                  "from": "w0.00-1.00", "to": "w1.00-0.00"}},
     "bootstrap": {"resamples": 2000, "level": 0.95, "seed": 0},
     "cost": {"train_seconds": 0.0, "eval_seconds": 0.0, "train_steps": 0},
     "metadata": {"reference": "baseline",
                  "baseline": {"scores": {...}, "stderr": {...}, "ci": {...},
                               "per_example": "baseline/scores.jsonl"}}}

Optional keys: ``metadata`` (front and point), ``condition`` (point, instead of or besides
``weights``, which is then ``null``), and everything the bootstrap adds (``ci``,
``delta_ci``: the interval of the point minus the starting policy, ``per_example``,
``hypervolume_ci``, ``hypervolume_gain``: the front's hypervolume minus the starting policy's
alone, ``tradeoff``, ``bootstrap``), so a front.json written before them still loads.
``reference_point`` and ``hypervolume`` may be ``null``. ``nondominated`` and ``hypervolume``
are written from the scores and ignored when read. ``metadata.reference`` says what the
reference point is: ``"baseline"`` (the starting policy's measured scores, resampled with the
points), ``"chance"`` or ``"explicit"``.
"""

from __future__ import annotations

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
from moalign.pareto import intervals as _iv
from moalign.pareto.indicators import (
    ParetoError,
    hypervolume,
    hypervolume_contributions,
    is_nondominated,
)
from moalign.pareto.intervals import common_reference, hypervolume_difference, number
from moalign.pareto.plot import draw_fronts
from moalign.pareto.summary import front_table
from moalign.storage.files import atomic_write_json
from moalign.weights import as_weights

__all__ = ["FrontPoint", "ParetoFront", "common_reference", "hypervolume_difference",
           "plot_fronts"]

_COST_DEFAULT: dict[str, float | int] = {"train_seconds": 0.0, "eval_seconds": 0.0, "train_steps": 0}
_FRONT_KEYS = {"objectives", "method", "reference_point", "hypervolume", "hypervolume_ci",
               "hypervolume_gain", "points", "tradeoff", "bootstrap", "cost", "metadata"}
_POINT_KEYS = {"id", "weights", "condition", "scores", "stderr", "ci", "delta_ci", "nondominated",
               "checkpoint", "per_example", "metadata"}


@dataclass
class FrontPoint:
    """One trained policy on a front.

    ``weights`` ``[K]`` (on the simplex) or ``condition`` (any JSON-able dict, e.g. a decoding
    mixture) says what produced it; ``scores`` and ``stderr`` map objective name -> value (a
    missing stderr is unknown); ``ci`` maps objective -> bootstrap interval ``[lo, hi]`` of the
    score and ``delta_ci`` the interval of (score minus the starting policy's), paired;
    ``checkpoint`` is the policy's folder and ``per_example`` its per-example score file, both
    relative to the front file; ``metadata`` holds any other JSON-able facts (seed, steps, ...).
    """

    id: str
    scores: dict[str, float]
    stderr: dict[str, float] = field(default_factory=dict)
    weights: list[float] | None = None
    condition: dict[str, Any] | None = None
    checkpoint: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    ci: dict[str, list[float]] = field(default_factory=dict)
    delta_ci: dict[str, list[float]] = field(default_factory=dict)
    per_example: str | None = None

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
        self.scores = {o: number(self.scores[o], f"{where}.scores[{o!r}]") for o in objectives}
        if not isinstance(self.stderr, Mapping):
            raise ParetoError(f"{where}.stderr must be a mapping objective -> standard error")
        extra = [o for o in self.stderr if o not in objectives]
        if extra:
            raise ParetoError(f"{where}.stderr: unknown objectives {extra}")
        self.stderr = {
            o: number(self.stderr[o], f"{where}.stderr[{o!r}]", nonnegative=True)
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
        for name in ("checkpoint", "per_example"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, (str, os.PathLike)):
                    raise ParetoError(f"{where}.{name} must be a path string, got {value!r}")
                setattr(self, name, str(value))
        self.ci = _iv.intervals(self.ci, objectives, f"{where}.ci")
        self.delta_ci = _iv.intervals(self.delta_ci, objectives, f"{where}.delta_ci")
        if not isinstance(self.metadata, Mapping):
            raise ParetoError(f"{where}.metadata must be a mapping")

    def to_dict(self, nondominated: bool) -> dict[str, Any]:
        """The point's ``front.json`` entry (``nondominated`` is computed by the front)."""
        out: dict[str, Any] = {"id": self.id, "weights": self.weights}
        if self.condition is not None:
            out["condition"] = dict(self.condition)
        out.update(scores=dict(self.scores), stderr=dict(self.stderr))
        if self.ci:
            out["ci"] = {o: list(v) for o, v in self.ci.items()}
        if self.delta_ci:
            out["delta_ci"] = {o: list(v) for o, v in self.delta_ci.items()}
        out.update(nondominated=bool(nondominated), checkpoint=self.checkpoint)
        if self.per_example is not None:
            out["per_example"] = self.per_example
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
    ``train_seconds``, ``eval_seconds`` and ``train_steps`` (more keys allowed). The bootstrap
    fields (``hypervolume_ci``, ``hypervolume_gain``, ``tradeoff``, ``bootstrap``) are set by
    :meth:`attach_intervals`; ``None`` when never computed (e.g. an older front.json).
    """

    objectives: list[str]
    points: list[FrontPoint] = field(default_factory=list)
    method: str = "custom"
    reference_point: list[float] | None = None
    cost: dict[str, float | int] = field(default_factory=lambda: dict(_COST_DEFAULT))
    metadata: dict[str, Any] = field(default_factory=dict)
    hypervolume_ci: list[float] | None = None
    hypervolume_gain: dict[str, Any] | None = None
    tradeoff: dict[str, dict[str, Any]] | None = None
    bootstrap: dict[str, Any] | None = None

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
            self.reference_point = [number(v, f"reference_point[{i}]") for i, v in enumerate(ref)]
        if not isinstance(self.cost, Mapping):
            raise ParetoError("cost must be a mapping with train_seconds, eval_seconds, train_steps")
        self.cost = {**_COST_DEFAULT, **self.cost}
        for key, value in self.cost.items():
            number(value, f"cost[{key!r}]", nonnegative=True)
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
        _iv.validate_front_intervals(self, seen)

    # ------------------------------------------------------------------ access

    def add(self, point: FrontPoint) -> FrontPoint:
        """Append a point after validating it against this front's objectives and ids."""
        point._validate(self.objectives, f"points[{len(self.points)}]")
        if any(p.id == point.id for p in self.points):
            raise ParetoError(f"a point with id {point.id!r} is already on the front")
        self.points.append(point)
        # front-level intervals described the old point set: recompute with attach_intervals
        self.hypervolume_ci = self.hypervolume_gain = self.tradeoff = self.bootstrap = None
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
        }
        if self.hypervolume_ci is not None:
            out["hypervolume_ci"] = list(self.hypervolume_ci)
        if self.hypervolume_gain is not None:
            out["hypervolume_gain"] = {"value": self.hypervolume_gain["value"],
                                       "ci": list(self.hypervolume_gain["ci"])}
        out["points"] = [p.to_dict(bool(m)) for p, m in zip(self.points, mask, strict=True)]
        if self.tradeoff is not None:
            out["tradeoff"] = {o: {**e, "ci": list(e["ci"])} for o, e in self.tradeoff.items()}
        if self.bootstrap is not None:
            out["bootstrap"] = dict(self.bootstrap)
        out["cost"] = dict(self.cost)
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "front") -> ParetoFront:
        """Build a front from ``front.json`` content; :class:`~moalign.errors.CheckpointError`
        naming ``source`` and the missing or bad field otherwise."""
        def bad(msg: str) -> CheckpointError:
            return CheckpointError(f"{source}: {msg}")

        def check_keys(entry: Mapping, required: tuple[str, ...], known: set[str],
                       where: str = "") -> None:
            """Required and unknown fields of the front (``where`` empty) or of a point."""
            for key in required:
                if key not in entry:
                    raise bad(f"{where} is missing field {key!r}" if where
                              else f"missing field {key!r}")
            unknown = sorted(set(entry) - known)
            if unknown:
                raise bad(f"{where + ' has ' if where else ''}unknown field(s) {unknown}; "
                          f"expected {sorted(known)}")

        if not isinstance(data, Mapping):
            raise bad(f"expected a JSON object, got {type(data).__name__}")
        check_keys(data, ("objectives", "points"), _FRONT_KEYS)
        if not isinstance(data["points"], list):
            raise bad("field 'points' must be a list")
        hv = data.get("hypervolume")
        if hv is not None and (isinstance(hv, bool) or not isinstance(hv, Real)):
            raise bad(f"field 'hypervolume' must be a number or null, got {hv!r}")
        points = []
        for i, entry in enumerate(data["points"]):
            if not isinstance(entry, Mapping):
                raise bad(f"points[{i}] must be an object")
            check_keys(entry, ("id", "scores"), _POINT_KEYS, f"points[{i}]")
            if not isinstance(entry.get("nondominated", False), bool):
                raise bad(f"points[{i}].nondominated must be true or false")
            points.append(FrontPoint(
                id=entry["id"], scores=entry["scores"], stderr=entry.get("stderr", {}),
                weights=entry.get("weights"), condition=entry.get("condition"),
                checkpoint=entry.get("checkpoint"), metadata=entry.get("metadata", {}),
                ci=entry.get("ci", {}), delta_ci=entry.get("delta_ci", {}),
                per_example=entry.get("per_example"),
            ))
        try:
            return cls(
                objectives=data["objectives"], points=points, method=data.get("method", "custom"),
                reference_point=data.get("reference_point"),
                cost=data.get("cost", dict(_COST_DEFAULT)), metadata=data.get("metadata", {}),
                hypervolume_ci=data.get("hypervolume_ci"),
                hypervolume_gain=data.get("hypervolume_gain"), tradeoff=data.get("tradeoff"),
                bootstrap=data.get("bootstrap"),
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
        naming the file and the missing or bad field. The front remembers its folder, where
        :meth:`attach_intervals` finds the per-example files."""
        path = Path(path)
        if path.is_dir():
            path = path / "front.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no such front file") from None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
        front = cls.from_dict(data, source=str(path))
        front.root = path.parent
        return front

    # ------------------------------------------------------------------ bootstrap

    #: folder the per-example paths are relative to (set by :meth:`load`; not compared, not saved)
    root = None

    def per_example(self, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-example scores ``([P, N, K], baseline [N, K] or None)`` from the files named by
        ``per_example``, relative to ``root`` (default: the folder :meth:`load` read)."""
        return _iv.front_per_example(self, root)

    def attach_intervals(self, root: str | os.PathLike | None = None,
                         settings: Mapping[str, Any] | None = None) -> ParetoFront:
        """Compute every interval by a paired bootstrap over the per-example files and store
        them (per point ``ci`` / ``delta_ci``, ``hypervolume_ci``, ``hypervolume_gain``,
        ``tradeoff``, ``bootstrap``, ``metadata.baseline.ci``); ``settings`` default to the
        stored ``bootstrap``, else :data:`~moalign.pareto.bootstrap.DEFAULT_BOOTSTRAP`."""
        _iv.attach_intervals(self, root, settings)
        self.validate()
        return self

    # ------------------------------------------------------------------ display

    def to_table(self, digits: int = 4) -> str:
        """Aligned text table, one row per point (``*``: non-dominated), each score with its
        interval (or standard error); then, when the front has intervals, what is and is not
        beyond noise (:func:`moalign.pareto.summary.front_table`)."""
        return front_table(self, digits)

    def plot(self, path: str | os.PathLike, *, others: Sequence[ParetoFront] | None = None,
             labels: Sequence[str] | None = None,
             reference_point: Sequence[float] | None = None) -> Path:
        """Save a figure of this front (and of ``others`` on the same axes) to ``path``.

        K = 2: scatter with the non-dominated staircase, dominated points greyed, weights
        annotated, hypervolume in the title. K >= 3: a grid of pairwise panels. The format
        follows the suffix (``.png``, ``.pdf``, ``.svg``). See :func:`plot_fronts`.
        """
        return plot_fronts([self, *(others or [])], path, labels=labels,
                           reference_point=reference_point)


def plot_fronts(fronts: Sequence[ParetoFront], path: str | os.PathLike,
                labels: Sequence[str] | None = None, *,
                reference_point: Sequence[float] | None = None) -> Path:
    """Plot one or several fronts measured on the same objectives into one figure at ``path``.

    Hypervolumes are computed at one common reference point (:func:`common_reference`):
    fronts that store different ones are refused unless ``reference_point`` recomputes them
    all at one. Headless (matplotlib's Agg canvas). Returns ``path``.
    """
    fronts = list(fronts)
    if not fronts or not all(isinstance(f, ParetoFront) for f in fronts):
        raise ParetoError("plot_fronts needs a non-empty list of ParetoFront objects")
    objectives = fronts[0].objectives
    for n, f in enumerate(fronts[1:], start=1):
        if f.objectives != objectives:
            raise ParetoError(f"front {n} has objectives {f.objectives}, front 0 has {objectives}")
    if len(objectives) < 2:
        raise ParetoError(f"plotting needs at least 2 objectives, got {objectives}")
    if labels is None:
        labels = [f.method for f in fronts]
    if len(labels) != len(fronts):
        raise ParetoError(f"got {len(labels)} labels for {len(fronts)} fronts")
    ref = common_reference(fronts, reference_point)
    hvs = None if ref is None else [f.hypervolume(ref) for f in fronts]
    return draw_fronts(fronts, path, list(labels), None if ref is None else np.asarray(ref), hvs)
