"""MO-DPO's loss, top to bottom: from the policy's and the reference's log-probabilities of a
batch of pairs to the one number the optimizer minimizes, and what is logged about it.

Notation. A batch holds B pairs of a ``chosen`` and a ``rejected`` completion. The log-ratio of a
completion y is ``log pi(y) - log pi_ref(y)`` (sums of token log-probabilities over the
completion, as TRL computes them); ``delta[i]`` is pair i's chosen log-ratio minus its rejected
one. ``labels[i, k]`` is pair i's ``pref_<k>`` value: +1 (chosen better for objective k), -1
(rejected better), 0 (tie) or NaN (unlabelled).

1. :func:`logratios`: the chosen and rejected log-ratios, in float32 at least.
2. The pairwise losses: one short function per ``loss_type`` (DPO, Rafailov et al. 2023, by
   default), each a function of **one** pair as an objective orients it (:class:`Pair`).
3. :func:`pair_losses`: ``L[i, k]``, the pairwise loss of pair i under objective k's own label.
   Nothing couples two pairs, so it is exactly the loss of the pair as k orients it: +1, ``win``
   is ``chosen``; -1, chosen and rejected swap, log-ratios and lengths alike; 0 or NaN, the pair
   is **skipped** for k (``L = 0``, ``mask = False``), for every loss. Most losses have no tie
   form (NCA, BCO, SPPO and APO give the winner and the loser different roles); two have one
   (IPO's target margin is 0 at ``p = 1/2``, a Bradley-Terry tie is the sigmoid loss smoothed at
   1/2), but using it for those alone would give a tie a different meaning per loss and break the
   normalizations, which count the +1 / -1 pairs; so ties are skipped throughout.
4. :func:`combine`: ``L`` normalized over the labelled pairs (:data:`LABEL_NORMALIZATIONS`) and
   weighted by the trade-off (its weights, through its scalarizer): the scalar loss.
5. :func:`objective_stats` and :func:`reward_metrics`: the per-objective metrics
   (``objective/<k>/...``) and TRL's (``rewards/chosen``, ...).

:func:`mo_dpo_loss` runs 1-5 on a batch. These are tensor functions with no trainer state:
:class:`~moalign.trainers.dpo.MultiObjectiveDPOTrainer` runs the forward passes
(:mod:`moalign.trainers._dpo_base`), asks its trade-off for the weights and logs what comes back.

``label_smoothing`` (robust, exo_pair) is the chance that a label is wrong; it applies to each
objective's own orientation of the pair, so a -1 label is smoothed exactly as its swapped +1 pair
would be. It is refused with every other loss, which does not read it (TRL 1.16 ignores it there).
A list of loss types (``loss_type: [sigmoid, sppo_hard]``) is TRL's weighted sum ``sum_t
loss_weights[t] * L_t`` per pair. Refused, with the reason (:data:`REFUSED`): ``aot`` /
``aot_unpaired`` and ``sft``, which are no function of one pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "LABEL_NORMALIZATIONS", "LENGTH_NORMALIZED", "MARGIN_ONLY", "PAIRWISE", "REFUSED",
    "REWARD_METRICS", "SMOOTHED", "STAT_ROWS", "BatchLoss", "Pair", "PairLoss", "combine",
    "label_signs", "logratios", "mo_dpo_loss", "objective_stats", "pair_losses",
    "per_objective_losses", "reward_metrics",
]


# ----------------------------------------------------------------------------- 1. log-ratios


def logratios(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
              ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(chosen [B], rejected [B])`` log-ratios of the policy over the reference. In float32 at
    least: under DeepSpeed bf16 the log-probs can be bf16, and the weights, margins and labels
    are cast to the log-ratios' dtype."""
    dtype = torch.promote_types(chosen_logps.dtype, torch.float32)
    return (chosen_logps.to(dtype) - ref_chosen_logps.to(dtype),
            rejected_logps.to(dtype) - ref_rejected_logps.to(dtype))


# ----------------------------------------------------------------------------- 2. the losses


