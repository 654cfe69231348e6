"""Weight schedules: which weight vector ``[K]`` (float64, on the simplex) to train with, and when.

Every schedule has the same interface (:class:`Schedule`): ``ask()`` returns the weights for
the next step or run, ``tell(metrics)`` reports what was measured, and
``state_dict()`` / ``load_state_dict()`` save and restore a JSON-serializable state, so a
resumed run continues the same sequence as an uninterrupted one.

- :class:`FixedWeights`: always the same vector;
- :class:`GridSweep`: one Das-Dennis grid vector per run (the MORLHF / MODPO sweep baseline);
- :class:`DirichletWeights`: per-example samples for conditioned training (Rewards-in-Context,
  Yang et al. 2024; Panacea, Zhong et al. 2024 sample preference vectors the same way);
- :class:`AnnealedWeights`: linear or cosine interpolation between two vectors over training;
- :class:`~moalign.tradeoff.adaptive.AdaptiveFront`: the next run where the front has its largest gap;
- :class:`~moalign.tradeoff.mgda.MGDAWeights`: min-norm gradient weights (Désidéri 2012; Sener & Koltun
  2018), with :func:`~moalign.tradeoff.mgda.min_norm_weights`.

:func:`get_schedule` builds one from a registry name or a config mapping.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from moalign._plugins import IDENTIFIER, Registry
from moalign.errors import CheckpointError, ConfigError, WeightsError
from moalign.tradeoff.adaptive import AdaptiveFront
from moalign.tradeoff.mgda import MGDAWeights, min_norm_weights, min_norm_weights_from_gram
from moalign.tradeoff.schedule_base import (
    HoldsWeights,
    Schedule,
    ScheduleExhausted,
    check_k,
    rng_from_state,
    rng_state,
)
from moalign.weights import as_weights

__all__ = [
    "SCHEDULES",
    "AdaptiveFront",
    "AnnealedWeights",
    "DirichletWeights",
    "FixedWeights",
    "GridSweep",
    "MGDAWeights",
    "Schedule",
    "ScheduleExhausted",
    "available_schedules",
    "get_schedule",
    "min_norm_weights",
    "min_norm_weights_from_gram",
    "register_schedule",
]


class FixedWeights(HoldsWeights):
    """The same weight vector at every ``ask()``."""

    kind = "fixed"

    def __init__(self, weights: Any):
        w = as_weights(weights)
        super().__init__(len(w))
        self.weights = w

    def ask(self) -> np.ndarray:
        return self.weights.copy()

    def __repr__(self) -> str:
        return f"FixedWeights({self.weights.tolist()})"


class GridSweep(Schedule):
    """One vector of :func:`moalign.pareto.simplex_grid` ``(k, n)`` per ``ask()``, in grid order.

    ``len(sweep)`` is the number of runs; :attr:`done` says whether all were asked, after which
    ``ask()`` raises :class:`ScheduleExhausted`. Iterating yields the vectors not yet asked.
    """

    kind = "sweep"

    def __init__(self, k: int, n: int):
        from moalign.pareto import simplex_grid

        super().__init__(k)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"sweep: n (divisions of the simplex) must be an integer >= 1, got {n!r}")
        self.n = int(n)
        self.points = simplex_grid(self.num_objectives, self.n)
        self.index = 0

    def __len__(self) -> int:
        return len(self.points)

    @property
    def done(self) -> bool:
        """True once every grid vector has been asked."""
        return self.index >= len(self.points)

    def ask(self) -> np.ndarray:
        if self.done:
            raise ScheduleExhausted(
                f"sweep: all {len(self.points)} weight vectors of simplex_grid(k={self.num_objectives}, "
                f"n={self.n}) have been asked"
            )
        w = self.points[self.index].copy()
        self.index += 1
        return w

    def __iter__(self) -> Iterator[np.ndarray]:
        while not self.done:
            yield self.ask()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "n": self.n, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state.get("n") != self.n:
            raise CheckpointError(f"sweep state is for n={state.get('n')}, this sweep has n={self.n}")
        index = state.get("index")
        if not isinstance(index, int) or not 0 <= index <= len(self.points):
            raise CheckpointError(f"sweep state has an invalid index {index!r}")
        self.index = index


class DirichletWeights(Schedule):
    """Weight vectors sampled from ``Dirichlet(alpha)``: ``ask()`` one ``[K]``, ``ask_batch(n)`` ``[n, K]``.

    For conditioned training, where each example gets its own preference vector. ``alpha`` is
    a positive number (symmetric; 1 = uniform on the simplex) or a ``[K]`` vector. The
    generator (NumPy PCG64 seeded with ``seed``) is part of the state, so a resumed run draws
    exactly the samples the uninterrupted run would have drawn.
    """

    kind = "dirichlet"

    def __init__(self, k: int, alpha: float | Sequence[float] = 1.0, seed: int = 0):
        super().__init__(k)
        try:
            a = np.asarray(alpha, dtype=np.float64)
        except (TypeError, ValueError):
            a = np.full(0, np.nan)
        if a.ndim == 0:
            a = np.full(self.num_objectives, float(a))
        if a.shape != (self.num_objectives,) or not np.all(np.isfinite(a)) or np.any(a <= 0):
            raise ConfigError(
                f"dirichlet: alpha must be a positive number or {self.num_objectives} positive numbers, got {alpha!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"dirichlet: seed must be an integer, got {seed!r}")
        self.alpha = a.copy()
        self.seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))

    def ask_batch(self, n: int) -> np.ndarray:
        """``n`` samples ``[n, K]``, each row on the simplex."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"dirichlet: the number of samples must be an integer >= 0, got {n!r}")
        if self.num_objectives == 1:
            return np.ones((int(n), 1))
        w = self._rng.dirichlet(self.alpha, size=int(n))
        return w / w.sum(axis=1, keepdims=True)

    def ask(self) -> np.ndarray:
        return self.ask_batch(1)[0]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "alpha": self.alpha.tolist(), "seed": self.seed,
                "rng": rng_state(self._rng)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        try:
            self.alpha = np.asarray(state["alpha"], dtype=np.float64)
            self.seed = int(state["seed"])
            self._rng = rng_from_state(state["rng"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"dirichlet schedule state is malformed: {exc}") from None


_ANNEAL: dict[str, Callable[[float], float]] = {
    "linear": lambda u: u,
    "cosine": lambda u: 0.5 * (1.0 - math.cos(math.pi * u)),
}


class AnnealedWeights(Schedule):
    """``w(t) = start + f(min(t, steps) / steps) * (end - start)``, ``f`` linear or cosine.

    Cosine is ``f(u) = (1 - cos(pi u)) / 2`` (slow at both ends). ``t`` is a step counter:
    ``ask()`` returns ``w(t)`` and then advances ``t`` by one, so consecutive asks walk the
    schedule; ``tell({"step": s})`` sets ``t = s`` (the next ``ask()`` returns ``w(s)``), for a
    trainer that knows its global step. After ``steps`` the weights stay at ``end``.
    """

    kind = "anneal"

    def __init__(self, start: Any, end: Any, steps: int, kind: str = "linear"):
        s = as_weights(start, name="anneal: start")
        super().__init__(len(s))
        self.start = s
        self.end = as_weights(end, self.num_objectives, name="anneal: end")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ConfigError(f"anneal: steps must be an integer >= 1, got {steps!r}")
        if kind not in _ANNEAL:
            raise ConfigError(f"anneal: kind must be one of {sorted(_ANNEAL)}, got {kind!r}")
        self.steps = int(steps)
        self.curve = kind
        self.t = 0

    def weights_at(self, t: int) -> np.ndarray:
        """The weights at step ``t`` (no side effect)."""
        u = min(max(t, 0), self.steps) / self.steps
        w = self.start + _ANNEAL[self.curve](u) * (self.end - self.start)
        w = np.clip(w, 0.0, None)
        return w / w.sum()

    def ask(self) -> np.ndarray:
        w = self.weights_at(self.t)
        self.t += 1
        return w

    def tell(self, metrics: Mapping[str, Any]) -> None:
        super().tell(metrics)
        if "step" in metrics:
            step = metrics["step"]
            if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
                raise ConfigError(f"anneal: step must be an integer >= 0, got {step!r}")
            self.t = int(step)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "start": self.start.tolist(), "end": self.end.tolist(),
                "steps": self.steps, "curve": self.curve, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        try:
            self.start = as_weights(state["start"], self.num_objectives)
            self.end = as_weights(state["end"], self.num_objectives)
            self.steps, self.curve, self.t = int(state["steps"]), state["curve"], int(state["t"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"anneal schedule state is malformed: {exc}") from None
        if self.curve not in _ANNEAL:
            raise CheckpointError(f"anneal schedule state has an unknown kind {self.curve!r}")


# ------------------------------------------------------------------------------ registry

def _fixed(k: int, weights: Any = None) -> Schedule:
    return FixedWeights(np.full(k, 1.0 / k) if weights is None else as_weights(weights, k))


def _sweep(k: int, n: int = 4) -> Schedule:
    return GridSweep(k, n)


def _dirichlet(k: int, alpha: Any = 1.0, seed: int = 0) -> Schedule:
    return DirichletWeights(k, alpha=alpha, seed=seed)


def _anneal(k: int, start: Any, end: Any, steps: int, kind: str = "linear") -> Schedule:
    sched = AnnealedWeights(start, end, steps, kind=kind)
    if sched.num_objectives != k:
        raise WeightsError(f"anneal: start has {sched.num_objectives} entries but there are {k} objectives")
    return sched


def _adaptive(k: int, ref: Any, candidates: Any = None, seed: int = 0) -> Schedule:
    return AdaptiveFront(k, ref, candidates=candidates, seed=seed)


def _mgda(k: int) -> Schedule:
    return MGDAWeights(k)


#: Every schedule by name (:func:`register_schedule` adds one).
SCHEDULES = Registry("schedule", name_pattern=IDENTIFIER)
SCHEDULES.register("fixed", _fixed)
SCHEDULES.register("sweep", _sweep)
SCHEDULES.register("dirichlet", _dirichlet)
SCHEDULES.register("anneal", _anneal)
SCHEDULES.register("adaptive", _adaptive)
SCHEDULES.register("mgda", _mgda)


def register_schedule(name: str, factory: Callable[..., Schedule]) -> None:
    """Make ``factory(num_objectives, **params)`` available to :func:`get_schedule` as ``name``."""
    SCHEDULES.register(name, factory)


def available_schedules() -> list[str]:
    """Names accepted by :func:`get_schedule`."""
    return SCHEDULES.names()


def get_schedule(spec: str | Mapping[str, Any] | Sequence[float] | Schedule, num_objectives: int) -> Schedule:
    """Build a schedule for ``num_objectives`` objectives.

    ``spec`` is a registry name (``"fixed"`` = uniform weights, ``"sweep"`` = ``n=4``,
    ``"dirichlet"``, ``"mgda"``; ``"anneal"`` and ``"adaptive"`` need parameters), a mapping
    ``{"name": "sweep", "n": 10}``, a weight vector (fixed weights), or a :class:`Schedule`
    (checked for ``num_objectives`` and returned).
    """
    k = check_k(num_objectives)
    if isinstance(spec, Schedule):
        if spec.num_objectives != k:
            raise ConfigError(f"the {spec.kind} schedule is for {spec.num_objectives} objectives, not {k}")
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    elif isinstance(spec, (Sequence, np.ndarray)):
        return FixedWeights(as_weights(spec, k))
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a schedule is a name, a mapping, weights or a Schedule, got {type(spec).__name__}")
    params = dict(spec)
    name = params.pop("name", None)
    factory = SCHEDULES[name]
    sig = inspect.signature(factory)
    try:
        sig.bind(k, **params)
    except TypeError:
        accepted = list(sig.parameters)[1:]
        required = [p for p in accepted if sig.parameters[p].default is inspect.Parameter.empty]
        unknown = sorted(set(params) - set(accepted))
        missing = [p for p in required if p not in params]
        detail = (f"does not take {unknown}" if unknown else f"needs {missing}")
        raise ConfigError(f"schedule {name!r} {detail}; it accepts {accepted}") from None
    return factory(k, **params)
