"""Per-objective reward normalization, applied before weighting (see :func:`moalign.tradeoff.scalarize.normalize`).

All normalizers compute ``(r_k - mean_k) / (std_k + eps)`` per objective ``k``; they differ in
which rewards the statistics come from. NaN (unscored) entries are left out of the statistics
and stay NaN in the output. Statistics are computed in float64 and treated as constants (no
gradient flows through them).
"""

from __future__ import annotations

import torch

from moalign.errors import ConfigError, ObjectiveError
from moalign.tradeoff.scalarize_base import Transform

__all__ = ["BatchNormalize", "GroupNormalize", "RunningNormalize"]


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ConfigError(f"normalize: eps must be a number > 0, got {eps!r}")
    return float(eps)


def _moments(r: torch.Tensor):
    """NaN-aware per-column count, mean and sum of squared deviations, in float64."""
    r = r.detach().to(torch.float64)
    scored = ~torch.isnan(r)
    n = scored.sum(dim=0).to(torch.float64)
    mean = torch.where(scored, r, 0.0).sum(dim=0) / n.clamp_min(1)
    m2 = torch.where(scored, (r - mean) ** 2, 0.0).sum(dim=0)
    return n, mean, m2


class RunningNormalize(Transform):
    """Normalize each objective by its running mean and (population) standard deviation.

    In training mode the statistics are first updated with the current batch, then applied,
    so the first batch is normalized by its own statistics. ``momentum=None`` keeps exact
    cumulative statistics over every reward seen (the parallel-variance merge of Chan, Golub &
    LeVeque 1979); ``0 < momentum <= 1`` keeps an exponential moving average, the batch getting
    weight ``momentum`` (mean and variance of the two-component mixture). An objective never
    observed has mean 0 and std 1. In evaluation mode the statistics are applied unchanged.
    """

    kind = "running_normalize"

    def __init__(self, eps: float = 1e-6, momentum: float | None = None):
        super().__init__()
        self.eps = _check_eps(eps)
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(momentum, (int, float))
                                     or not 0 < momentum <= 1):
            raise ConfigError(f"normalize: momentum must be None or in (0, 1], got {momentum!r}")
        self.momentum = None if momentum is None else float(momentum)
        self.count: torch.Tensor | None = None
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None

    def _init(self, k: int) -> None:
        if self.count is None:
            self.count = torch.zeros(k, dtype=torch.float64)
            self.mean = torch.zeros(k, dtype=torch.float64)
            self.var = torch.ones(k, dtype=torch.float64)

    def update(self, rewards: torch.Tensor) -> None:
        """Fold a batch ``[B, K]`` into the statistics (NaN ignored)."""
        self._init(rewards.shape[1])
        n_b, mean_b, m2_b = (t.cpu() for t in _moments(rewards))
        seen = n_b > 0
        var_b = m2_b / n_b.clamp_min(1)
        first = seen & (self.count == 0)
        later = seen & (self.count > 0)
        delta = mean_b - self.mean
        if self.momentum is None:
            n = self.count + n_b
            mean = self.mean + delta * n_b / n.clamp_min(1)
            m2 = self.var * self.count + m2_b + delta**2 * self.count * n_b / n.clamp_min(1)
            var = m2 / n.clamp_min(1)
        else:
            m = self.momentum
            mean = self.mean + m * delta
            var = (1 - m) * (self.var + m * delta**2) + m * var_b
        self.mean = torch.where(first, mean_b, torch.where(later, mean, self.mean))
        self.var = torch.where(first, var_b, torch.where(later, var, self.var))
        self.count = self.count + n_b

    def _forward(self, rewards, weights, groups):
        if self.training:
            self.update(rewards)
        self._init(rewards.shape[1])
        mean = self.mean.to(device=rewards.device)
        std = self.var.clamp_min(0).sqrt().to(device=rewards.device)
        return ((rewards.to(torch.float64) - mean) / (std + self.eps)).to(rewards.dtype)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(eps=self.eps, momentum=self.momentum)
        for name in ("count", "mean", "var"):
            value = getattr(self, name)
            state[name] = None if value is None else value.tolist()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.eps = float(state["eps"])
        self.momentum = state["momentum"]
        for name in ("count", "mean", "var"):
            value = state.get(name)
            setattr(self, name, None if value is None else torch.tensor(value, dtype=torch.float64))

    def __repr__(self) -> str:
        return f"normalize('running', eps={self.eps}, momentum={self.momentum})"


def _group_normalize(rewards: torch.Tensor, inverse: torch.Tensor, num_groups: int,
                     eps: float) -> torch.Tensor:
    r = rewards.detach().to(torch.float64)
    k = r.shape[1]
    scored = ~torch.isnan(r)
    zeros = torch.zeros(num_groups, k, dtype=torch.float64, device=r.device)
    n = zeros.index_add(0, inverse, scored.to(torch.float64))
    total = zeros.index_add(0, inverse, torch.where(scored, r, 0.0))
    mean = total / n.clamp_min(1)
    dev = torch.where(scored, r - mean[inverse], 0.0)
    ss = zeros.index_add(0, inverse, dev**2)
    std = (ss / (n - 1).clamp_min(1)).sqrt()
    out = (rewards.to(torch.float64) - mean[inverse]) / (std[inverse] + eps)
    return out.to(rewards.dtype)


class GroupNormalize(Transform):
    """Normalize each objective within each group of completions of the same prompt.

    For group ``g`` and objective ``k``: ``(r - mean_gk) / (std_gk + eps)`` with the sample
    standard deviation (``n - 1`` in the denominator, as GRPO's group advantage uses), computed
    over the scored entries of the group. A group with one scored entry gives 0. Normalizing
    each reward separately before weighting keeps one objective's scale from swamping the
    others' within-group differences: the argument of GDPO (Liu et al. 2026, "GDPO: Group
    reward-Decoupled Normalization Policy Optimization for Multi-reward RL Optimization",
    arXiv:2601.05242). GDPO then also normalizes the summed advantage over the batch; that
    step acts on the scalar signal and belongs to the trainer's advantage computation.
    Requires ``groups=`` (a ``[B]`` LongTensor of group ids, any integer values). Stateless.
    """

    kind = "group_normalize"

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = _check_eps(eps)

    def _forward(self, rewards, weights, groups):
        if groups is None:
            raise ObjectiveError(
                "group normalization needs groups= (a LongTensor [B] of prompt/group ids, "
                "completions of the same prompt sharing an id)"
            )
        uniq, inverse = torch.unique(groups.to(rewards.device), return_inverse=True)
        return _group_normalize(rewards, inverse, uniq.numel(), self.eps)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "eps": self.eps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.eps = float(state["eps"])

    def __repr__(self) -> str:
        return f"normalize('group', eps={self.eps})"


class BatchNormalize(GroupNormalize):
    """Normalize each objective over the current batch (one group holding every row)."""

    kind = "batch_normalize"

    def _forward(self, rewards, weights, groups):
        inverse = torch.zeros(rewards.shape[0], dtype=torch.long, device=rewards.device)
        return _group_normalize(rewards, inverse, 1, self.eps)

    def __repr__(self) -> str:
        return f"normalize('batch', eps={self.eps})"
