"""Paired bootstrap over held-out examples: intervals for scores, hypervolumes and spans.

Every point of a front, and the starting policy, is scored on the **same** held-out examples,
so each has a per-example score matrix ``[N, K]`` (NaN where an example does not score an
objective, e.g. an HH pair labelled only for helpfulness). The bootstrap draws ``resamples``
multisets of the N example indices once, from ``seed``, and applies the same draws to every
point, to the baseline and to every statistic. Differences (a point minus the start, the span
of an objective along the weights, the hypervolume of one front minus another's on the same
held-out set) therefore keep the pairing: noise the points share cancels, and two points that
differ by a constant on every example get an interval of width 0 for their difference.

An objective's resampled mean uses the resampled examples that score it: it is
``sum_i c_i x_i / sum_i c_i m_i`` with ``c`` the resample counts and ``m`` the "scored" mask,
one matrix product for every point, objective and resample at once. A resample in which no
example scores an objective gives NaN for it, and percentiles skip NaN.

Intervals are **percentile intervals** at ``level`` (default 95%): the ``(1-level)/2`` and
``(1+level)/2`` quantiles of the resampled statistic. A percentile interval of a non-smooth
statistic (the hypervolume is a max over points, clipped at the reference) need not contain
the estimate; it is then widened to reach the estimate, which can only make an effect harder
to call significant. An effect is *significant* when its interval excludes 0.

Why numpy and not ``scipy.stats.bootstrap``: its ``paired=True`` resampling draws new indices
inside each call and never returns them, so the statistics computed here in separate steps
(per-point means, spans, hypervolumes of one or two fronts with a resampled reference) would
not share draws unless all were packed into one vector-valued statistic; it has no notion of
a per-objective "scored" mask (it drops whole observations or propagates NaN); and its
default BCa method runs a jackknife per statistic. The counts-matrix form above is a few
lines, exact about which examples are drawn, and takes milliseconds for 2000 resamples.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from moalign.config.checking import did_you_mean
from moalign.errors import CheckpointError
from moalign.pareto.indicators import ParetoError, hypervolume
from moalign.storage.checkpoints import read_text

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "FrontStatistics",
    "batched_hypervolume",
    "bootstrap_problems",
    "bootstrap_settings",
    "front_statistics",
    "hypervolume_difference_interval",
    "per_example_text",
    "percentile_interval",
    "read_per_example",
    "resampled_means",
    "significant",
    "span_ends",
]

#: Settings of the paired bootstrap (``FrontConfig.bootstrap``, front.json ``"bootstrap"``).
DEFAULT_BOOTSTRAP: dict[str, Any] = {"resamples": 2000, "level": 0.95, "seed": 0}
_MIN_RESAMPLES, _MAX_RESAMPLES = 100, 1_000_000
# elements of one [resamples, N] counts chunk
_CHUNK_ELEMENTS = 2_000_000


# ---------------------------------------------------------------------------- settings


def bootstrap_problems(settings: Any, key: str = "bootstrap") -> list[str]:
    """What is wrong with a ``bootstrap`` mapping (``resamples``, ``level``, ``seed``)."""
    if not isinstance(settings, Mapping):
        return [f"'{key}' must be a mapping with keys {sorted(DEFAULT_BOOTSTRAP)}, got {settings!r}"]
    problems = [f"'{key}': unknown key '{name}'{did_you_mean(name, DEFAULT_BOOTSTRAP)}"
                for name in settings if name not in DEFAULT_BOOTSTRAP]
    n = settings.get("resamples", DEFAULT_BOOTSTRAP["resamples"])
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) \
            or not _MIN_RESAMPLES <= n <= _MAX_RESAMPLES:
        problems.append(f"'{key}.resamples' must be an integer from {_MIN_RESAMPLES} to "
                        f"{_MAX_RESAMPLES}, got {n!r}")
    level = settings.get("level", DEFAULT_BOOTSTRAP["level"])
    if isinstance(level, bool) or not isinstance(level, Real) or not 0 < level < 1:
        problems.append(f"'{key}.level' must be a number strictly between 0 and 1 (0.95 for "
                        f"95% intervals), got {level!r}")
    seed = settings.get("seed", DEFAULT_BOOTSTRAP["seed"])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"'{key}.seed' must be an integer >= 0, got {seed!r}")
    return problems


def bootstrap_settings(settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``settings`` completed with the defaults; :class:`ParetoError` listing what is wrong."""
    settings = {} if settings is None else settings
    problems = bootstrap_problems(settings)
    if problems:
        raise ParetoError("; ".join(problems))
    out = {**DEFAULT_BOOTSTRAP, **settings}
    return {"resamples": int(out["resamples"]), "level": float(out["level"]),
            "seed": int(out["seed"])}


