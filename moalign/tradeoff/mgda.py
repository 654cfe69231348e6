"""MGDA: the min-norm element of the convex hull of K gradients, and the schedule built on it.

The multiple-gradient descent algorithm (Désidéri 2012, "Multiple-gradient descent algorithm
(MGDA) for multiobjective optimization", C. R. Math.) steps along ``d = sum_k w_k g_k`` with
``w = argmin_{w in simplex} ||sum_k w_k g_k||^2``. By optimality, ``g_k . d >= ||d||^2 >= 0``
for every ``k``: ``d`` is a common ascent direction for all objectives (or ``d = 0`` at a
Pareto-stationary point). Sener & Koltun (2018, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS) solve this QP with Frank-Wolfe and use it for multi-task training.

Here the QP is solved on the Gram matrix ``G = g g^T`` (``[K, K]``): in closed form for
``K = 2`` and, for ``K > 2``, by pairwise Frank-Wolfe (Lacoste-Julien & Jaggi 2015), which moves
weight from the worst active vertex to the best one with an exact line search and converges
linearly, to the KKT condition ``max_{w_i > 0} (Gw)_i - min_i (Gw)_i <= tol``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from moalign.errors import ConfigError
from moalign.tradeoff.schedule_base import HoldsWeights

__all__ = ["MGDA_ALTERNATIVES", "MGDAWeights", "gram_matrix", "mgda_setup_problems", "min_norm_weights",
           "min_norm_weights_from_gram", "partitioned_parameters"]

_TRUE = ("1", "true", "yes", "on")
MGDA_ALTERNATIVES = ("use DeepSpeed ZeRO-2 or plain data parallelism (DDP) with mgda, or another "
            "schedule (fixed weights, anneal, adaptive) under ZeRO-3 / FSDP")


def _zero_stage(args: Any) -> int | None:
    """The DeepSpeed ZeRO stage a trainer config (``deepspeed``: a dict or a JSON file) or an
    ``accelerate launch`` with a DeepSpeed config (its environment) asks for."""
    import json
    import os
    from pathlib import Path

    ds = getattr(args, "deepspeed", None)
    if isinstance(ds, (str, os.PathLike)) and Path(ds).is_file():
        try:
            ds = json.loads(Path(ds).read_text())
        except (OSError, ValueError):
            ds = None
    if isinstance(ds, Mapping):
        stage = (ds.get("zero_optimization") or {}).get("stage")
        return int(stage) if isinstance(stage, (int, str)) and str(stage).isdigit() else None
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in _TRUE:
        stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "")
        return int(stage) if stage.isdigit() else None
    return None


def _fsdp(args: Any) -> bool:
    import os

    return bool(getattr(args, "fsdp", None)) or (
        os.environ.get("ACCELERATE_USE_FSDP", "").lower() in _TRUE)


def mgda_setup_problems(args: Any) -> list[str]:
    """Set-ups the ``mgda`` schedule cannot run under, found from the trainer config (and an
    ``accelerate launch``'s environment) before any model loads: parameters partitioned by
    DeepSpeed ZeRO-3 or FSDP (a process holds a slice, or nothing, of each parameter, so the
    per-objective gradient rows have no common length), and reentrant gradient checkpointing
    (``torch.autograd.grad(inputs=...)``, which MGDA calls once per objective, is refused
    there)."""
    problems = []
    if _zero_stage(args) == 3 or _fsdp(args):
        which = "DeepSpeed ZeRO-3" if _zero_stage(args) == 3 else "FSDP"
        problems.append(f"the 'mgda' schedule needs whole per-objective gradients of the "
                        f"trainable parameters, which {which} partitions across processes; "
                        + MGDA_ALTERNATIVES)
    kwargs = getattr(args, "gradient_checkpointing_kwargs", None) or {}
    if getattr(args, "gradient_checkpointing", False) and kwargs.get("use_reentrant") is True:
        problems.append("the 'mgda' schedule computes per-objective gradients with "
                        "torch.autograd.grad(inputs=...), which reentrant gradient checkpointing "
                        "refuses; set gradient_checkpointing_kwargs: {use_reentrant: false} (or "
                        "turn gradient_checkpointing off)")
    return problems


def partitioned_parameters(params: Sequence[torch.Tensor]) -> list[int]:
    """Indices of trainable parameters that hold no elements in this process (``numel() ==
    0``: partitioned by DeepSpeed ZeRO-3, or otherwise empty), whose gradients MGDA cannot
    stack into rows of one length."""
    return [i for i, p in enumerate(params) if p.numel() == 0]


def gram_matrix(grads: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """``G = g g^T`` for gradients ``[K, P]`` (or K tensors of equal size, flattened); float64.

    Half-precision gradients are accumulated in float32.
    """
    if isinstance(grads, torch.Tensor):
        g = grads
        if g.ndim != 2:
            raise ConfigError(f"gradients must be a [K, P] tensor, got shape {tuple(g.shape)}")
    else:
        parts = [torch.as_tensor(x).reshape(-1) for x in grads]
        if not parts or len({p.numel() for p in parts}) != 1:
            raise ConfigError(f"gradients must be K tensors of equal size, got sizes {[p.numel() for p in parts]}")
        g = torch.stack(parts)
    if g.shape[0] < 1 or g.shape[1] < 1:
        raise ConfigError(f"gradients must be [K, P] with K, P >= 1, got shape {tuple(g.shape)}")
    g = g.detach()
    if not torch.is_floating_point(g) or g.dtype in (torch.float16, torch.bfloat16):
        g = g.float()
    gram = (g @ g.T).to(torch.float64)
    # ||g_k||^2 is non-finite exactly when g_k holds a NaN/inf (or overflows): checked on G only
    diag = torch.diagonal(gram)
    if not bool(torch.isfinite(diag).all()):
        bad = int((~torch.isfinite(diag)).nonzero()[0, 0])
        raise ConfigError(f"the gradient of objective {bad} contains a non-finite value (or overflows)")
    return gram


def _two(g11: float, g12: float, g22: float) -> float:
    """Weight on the first vector of the min-norm point of the segment (closed form)."""
    den = g11 + g22 - 2.0 * g12
    if den <= 1e-15 * max(g11, g22, 1e-300):
        return 0.5  # equal vectors: every point of the segment is the same
    return float(np.clip((g22 - g12) / den, 0.0, 1.0))


def min_norm_weights_from_gram(gram: Any, *, max_iter: int = 10_000, tol: float = 1e-12) -> np.ndarray:
    """Simplex weights minimizing ``w^T G w`` for a PSD Gram matrix ``G`` ``[K, K]`` (float64).

    Exact for K <= 2; pairwise Frank-Wolfe for K > 2, started from the best pair (as Sener &
    Koltun do) and stopped when the KKT gap falls below ``tol * max(diag G)``.
    """
    G = np.asarray(gram, dtype=np.float64)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] < 1:
        raise ConfigError(f"the Gram matrix must be square [K, K], got shape {G.shape}")
    if not np.all(np.isfinite(G)):
        raise ConfigError("the Gram matrix contains a non-finite value")
    G = 0.5 * (G + G.T)
    k = G.shape[0]
    if k == 1:
        return np.ones(1)
    if k == 2:
        a = _two(G[0, 0], G[0, 1], G[1, 1])
        return np.array([a, 1.0 - a])
    # start: best pair
    best, w = np.inf, np.zeros(k)
    for i in range(k):
        for j in range(i + 1, k):
            a = _two(G[i, i], G[i, j], G[j, j])
            value = a * a * G[i, i] + 2 * a * (1 - a) * G[i, j] + (1 - a) ** 2 * G[j, j]
            if value < best:
                best, w = value, np.zeros(k)
                w[i], w[j] = a, 1.0 - a
    scale = max(float(np.max(np.diag(G))), 1e-300)
    for _ in range(max_iter):
        Gw = G @ w
        s = int(np.argmin(Gw))
        active = np.where(w > 0, Gw, -np.inf)
        a = int(np.argmax(active))
        if Gw[a] - Gw[s] <= tol * scale or a == s:
            break
        curvature = G[s, s] + G[a, a] - 2.0 * G[s, a]
        slope = Gw[s] - Gw[a]  # < 0: moving weight from a to s lowers the norm
        step_max = w[a]
        step = step_max if curvature <= 0 else min(step_max, -slope / curvature)
        w[s] += step
        w[a] = 0.0 if step == step_max else w[a] - step
    w = np.clip(w, 0.0, None)
    return w / w.sum()


def min_norm_weights(grads: torch.Tensor | Sequence[torch.Tensor], **solver: Any) -> torch.Tensor:
    """MGDA weights ``[K]`` for gradients ``[K, P]``: ``argmin_{w in simplex} ||sum_k w_k g_k||``.

    Désidéri 2012; Sener & Koltun 2018. Closed form for K = 2, pairwise Frank-Wolfe for K > 2
    (see :func:`min_norm_weights_from_gram`). Returned on the gradients' device, in their
    dtype (float32 for half precision). Identical gradients give uniform weights.
    """
    gram = gram_matrix(grads)
    w = min_norm_weights_from_gram(gram.cpu().numpy(), **solver)
    ref = grads if isinstance(grads, torch.Tensor) else torch.as_tensor(grads[0])
    dtype = ref.dtype if ref.dtype in (torch.float32, torch.float64) else torch.float32
    return torch.as_tensor(w, dtype=dtype, device=ref.device)


class MGDAWeights(HoldsWeights):
    """Weights from MGDA (Désidéri 2012; Sener & Koltun 2018), recomputed at each ``tell``.

    ``tell({"gradients": Tensor[K, P]})`` (per-objective gradients of the shared parameters,
    or of a shared representation as in MGDA-UB) or ``tell({"gram": [K, K]})`` (the Gram
    matrix, cheaper to all-reduce) sets the weights that ``ask()`` returns: the min-norm
    convex combination. Before the first ``tell``, ``ask()`` returns uniform weights.
    """

    kind = "mgda"

    def __init__(self, k: int):
        super().__init__(k)
        self.weights = np.full(self.num_objectives, 1.0 / self.num_objectives)

    def ask(self) -> np.ndarray:
        return self.weights.copy()

    def tell(self, metrics: Mapping[str, Any]) -> None:
        super().tell(metrics)
        if "gram" in metrics:
            gram = np.asarray(metrics["gram"].cpu() if isinstance(metrics["gram"], torch.Tensor)
                              else metrics["gram"], dtype=np.float64)
        else:
            gram = gram_matrix(self._need(metrics, "gradients")).cpu().numpy()
        if gram.shape != (self.num_objectives, self.num_objectives):
            raise ConfigError(
                f"mgda: expected gradients for {self.num_objectives} objectives, got a Gram matrix "
                f"of shape {gram.shape}"
            )
        self.weights = min_norm_weights_from_gram(gram)
