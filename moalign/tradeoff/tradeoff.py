"""How every trainer turns K per-objective signals into one: weights, scalarizer, constraints.

:class:`TradeOff` bundles the pieces that MO-DPO (and conditioned DPO), MODPO, MO-PPO and
MO-GRPO share, validated once when a trainer is built (before any model is loaded); each trainer
uses the ones it supports:

- a weight **schedule** (:mod:`moalign.tradeoff.schedule`) asked for a weight vector on the simplex at
  every generation batch and told what was measured, so weights can move during training;
- a **scalarizer** (:mod:`moalign.tradeoff.scalarize`) that maps ``[N, K]`` signals and the weights to
  ``[N]``;
- optional **Lagrangian constraints** ``objective_j >= threshold_j`` (PPO-Lagrangian as in Safe
  RLHF, Dai et al. 2023): multipliers updated by projected dual ascent on each batch's mean
  rewards and folded into the signal by :meth:`LagrangianConstraints.combine`.

A scalarizer is applied in one of two ways. :meth:`TradeOff.combine` scalarizes signals row by
row (per completion, per token, per pair), which is exact for the linear scalarizer. A
non-linear one (Tchebycheff) is a function of the objectives, ``S(J)`` with ``J_k`` the expected
reward of objective k, and ``S(E[r]) != E[S(r)]``: :meth:`TradeOff.gradient_weights` gives the
linear weights of its policy gradient instead, ``dS/dJ`` at the batch's mean rewards.

Its state (schedule, scalarizer statistics, multipliers, last weights) goes into checkpoints.

One vocabulary for every trainer:

- config fields (:data:`FIELDS`): ``weights`` (fixed weights on the simplex), ``schedule``,
  ``scalarizer``, ``constraints`` (plus ``lagrangian_lr`` / ``_init`` / ``_max``), read by
  :meth:`TradeOff.from_config`; former names (:data:`RENAMED_FIELDS`) are refused with a
  :class:`~moalign.errors.ConfigError` naming today's field (:func:`refuse_renamed_fields`);
- log keys (:meth:`TradeOff.metrics`): ``weights/<objective>``, ``rewards/<objective>/mean``
  (where the trainer scores completions), ``lagrange/<objective>`` and
  ``constraint/<objective>/slack`` (for constrained objectives).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from moalign.errors import ConfigError, ObjectiveError, UnknownObjectiveError
from moalign.weights import as_weights

__all__ = [
    "FIELDS",
    "RENAMED_FIELDS",
    "TradeOff",
    "check_scored",
    "refuse_renamed_fields",
    "renamed_field_problems",
]

#: The trade-off fields of the trainer configs: the same name in every trainer that has them.
FIELDS = ("weights", "schedule", "scalarizer", "constraints")
#: Former names of trade-off fields -> the name they have now.
RENAMED_FIELDS: dict[str, str] = {"weight_schedule": "schedule", "reward_weights": "weights"}

#: Schedules that decide between runs or need what an online trainer does not measure.
NOT_PER_STEP: dict[str, str] = {
    "sweep": "gives one weight vector per run; trace a front with `moalign trace` instead",
    "adaptive": "picks the weights of the next run of a front trace from its measured scores",
    "mgda": "needs per-objective policy gradients, which the online trainers do not compute",
}


def renamed_field_problems(keys: Iterable[str]) -> list[str]:
    """One problem per former trade-off field name among ``keys`` (see :data:`RENAMED_FIELDS`)."""
    return [f"'{key}' is now called '{RENAMED_FIELDS[key]}' (every trainer config names its "
            f"trade-off fields {', '.join(FIELDS)})" for key in keys if key in RENAMED_FIELDS]


def refuse_renamed_fields(cls: type) -> type:
    """Class decorator for a config dataclass: a former trade-off field name passed to its
    constructor raises a :class:`ConfigError` naming today's field (instead of a ``TypeError``
    about an unexpected argument). Names that are fields of ``cls`` itself are left to it."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(cls)}
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        problems = renamed_field_problems(k for k in kwargs if k not in fields)
        if problems:
            raise ConfigError(problems, source=cls.__name__)
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