# ---------------------------------------------------------------------------- resampling


def _count_chunks(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Resample counts ``[b, n]`` (float64), chunk by chunk: row ``r`` says how often each
    example is drawn in resample ``r``. Depends only on ``(n, resamples, seed)``."""
    rng = np.random.default_rng(seed)
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        flat = (idx + (np.arange(b) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def resampled_means(scores: Any, settings: Mapping[str, Any] | None = None) -> np.ndarray:
    """Bootstrap means ``[B, S, K]`` of score sets ``[S, N, K]`` (NaN: unscored), all resampled
    with the same draws of the N examples. An objective's mean uses the examples that score it."""
    s = bootstrap_settings(settings)
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] == 0:
        raise ParetoError(f"scores must be [sets, examples, objectives] with examples >= 1, "
                          f"got shape {x.shape}")
    sets, n, k = x.shape
    scored = np.isfinite(x)
    values = np.ascontiguousarray(np.where(scored, x, 0.0))
    mask = np.ascontiguousarray(scored.astype(np.float64))
    out = np.empty((s["resamples"], sets, k))
    pos = 0
    for counts in _count_chunks(n, s["resamples"], s["seed"]):
        b = len(counts)
        for j in range(sets):  # one product per set: identical sets give identical means
            with np.errstate(invalid="ignore", divide="ignore"):
                out[pos : pos + b, j] = (counts @ values[j]) / (counts @ mask[j])
        pos += b
    return out