class Pair(NamedTuple):
    """One batch of pairs as an objective orients them (tensors broadcast together)."""

    win: torch.Tensor  # log-ratio of the preferred completion
    lose: torch.Tensor  # log-ratio of the dispreferred completion
    n_win: torch.Tensor | None = None  # completion token counts (ipo, sigmoid_norm)
    n_lose: torch.Tensor | None = None


@dataclass(frozen=True)
class Options:
    beta: float
    label_smoothing: float = 0.0
    discopop_tau: float = 0.05


def _margin(p: Pair, o: Options) -> torch.Tensor:
    return o.beta * (p.win - p.lose)


def _token_mean_margin(p: Pair) -> torch.Tensor:
    return p.win / p.n_win.clamp(min=1) - p.lose / p.n_lose.clamp(min=1)


def sigmoid(p: Pair, o: Options) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7):
    ``-log sigmoid(beta (win - lose))``."""
    return -F.logsigmoid(_margin(p, o))


def hinge(p: Pair, o: Options) -> torch.Tensor:
    """SLiC hinge (Zhao et al. 2023, "SLiC-HF"), as DPO's hinge variant:
    ``max(0, 1 - beta (win - lose))``."""
    return torch.relu(1.0 - _margin(p, o))


def ipo(p: Pair, o: Options) -> torch.Tensor:
    """IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human
    Preferences", eq. 17, ``tau = beta``): ``(h - 1 / (2 beta))^2`` with ``h`` the margin of the
    token-mean log-ratios (the per-token normalization TRL uses)."""
    return (_token_mean_margin(p) - 1.0 / (2.0 * o.beta)) ** 2


def sigmoid_norm(p: Pair, o: Options) -> torch.Tensor:
    """DPO on token-mean log-ratios: ``-log sigmoid(beta (win / n_win - lose / n_lose))``."""
    return -F.logsigmoid(o.beta * _token_mean_margin(p))


def robust(p: Pair, o: Options) -> torch.Tensor:
    """Robust DPO (Chowdhury et al. 2024, "Provably Robust DPO", eq. 5): the unbiased loss under
    labels flipped with probability ``eps = label_smoothing`` (``0 <= eps < 1/2``):
    ``((1 - eps) L(z) - eps L(-z)) / (1 - 2 eps)``, ``L(z) = -log sigmoid(z)``."""
    z, eps = _margin(p, o), o.label_smoothing
    return ((1.0 - eps) * -F.logsigmoid(z) - eps * -F.logsigmoid(-z)) / (1.0 - 2.0 * eps)


def exo_pair(p: Pair, o: Options) -> torch.Tensor:
    """EXO (Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model Alignment",
    eq. 16, two completions): ``KL(q || (1 - eps, eps))`` with ``q = (sigmoid(z), sigmoid(-z))``
    the model's implicit preference and ``eps = label_smoothing`` (``0 < eps < 1``)."""
    z, eps = _margin(p, o), o.label_smoothing
    kl_win = torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps))
    kl_lose = torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(eps))
    return kl_win + kl_lose


def nca_pair(p: Pair, o: Options) -> torch.Tensor:
    """NCA (Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit
    Rewards", pairwise form): raise the winner's own reward ``beta win`` and push both rewards
    down: ``-log sigmoid(beta win) - (log sigmoid(-beta win) + log sigmoid(-beta lose)) / 2``."""
    rw, rl = o.beta * p.win, o.beta * p.lose
    return -F.logsigmoid(rw) - 0.5 * (F.logsigmoid(-rw) + F.logsigmoid(-rl))


def bco_pair(p: Pair, o: Options) -> torch.Tensor:
    """BCO on pairs (Jung et al. 2024, "Binary Classifier Optimization"), without a reward
    shift: each completion classified on its own, ``-log sigmoid(beta win) - log
    sigmoid(-beta lose)``."""
    return -F.logsigmoid(o.beta * p.win) - F.logsigmoid(-o.beta * p.lose)


def sppo_hard(p: Pair, o: Options) -> torch.Tensor:
    """SPPO with hard win probabilities (Wu et al. 2024, "Self-Play Preference Optimization",
    eq. 4.7 with ``P = 1`` / ``0``): ``(win - 1 / (2 beta))^2 + (lose + 1 / (2 beta))^2``."""
    half = 0.5 / o.beta
    return (p.win - half) ** 2 + (p.lose + half) ** 2


