"""Loss arithmetic shared by the DPO-family trainers (pure tensor functions, no trainer state).

Notation. For a batch of B pairs, ``delta[i] = (log pi(c_i) - log pi_ref(c_i)) -
(log pi(r_i) - log pi_ref(r_i))`` is the log-ratio margin of the ``chosen`` column over the
``rejected`` column (sums of per-token log-probabilities over the completion, as TRL computes
them). ``labels[i, k]`` is the ``pref_<k>`` value of pair i: +1 (chosen better for objective k),
-1 (rejected better), 0 (tie) or NaN (unlabelled).

- :func:`pair_losses`: ``L[i, k]``, the pairwise loss (DPO, Rafailov et al. 2023, by default;
  every ``loss_type`` of :mod:`moalign.trainers.dpo_losses`) of pair i under objective k's own
  label: a -1 label swaps chosen and rejected. Ties and NaN are masked (``L = 0``,
  ``mask = False``).
- :func:`combine`: the scalar training loss from ``L``, the mask and the weights, under one of
  the :data:`LABEL_NORMALIZATIONS` (documented there).
- :func:`objective_stats`: per-objective sums and counts for the logged metrics.
- :func:`modpo_pair_losses`: the MODPO loss (Zhou et al. 2023).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moalign.trainers.dpo_losses import LENGTH_NORMALIZED, Pair, PairLoss

__all__ = [
    "LABEL_NORMALIZATIONS",
    "STAT_ROWS",
    "combine",
    "label_signs",
    "modpo_pair_losses",
    "objective_stats",
    "pair_losses",
    "per_objective_losses",
]

#: How the masked per-pair losses ``L[i, k]`` become per-objective losses and then one number.
#:
#: - ``"objective"`` (default): ``l_k = sum_i L[i, k] / N_k``, the mean DPO loss over the pairs
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

#: Rows of :func:`objective_stats`.
STAT_ROWS = ("count", "loss", "correct", "margin")


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

    ``delta [B]`` is the margin ``chosen - rejected`` of the log-ratios; it is all a loss of the
    margin alone needs (:data:`~moalign.trainers.dpo_losses.MARGIN_ONLY`). The other losses need
    ``logratios = (chosen [B], rejected [B])`` (which then take the place of ``delta``), the
    length-normalized ones also ``lengths``, the completion token counts ``(chosen, rejected)``.
    ``loss_type`` is a loss name or a :class:`~moalign.trainers.dpo_losses.PairLoss` (several
    weighted losses and their parameters). For each objective the pair is oriented by its label
    (``win`` = chosen for +1, rejected for -1) before the loss is taken.
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


def _zero_like_graph(losses: torch.Tensor) -> torch.Tensor:
    # a zero that still depends on the parameters, so backward (and DDP) see every parameter
    return losses.sum() * 0.0


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


def combine(
    losses: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    scalarizer,
    normalization: str = "objective",
    *,
    counts: torch.Tensor | None = None,
    parts: int = 1,
) -> torch.Tensor:
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
            return _zero_like_graph(losses)
        return torch.where(valid, rows, torch.zeros_like(rows)).sum() / valid.sum()
    if weights.ndim == 2:  # per-example weights: linear, normalized per objective or per batch
        if normalization == "batch":
            denom = torch.full_like(weights[0], float(losses.shape[0]))
        else:
            denom = (mask.sum(dim=0) if counts is None else counts).to(losses.dtype).clamp(min=1)
        return ((weights * losses).sum(dim=0) / denom).sum()
    share = _share_losses(losses, mask, normalization, counts)
    return _scalarize_losses(scalarizer, parts * share.unsqueeze(0), weights)[0] / parts


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


def modpo_pair_losses(
    delta: torch.Tensor,
    labels: torch.Tensor,
    margins: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MODPO per-pair losses ``[B]`` and mask ``[B]`` (Zhou et al. 2023, "Beyond
    One-Preference-Fits-All Alignment", eq. 8).

    ``-log sigmoid((1 / w_0) * s * (beta * delta - w_rest . m))``, where ``labels [B]`` is the
    label of the trained objective (``s`` its sign; ties/NaN masked), ``margins [B, K-1]`` the
    margin rewards ``r_k(chosen) - r_k(rejected)`` of the other objectives (in dataset
    orientation; the sign ``s`` turns them into ``r(y_w) - r(y_l)``) and ``weights [K]`` is
    ``(w_0, w_rest)``.
    """
    sign, mask = label_signs(labels.to(delta.dtype))
    w = weights.to(delta.dtype)
    rest = margins.to(delta.dtype) @ w[1:] if margins.numel() else torch.zeros_like(delta)
    z = sign * (beta * delta - rest) / w[0]
    losses = -F.logsigmoid(z)
    return torch.where(mask, losses, torch.zeros_like(losses)), mask