def check_scored(rewards: torch.Tensor, names: Sequence[str]) -> None:
    """Raise :class:`ObjectiveError` if an objective scored none of the completions of a batch.

    ``rewards`` is ``[B, K]`` with NaN where an objective returned ``None``. A column that is
    NaN everywhere gives the objective no signal at all (its mean, advantages and constraint
    are undefined), which is almost always a bug in the objective or a missing dataset column.
    """
    empty = torch.isnan(rewards).all(dim=0)
    if rewards.shape[0] and bool(empty.any()):
        k = int(torch.nonzero(empty)[0])
        raise ObjectiveError(
            f"objective '{names[k]}' returned None for all {rewards.shape[0]} completions of "
            "this batch, so it gives no training signal; check the objective and the dataset "
            "columns it needs",
            objective=names[k],
        )


class TradeOff:
    """Weights from a schedule, a scalarizer, and optional constraints over named objectives.

    ``weights`` (fixed) and ``schedule`` (a :class:`~moalign.tradeoff.schedule.Schedule` or a spec for
    :func:`~moalign.tradeoff.schedule.get_schedule`) are exclusive; with neither, the weights are uniform.
    ``constraints`` maps objective names (or indices) to thresholds. ``gradients=True`` is for
    a trainer that computes per-objective gradients, which the ``mgda`` schedule needs.
    """

    def __init__(
        self,
        names: Sequence[str],
        *,
        weights: Sequence[float] | None = None,
        schedule: Any = None,
        scalarizer: Any = "linear",
        constraints: Mapping[str | int, float] | None = None,
        lagrangian_lr: float = 0.05,
        lagrangian_init: float = 0.0,
        lagrangian_max: float | None = None,
        gradients: bool = False,
    ):
        from moalign.tradeoff.scalarize import LagrangianConstraints, get_scalarizer
        from moalign.tradeoff.schedule import FixedWeights, get_schedule

        self.names = tuple(names)
        k = len(self.names)
        if weights is not None and schedule is not None:
            raise ConfigError("give either fixed 'weights' or a weight 'schedule', not both")
        if schedule is None:
            w = as_weights(np.full(k, 1.0 / k) if weights is None else weights, k)
            schedule = FixedWeights(w)
        elif not hasattr(schedule, "ask"):
            schedule = get_schedule(schedule, k)
        kind = getattr(schedule, "kind", "")
        if kind in NOT_PER_STEP and not (kind == "mgda" and gradients):
            raise ConfigError(f"the '{kind}' schedule cannot drive the weights during one "
                              f"training run: it {NOT_PER_STEP[kind]}")
        self.schedule = schedule
        self.scalarizer = get_scalarizer(scalarizer)
        self.constraints = None
        if constraints:
            unknown = [c for c in constraints if isinstance(c, str) and c not in self.names]
            if unknown:
                raise UnknownObjectiveError(
                    f"constraint on objective '{unknown[0]}', which is not one of the objectives "
                    f"being trained ({', '.join(self.names)})",
                    objective=unknown[0],
                )
            self.constraints = LagrangianConstraints(
                dict(constraints), num_objectives=k, names=list(self.names), lr=lagrangian_lr,
                init=lagrangian_init, max_multiplier=lagrangian_max,
            )
        self.weights = as_weights(np.full(k, 1.0 / k) if weights is None else weights, k)

    @classmethod
    def from_config(cls, names: Sequence[str], args: Any, **overrides: Any) -> TradeOff:
        """The trade-off a trainer config describes: its fields :data:`FIELDS` and
        ``lagrangian_*`` (those it lacks take their defaults); ``overrides`` (keyword arguments
        of :class:`TradeOff`, e.g. a schedule object) replace what the config says, except
        those that are ``None``."""
        values: dict[str, Any] = {
            "weights": getattr(args, "weights", None),
            "schedule": getattr(args, "schedule", None),
            "scalarizer": getattr(args, "scalarizer", "linear"),
            "constraints": getattr(args, "constraints", None),
        }
        for key in ("lagrangian_lr", "lagrangian_init", "lagrangian_max"):
            if hasattr(args, key):
                values[key] = getattr(args, key)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(names, **values)

    @property
    def num_objectives(self) -> int:
        return len(self.names)

    @property
    def multipliers(self) -> np.ndarray:
        """Current Lagrange multipliers ``[K]`` (0 for unconstrained objectives)."""
        if self.constraints is None:
            return np.zeros(self.num_objectives)
        return self.constraints.multipliers.numpy().copy()

    def ask(self) -> np.ndarray:
        """The schedule's next weight vector, validated (a bad one raises ``WeightsError``)."""
        self.weights = as_weights(self.schedule.ask(), self.num_objectives,
                                  name="weights from the schedule")
        return self.weights

    def set_weights(self, weights: Sequence[float]) -> np.ndarray:
        """Use weights decided outside the schedule (validated), e.g. MGDA over the objectives
        present in a batch."""
        self.weights = as_weights(weights, self.num_objectives)
        return self.weights

    def tell(self, metrics: Mapping[str, Any]) -> None:
        """Report what the last batch measured to the schedule."""
        self.schedule.tell(dict(metrics))

    def update_multipliers(self, rewards: torch.Tensor) -> np.ndarray:
        """One dual-ascent step from a batch of rewards ``[B, K]`` (NaN ignored)."""
        if self.constraints is not None:
            self.constraints.update_from_rewards(rewards)
        return self.multipliers

    def combine(self, signals: torch.Tensor, *, groups: torch.Tensor | None = None) -> torch.Tensor:
        """Scalarize ``[N, K]`` per-objective signals with the current weights, then fold in
        the constrained objectives with their multipliers: ``[N]``."""
        out = self.scalarizer(signals, self.weights, groups=groups)
        if self.constraints is not None:
            out = self.constraints.combine(out, signals)
        return out

    @property
    def is_linear(self) -> bool:
        """Whether the scalarizer ends in the linear one (possibly after normalizers), so that
        :meth:`combine` on per-row signals is the weighted sum of the objectives."""
        from moalign.tradeoff.scalarize import Chain, Linear

        final = self.scalarizer.scalarizer if isinstance(self.scalarizer, Chain) else self.scalarizer
        return isinstance(final, Linear)

    def gradient_weight_problems(self) -> list[str]:
        """Why :meth:`gradient_weights` cannot linearize this scalarizer (empty when it can):
        group and batch normalizers are statistics of samples, not functions of the
        objectives' means."""
        from moalign.tradeoff.scalarize import BatchNormalize, Chain, GroupNormalize

        parts = self.scalarizer.transforms if isinstance(self.scalarizer, Chain) else []
        bad = [t for t in parts if isinstance(t, (GroupNormalize, BatchNormalize))]
        if not bad or self.is_linear:
            return []
        return [f"the non-linear scalarizer {self.scalarizer!r} is applied to the objectives' mean "
                f"rewards, where {bad[0]!r} (a statistic of the samples of a group or batch) is not "
                "defined: use it without that normalizer, with normalize 'running', or use a "
                "linear scalarizer"]

    def gradient_weights(self, rewards: torch.Tensor) -> np.ndarray:
        """Per-objective weights ``[K]`` of the policy gradient of ``S(J)``, the scalarizer
        applied to the objectives' expected rewards ``J``, at a batch of rewards ``[B, K]``.

        By the chain rule ``grad_theta S(J(theta)) = sum_k dS/dJ_k grad_theta J_k``, so a
        policy-gradient step on ``S(J)`` is one on the linear combination of the objectives
        with weights ``dS/dJ`` (the gradient of the *scalarized expected returns*, SER, rather
        than of the expected scalarized return ``E[S(r)]``, ESR: Hayes et al. 2022, "A practical
        guide to multi-objective reinforcement learning and planning", AAMAS 36:26; the
        policy-gradient form of Reymond et al. 2023, "Actor-critic multi-objective
        reinforcement learning for non-linear utility functions", AAMAS 37:23). ``J`` is
        estimated by the batch's NaN-ignoring column means; at a kink (Tchebycheff's max) the
        gradient taken is a subgradient (ties share it).

        The scalarizer's statistics are first updated, in training mode, from the per-sample
        ``rewards`` (Tchebycheff's online ideal point becomes the running per-objective maximum
        of the rewards, an estimate of the utopia point; running normalizers see the rewards),
        then ``S`` is differentiated at the means with those statistics held fixed. With
        constraints, the weights are those of the Lagrangian combination,
        ``(dS/dJ_k + lambda_k) / (1 + sum_j lambda_j)``. For the linear scalarizer this is
        :meth:`linear_weights`.
        """
        from moalign.tradeoff.scalarize import as_rewards

        problems = self.gradient_weight_problems()
        if problems:
            raise ConfigError(problems)
        r = as_rewards(rewards).detach().to("cpu", torch.float64)
        training = self.scalarizer.training
        with torch.enable_grad():
            if training:
                self.scalarizer(r, self.weights)  # statistics from the samples
            means = torch.nanmean(r, dim=0, keepdim=True).requires_grad_(True)
            self.scalarizer.eval()
            try:
                value = self.scalarizer(means, self.weights)[0]
                (grad,) = torch.autograd.grad(value, means, allow_unused=True)
            finally:
                self.scalarizer.train(training)
        g = torch.zeros(self.num_objectives, dtype=torch.float64) if grad is None else grad[0]
        g = torch.nan_to_num(g)
        if self.constraints is not None:
            eye = torch.eye(self.num_objectives, dtype=torch.float64)
            g = self.constraints.combine(g, eye)
        return g.numpy()

    def linear_weights(self) -> np.ndarray:
        """The per-objective weights of the combined signal when the scalarizer is linear.

        Combining the unit vectors ``e_1 .. e_K`` gives each objective's coefficient, e.g.
        ``(w_k + lambda_k) / (1 + sum_j lambda_j)`` with constraints. Used where the final sum
        is computed elsewhere (TRL's GRPO reads a weight vector).
        """
        from moalign.tradeoff.scalarize import Linear

        if not isinstance(self.scalarizer, Linear):
            raise ConfigError(
                f"this trainer sums weighted rewards itself, so it needs the linear scalarizer; "
                f"got {self.scalarizer!r}"
            )
        eye = torch.eye(self.num_objectives, dtype=torch.float64)
        return self.combine(eye).numpy()

    def metrics(self, rewards: Sequence[float] | None = None, *,
                weights: Sequence[float] | None = None,
                log_rewards: bool = True) -> dict[str, float]:
        """The trade-off's log entries, by objective name: ``weights/<k>`` (the current weights,
        or ``weights`` when given, e.g. the batch mean of per-example weights), and for each
        constrained objective ``lagrange/<k>`` (its multiplier). With the batch's mean rewards
        ``[K]``: ``rewards/<k>/mean`` (unless ``log_rewards=False``, for a trainer whose base
        class logs that key itself) and ``constraint/<k>/slack`` (mean - threshold)."""
        w = self.weights if weights is None else np.asarray(weights, dtype=np.float64)
        out = {f"weights/{n}": float(x) for n, x in zip(self.names, w, strict=True)}
        means = None if rewards is None else np.asarray(rewards, dtype=np.float64)
        if means is not None and log_rewards:
            out.update({f"rewards/{n}/mean": float(m) for n, m in zip(self.names, means, strict=True)})
        if self.constraints is not None:
            lam = self.multipliers
            thresholds = self.constraints.thresholds.tolist()
            for k, n in enumerate(self.names):
                if bool(self.constraints.constrained[k]):
                    out[f"lagrange/{n}"] = float(lam[k])
                    if means is not None:
                        out[f"constraint/{n}/slack"] = float(means[k] - thresholds[k])
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights.tolist(),
            "schedule": self.schedule.state_dict(),
            "scalarizer": self.scalarizer.state_dict(),
            "constraints": None if self.constraints is None else self.constraints.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`; entries that are ``None`` (nothing was saved) are kept."""
        if state.get("weights") is not None:
            self.weights = as_weights(state["weights"], self.num_objectives)
        if state.get("schedule") is not None:
            self.schedule.load_state_dict(state["schedule"])
        if state.get("scalarizer") is not None:
            self.scalarizer.load_state_dict(state["scalarizer"])
        if self.constraints is not None and state.get("constraints") is not None:
            self.constraints.load_state_dict(state["constraints"])
