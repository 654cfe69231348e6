"""Lagrangian constraints ``objective_j >= threshold_j`` with multipliers learned by dual ascent.

The constrained problem ``max_pi  J_0(pi)  s.t.  J_j(pi) >= c_j`` has the Lagrangian
``L(pi, lambda) = J_0(pi) + sum_j lambda_j (J_j(pi) - c_j)`` with ``lambda_j >= 0``. The policy
ascends ``L`` in ``pi`` while the multipliers descend it: projected dual ascent on the measured
constraint values, ``lambda_j <- clip(lambda_j + lr (c_j - mean_j), 0, max_multiplier)``. A
violated constraint (``mean_j < c_j``) raises its multiplier; a satisfied one lowers it to 0.
This is the scheme of Safe RLHF (Dai et al. 2023, "Safe RLHF: Safe Reinforcement Learning from
Human Feedback", ICLR 2024, arXiv:2310.12773), written for maximized objectives (their cost
``C <= d`` is ``-C >= -d`` here).

Per-example signal (:meth:`LagrangianConstraints.combine`), in Safe RLHF's normalized form::

    (signal + sum_j lambda_j r_j) / (1 + sum_j lambda_j)

The constant ``-sum_j lambda_j c_j`` of the Lagrangian is dropped (it does not change which
policy is optimal nor the policy gradient), and the division keeps the signal's scale bounded
as multipliers grow. Under data parallelism, pass globally averaged batch means to
:meth:`LagrangianConstraints.update` so every process keeps the same multipliers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from moalign.errors import CheckpointError, ConfigError, ObjectiveError, UnknownObjectiveError

__all__ = ["LagrangianConstraints"]


def _positive(name: str, value: Any, *, allow_zero: bool = False, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        rule = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"LagrangianConstraints: {name} must be a finite number {rule}, got {value!r}")
    return float(value)


class LagrangianConstraints:
    """Constraints ``objective_j >= threshold_j`` and their multipliers (see the module docstring).

    ``constraints`` maps objective indices (``{1: 0.5}``) or names (``{"harmlessness": 0.5}``,
    which needs ``names``) to thresholds. ``num_objectives`` defaults to ``len(names)``.
    ``multipliers`` is a float64 tensor ``[K]``, 0 for unconstrained objectives.
    """

    def __init__(
        self,
        constraints: Mapping[int, float] | Mapping[str, float],
        num_objectives: int | None = None,
        names: Sequence[str] | None = None,
        lr: float = 0.05,
        init: float = 0.0,
        max_multiplier: float | None = None,
    ):
        if not isinstance(constraints, Mapping) or not constraints:
            raise ConfigError(
                f"LagrangianConstraints needs a non-empty mapping objective -> threshold, got {constraints!r}"
            )
        self.names = None if names is None else [str(n) for n in names]
        if num_objectives is None:
            if self.names is None:
                raise ConfigError("LagrangianConstraints needs num_objectives or names")
            num_objectives = len(self.names)
        if isinstance(num_objectives, bool) or not isinstance(num_objectives, int) or num_objectives < 1:
            raise ConfigError(f"LagrangianConstraints: num_objectives must be an int >= 1, got {num_objectives!r}")
        if self.names is not None and len(self.names) != num_objectives:
            raise ConfigError(
                f"LagrangianConstraints: {len(self.names)} names {self.names} for {num_objectives} objectives"
            )
        self.num_objectives = num_objectives
        self.lr = _positive("lr", lr)
        self.init = _positive("init", init, allow_zero=True)
        self.max_multiplier = _positive("max_multiplier", max_multiplier, allow_none=True)
        if self.max_multiplier is not None and self.init > self.max_multiplier:
            raise ConfigError(f"LagrangianConstraints: init {init} exceeds max_multiplier {max_multiplier}")

        self.thresholds = torch.full((num_objectives,), float("nan"), dtype=torch.float64)
        for key, threshold in constraints.items():
            index = self._index(key)
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
                raise ConfigError(f"LagrangianConstraints: threshold of {key!r} must be a finite number, got {threshold!r}")
            self.thresholds[index] = float(threshold)
        self.constrained = ~torch.isnan(self.thresholds)
        self.multipliers = torch.where(self.constrained, self.init, 0.0).to(torch.float64)

    def _index(self, key: Any) -> int:
        if isinstance(key, str):
            if self.names is None:
                raise ConfigError(
                    f"LagrangianConstraints: constraint on {key!r} names an objective, so pass names=[...]"
                )
            if key not in self.names:
                raise UnknownObjectiveError(
                    f"constraint on unknown objective {key!r}; the objectives are {self.names}",
                    objective=key,
                )
            return self.names.index(key)
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not 0 <= int(key) < self.num_objectives:
                raise UnknownObjectiveError(
                    f"constraint on objective index {key}, but there are {self.num_objectives} "
                    f"objectives (indices 0..{self.num_objectives - 1})",
                    index=int(key),
                )
            return int(key)
        raise ConfigError(f"LagrangianConstraints: a constraint key must be an index or a name, got {key!r}")

    def _vector(self, values: Any, what: str) -> torch.Tensor:
        v = torch.as_tensor(values.detach().cpu() if isinstance(values, torch.Tensor) else values,
                            dtype=torch.float64).flatten()
        if v.numel() != self.num_objectives:
            raise ObjectiveError(f"{what} has {v.numel()} entries, expected {self.num_objectives} (one per objective)")
        return v

    def update(self, batch_means: Any) -> torch.Tensor:
        """Projected dual ascent step from measured per-objective means ``[K]``; returns the multipliers.

        ``lambda_j <- clip(lambda_j + lr * (threshold_j - mean_j), 0, max_multiplier)`` for
        each constrained ``j``. A NaN mean (nothing scored) leaves that multiplier unchanged.
        """
        means = self._vector(batch_means, "batch_means")
        if bool(torch.isinf(means).any()):
            raise ObjectiveError(f"batch_means must be finite or NaN, got {means.tolist()}")
        step = self.multipliers + self.lr * (self.thresholds - means)
        step = step.clamp_min(0.0)
        if self.max_multiplier is not None:
            step = step.clamp_max(self.max_multiplier)
        usable = self.constrained & ~torch.isnan(means)
        self.multipliers = torch.where(usable, step, self.multipliers)
        return self.multipliers.clone()

    def update_from_rewards(self, rewards: Any) -> torch.Tensor:
        """:meth:`update` with the NaN-ignoring column means of a rewards batch ``[B, K]``."""
        r = torch.as_tensor(rewards.detach().cpu() if isinstance(rewards, torch.Tensor) else rewards,
                            dtype=torch.float64)
        if r.ndim != 2:
            raise ObjectiveError(f"rewards must be [B, K], got shape {tuple(r.shape)}")
        return self.update(torch.nanmean(r, dim=0))

    def combine(self, signal: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """``(signal + sum_j lambda_j r_j) / (1 + sum_j lambda_j)`` per row (Safe RLHF's normalized form).

        ``signal`` is ``[B]`` (e.g. a scalarized reward), ``rewards`` ``[B, K]``. A NaN
        ``r_j`` is left out of both sums for that row.
        """
        if not isinstance(signal, torch.Tensor):
            signal = torch.as_tensor(signal, dtype=torch.get_default_dtype())
        if not isinstance(rewards, torch.Tensor):
            rewards = torch.as_tensor(rewards, dtype=signal.dtype)
        if signal.ndim != 1:
            raise ObjectiveError(f"signal must be [B], got shape {tuple(signal.shape)}")
        if rewards.ndim != 2 or rewards.shape != (signal.shape[0], self.num_objectives):
            raise ObjectiveError(
                f"rewards must be [{signal.shape[0]}, {self.num_objectives}], got shape {tuple(rewards.shape)}"
            )
        lam = self.multipliers.to(device=rewards.device, dtype=rewards.dtype)
        use = ~torch.isnan(rewards) & self.constrained.to(rewards.device)
        zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
        num = torch.where(use, lam * rewards, zero).sum(dim=1)
        den = 1 + torch.where(use, lam.expand_as(rewards), zero).sum(dim=1)
        return (signal + num.to(signal.dtype)) / den.to(signal.dtype)

    def state_dict(self) -> dict:
        """JSON-serializable state: thresholds, multipliers and settings."""
        return {
            "kind": "lagrangian",
            "num_objectives": self.num_objectives,
            "names": self.names,
            "thresholds": [None if np.isnan(t) else float(t) for t in self.thresholds.tolist()],
            "multipliers": self.multipliers.tolist(),
            "lr": self.lr,
            "init": self.init,
            "max_multiplier": self.max_multiplier,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore multipliers (and settings); the constraints must be the same as this object's."""
        if not isinstance(state, dict) or state.get("kind") != "lagrangian":
            raise CheckpointError(f"not a LagrangianConstraints state: {state!r:.200}")
        mine = self.state_dict()
        for key in ("num_objectives", "thresholds"):
            if state.get(key) != mine[key]:
                raise CheckpointError(
                    f"LagrangianConstraints state has {key}={state.get(key)!r}, this object has {mine[key]!r}"
                )
        self.multipliers = torch.tensor(state["multipliers"], dtype=torch.float64)
        self.lr = float(state["lr"])
        self.init = float(state["init"])
        self.max_multiplier = state["max_multiplier"]

    def __repr__(self) -> str:
        cons = {
            (self.names[i] if self.names else i): float(self.thresholds[i])
            for i in range(self.num_objectives) if self.constrained[i]
        }
        return f"LagrangianConstraints({cons}, multipliers={self.multipliers.tolist()})"
