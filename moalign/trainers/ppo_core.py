"""Pure tensor functions of multi-objective PPO: GAE per objective, clipped losses, KL estimators.

Everything here is a function of tensors only (no model, no trainer state), so each piece is
tested against hand-computed values. Shapes: ``B`` sequences, ``T`` response tokens, ``C``
reward channels (the K objectives, plus the KL stream in :mod:`moalign.trainers.ppo`). A
response ``mask`` ``[B, T]`` is 1 on the tokens of each response (contiguous from the first
token, right padding) and 0 on padding.

References: PPO (Schulman et al. 2017, arXiv:1707.06347); GAE (Schulman et al. 2016,
arXiv:1506.02438); KL estimators k1/k2/k3 (J. Schulman, "Approximating KL divergence", 2020);
clipped value loss as in the RLHF PPO of Ouyang et al. 2022 (arXiv:2203.02155) and Safe RLHF
(Dai et al. 2023, arXiv:2310.12773).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = [
    "KL_ESTIMATORS",
    "clipped_policy_loss",
    "clipped_value_loss",
    "entropy_from_logits",
    "explained_variance",
    "gae",
    "kl_estimate",
    "last_token_index",
    "logprobs_from_logits",
    "masked_mean",
    "masked_moments",
    "masked_var",
    "masked_whiten",
    "place_at_last_token",
    "selective_logprobs",
    "selective_logprobs_and_entropy",
    "weighted_channels",
]

#: Elements of a chunk of full-vocabulary rows that the log-prob functions process at a time
#: (4M floats: 16 MiB in float32), so that no copy of the whole ``[B, T, V]`` logits is made.
CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------
# Masked statistics
# --------------------------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...] | None = None
                ) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (``mask`` broadcasts against ``x``)."""
    mask = mask.to(x.dtype).expand_as(x)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``x`` over the masked entries (Bessel-corrected when ``unbiased``)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.to(x.dtype).expand_as(x).sum()
        var = var * n / (n - 1).clamp(min=1.0)
    return var


