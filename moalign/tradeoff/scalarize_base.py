"""Base classes of scalarizers and reward transforms, and the input checks they share.

Every public call goes through :meth:`Scalarizer.__call__` / :meth:`Transform.__call__`, which
validate rewards, weights and group ids **once**; composed parts then call each other's
``_forward`` on already-validated tensors. See :mod:`moalign.tradeoff.scalarize` for the conventions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from moalign.errors import CheckpointError, ObjectiveError, WeightsError
from moalign.weights import as_weights

__all__ = ["Scalarizer", "Transform", "as_groups", "as_rewards", "as_tensor_weights"]

_SUM_ATOL = 1e-6


def as_rewards(rewards: Any) -> torch.Tensor:
    """Return ``rewards`` as a floating ``[B, K]`` tensor; NaN allowed (unscored), inf is an error."""
    if isinstance(rewards, torch.Tensor):
        r = rewards
    elif isinstance(rewards, np.ndarray) and rewards.dtype in (np.float32, np.float64):
        r = torch.from_numpy(rewards)
    else:
        try:
            arr = np.asarray(rewards, dtype=np.float64)
        except (TypeError, ValueError):
            raise ObjectiveError(f"rewards must be a [B, K] array of numbers, got {rewards!r}") from None
        r = torch.as_tensor(arr).to(torch.get_default_dtype())
    if not torch.is_floating_point(r):
        r = r.to(torch.get_default_dtype())
    if r.ndim != 2 or r.shape[1] == 0:
        raise ObjectiveError(f"rewards must be a [B, K] tensor with K >= 1, got shape {tuple(r.shape)}")
    inf = torch.isinf(r)
    if bool(inf.any()):
        row, col = (int(i) for i in inf.nonzero()[0])
        raise ObjectiveError(
            f"rewards contain {float(r[row, col])} at row {row}, objective {col}; only finite "
            "values or NaN (unscored) are allowed",
            index=row,
        )
    return r


def as_tensor_weights(weights: Any, k: int, *, batch: int | None = None,
                      like: torch.Tensor | None = None) -> torch.Tensor:
    """Validate weights and return them as a 2-D tensor: ``[1, K]`` (shared) or ``[B, K]``.

    A ``[K]`` vector goes through :func:`moalign.weights.as_weights`; a ``[B, K]`` matrix has
    each row checked the same way (finite, non-negative, sums to 1 within 1e-6, then
    renormalized exactly). Raises :class:`~moalign.errors.WeightsError` naming the bad row.
    """
    if weights is None:
        raise WeightsError(f"weights are required: a [{k}] vector on the simplex or [B, {k}] rows")
    dtype = like.dtype if like is not None else torch.float64
    device = like.device if like is not None else None
    if isinstance(weights, torch.Tensor):
        w = weights.detach()
    else:
        try:
            w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        except (TypeError, ValueError):
            raise WeightsError(f"weights must be numbers, got {weights!r}") from None
    if w.ndim == 1:
        arr = as_weights(w.cpu().to(torch.float64).numpy(), k)
        return torch.as_tensor(arr, dtype=dtype, device=device).unsqueeze(0)
    if w.ndim != 2:
        raise WeightsError(f"weights must be [K] or [B, K], got shape {tuple(w.shape)}")
    if w.shape[1] != k or (batch is not None and w.shape[0] != batch):
        raise WeightsError(
            f"per-example weights must have shape [{batch if batch is not None else 'B'}, {k}], "
            f"got {tuple(w.shape)}"
        )
    w64 = w.to(torch.float64)
    total = w64.sum(dim=1)
    bad = ~torch.isfinite(w64).all(dim=1) | (w64 < 0).any(dim=1) | ((total - 1).abs() > _SUM_ATOL)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        values = w64[row].cpu().tolist()
        raise WeightsError(
            f"weights row {row} is not on the simplex (finite, non-negative, summing to 1): "
            f"{values} (sum {sum(values):g})"
        )
    return (w64 / total.unsqueeze(1)).to(dtype=dtype, device=device)


def as_groups(groups: Any, batch: int) -> torch.Tensor | None:
    """Validate group ids: an integer tensor ``[B]`` (or ``None``)."""
    if groups is None:
        return None
    g = groups if isinstance(groups, torch.Tensor) else torch.as_tensor(np.asarray(groups))
    if g.dtype.is_floating_point or g.dtype == torch.bool or g.dtype.is_complex:
        raise ObjectiveError(f"groups must be integer ids (a LongTensor [B]), got dtype {g.dtype}")
    if g.ndim != 1 or g.shape[0] != batch:
        raise ObjectiveError(f"groups must have shape [{batch}] (one id per row), got {tuple(g.shape)}")
    return g.long()


class _Stateful:
    """Shared plumbing: a kind name, the number of objectives, train/eval mode, state."""

    kind: str = ""

    def __init__(self) -> None:
        self.num_objectives: int | None = None
        self.training = True

    def train(self, mode: bool = True):
        """Training mode (default): stateful parts update their statistics on each call."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: statistics are used but not updated."""
        return self.train(False)

    def _check_k(self, k: int) -> None:
        if self.num_objectives is None:
            self.num_objectives = k
        elif self.num_objectives != k:
            raise ObjectiveError(
                f"{self.kind}: rewards have {k} objectives but this {self.kind} is set up for "
                f"{self.num_objectives}"
            )

    def state_dict(self) -> dict:
        """A JSON-serializable dict of the state (statistics, ideal point, ...)."""
        return {"kind": self.kind, "num_objectives": self.num_objectives}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned; a state of another kind is an error."""
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            found = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"cannot load a {found!r} state into a {self.kind!r} {type(self).__name__}")
        k = state.get("num_objectives")
        if k is not None and self.num_objectives is not None and k != self.num_objectives:
            raise CheckpointError(
                f"{self.kind} state is for {k} objectives, this one has {self.num_objectives}"
            )
        if k is not None:
            self.num_objectives = int(k)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Scalarizer(_Stateful):
    """Maps rewards ``[B, K]`` and weights ``[K]`` or ``[B, K]`` to a signal ``[B]``.

    Subclasses implement ``_forward(rewards, weights, groups)`` on validated inputs: ``rewards``
    a floating ``[B, K]`` tensor, ``weights`` ``[1, K]`` or ``[B, K]`` of the same dtype and
    device, ``groups`` a ``[B]`` LongTensor or ``None``.
    """

    def __call__(self, rewards: Any, weights: Any, *, groups: Any = None) -> torch.Tensor:
        r = as_rewards(rewards)
        self._check_k(r.shape[1])
        w = as_tensor_weights(weights, r.shape[1], batch=r.shape[0], like=r)
        g = as_groups(groups, r.shape[0])
        return self._forward(r, w, g)

    def _forward(self, rewards: torch.Tensor, weights: torch.Tensor,
                 groups: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class Transform(_Stateful):
    """Maps rewards ``[B, K]`` to rewards ``[B, K]`` (a normalizer); weights are optional."""

    def __call__(self, rewards: Any, weights: Any = None, *, groups: Any = None) -> torch.Tensor:
        r = as_rewards(rewards)
        self._check_k(r.shape[1])
        w = None if weights is None else as_tensor_weights(weights, r.shape[1], batch=r.shape[0], like=r)
        g = as_groups(groups, r.shape[0])
        return self._forward(r, w, g)

    def _forward(self, rewards: torch.Tensor, weights: torch.Tensor | None,
                 groups: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError
