"""Scalarizers: how K rewards ``[B, K]`` and a weight vector become one training signal ``[B]``.

Building blocks, composed like optax's ``chain`` (normalize first, then combine):

- :func:`linear`: the weighted sum ``sum_k w_k r_k``;
- :func:`tchebycheff`: ``-max_k w_k (z*_k - r_k)`` against an ideal point ``z*`` (Miettinen 1999),
  optionally *augmented* with ``rho * sum_k w_k r_k``. Unlike the weighted sum it reaches
  points on non-convex parts of a Pareto front;
- :func:`normalize`: per-objective normalization (running mean/std over training, group-wise
  within the completions of one prompt as GDPO argues, or over the batch);
- :func:`chain`: ``chain(normalize("group"), linear())``;
- :class:`~moalign.tradeoff.lagrangian.LagrangianConstraints`: ``objective_k >= threshold_k`` with
  multipliers updated by projected dual ascent (Safe RLHF, Dai et al. 2023).

**Conventions.** Rewards are maximized. Weights are a ``[K]`` vector on the probability
simplex, or ``[B, K]`` per-example vectors (conditioned training); they are validated on every
call and a bad one raises :class:`~moalign.errors.WeightsError` naming it.

**Unscored entries (NaN).** An objective that could not score an example leaves NaN in
``rewards``. Every scalarizer treats a NaN entry as *absent*: it contributes nothing and the
weights are renormalized per row over the objectives that were scored, so a fully scored row
is unaffected and a partially scored row is scalarized as if only its scored objectives
existed. A row with no scored objective of positive weight gives NaN (the trainer decides
whether to drop it). Normalizers ignore NaN in their statistics and leave NaN entries NaN.
Infinite rewards are an error. The online trainers follow the same rule for a missing (``None``)
score: MO-PPO renormalizes the weights of each row's per-objective advantages over its scored
objectives, and MO-GRPO hands TRL those renormalized weights per completion (TRL's own sum
would count a missing score as 0), so the two trainers turn the same rewards into the same
weighted reward (``tests/trainers/test_missing_scores.py``).

**State.** Stateful parts (the online ideal point of Tchebycheff, running normalization
statistics) update only in training mode (the default; see :meth:`Scalarizer.eval`), and their
``state_dict()`` is a JSON-serializable dict. Statistics are treated as constants (no gradient
flows through them). They are statistics of what the scalarizer is called on: MO-PPO calls it
on every process with the gathered global batch, so they are the global batch's and the same
on every process; a caller passing per-process data gets per-process statistics.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from moalign._plugins import IDENTIFIER, Registry
from moalign.errors import ConfigError
from moalign.tradeoff.lagrangian import LagrangianConstraints
from moalign.tradeoff.normalize import BatchNormalize, GroupNormalize, RunningNormalize
from moalign.tradeoff.scalarize_base import Scalarizer, Transform, as_rewards, as_tensor_weights

__all__ = [
    "SCALARIZERS",
    "BatchNormalize",
    "Chain",
    "GroupNormalize",
    "LagrangianConstraints",
    "Linear",
    "RunningNormalize",
    "Scalarizer",
    "Tchebycheff",
    "Transform",
    "as_rewards",
    "as_tensor_weights",
    "available_scalarizers",
    "chain",
    "get_scalarizer",
    "linear",
    "normalize",
    "register_scalarizer",
    "tchebycheff",
]


def _scored_weights(rewards: torch.Tensor, weights: torch.Tensor):
    """Weights renormalized per row over scored entries; also the scored mask and a valid mask."""
    scored = ~torch.isnan(rewards)
    w = torch.where(scored, weights.expand_as(rewards), torch.zeros((), dtype=rewards.dtype,
                                                                    device=rewards.device))
    total = w.sum(dim=1, keepdim=True)
    valid = total.squeeze(1) > 0
    w = w / torch.where(total > 0, total, torch.ones_like(total))
    return w, scored, valid


def _nan_like(x: torch.Tensor) -> torch.Tensor:
    return torch.full_like(x, float("nan"))


class Linear(Scalarizer):
    """Weighted sum ``s = sum_k w_k r_k`` (the linear scalarization of multi-objective RLHF).

    With NaN entries, ``s = sum_{k scored} w_k r_k / sum_{k scored} w_k``; NaN when no scored
    objective has positive weight.
    """

    kind = "linear"

    def _forward(self, rewards, weights, groups):
        w, scored, valid = _scored_weights(rewards, weights)
        filled = torch.where(scored, rewards, torch.zeros_like(rewards))
        out = (w * filled).sum(dim=1)
        return torch.where(valid, out, _nan_like(out))


class Tchebycheff(Scalarizer):
    """Weighted Tchebycheff scalarization (Miettinen 1999, *Nonlinear Multiobjective Optimization*).

    ``s = -max_k w_k (z*_k - r_k) + rho * sum_k w_k r_k``. With ``rho = 0`` every Pareto-optimal
    point (convex part of the front or not) maximizes ``s`` for some weights; the augmented form
    (``rho > 0``, small) additionally rules out weakly Pareto-optimal maximizers.

    ``ideal`` is the ideal (utopia) point ``z*``. When ``None`` it is tracked online: the running
    per-objective maximum of every reward seen in training mode (NaN ignored). In evaluation
    mode the stored ideal is used as is; an objective never observed falls back to the maximum
    of the current batch. NaN entries are left out of the max and of the augmentation term,
    with the weights renormalized over scored objectives (see the module docstring).
    """

    kind = "tchebycheff"

    def __init__(self, ideal: Any = None, rho: float = 0.0):
        super().__init__()
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho >= 0:
            raise ConfigError(f"tchebycheff: rho must be a number >= 0, got {rho!r}")
        self.rho = float(rho)
        self.fixed_ideal = ideal is not None
        self.ideal: torch.Tensor | None = None
        if ideal is not None:
            z = torch.as_tensor(ideal, dtype=torch.float64).flatten()
            if z.numel() == 0 or not torch.isfinite(z).all():
                raise ConfigError(f"tchebycheff: ideal must be a finite vector, got {ideal!r}")
            self.ideal = z
            self.num_objectives = z.numel()

    def _ideal_for(self, rewards: torch.Tensor) -> torch.Tensor:
        masked = torch.where(torch.isnan(rewards), torch.full_like(rewards, -float("inf")), rewards)
        batch_max = masked.detach().amax(dim=0).to(torch.float64)
        if self.fixed_ideal:
            return self.ideal.to(device=rewards.device, dtype=rewards.dtype)
        if self.ideal is None:
            stored = torch.full_like(batch_max, -float("inf"))
        else:
            stored = self.ideal.to(batch_max.device)
        if self.training:
            stored = torch.maximum(stored, batch_max)
            self.ideal = stored.cpu()
            z = stored
        else:
            z = torch.where(torch.isfinite(stored), stored, batch_max)
        # objectives with nothing observed at all are NaN in every row; any finite value will do
        z = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
        return z.to(dtype=rewards.dtype)

    def _forward(self, rewards, weights, groups):
        z = self._ideal_for(rewards)
        w, scored, valid = _scored_weights(rewards, weights)
        filled = torch.where(scored, rewards, z.expand_as(rewards))
        terms = w * (z - filled)
        terms = torch.where(scored, terms, torch.full_like(terms, -float("inf")))
        out = -terms.amax(dim=1)
        if self.rho > 0:
            out = out + self.rho * (w * torch.where(scored, rewards, torch.zeros_like(rewards))).sum(1)
        return torch.where(valid, out, _nan_like(out))

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["rho"] = self.rho
        state["fixed_ideal"] = self.fixed_ideal
        state["ideal"] = None if self.ideal is None else [
            None if not torch.isfinite(v) else float(v) for v in self.ideal
        ]
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.rho = float(state["rho"])
        self.fixed_ideal = bool(state["fixed_ideal"])
        ideal = state.get("ideal")
        self.ideal = None if ideal is None else torch.tensor(
            [-float("inf") if v is None else float(v) for v in ideal], dtype=torch.float64
        )


class Chain(Scalarizer):
    """Transforms applied in order, then a scalarizer; inputs are validated once, here."""

    kind = "chain"

    def __init__(self, transforms: list[Transform], scalarizer: Scalarizer):
        super().__init__()
        self.transforms = list(transforms)
        self.scalarizer = scalarizer

    def _forward(self, rewards, weights, groups):
        for t in self.transforms:
            rewards = t._forward(rewards, weights, groups)
        return self.scalarizer._forward(rewards, weights, groups)

    def _check_k(self, k: int) -> None:
        super()._check_k(k)
        for part in (*self.transforms, self.scalarizer):
            part._check_k(k)

    def train(self, mode: bool = True) -> Chain:
        super().train(mode)
        for part in (*self.transforms, self.scalarizer):
            part.train(mode)
        return self

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["transforms"] = [t.state_dict() for t in self.transforms]
        state["scalarizer"] = self.scalarizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        parts = state.get("transforms", [])
        if len(parts) != len(self.transforms):
            raise ConfigError(
                f"chain state has {len(parts)} transforms but this chain has {len(self.transforms)}"
            )
        for t, s in zip(self.transforms, parts, strict=True):
            t.load_state_dict(s)
        self.scalarizer.load_state_dict(state["scalarizer"])

    def __repr__(self) -> str:
        inner = ", ".join(repr(p) for p in (*self.transforms, self.scalarizer))
        return f"chain({inner})"


# --------------------------------------------------------------------------- factories

def linear() -> Scalarizer:
    """The weighted sum ``sum_k w_k r_k`` (see :class:`Linear`)."""
    return Linear()


def tchebycheff(ideal: Any = None, rho: float = 0.0) -> Scalarizer:
    """``-max_k w_k (z*_k - r_k) + rho sum_k w_k r_k`` (Miettinen 1999); see :class:`Tchebycheff`.

    ``ideal=None`` tracks the ideal point online (running max); ``rho > 0`` is the augmented form.
    """
    return Tchebycheff(ideal=ideal, rho=rho)


_NORMALIZERS: dict[str, Callable[..., Transform]] = {
    "running": RunningNormalize,
    "group": GroupNormalize,
    "batch": BatchNormalize,
}


def normalize(method: str = "running", eps: float = 1e-6, momentum: float | None = None) -> Transform:
    """Per-objective normalization ``(r_k - mean_k) / (std_k + eps)``, NaN ignored.

    - ``"running"``: mean/std over everything seen in training mode (exact cumulative
      statistics when ``momentum is None``, else an exponential moving average with that
      momentum); see :class:`~moalign.tradeoff.normalize.RunningNormalize`;
    - ``"group"``: within each group of completions of the same prompt (``groups=`` ids),
      per objective, before weighting, as GDPO (Liu et al. 2026, group reward-decoupled
      normalization) argues; see :class:`~moalign.tradeoff.normalize.GroupNormalize`;
    - ``"batch"``: over the current batch, per objective.
    """
    if method not in _NORMALIZERS:
        raise ConfigError(f"unknown normalization method {method!r}; choose one of {sorted(_NORMALIZERS)}")
    if method == "running":
        return RunningNormalize(eps=eps, momentum=momentum)
    if momentum is not None:
        raise ConfigError(f"normalize: momentum only applies to method='running', not {method!r}")
    return _NORMALIZERS[method](eps=eps)


def chain(*parts: Transform | Scalarizer) -> Scalarizer:
    """Compose transforms and a final scalarizer: ``chain(normalize("group"), tchebycheff())``."""
    if not parts or not isinstance(parts[-1], Scalarizer):
        last = type(parts[-1]).__name__ if parts else "nothing"
        raise ConfigError(f"chain(...) must end with a Scalarizer (linear(), tchebycheff(), ...), got {last}")
    for i, p in enumerate(parts[:-1]):
        if not isinstance(p, Transform):
            raise ConfigError(
                f"chain(...) argument {i} must be a Transform such as normalize(...), got {type(p).__name__}"
            )
    return Chain(list(parts[:-1]), parts[-1])


def _augmented_tchebycheff(ideal: Any = None, rho: float = 0.01) -> Scalarizer:
    return Tchebycheff(ideal=ideal, rho=rho)


def _with_norm(method: str, inner: Callable[..., Scalarizer]) -> Callable[..., Scalarizer]:
    def factory(eps: float = 1e-6, **kwargs: Any) -> Scalarizer:
        return chain(normalize(method, eps=eps), inner(**kwargs))

    factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("eps", inspect.Parameter.KEYWORD_ONLY, default=1e-6),
         *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for p in inspect.signature(inner).parameters.values())]
    )
    return factory


#: Every scalarizer by name (:func:`register_scalarizer` adds one).
SCALARIZERS = Registry("scalarizer", name_pattern=IDENTIFIER)
SCALARIZERS.register("linear", linear)
SCALARIZERS.register("tchebycheff", tchebycheff)
SCALARIZERS.register("augmented_tchebycheff", _augmented_tchebycheff)
SCALARIZERS.register("normalized_linear", _with_norm("running", linear))
SCALARIZERS.register("group_normalized_linear", _with_norm("group", linear))
SCALARIZERS.register("batch_normalized_linear", _with_norm("batch", linear))
SCALARIZERS.register("normalized_tchebycheff", _with_norm("running", tchebycheff))
SCALARIZERS.register("group_normalized_tchebycheff", _with_norm("group", tchebycheff))


def register_scalarizer(name: str, factory: Callable[..., Scalarizer]) -> None:
    """Make ``factory(**params)`` available to :func:`get_scalarizer` under ``name``."""
    SCALARIZERS.register(name, factory)


def available_scalarizers() -> list[str]:
    """Names accepted by :func:`get_scalarizer`."""
    return SCALARIZERS.names()


def get_scalarizer(spec: str | Mapping[str, Any] | Scalarizer) -> Scalarizer:
    """Build a scalarizer from a registry name, a mapping, or return an instance unchanged.

    A mapping is ``{"name": "tchebycheff", "rho": 0.05}``: ``name`` picks the factory and the
    other keys are its parameters. An optional ``"normalize"`` key (``"group"``, or a mapping
    of :func:`normalize` arguments) puts a normalizer in front:
    ``{"name": "linear", "normalize": {"method": "running", "momentum": 0.01}}``.
    """
    if isinstance(spec, Scalarizer):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a scalarizer is a name, a mapping or a Scalarizer, got {type(spec).__name__}")
    params = dict(spec)
    name = params.pop("name", None)
    if name is None:
        raise ConfigError(f"scalarizer mapping needs a 'name' key, got keys {sorted(params)}")
    factory = SCALARIZERS[name]
    norm = params.pop("normalize", None)
    sig = inspect.signature(factory)
    try:
        sig.bind(**params)
    except TypeError:
        accepted = [p for p in sig.parameters if sig.parameters[p].kind != inspect.Parameter.VAR_KEYWORD]
        bad = sorted(set(params) - set(accepted))
        raise ConfigError(
            f"scalarizer {name!r} does not take {', '.join(map(repr, bad)) or 'these arguments'}; "
            f"it accepts {accepted}"
        ) from None
    scalarizer = factory(**params)
    if norm is None:
        return scalarizer
    if isinstance(norm, str):
        norm = {"method": norm}
    if not isinstance(norm, Mapping):
        raise ConfigError(f"'normalize' must be a method name or a mapping, got {norm!r}")
    try:
        transform = normalize(**norm)
    except TypeError:
        raise ConfigError(
            f"normalize takes method, eps, momentum; got {sorted(norm)}"
        ) from None
    return chain(transform, scalarizer)