def percentile_interval(samples: Any, estimate: Any, level: float) -> np.ndarray:
    """Percentile interval ``[..., 2]`` of ``samples`` ``[B, ...]`` (NaN skipped), widened to
    contain ``estimate`` when it falls outside; NaN where every sample is NaN."""
    samples = np.asarray(samples, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    tail = 100.0 * (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        lo, hi = np.nanpercentile(samples, [tail, 100.0 - tail], axis=0)
    lo = np.where(np.isnan(lo), np.nan, np.minimum(lo, est))
    hi = np.where(np.isnan(hi), np.nan, np.maximum(hi, est))
    return np.stack([lo, hi], axis=-1)


#: interval ends closer to 0 than this count as 0 (float rounding of equal inputs)
_ZERO = 1e-12


def significant(ci: Sequence[float] | None) -> bool:
    """True when the interval excludes 0 (an effect beyond noise at the interval's level);
    ends within 1e-12 of 0 count as 0, so float rounding never makes an effect."""
    if ci is None or len(ci) != 2 or not all(math.isfinite(v) for v in ci):
        return False
    return ci[0] > _ZERO or ci[1] < -_ZERO


# ---------------------------------------------------------------------------- statistics


def batched_hypervolume(points: Any, ref: Any) -> np.ndarray:
    """Hypervolume of each point set ``[B, P, K]`` against ``ref`` (``[K]`` or ``[B, K]``);
    NaN for a set with a non-finite entry. K = 2 is vectorized (the staircase sum of
    :func:`moalign.pareto.indicators._hypervolume_2d` on points clipped at the reference)."""
    p = np.asarray(points, dtype=np.float64)
    b, _, k = p.shape
    r = np.broadcast_to(np.asarray(ref, dtype=np.float64), (b, k))
    bad = ~(np.isfinite(p).all(axis=(1, 2)) & np.isfinite(r).all(axis=1))
    out = np.full(b, np.nan)
    if p.shape[1] == 0:
        out[~bad] = 0.0
        return out
    if k == 2:
        q = np.maximum(np.where(bad[:, None, None], 0.0, p), np.where(bad[:, None], 0.0, r)[:, None, :])
        rr = np.where(bad[:, None], 0.0, r)
        order = np.argsort(-q[:, :, 0], axis=1, kind="stable")
        xs = np.take_along_axis(q[:, :, 0], order, axis=1)
        ys = np.take_along_axis(q[:, :, 1], order, axis=1)
        top = np.maximum.accumulate(ys, axis=1)
        heights = np.diff(np.concatenate([rr[:, 1:2], top], axis=1), axis=1)
        hv = ((xs - rr[:, :1]) * heights).sum(axis=1)
        out[~bad] = hv[~bad]
        return out
    for i in np.flatnonzero(~bad):
        out[i] = hypervolume(p[i], r[i])
    return out


def span_ends(weights: Any) -> list[tuple[int, int] | None]:
    """Per objective ``k``: ``(from, to)`` point indices, ``to`` the point with the most weight
    on ``k`` and ``from`` the one with the least (the first in front order on ties); ``None``
    when every point puts the same weight on ``k``."""
    w = np.asarray(weights, dtype=np.float64)
    ends: list[tuple[int, int] | None] = []
    for k in range(w.shape[1]):
        col = w[:, k]
        ends.append(None if col.max() - col.min() <= 0 else (int(np.argmin(col)),
                                                             int(np.argmax(col))))
    return ends


@dataclass
class FrontStatistics:
    """What :func:`front_statistics` measures; every ``*_ci`` holds ``[lo, hi]`` in its last
    axis (NaN where no resample could compute it)."""

    examples: int
    estimates: np.ndarray  # [P, K] point means
    point_ci: np.ndarray  # [P, K, 2]
    hypervolume: float
    hypervolume_ci: np.ndarray  # [2]
    baseline: np.ndarray | None = None  # [K] baseline means
    baseline_ci: np.ndarray | None = None  # [K, 2]
    delta_ci: np.ndarray | None = None  # [P, K, 2]: point minus baseline, paired
    gain: float | None = None  # hypervolume of the front minus that of the baseline alone
    gain_ci: np.ndarray | None = None  # [2]
    #: objective index -> (from point, to point, span, ci [2])
    spans: dict[int, tuple[int, int, float, np.ndarray]] = field(default_factory=dict)


def _means(x: np.ndarray) -> np.ndarray:
    """Means over the examples axis (-2) of the finite entries (as mean_and_stderr does)."""
    out = np.empty(x.shape[:-2] + x.shape[-1:])
    for idx in np.ndindex(*out.shape):
        col = x[idx[:-1] + (slice(None), idx[-1])]
        col = col[np.isfinite(col)]
        out[idx] = col.mean() if col.size else np.nan
    return out


def _stack(scores: Any, baseline: Any) -> tuple[np.ndarray, int]:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 3:
        raise ParetoError(f"scores must be [points, examples, objectives], got shape {x.shape}")
    if baseline is None:
        return x, x.shape[0]
    base = np.asarray(baseline, dtype=np.float64)
    if base.shape != x.shape[1:]:
        raise ParetoError(f"baseline scores have shape {base.shape}, the points {x.shape[1:]}: "
                          "they must be scored on the same examples")
    return np.concatenate([x, base[None]], axis=0), x.shape[0]


def front_statistics(scores: Any, *, weights: Any = None, baseline: Any = None,
                     reference: Any, settings: Mapping[str, Any] | None = None) -> FrontStatistics:
    """Paired-bootstrap intervals of a front from its per-example scores.

    ``scores`` ``[P, N, K]`` (NaN: unscored), ``weights`` ``[P, K]`` (for the spans; ``None``:
    no spans), ``baseline`` ``[N, K]`` (the starting policy on the same examples), and
    ``reference``: the hypervolume's reference point ``[K]``, or ``"baseline"`` for the
    baseline's scores, resampled with the points (the start's noise is shared, so it pairs).
    """
    s = bootstrap_settings(settings)
    x, p = _stack(scores, baseline)
    k = x.shape[2]
    est = _means(x)
    boot = resampled_means(x, s)  # [B, S, K]
    level = s["level"]
    if isinstance(reference, str):
        if reference != "baseline" or baseline is None:
            raise ParetoError("reference='baseline' needs the baseline's per-example scores")
        ref_est, ref_boot = est[p], boot[:, p]
    else:
        ref_est = np.asarray(reference, dtype=np.float64)
        if ref_est.shape != (k,):
            raise ParetoError(f"reference point must have {k} values, got {reference!r}")
        ref_boot = ref_est
    hv = float(batched_hypervolume(est[None, :p], ref_est)[0])
    hv_boot = batched_hypervolume(boot[:, :p], ref_boot)
    stats = FrontStatistics(
        examples=x.shape[1], estimates=est[:p],
        point_ci=percentile_interval(boot[:, :p], est[:p], level),
        hypervolume=hv, hypervolume_ci=percentile_interval(hv_boot, hv, level))
    if baseline is not None:
        stats.baseline = est[p]
        stats.baseline_ci = percentile_interval(boot[:, p], est[p], level)
        delta = est[:p] - est[p]
        stats.delta_ci = percentile_interval(boot[:, :p] - boot[:, p:p + 1], delta, level)
        base_hv = float(batched_hypervolume(est[None, p:p + 1], ref_est)[0])
        base_boot = batched_hypervolume(boot[:, p:p + 1], ref_boot)
        stats.gain = hv - base_hv
        stats.gain_ci = percentile_interval(hv_boot - base_boot, stats.gain, level)
    if weights is not None and p > 0:
        for j, ends in enumerate(span_ends(weights)):
            if ends is None:
                continue
            lo, hi = ends
            span = float(est[hi, j] - est[lo, j])
            ci = percentile_interval(boot[:, hi, j] - boot[:, lo, j], span, level)
            stats.spans[j] = (lo, hi, span, ci)
    return stats


def hypervolume_difference_interval(
    first: Any, second: Any, *, reference: Any, baseline: Any = None,
    settings: Mapping[str, Any] | None = None,
) -> tuple[float, np.ndarray]:
    """``HV(second) - HV(first)`` with its paired interval, for two fronts ``[P1, N, K]`` and
    ``[P2, N, K]`` scored on the same N examples (the same draws resample both)."""
    s = bootstrap_settings(settings)
    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.shape[1:] != b.shape[1:]:
        raise ParetoError(f"the fronts were scored on different example sets (shapes "
                          f"{a.shape[1:]} and {b.shape[1:]} of [examples, objectives])")
    x, _ = _stack(np.concatenate([a, b], axis=0), baseline)
    est, boot = _means(x), resampled_means(x, s)
    n1, n2 = len(a), len(a) + len(b)
    if isinstance(reference, str):
        if reference != "baseline" or baseline is None:
            raise ParetoError("reference='baseline' needs the baseline's per-example scores")
        ref_est, ref_boot = est[n2], boot[:, n2]
    else:
        ref_est = ref_boot = np.asarray(reference, dtype=np.float64)
    diff = float(batched_hypervolume(est[None, n1:n2], ref_est)[0]
                 - batched_hypervolume(est[None, :n1], ref_est)[0])
    boot_diff = batched_hypervolume(boot[:, n1:n2], ref_boot) - batched_hypervolume(
        boot[:, :n1], ref_boot)
    return diff, percentile_interval(boot_diff, diff, s["level"])


# ---------------------------------------------------------------------------- files


def per_example_text(values: Any, objectives: Sequence[str]) -> str:
    """JSON lines, one per example, one key per objective (``null``: not scored)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(objectives):
        raise ParetoError(f"per-example scores must be [examples, {len(objectives)}], got {x.shape}")
    lines = []
    for row in x:
        lines.append(json.dumps({o: (float(v) if math.isfinite(v) else None)
                                 for o, v in zip(objectives, row, strict=True)}, allow_nan=False))
    return "".join(line + "\n" for line in lines)


def read_per_example(path: str | os.PathLike, objectives: Sequence[str]) -> np.ndarray:
    """Per-example scores ``[N, K]`` (NaN for ``null``) from a file of :func:`per_example_text`;
    :class:`~moalign.errors.CheckpointError` naming the file and line otherwise."""
    path = Path(path)
    text = read_text(path, "per-example scores")
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"per-example scores '{path}', line {i}: not JSON ({exc})") from None
        if not isinstance(entry, dict) or sorted(entry) != sorted(objectives):
            raise CheckpointError(f"per-example scores '{path}', line {i}: expected one key per "
                                  f"objective {list(objectives)}, got {line[:80]!r}")
        row = []
        for o in objectives:
            v = entry[o]
            if v is None:
                row.append(math.nan)
            elif isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
                raise CheckpointError(f"per-example scores '{path}', line {i}: '{o}' must be a "
                                      f"finite number or null, got {v!r}")
            else:
                row.append(float(v))
        rows.append(row)
    if not rows:
        raise CheckpointError(f"per-example scores '{path}' hold no example")
    return np.asarray(rows, dtype=np.float64)
