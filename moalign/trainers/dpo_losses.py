"""The pairwise preference losses of MO-DPO, one short function each.

Every loss here is a function of **one** pair: the log-ratios ``win = log pi(y_w) - log
pi_ref(y_w)`` and ``lose = log pi(y_l) - log pi_ref(y_l)`` of its preferred and dispreferred
completions (sums of token log-probabilities), for the length-normalized losses also their
completion token counts ``n_win`` / ``n_lose``, and the config's ``beta``, ``label_smoothing``
and ``discopop_tau``. Because nothing couples two pairs, the loss of a pair under objective k is
exactly the loss of the pair as objective k orients it:

- label +1: ``y_w`` is ``chosen`` (the loss TRL computes for the pair);
- label -1: ``y_w`` is ``rejected``: chosen and rejected swap, log-ratios and lengths alike;
- label 0 (tie) or NaN (unlabelled): the pair is **skipped** for that objective, for every loss.
  Most of these losses have no tie form: NCA, BCO, SPPO and APO give the winner and the loser
  different roles (raise one, lower the other), so a pair with no winner has no loss. Two have
  one (IPO's target margin ``(p - 1/2) / beta`` is 0 at ``p = 1/2``; a Bradley-Terry tie is
  the sigmoid loss smoothed at 1/2), but using it for those alone would give a tie a different
  meaning per loss and break the normalizations, which count the +1 / -1 pairs
  (:data:`moalign.trainers._dpo_core.LABEL_NORMALIZATIONS`); so ties are skipped throughout.
- ``label_smoothing`` (robust, exo_pair) is the chance that a label is wrong; it applies to each
  objective's own orientation of the pair, so a -1 label is smoothed exactly as its swapped +1
  pair would be. It is refused with every other loss, which does not read it (TRL 1.16 ignores
  it there; moalign says so rather than ignore it too).

A list of loss types (``loss_type: [sigmoid, sppo_hard]``) is TRL's weighted sum:
``sum_t loss_weights[t] * L_t`` per pair, which averages to TRL's ``sum_t w_t mean_i L_t``.

Refused, with the reason (:data:`REFUSED`): ``aot`` / ``aot_unpaired`` sort the margins across
the batch, so a pair's loss depends on the other pairs (and each objective would sort its own
orientation differently); ``sft`` is a token-mean likelihood of the chosen completions over the
whole batch, not a function of a pair's log-ratios, and "chosen" differs per objective.
(``bco_pair`` needs no running reward mean in TRL 1.16: it is pairwise and supported.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["LENGTH_NORMALIZED", "MARGIN_ONLY", "PAIRWISE", "REFUSED", "Pair", "PairLoss",
           "loss_type_problems"]


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


# ----------------------------------------------------------------------------- the losses


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
#: TRL loss types MO-DPO refuses, with the reason.
REFUSED = {
    "aot": "it sorts the margins across the batch, so a pair's loss depends on the other pairs "
           "(and each objective would sort its own orientation differently)",
    "aot_unpaired": "it sorts the chosen and the rejected log-ratios across the batch, so a "
                    "pair's loss depends on the other pairs",
    "sft": "it is a token-mean likelihood of the chosen completions over the whole batch, not a "
           "function of a pair's log-ratios, and which completion is chosen differs per "
           "objective; train SFT first (moalign sft)",
}
_SMOOTHED = ("robust", "exo_pair")


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


def loss_type_problems(loss_type: Any, loss_weights: Any, label_smoothing: Any,
                       discopop_tau: Any, *, ideal_at_zero: bool = False) -> list[str]:
    """Problems with ``loss_type`` and the parameters the chosen losses read.

    ``ideal_at_zero``: the scalarizer takes 0 as the ideal (lowest) loss, as MO-DPO's
    Tchebycheff does by default; the robust loss has no lower bound, so it needs another.
    """
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type or [])
    problems = []
    if not types:
        problems.append(f"'loss_type' must name at least one of {list(PAIRWISE)}")
    for name in types:
        if name in REFUSED:
            problems.append(f"'loss_type' {name!r} is not supported by MO-DPO: {REFUSED[name]}")
        elif name not in PAIRWISE:
            problems.append(f"'loss_type' must be one of {list(PAIRWISE)} (pairwise losses), "
                            f"got {name!r}")
    if loss_weights is not None and (not isinstance(loss_weights, Sequence) or len(loss_weights)
                                     != len(types) or not all(_finite(w) for w in loss_weights)):
        problems.append(f"'loss_weights' must be {len(types)} finite number(s), one per "
                        f"loss_type {types}, got {loss_weights!r}")
    if not _finite(label_smoothing):
        problems.append(f"'label_smoothing' must be a number, got {label_smoothing!r}")
        return problems
    if "robust" in types and not 0.0 <= label_smoothing < 0.5:
        problems.append("'label_smoothing' is the label-flip probability of loss_type 'robust' and "
                        f"must lie in [0, 0.5), got {label_smoothing}")
    if "exo_pair" in types and not 0.0 < label_smoothing < 1.0:
        problems.append("loss_type 'exo_pair' needs 0 < 'label_smoothing' < 1 (its epsilon; the EXO "
                        f"paper recommends 1e-3), got {label_smoothing}")
    if label_smoothing != 0.0 and not any(t in _SMOOTHED for t in types):
        problems.append(f"'label_smoothing' is read only by loss_type {list(_SMOOTHED)}; with "
                        f"{types} it would be ignored: leave it 0")
    if "robust" in types and ideal_at_zero and label_smoothing > 0:
        problems.append("the 'robust' loss is unbounded below, so the scalarizer's default ideal "
                        "loss 0 is no lower bound: give it an explicit 'ideal'")
    if "discopop" in types and not (_finite(discopop_tau) and discopop_tau > 0):
        problems.append(f"'discopop_tau' must be a number > 0, got {discopop_tau!r}")
    return problems


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
