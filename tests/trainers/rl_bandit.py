"""A one-token bandit for the online trainers' exact-optimum tests.

The "response" is one of four tokens after a fixed prompt; each arm has a known reward vector.
The reference policy is the tiny Llama with its LM head fitted so the next-token distribution
after the prompt is ``REF_TARGET`` on the arms (99.9%+ of the mass); generation suppresses every
other token. The KL-regularized optimum for weights ``w`` and coefficient ``beta`` is then
``pi*(y) ∝ pi_ref(y) exp(w . r(y) / beta)`` over the arms.
"""

from __future__ import annotations

import numpy as np
import torch

from moalign.models import tiny_causal_lm
from moalign.objective import Objective

ARMS = ("a", "b", "c", "d")
#: reward vectors (first, second) of the arms
REWARDS = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.6], [0.0, 0.0]])
REF_TARGET = np.array([0.4, 0.3, 0.2, 0.1])
PROMPT = "pick:"


class ArmReward(Objective):
    """Reward ``REWARDS[arm, column]`` of the arm a completion names (None otherwise)."""

    def __init__(self, column: int, name: str, silent: bool = False):
        self.column, self._name, self.silent = column, name, silent

    @property
    def __name__(self) -> str:
        return self._name

    def score(self, prompts, completions, **columns):
        if self.silent:
            return [None] * len(completions)
        return [float(REWARDS[ARMS.index(c), self.column]) if c in ARMS else None
                for c in completions]


def objectives(silent_second: bool = False) -> list[Objective]:
    return [ArmReward(0, "first"), ArmReward(1, "second", silent=silent_second)]


def reference_policy(seed: int = 0, steps: int = 300):
    """The tiny Llama whose LM head puts ``REF_TARGET`` on the arms after ``PROMPT``.

    Only the LM head is fitted (the prompt's last hidden state is fixed), so this is a cheap
    convex problem. Returns ``(model, tokenizer, arm_token_ids)``.
    """
    model, tok = tiny_causal_lm(seed)
    arm_ids = [tok.encode(a)[0] for a in ARMS]
    with torch.no_grad():
        hidden = model.model(torch.tensor([tok.encode(PROMPT)])).last_hidden_state[0, -1]
    target = torch.zeros(len(tok))
    target[arm_ids] = torch.tensor(REF_TARGET, dtype=torch.float32)
    head = model.lm_head.weight
    opt = torch.optim.Adam([head], lr=0.05)
    for _ in range(steps):
        loss = -(target * torch.log_softmax(head @ hidden, -1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.grad = None
    return model, tok, arm_ids


def arm_probs(model, tok, arm_ids) -> np.ndarray:
    """The policy's distribution over the arms (renormalized, as generation samples it)."""
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode(PROMPT)])).logits[0, -1].float()
    p = torch.softmax(logits, -1)[arm_ids]
    return (p / p.sum()).double().numpy()


def optimum(ref: np.ndarray, coef: np.ndarray, beta: float) -> np.ndarray:
    """``pi*(y) ∝ ref(y) exp(REWARDS[y] . coef / beta)``."""
    p = ref * np.exp(REWARDS @ np.asarray(coef) / beta)
    return p / p.sum()


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def suppressed(tok, arm_ids) -> list[int]:
    return [i for i in range(len(tok)) if i not in arm_ids]
