"""The :class:`Schedule` interface shared by every weight schedule (see :mod:`moalign.tradeoff.schedule`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from moalign.errors import CheckpointError, ConfigError, MoalignError

__all__ = ["HoldsWeights", "Schedule", "ScheduleExhausted", "check_k", "rng_from_state", "rng_state"]


class ScheduleExhausted(MoalignError, LookupError):
    """``ask()`` was called on a schedule that has no weight vector left (a finished sweep)."""


def check_k(k: Any) -> int:
    """Validate a number of objectives."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"the number of objectives must be an integer >= 1, got {k!r}")
    return int(k)


def rng_state(rng: np.random.Generator) -> dict:
    """JSON-serializable state of a NumPy generator (large integers written as strings)."""
    def encode(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: encode(v) for key, v in value.items()}
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return str(int(value))
        return value

    return encode(rng.bit_generator.state)


def rng_from_state(state: dict) -> np.random.Generator:
    """Inverse of :func:`rng_state`."""
    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: decode(v) for key, v in value.items()}
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        return value

    decoded = decode(state)
    bit_generator = getattr(np.random, decoded["bit_generator"])()
    bit_generator.state = decoded
    return np.random.Generator(bit_generator)


class Schedule:
    """Decides the weights ``[K]`` (float64, on the simplex): ``ask()`` for the next step or
    run, ``tell(metrics)`` with what was measured.

    ``state_dict()`` is JSON-serializable and saved in checkpoints; after
    ``load_state_dict`` a schedule continues exactly where the saved one stopped.
    Subclasses set :attr:`kind` and extend ``state_dict``/``load_state_dict``.
    """

    kind: ClassVar[str] = ""

    def __init__(self, num_objectives: int):
        self.num_objectives = check_k(num_objectives)

    def ask(self) -> np.ndarray:
        """The weight vector ``[K]`` for the next step (or run)."""
        raise NotImplementedError

    def tell(self, metrics: Mapping[str, Any]) -> None:
        """Report what was measured; schedules that need nothing ignore it."""
        if not isinstance(metrics, Mapping):
            raise ConfigError(f"{self.kind}: tell() takes a mapping of metrics, got {type(metrics).__name__}")

    def state_dict(self) -> dict:
        """JSON-serializable state."""
        return {"kind": self.kind, "num_objectives": self.num_objectives}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; one from another kind or K is a :class:`CheckpointError`."""
        if not isinstance(state, Mapping) or state.get("kind") != self.kind:
            found = state.get("kind") if isinstance(state, Mapping) else type(state).__name__
            raise CheckpointError(f"cannot load a {found!r} schedule state into a {self.kind!r} schedule")
        if state.get("num_objectives") != self.num_objectives:
            raise CheckpointError(
                f"{self.kind} schedule state is for {state.get('num_objectives')} objectives, "
                f"this schedule has {self.num_objectives}"
            )

    def _need(self, metrics: Mapping[str, Any], key: str) -> Any:
        Schedule.tell(self, metrics)
        if key not in metrics:
            raise ConfigError(f"{self.kind}: tell() needs a {key!r} entry, got keys {sorted(metrics)}")
        return metrics[key]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_objectives={self.num_objectives})"


class HoldsWeights(Schedule):
    """A schedule whose state is its current weight vector ``self.weights`` (fixed weights,
    MGDA's last solution): saved with the checkpoint and checked on the simplex when loaded."""

    weights: np.ndarray

    def state_dict(self) -> dict:
        return {**super().state_dict(), "weights": self.weights.tolist()}

    def load_state_dict(self, state: dict) -> None:
        from moalign.weights import as_weights

        super().load_state_dict(state)
        try:
            self.weights = as_weights(state["weights"], self.num_objectives)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{self.kind} schedule state has no valid weights: {exc}") from None