def apo_zero(p: Pair, o: Options) -> torch.Tensor:
    """APO-zero (D'Oosterlinck et al. 2024, "Anchored Preference Optimization", eq. 7): raise the
    winner, lower the loser, each against the reference: ``1 - sigmoid(beta win) + sigmoid(beta
    lose)``."""
    return 1.0 - torch.sigmoid(o.beta * p.win) + torch.sigmoid(o.beta * p.lose)


def apo_down(p: Pair, o: Options) -> torch.Tensor:
    """APO-down (D'Oosterlinck et al. 2024, eq. 8): lower the winner, the loser more:
    ``sigmoid(beta win) + 1 - sigmoid(beta (win - lose))``."""
    return torch.sigmoid(o.beta * p.win) + 1.0 - torch.sigmoid(_margin(p, o))


def discopop(p: Pair, o: Options) -> torch.Tensor:
    """DiscoPOP / log-ratio modulated loss (Lu et al. 2024, "Discovering Preference Optimization
    Algorithms with and for Large Language Models", eq. 5): with ``z = beta (win - lose)`` and
    ``m = sigmoid(z / discopop_tau)``, ``(1 - m) (-log sigmoid(z)) + m exp(-z)``."""
    z = _margin(p, o)
    m = torch.sigmoid(z / o.discopop_tau)
    return (1.0 - m) * -F.logsigmoid(z) + m * torch.exp(-z)


#: The supported ``loss_type`` values: per-pair functions of the oriented log-ratios.
PAIRWISE: dict[str, Callable[[Pair, Options], torch.Tensor]] = {
    "sigmoid": sigmoid, "hinge": hinge, "ipo": ipo, "exo_pair": exo_pair, "nca_pair": nca_pair,
    "robust": robust, "bco_pair": bco_pair, "sppo_hard": sppo_hard, "apo_zero": apo_zero,
    "apo_down": apo_down, "discopop": discopop, "sigmoid_norm": sigmoid_norm,
}
#: Losses of the margin ``win - lose`` alone (what a margin-only caller can compute).
MARGIN_ONLY = frozenset({"sigmoid", "hinge", "robust", "exo_pair", "discopop"})
#: Losses that need the completions' token counts.
LENGTH_NORMALIZED = frozenset({"ipo", "sigmoid_norm"})
#: TRL loss types MO-DPO refuses, with the reason. (``bco_pair`` needs no running reward mean
#: in TRL 1.16: it is pairwise and supported.)
REFUSED = {
    "aot": "it sorts the margins across the batch, so a pair's loss depends on the other pairs "
           "(and each objective would sort its own orientation differently)",
    "aot_unpaired": "it sorts the chosen and the rejected log-ratios across the batch, so a "
                    "pair's loss depends on the other pairs",
    "sft": "it is a token-mean likelihood of the chosen completions over the whole batch, not a "
           "function of a pair's log-ratios, and which completion is chosen differs per "
           "objective; train SFT first (moalign sft)",
}
#: Losses that read ``label_smoothing``.
SMOOTHED = ("robust", "exo_pair")


@dataclass(frozen=True)
class PairLoss:
    """``sum_t weights[t] * loss_t`` per pair (one type: weight 1), with TRL's parameters."""

    types: tuple[str, ...] = ("sigmoid",)
    weights: tuple[float, ...] = (1.0,)
    label_smoothing: float = 0.0
    discopop_tau: float = 0.05

    @classmethod
    def from_config(cls, args: Any) -> PairLoss:
        types = (args.loss_type,) if isinstance(args.loss_type, str) else tuple(args.loss_type)
        weights = tuple(float(w) for w in (args.loss_weights or [1.0] * len(types)))
        return cls(types, weights, float(args.label_smoothing), float(args.discopop_tau))

    @property
    def margin_only(self) -> bool:
        return all(t in MARGIN_ONLY for t in self.types)

    def __call__(self, pair: Pair, beta: float) -> torch.Tensor:
        options = Options(beta, self.label_smoothing, self.discopop_tau)
        return sum(weight * PAIRWISE[name](pair, options)
                   for name, weight in zip(self.types, self.weights, strict=True))


