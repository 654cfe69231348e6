"""Intervals of a front: the paired bootstrap applied to a :class:`~moalign.pareto.ParetoFront`.

:func:`attach_intervals` reads the per-example score files a front names (its points' and its
baseline's ``per_example``), runs :func:`moalign.pareto.bootstrap.front_statistics` and stores
the intervals on the front; :func:`validate_front_intervals` checks the stored ones;
:func:`common_reference` decides the one reference point at which fronts compare (refusing
fronts that store different ones) and :func:`hypervolume_difference` compares two fronts
traced on the same held-out examples, paired.

Functions here read only the attributes they need of a front (``objectives``, ``points``,
``reference_point``, ``metadata``, ...), so this module does not import
:mod:`moalign.pareto.front` (which imports it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from moalign.errors import CheckpointError
from moalign.pareto import bootstrap as bs
from moalign.pareto.indicators import ParetoError

__all__ = ["REFERENCE_KINDS", "attach_intervals", "common_reference", "front_per_example",
           "hypervolume_difference", "interval", "intervals", "number",
           "validate_front_intervals"]

#: what ``metadata.reference`` may say about a front's reference point
REFERENCE_KINDS = ("baseline", "chance", "explicit")


def number(value: Any, where: str, *, nonnegative: bool = False) -> float:
    """``value`` as a float, or :class:`ParetoError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ParetoError(f"{where} must be a finite number, got {value!r}")
    if nonnegative and value < 0:
        raise ParetoError(f"{where} must be >= 0, got {value!r}")
    return float(value)


def interval(value: Any, where: str) -> list[float]:
    """``value`` as ``[lo, hi]`` (finite, ``lo <= hi``), or :class:`ParetoError`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) \
            or len(value) != 2:
        raise ParetoError(f"{where} must be an interval [lo, hi], got {value!r}")
    lo, hi = number(value[0], f"{where}[0]"), number(value[1], f"{where}[1]")
    if lo > hi:
        raise ParetoError(f"{where} must have lo <= hi, got {value!r}")
    return [lo, hi]


def intervals(value: Any, objectives: Sequence[str], where: str) -> dict[str, list[float]]:
    """A mapping objective -> ``[lo, hi]`` (a subset of ``objectives``), checked."""
    if not isinstance(value, Mapping):
        raise ParetoError(f"{where} must be a mapping objective -> [lo, hi]")
    extra = [o for o in value if o not in objectives]
    if extra:
        raise ParetoError(f"{where}: unknown objectives {extra}")
    return {o: interval(value[o], f"{where}[{o!r}]") for o in objectives if o in value}


def validate_front_intervals(front: Any, ids: set[str]) -> None:
    """Check (and normalize) the bootstrap fields of ``front``; ``ids``: its point ids."""
    kind = front.metadata.get("reference")
    if kind is not None and kind not in REFERENCE_KINDS:
        raise ParetoError(f"metadata.reference must be one of {list(REFERENCE_KINDS)}, got {kind!r}")
    if front.hypervolume_ci is not None:
        front.hypervolume_ci = interval(front.hypervolume_ci, "hypervolume_ci")
    gain = front.hypervolume_gain
    if gain is not None:
        if not isinstance(gain, Mapping) or set(gain) != {"value", "ci"}:
            raise ParetoError(f"hypervolume_gain must be {{'value': v, 'ci': [lo, hi]}}, got {gain!r}")
        front.hypervolume_gain = {"value": number(gain["value"], "hypervolume_gain.value"),
                                  "ci": interval(gain["ci"], "hypervolume_gain.ci")}
    if front.bootstrap is not None:
        try:
            front.bootstrap = bs.bootstrap_settings(front.bootstrap)
        except ParetoError as exc:
            raise ParetoError(f"bootstrap: {exc}") from None
    if front.tradeoff is None:
        return
    if not isinstance(front.tradeoff, Mapping):
        raise ParetoError("tradeoff must be a mapping objective -> {span, ci, from, to}")
    clean = {}
    for o, entry in front.tradeoff.items():
        where = f"tradeoff[{o!r}]"
        if o not in front.objectives:
            raise ParetoError(f"{where}: unknown objective")
        if not isinstance(entry, Mapping) or set(entry) != {"span", "ci", "from", "to"}:
            raise ParetoError(f"{where} must have exactly the keys span, ci, from, to")
        for end in ("from", "to"):
            if entry[end] not in ids:
                raise ParetoError(f"{where}.{end} {entry[end]!r} is not a point of the front")
        clean[o] = {"span": number(entry["span"], f"{where}.span"),
                    "ci": interval(entry["ci"], f"{where}.ci"), "from": entry["from"],
                    "to": entry["to"]}
    front.tradeoff = clean


def front_per_example(front: Any, root: str | os.PathLike | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """``([P, N, K], baseline [N, K] or None)`` read from the files the front names, relative
    to ``root`` (default: ``front.root``, the folder its front.json was loaded from).
    :class:`~moalign.errors.CheckpointError` when a point has none or their sizes differ."""
    folder = Path(root) if root is not None else front.root
    if folder is None:
        raise ParetoError("pass root= (the folder the per_example paths are relative to)")
    missing = [p.id for p in front.points if p.per_example is None]
    if missing or not front.points:
        raise CheckpointError(f"points {missing} have no per-example scores (a front traced "
                              "before they were stored): trace it again to bootstrap it")
    scores = [bs.read_per_example(folder / p.per_example, front.objectives) for p in front.points]
    baseline = front.metadata.get("baseline")
    base = None
    if isinstance(baseline, Mapping) and baseline.get("per_example"):
        base = bs.read_per_example(folder / baseline["per_example"], front.objectives)
    sizes = sorted({len(x) for x in [*scores, *([] if base is None else [base])]})
    if len(sizes) > 1:
        raise CheckpointError(f"the per-example files under '{folder}' hold different numbers "
                              f"of examples ({sizes}); every point must be scored on the same ones")
    return np.stack(scores), base


def _ci_map(arr: np.ndarray, objectives: Sequence[str]) -> dict[str, list[float]]:
    return {o: [float(v) for v in arr[k]] for k, o in enumerate(objectives)
            if np.isfinite(arr[k]).all()}


def attach_intervals(front: Any, root: str | os.PathLike | None = None,
                     settings: Mapping[str, Any] | None = None) -> None:
    """Bootstrap ``front`` from its per-example files and store every interval on it.

    With ``metadata.reference == "baseline"`` the reference point is the baseline's score,
    resampled with the points; otherwise it is the stored ``reference_point``, fixed.
    """
    settings = bs.bootstrap_settings(settings if settings is not None else front.bootstrap)
    scores, base = front_per_example(front, root)
    if front.reference_point is None:
        raise ParetoError("this front has no reference_point to bootstrap its hypervolume at")
    reference: Any = front.reference_point
    if front.metadata.get("reference") == "baseline":
        if base is None:
            raise ParetoError("the reference point is the baseline, but metadata.baseline has "
                              "no per-example scores")
        reference = "baseline"
    weights = None
    if all(p.weights is not None for p in front.points):
        weights = np.array([p.weights for p in front.points])
    st = bs.front_statistics(scores, weights=weights, baseline=base, reference=reference,
                             settings=settings)
    ids, objs = [p.id for p in front.points], front.objectives
    for n, point in enumerate(front.points):
        point.ci = _ci_map(st.point_ci[n], objs)
        point.delta_ci = _ci_map(st.delta_ci[n], objs) if st.delta_ci is not None else {}
    front.hypervolume_ci = [float(v) for v in st.hypervolume_ci]
    front.hypervolume_gain = None if st.gain is None else {
        "value": float(st.gain), "ci": [float(v) for v in st.gain_ci]}
    front.tradeoff = {objs[k]: {"span": span, "ci": [float(v) for v in ci], "from": ids[lo],
                                "to": ids[hi]} for k, (lo, hi, span, ci) in st.spans.items()}
    if base is not None:
        front.metadata["baseline"] = {**front.metadata["baseline"],
                                      "ci": _ci_map(st.baseline_ci, objs)}
    front.metadata["examples"] = st.examples
    front.bootstrap = dict(settings)


def common_reference(fronts: Sequence[Any],
                     reference_point: Sequence[float] | None = None) -> list[float] | None:
    """The one reference point at which ``fronts`` compare.

    With ``reference_point``, that one (every front is recomputed at it). Otherwise every
    front that stores a reference point must store the same one (a front without one is
    measured at it); fronts with different reference points are refused with
    :class:`ParetoError`: their hypervolumes measure different things. So are fronts measured
    on different objectives (or in another order), named with their objectives first.
    """
    objectives = list(fronts[0].objectives) if fronts else []
    for n, f in enumerate(fronts[1:], start=1):
        if list(f.objectives) != objectives:
            same = sorted(f.objectives) == sorted(objectives)
            raise ParetoError(
                f"front {n} has objectives {list(f.objectives)}, front 0 has {objectives}: "
                + ("the same objectives in another order; fronts compare only axis by axis"
                   if same else "fronts compare only on the same objectives"))
    if reference_point is not None:
        k = len(fronts[0].objectives)
        try:
            ref = np.asarray(reference_point, dtype=np.float64)
        except (TypeError, ValueError):
            ref = np.zeros(0)
        if ref.shape != (k,) or not np.isfinite(ref).all():
            raise ParetoError(f"reference point must be {k} finite numbers, got {reference_point!r}")
        return ref.tolist()
    stored = [(n, f.reference_point) for n, f in enumerate(fronts) if f.reference_point is not None]
    if not stored:
        return None
    first_n, first = stored[0]
    for n, ref in stored[1:]:
        if list(ref) != list(first):
            raise ParetoError(
                f"front {n} has reference point {list(ref)}, front {first_n} has {list(first)}: "
                "their hypervolumes are not comparable. Recompute both at one reference point "
                "(reference_point=[...]; moalign plot --reference-point x,y or --common-reference)")
    return list(first)


def hypervolume_difference(first: Any, second: Any, *,
                           reference_point: Sequence[float] | None = None,
                           settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``HV(second) - HV(first)`` with its paired-bootstrap interval, for two fronts traced on
    the same held-out examples (checked by count, and by ``metadata.heldout`` when both have
    it). Returns ``{"value", "ci", "significant", "reference_point", "bootstrap"}``.

    When both fronts use their (identical) baseline as reference and no ``reference_point``
    is given, the reference is resampled with the points, as in :func:`attach_intervals`.
    """
    if first.objectives != second.objectives:
        raise ParetoError(f"the fronts have objectives {first.objectives} and {second.objectives}")
    ref = common_reference([first, second], reference_point)
    if ref is None:
        raise ParetoError("neither front has a reference point; pass reference_point=[...]")
    held = [f.metadata.get("heldout") for f in (first, second)]
    if all(held) and held[0] != held[1]:
        raise ParetoError("the fronts were evaluated on different held-out examples "
                          f"({held[0]} vs {held[1]}); a paired comparison needs the same ones")
    (a, base_a), (b, _) = front_per_example(first), front_per_example(second)
    use_base = reference_point is None and base_a is not None and all(
        f.metadata.get("reference") == "baseline" for f in (first, second))
    s = bs.bootstrap_settings(settings if settings is not None else first.bootstrap)
    value, ci = bs.hypervolume_difference_interval(
        a, b, reference="baseline" if use_base else ref, baseline=base_a if use_base else None,
        settings=s)
    out_ci = [float(v) for v in ci]
    return {"value": value, "ci": out_ci, "significant": bs.significant(out_ci),
            "reference_point": ref, "bootstrap": s}