def masked_moments(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[sum, sum of squares, count]`` of the masked entries: what processes add up to whiten
    with global statistics."""
    m = mask.to(x.dtype).expand_as(x)
    return torch.stack([(x * m).sum(), (x * x * m).sum(), m.sum()])


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True,
                  eps: float = 1e-8, moments: torch.Tensor | None = None) -> torch.Tensor:
    """Scale ``x`` to unit variance over the masked entries (and zero mean when ``shift_mean``).

    ``moments`` (from :func:`masked_moments`, possibly summed over processes) replaces the
    local statistics. The variance is Bessel-corrected. Entries outside the mask are 0.
    """
    total, squares, n = masked_moments(x, mask) if moments is None else moments
    mean = total / n.clamp(min=1.0)
    var = (squares / n.clamp(min=1.0) - mean ** 2).clamp(min=0.0) * n / (n - 1).clamp(min=1.0)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype).expand_as(x)


def explained_variance(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var(target - pred) / Var(target)`` over the masked entries.

    1 is a perfect predictor, 0 is as good as the best constant, negative is worse than it.
    Returns NaN when the target is constant.
    """
    var_target = masked_var(target, mask)
    if float(var_target) == 0.0:
        return torch.tensor(float("nan"))
    return 1.0 - masked_var(target - pred, mask) / var_target


# --------------------------------------------------------------------------------------------
# Tokens and log-probabilities
# --------------------------------------------------------------------------------------------


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each token under its logits: ``[B, T, V], [B, T] -> [B, T]``."""
    logps = torch.log_softmax(logits.float(), dim=-1)
    return torch.gather(logps, -1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution at each position: ``[B, T, V] -> [B, T]``."""
    logps = torch.log_softmax(logits.float(), dim=-1)
    return -(logps.exp() * logps).sum(-1)


def _row_chunks(logits: torch.Tensor, chunk_elements: int) -> list[slice]:
    """Slices of whole rows (the first dimension) of at most ``chunk_elements`` elements
    each (at least one row)."""
    per_row = max(1, logits[:1].numel())
    rows = max(1, chunk_elements // per_row)
    return [slice(i, i + rows) for i in range(0, logits.shape[0], rows)]


def _scaled(chunk: torch.Tensor, temperature: float) -> torch.Tensor:
    """A chunk of logits in float32 divided by the temperature (no copy when there is none)."""
    chunk = chunk.float()
    return chunk if temperature == 1.0 else chunk / temperature


class _SelectiveLogSoftmax(torch.autograd.Function):
    """``log softmax(logits / t)`` at the taken tokens, chunk by chunk of rows.

    Forward keeps only the ``[B, T]`` log-normalizers; backward rebuilds each chunk's softmax
    from the logits and writes the gradient ``(onehot - softmax) / t`` into one tensor of the
    logits' shape and dtype. No full-vocabulary intermediate (float32 copy, scaled logits,
    log-softmax, gradient of the log-softmax) is ever held for the whole batch.
    """

    @staticmethod
    def forward(ctx, logits, tokens, temperature, chunk_elements):
        lse = logits.new_empty(logits.shape[:-1], dtype=torch.float32)
        taken = torch.empty_like(lse)
        index = tokens.unsqueeze(-1)
        for rows in _row_chunks(logits, chunk_elements):
            x = _scaled(logits[rows], temperature)
            lse[rows] = torch.logsumexp(x, dim=-1)
            taken[rows] = torch.gather(x, -1, index[rows]).squeeze(-1)
        ctx.save_for_backward(logits, tokens, lse)
        ctx.temperature, ctx.chunk_elements = temperature, chunk_elements
        return taken - lse

    @staticmethod
    def backward(ctx, grad):
        logits, tokens, lse = ctx.saved_tensors
        t = ctx.temperature
        out = torch.empty_like(logits)
        index = tokens.unsqueeze(-1)
        for rows in _row_chunks(logits, ctx.chunk_elements):
            g = grad[rows].float().unsqueeze(-1)
            chunk = torch.exp(_scaled(logits[rows], t) - lse[rows].unsqueeze(-1))
            chunk.mul_(-g).scatter_add_(-1, index[rows], g)
            if t != 1.0:
                chunk.div_(t)
            out[rows] = chunk
        return out, None, None, None


def selective_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                       chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Log-probability of each token under ``softmax(logits / temperature)``:
    ``[B, T, V], [B, T] -> [B, T]`` (float32), differentiable.

    The same values as :func:`logprobs_from_logits` of ``logits / temperature`` (to float32
    rounding), computed as ``x_token - logsumexp(x)`` over chunks of rows of at most
    ``chunk_elements`` elements: the only full-size tensors are the logits themselves and,
    in backward, their gradient.
    """
    return _SelectiveLogSoftmax.apply(logits, tokens, float(temperature), int(chunk_elements))


@torch.no_grad()
def selective_logprobs_and_entropy(logits: torch.Tensor, tokens: torch.Tensor,
                                   temperature: float = 1.0,
                                   chunk_elements: int = CHUNK_ELEMENTS
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`selective_logprobs` and the entropy of ``softmax(logits / temperature)`` at each
    position (as :func:`entropy_from_logits`), chunk by chunk of rows, without gradients."""
    logp = logits.new_empty(logits.shape[:-1], dtype=torch.float32)
    entropy = torch.empty_like(logp)
    index = tokens.unsqueeze(-1)
    for rows in _row_chunks(logits, chunk_elements):
        x = _scaled(logits[rows], temperature)
        lse = torch.logsumexp(x, dim=-1, keepdim=True)
        logp[rows] = (torch.gather(x, -1, index[rows]) - lse).squeeze(-1)
        p = torch.exp(x - lse)
        entropy[rows] = lse.squeeze(-1) - (p * x).sum(-1)  # -sum p log p, log p = x - lse
    return logp, entropy


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last response token of each row (``-1`` for an empty response): ``[B]``."""
    return mask.long().sum(-1) - 1


def place_at_last_token(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Turn sequence-level values ``[B, C]`` into a sparse token stream ``[B, T, C]``.

    Row ``i`` gets ``values[i]`` at its last response token and 0 elsewhere (the terminal
    reward of an episode). Rows with an empty response get nothing.
    """
    B, T = mask.shape
    out = values.new_zeros(B, T, values.shape[-1])
    last = last_token_index(mask)
    rows = torch.nonzero(last >= 0).squeeze(-1)
    out[rows, last[rows]] = values[rows]
    return out


# --------------------------------------------------------------------------------------------
# KL estimators
# --------------------------------------------------------------------------------------------


def _k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return logp - ref_logp


def _k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    return 0.5 * (logp - ref_logp) ** 2


def _k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio


#: Per-sample estimators of KL(pi || pi_ref) from log-probabilities of tokens sampled from pi.
#: ``k1`` (log-ratio) and ``k3`` (``r - 1 - log r`` with ``r = pi_ref / pi``) are unbiased;
#: ``k3`` is never negative and has lower variance; ``k2`` (half squared log-ratio) is biased
#: but low-variance.
KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": _k1,
    "k2": _k2,
    "k3": _k3,
}


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate from the sampled tokens' log-probs under the policy and reference."""
    try:
        fn = KL_ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(
            f"unknown KL estimator '{estimator}'; choose one of {', '.join(KL_ESTIMATORS)}"
        ) from None
    return fn(logp, ref_logp)


# --------------------------------------------------------------------------------------------
# Generalized advantage estimation, one channel per objective
# --------------------------------------------------------------------------------------------


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation, independently for each reward channel.

    ``rewards`` and ``values`` are ``[B, T, C]`` (``values[:, t]`` estimates the return from
    token ``t`` on, before it is generated); ``mask`` is ``[B, T]``. The episode ends after the
    last response token, so the value after it is 0. Returns ``(advantages, returns)``, both
    ``[B, T, C]`` and 0 outside the mask, with ``returns = advantages + values``:

    ``delta_t = r_t + gamma * V_{t+1} - V_t``, ``A_t = delta_t + gamma * lam * A_{t+1}``.

    GAE is linear in the rewards and values, so for any weights ``w`` the weighted sum of the
    channels' advantages is the advantage of the weighted reward under the weighted value:
    this is what lets the trade-off change without retraining the critic.
    """
    if rewards.shape != values.shape or rewards.dim() != 3 or mask.shape != rewards.shape[:2]:
        raise ValueError(
            f"gae expects rewards and values [B, T, C] and mask [B, T]; got "
            f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(mask.shape)}"
        )
    m = mask.to(values.dtype).unsqueeze(-1)
    values = values * m
    rewards = rewards * m
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * m[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, advantages + values


def weighted_channels(signals: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """``sum_k coef_k s_k`` per row of ``signals [N, K]`` with non-negative ``coef [K]``.

    NaN entries (objectives that did not score the row) are left out the way the linear
    scalarizer leaves them out: the coefficients of the scored entries are scaled up to the
    total, ``sum_{k scored} coef_k s_k * sum_k coef_k / sum_{k scored} coef_k`` (0 when no
    scored entry has a positive coefficient). A fully scored row is the plain weighted sum.
    """
    scored = ~torch.isnan(signals)
    c = coef.to(signals.dtype).expand_as(signals)
    zero = torch.zeros((), dtype=signals.dtype, device=signals.device)
    kept = torch.where(scored, c, zero).sum(dim=1)
    total = torch.where(scored, c * signals, zero).sum(dim=1)
    scale = torch.where(kept > 0, c.sum(dim=1) / kept.clamp(min=1e-30), zero)
    return total * scale


# --------------------------------------------------------------------------------------------
# Clipped losses
# --------------------------------------------------------------------------------------------


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip: float = 0.2
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate, averaged over the response tokens.

    ``loss = mean(max(-A * ratio, -A * clip(ratio, 1 - clip, 1 + clip)))`` with
    ``ratio = exp(logp - old_logp)``. Also returns detached statistics: ``clipfrac`` (share of
    tokens where the clipped term was chosen) and ``approx_kl`` (k3 estimate of
    KL(old || new) on the batch).
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
        }
    return loss, stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       mask: torch.Tensor, clip: float | None = 0.2
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped squared error of a vector critic, one loss per head.

    ``values``, ``old_values`` and ``returns`` are ``[B, T, C]``; ``mask`` is ``[B, T]`` or
    ``[B, T, C]`` (a head can be masked on examples its objective did not score). Per head:
    ``0.5 * mean(max((V - R)^2, (clip(V, V_old - clip, V_old + clip) - R)^2))``; ``clip=None``
    gives the plain squared error. Returns ``(mean over heads, per-head losses [C])``.
    """
    if mask.dim() == 2:
        mask = mask.unsqueeze(-1).expand_as(values)
    err = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        err = torch.maximum(err, (clipped - returns) ** 2)
    per_head = 0.5 * masked_mean(err, mask, dim=(0, 1))
    return per_head.mean(), per_head