# ----------------------------------------------------------------------------- 3. per objective


def label_signs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sign [B, K], mask [B, K])`` of preference labels: NaN and 0 are masked out."""
    mask = torch.isfinite(labels) & (labels != 0)
    sign = torch.where(mask, torch.sign(labels), torch.zeros_like(labels))
    return sign, mask


def pair_losses(
    delta: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    loss_type: str | PairLoss = "sigmoid",
    *,
    logratios: tuple[torch.Tensor, torch.Tensor] | None = None,
    lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair, per-objective losses ``L [B, K]`` (0 where masked) and the mask ``[B, K]``.

    ``delta [B]`` is all a loss of the margin alone needs (:data:`MARGIN_ONLY`). The other losses
    need ``logratios = (chosen [B], rejected [B])`` (which then take the place of ``delta``), the
    length-normalized ones also ``lengths``, the completion token counts ``(chosen, rejected)``.
    ``loss_type`` is a loss name or a :class:`PairLoss` (several weighted losses and their
    parameters). For each objective the pair is oriented by its label (``win`` = chosen for +1,
    rejected for -1) before the loss is taken.
    """
    loss = PairLoss((loss_type,)) if isinstance(loss_type, str) else loss_type
    sign, mask = label_signs(labels.to(delta.dtype))
    if logratios is None:
        if not loss.margin_only:
            raise ValueError(f"loss {loss.types} needs logratios=(chosen, rejected), not only "
                             "their margin")
        chosen, rejected = delta, torch.zeros_like(delta)  # a loss of win - lose sees delta
    else:
        chosen, rejected = logratios
    if lengths is None and LENGTH_NORMALIZED.intersection(loss.types):
        raise ValueError(f"loss {loss.types} needs lengths=(chosen, rejected) token counts")
    swap = sign < 0

    def orient(c: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, r = c.unsqueeze(1), r.unsqueeze(1)
        return torch.where(swap, r, c), torch.where(swap, c, r)

    win, lose = orient(chosen, rejected)
    n_win = n_lose = None
    if lengths is not None:
        n_win, n_lose = orient(*(n.to(delta.dtype) for n in lengths))
    losses = loss(Pair(win, lose, n_win, n_lose), beta)
    return torch.where(mask, losses, torch.zeros_like(losses)), mask


# ----------------------------------------------------------------------------- 4. weighted


#: How the masked per-pair losses ``L[i, k]`` become per-objective losses and then one number.
#:
#: - ``"objective"`` (default): ``l_k = sum_i L[i, k] / N_k``, the mean loss over the pairs
#:   labelled for k, where ``N_k`` counts the pairs labelled (+1/-1) for k in the whole
#:   **optimizer step**: every micro-batch of gradient accumulation, on every process. The
#:   trainer counts them before the step's backward passes (the way transformers' ``Trainer``
#:   counts tokens for ``num_items_in_batch``) and each micro-batch contributes its share
#:   ``sum_{i in micro-batch} L[i, k] / N_k``, so the step's gradient is the same however the
#:   step is split into micro-batches and processes. The loss is ``scalarize(l, w)`` (``sum_k
#:   w_k l_k`` for the linear scalarizer). The weights are **never renormalized**: an objective
#:   with no labelled pair in a micro-batch adds 0 to that micro-batch, and one with none in the
#:   whole step trains at weight 0 that step, its weight not handed to the others. Over steps of
#:   S pairs drawn at random, objective k's expected coefficient is therefore
#:   ``w_k * P(N_k > 0)``, with ``P(N_k = 0) = (1 - p_k)^S`` for a share ``p_k`` of pairs labelled
#:   for k: the asked weights exactly when every objective is as likely to appear in a step
#:   (disjoint labels split half and half: ``P(N_k = 0) = 1/16`` for both at S = 4), and off
#:   by the factors ``1 - (1 - p_k)^S`` otherwise (``0.75^32 ~ 1e-4``: accumulate gradients to
#:   grow S when an objective's labels are rare).
#: - ``"batch"``: ``l_k = sum_i L[i, k] / B``: unlabelled pairs count as zero loss, so an
#:   objective's effective weight is ``w_k`` times the fraction of pairs labelled for it.
#: - ``"pair"``: each pair is scalarized on its own labelled objectives, with the weights
#:   renormalized over them (``sum_k w_k L[i, k] / sum_{k labelled} w_k`` for linear), then
#:   averaged over the pairs that have a labelled objective of positive weight. With one label
#:   per pair the weights then have no effect; use it when pairs carry several labels.
#:
#: With per-example weights ``W [B, K]`` (conditioned training) ``"objective"`` and ``"batch"``
#: are linear: ``sum_k sum_i W[i, k] L[i, k] / N_k`` (resp. ``/ B``).
LABEL_NORMALIZATIONS = ("objective", "batch", "pair")


def per_objective_losses(losses: torch.Tensor, mask: torch.Tensor, normalization: str) -> torch.Tensor:
    """Per-objective losses ``[K]`` under ``"objective"`` (NaN where ``n_k = 0``) or ``"batch"``."""
    total = losses.sum(dim=0)
    if normalization == "batch":
        return total / losses.shape[0]
    counts = mask.sum(dim=0).to(losses.dtype)
    mean = total / counts.clamp(min=1)
    return torch.where(counts > 0, mean, torch.full_like(mean, float("nan")))


def _scalarize_losses(scalarizer, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scalarizers maximize rewards: minimize ``-scalarize(-losses)`` (NaN = left out)."""
    return -scalarizer(-values, weights)


def _share_losses(losses: torch.Tensor, mask: torch.Tensor, normalization: str,
                  counts: torch.Tensor | None) -> torch.Tensor:
    """This batch's share ``[K]`` of each per-objective loss: ``sum_i L[i, k] / N_k`` (0 where
    ``N_k = 0``; ``N_k`` from ``counts`` or this batch) or ``sum_i L[i, k] / B``."""
    total = losses.sum(dim=0)
    if normalization == "batch":
        return total / losses.shape[0]
    if counts is None:
        counts = mask.sum(dim=0)
    return total / counts.to(losses.dtype).clamp(min=1)


def combine(losses: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, scalarizer,
            normalization: str = "objective", *, counts: torch.Tensor | None = None,
            parts: int = 1) -> torch.Tensor:
    """The scalar loss from ``L [B, K]``, its mask and weights ``[K]`` or ``[B, K]``.

    ``scalarizer`` is a :class:`moalign.tradeoff.scalarize.Scalarizer` (used on ``-losses``, since
    scalarizers maximize). Per-example weights require the linear form unless
    ``normalization="pair"``. See :data:`LABEL_NORMALIZATIONS`.

    With ``"objective"``, ``counts [K]`` are the pairs labelled for each objective in the whole
    optimizer step (default: in this batch) and ``parts`` the number of batches the step is
    split into (micro-batches times processes). The result is this batch's share of the step's
    loss: the shares of the ``parts`` batches add up to it exactly for a linear scalarizer; a
    non-linear one sees ``parts`` times the share, this batch's estimate of the step's
    per-objective losses, and the result is divided by ``parts``. Objectives with nothing
    labelled add 0 (the weights are never renormalized).
    """
    weights = weights.to(losses.dtype)
    if normalization not in LABEL_NORMALIZATIONS:
        raise ValueError(f"unknown label normalization {normalization!r}; choose one of {LABEL_NORMALIZATIONS}")
    if normalization == "pair":
        values = torch.where(mask, losses, torch.full_like(losses, float("nan")))
        rows = _scalarize_losses(scalarizer, values, weights)
        valid = torch.isfinite(rows)
        if not bool(valid.any()):
            return losses.sum() * 0.0  # still depends on the parameters: backward sees them all
        return torch.where(valid, rows, torch.zeros_like(rows)).sum() / valid.sum()
    if weights.ndim == 2:  # per-example weights: linear, normalized per objective or per batch
        if normalization == "batch":
            denom = torch.full_like(weights[0], float(losses.shape[0]))
        else:
            denom = (mask.sum(dim=0) if counts is None else counts).to(losses.dtype).clamp(min=1)
        return ((weights * losses).sum(dim=0) / denom).sum()
    share = _share_losses(losses, mask, normalization, counts)
    return _scalarize_losses(scalarizer, parts * share.unsqueeze(0), weights)[0] / parts


# ----------------------------------------------------------------------------- 5. metrics

#: Rows of :func:`objective_stats`.
STAT_ROWS = ("count", "loss", "correct", "margin")
#: Columns of :func:`reward_metrics`: TRL's ``DPOTrainer`` keys.
REWARD_METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                  "logps/chosen", "logps/rejected")


def objective_stats(
    delta: torch.Tensor, labels: torch.Tensor, losses: torch.Tensor, beta: float
) -> torch.Tensor:
    """Sums per objective, rows :data:`STAT_ROWS`: labelled count, loss, implicit-reward
    correct (``s * delta > 0``), and implicit-reward margin ``beta * s * delta``; shape ``[4, K]``.

    Sums (not means) so that processes can add them before dividing.
    """
    with torch.no_grad():
        sign, mask = label_signs(labels.to(delta.dtype))
        signed = sign * delta.detach().unsqueeze(1)
        m = mask.to(delta.dtype)
        return torch.stack(
            [
                m.sum(0),
                (losses.detach() * m).sum(0),
                ((signed > 0).to(delta.dtype) * m).sum(0),
                (beta * signed * m).sum(0),
            ]
        )


def reward_metrics(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor,
                   chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
                   beta: float) -> torch.Tensor:
    """Per pair ``[B, 6]``, columns :data:`REWARD_METRICS`: the implicit rewards ``beta *
    log-ratio`` of both completions, whether the chosen one's is higher, their margin, and the
    policy's log-probs, as ``trl.DPOTrainer`` logs them (with the chosen column as chosen)."""
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    return torch.stack([
        chosen_rewards, rejected_rewards, (chosen_rewards > rejected_rewards).to(chosen_rewards.dtype),
        chosen_rewards - rejected_rewards, chosen_logps.detach(), rejected_logps.detach(),
    ], dim=1)


# ----------------------------------------------------------------------------- 1-5 on a batch


class BatchLoss(NamedTuple):
    """What :func:`mo_dpo_loss` computes for a batch."""

    loss: torch.Tensor  # the scalar to minimize: this batch's share of the step's loss
    losses: torch.Tensor  # L [B, K], 0 where masked
    mask: torch.Tensor  # [B, K]: pair i is labelled +1 / -1 for objective k
    weights: torch.Tensor  # [K] or [B, K], as used
    stats: torch.Tensor  # objective_stats [4, K]


def mo_dpo_loss(
    logratios: tuple[torch.Tensor, torch.Tensor],
    labels: torch.Tensor,
    weights: Any,
    scalarizer,
    *,
    beta: float,
    loss_type: str | PairLoss = "sigmoid",
    normalization: str = "objective",
    lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
    counts: torch.Tensor | None = None,
    parts: int = 1,
) -> BatchLoss:
    """MO-DPO's loss of a batch of pairs from their ``(chosen, rejected)`` log-ratios
    (:func:`logratios`) and ``labels [B, K]``: the losses of every objective (:func:`pair_losses`),
    combined with ``weights`` (``[K]``, per-pair ``[B, K]``, or a function of ``(losses, mask)``
    that returns them, as MGDA's weights are) by ``scalarizer`` under ``normalization``
    (:func:`combine`), and the per-objective sums the metrics are made of
    (:func:`objective_stats`)."""
    delta = logratios[0] - logratios[1]
    labels = labels.to(delta.dtype)
    losses, mask = pair_losses(delta, labels, beta, loss_type, logratios=logratios,
                               lengths=lengths)
    if callable(weights):
        weights = weights(losses, mask)
    weights = torch.as_tensor(weights).to(delta.dtype)
    loss = combine(losses, mask, weights, scalarizer, normalization, counts=counts, parts=parts)
    return BatchLoss(loss, losses, mask, weights, objective_stats(delta, labels, losses, beta))
