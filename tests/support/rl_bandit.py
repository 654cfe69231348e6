"""One- and two-token bandits for the online trainers' exact-optimum tests.

The "response" is one of four tokens after a fixed prompt; each arm has a known reward vector.
The reference policy is the tiny Llama with its LM head fitted so the next-token distribution
after the prompt is ``REF_TARGET`` on the arms (99.9%+ of the mass); generation suppresses every
other token. The KL-regularized optimum for weights ``w`` and coefficient ``beta`` is then
``pi*(y) ∝ pi_ref(y) exp(w . r(y) / beta)`` over the arms.

The two-token bandit answers with two arms ``y1 y2``; the second is drawn from a reference
conditional ``REF_SECOND[y1]`` and the reward of the pair, ``r(y1) + r(y2)``, comes at
the end, so the first token's credit has to travel through the critic (GAE). Its optimum is
the same formula over the 16 sequences, ``pi*(y1 y2) ∝ pi_ref(y1 y2) exp(w . r(y1 y2) / beta)``
(a per-token KL penalty sums to the sequence's log-ratio).

:func:`at_optimum` is the check the tests apply (total variation <= :data:`TOLERANCE`);
:func:`assert_only_the_optimum_passes` shows it has power: it rejects the optimum of a KL
coefficient 1.6x off, of weights 0.1 off, and a policy part of the way there.
"""

from __future__ import annotations

import numpy as np
import torch

from moalign.models import tiny_causal_lm
from moalign.objective import Objective

ARMS = ("a", "b", "c", "d")
#: KL coefficient of the bandit tests
BETA = 0.5
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


def arm_distribution(model, tok, arm_ids) -> torch.Tensor:
    """The policy's distribution over the arms (renormalized, as generation samples it), as a
    tensor that keeps the graph to the parameters."""
    logits = model(torch.tensor([tok.encode(PROMPT)])).logits[0, -1].float()
    p = torch.softmax(logits, -1)[arm_ids]
    return p / p.sum()


def arm_probs(model, tok, arm_ids) -> np.ndarray:
    """:func:`arm_distribution` as numbers."""
    with torch.no_grad():
        return arm_distribution(model, tok, arm_ids).double().numpy()


def optimum(ref: np.ndarray, coef: np.ndarray, beta: float) -> np.ndarray:
    """``pi*(y) ∝ ref(y) exp(REWARDS[y] . coef / beta)``."""
    p = ref * np.exp(REWARDS @ np.asarray(coef) / beta)
    return p / p.sum()


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


def suppressed(tok, arm_ids) -> list[int]:
    return [i for i in range(len(tok)) if i not in arm_ids]


def ppo_trainer(tmp_path, steps: int, silent_second: bool = False, **overrides):
    """MO-PPO on the bandit: 64 one-token responses per iteration, KL coefficient ``BETA``,
    Monte-Carlo returns, no whitening (overrides change any of it). Returns
    ``(trainer, reference arm distribution, (tokenizer, arm ids))``."""
    from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    model, tok, arm_ids = reference_policy()
    settings = dict(
        output_dir=str(tmp_path / "ppo"), max_steps=steps, batch_size=1,
        num_samples_per_prompt=64, max_new_tokens=1, mini_batch_size=64, ppo_epochs=2,
        use_cpu=True, learning_rate=1e-2, critic_learning_rate=1e-2, kl_coef=BETA, lam=1.0,
        whiten_advantages=False, save_final=False, lr_scheduler_type="linear",
        generation_kwargs={"suppress_tokens": suppressed(tok, arm_ids)},
    )
    settings.update(overrides)
    ref = arm_probs(model, tok, arm_ids)
    trainer = MultiObjectivePPOTrainer(
        model, objectives(silent_second), MultiObjectivePPOConfig(**settings),
        train_dataset=[{"prompt": PROMPT}], processing_class=tok)
    return trainer, ref, (tok, arm_ids)


def ppo_policy_probs(trainer, handles) -> np.ndarray:
    return arm_probs(trainer.accelerator.unwrap_model(trainer.policy), *handles)


#: GRPO group size; the group-mean baseline includes the response itself, which scales its
#: reward by (G - 1) / G in expectation (see :data:`GRPO_BETA`)
G = 32
#: The KL coefficient GRPO's fixed point has with ``beta = BETA``: ``E[(r - mean_group) grad
#: log pi] = (G - 1) / G * grad E[r]``, so it maximizes ``E[r] - BETA G / (G - 1) KL``.
GRPO_BETA = BETA * G / (G - 1)


def grpo_settings(tmp_path, steps, tok, arm_ids, config_class=None, **overrides):
    """GRPO config on the bandit: one group of ``G`` one-token responses per step."""
    from moalign.trainers.grpo import MultiObjectiveGRPOConfig

    values = dict(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=G,
        num_generations=G, max_completion_length=1, learning_rate=1e-2,
        lr_scheduler_type="linear", beta=BETA, scale_rewards="none", loss_type="grpo",
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], logging_steps=1,
        save_strategy="no", seed=0, disable_tqdm=True,
        generation_kwargs={"suppress_tokens": suppressed(tok, arm_ids)},
    )
    values.update(overrides)
    return (config_class or MultiObjectiveGRPOConfig)(**values)


def prompts_dataset(n=4096):
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [PROMPT] * n})


def grpo_trainer(tmp_path, steps, silent_second=False, schedule=None, **overrides):
    """MO-GRPO on the bandit; returns ``(trainer, reference distribution, handles)``."""
    from moalign.trainers.grpo import MultiObjectiveGRPOTrainer

    model, tok, arm_ids = reference_policy()
    ref = arm_probs(model, tok, arm_ids)
    trainer = MultiObjectiveGRPOTrainer(
        model, objectives(silent_second), grpo_settings(tmp_path, steps, tok, arm_ids, **overrides),
        train_dataset=prompts_dataset(), processing_class=tok, schedule=schedule)
    return trainer, ref, (tok, arm_ids)


def grpo_policy_probs(trainer, handles) -> np.ndarray:
    return arm_probs(trainer.accelerator.unwrap_model(trainer.model), *handles)


# ------------------------------------------------------------------ the check and its power

#: Total variation a trained policy may be from the exact optimum.
TOLERANCE = 0.02


def at_optimum(p: np.ndarray, target: np.ndarray) -> bool:
    return total_variation(p, target) <= TOLERANCE


def part_way(ref: np.ndarray, target: np.ndarray, fraction: float) -> np.ndarray:
    """The policy ``fraction`` of the way from ``ref`` to ``target`` in log-probabilities."""
    p = np.asarray(ref) ** (1 - fraction) * np.asarray(target) ** fraction
    return p / p.sum()


def assert_only_the_optimum_passes(final: np.ndarray, ref: np.ndarray, coef, beta: float,
                                   optimum_of=None) -> None:
    """``final`` passes :func:`at_optimum` for ``(coef, beta)``; the same check fails for the
    optimum of ``1.6 beta`` or ``beta / 1.6``, of coefficients moved by 0.1 towards either
    objective, and for policies 60% and 80% of the way from the reference."""
    optimum_of = optimum_of or (lambda c, b: optimum(ref, c, b))
    target = optimum_of(coef, beta)
    assert total_variation(ref, target) > 0.15  # the optimum is far from the start
    assert at_optimum(final, target), (total_variation(final, target), final, target)
    coef = np.asarray(coef, dtype=float)
    wrong = [optimum_of(coef, 1.6 * beta), optimum_of(coef, beta / 1.6)]
    for shift in (np.array([0.1, -0.1]), np.array([-0.1, 0.1])):
        wrong.append(optimum_of(np.clip(coef + shift, 0.0, None), beta))
    for other in wrong:
        assert not at_optimum(final, other), total_variation(final, other)
    for fraction in (0.6, 0.8):
        assert not at_optimum(part_way(ref, target, fraction), target)


# ------------------------------------------------------------------ the two-token bandit

#: Reference distribution of the second arm after each first arm (rows: y1, columns: y2).
REF_SECOND = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1],
                       [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]])
#: Reward vectors of the 16 answers ``y1 y2``: ``[4, 4, K]``.
PAIR_REWARDS = REWARDS[:, None, :] + REWARDS[None, :, :]


class PairReward(Objective):
    """``PAIR_REWARDS[y1, y2, column]`` of a two-arm completion (None otherwise)."""

    def __init__(self, column: int, name: str):
        self.column, self._name = column, name

    @property
    def __name__(self) -> str:
        return self._name

    def score(self, prompts, completions, **columns):
        out = []
        for c in completions:
            ok = len(c) == 2 and all(x in ARMS for x in c)
            out.append(float(PAIR_REWARDS[ARMS.index(c[0]), ARMS.index(c[1]), self.column])
                       if ok else None)
        return out


def pair_objectives() -> list[Objective]:
    return [PairReward(0, "first"), PairReward(1, "second")]


def _contexts(tok, arm_ids) -> list[list[int]]:
    prompt = tok.encode(PROMPT)
    return [prompt] + [prompt + [a] for a in arm_ids]


def _only_arms(arm_ids, vocab: int):
    """A forward hook for the LM head that gives every other token a logit of -1e4 (no mass).

    Then the policy is a distribution over the arms, as sampled: without it, a policy could
    move mass to tokens that generation suppresses, which are never sampled, so their
    log-probabilities would never be corrected (and the KL estimates of the sampled arms,
    ``log pi - log pi_ref``, would reward that).
    """
    mask = torch.full((vocab,), -1e4)
    mask[arm_ids] = 0.0

    def hook(module, args, output):
        return output + mask.to(output.dtype)

    return hook


def two_token_reference(seed: int = 0, steps: int = 600):
    """The tiny Llama with its LM head fitted to ``REF_TARGET`` after the prompt and to
    ``REF_SECOND[y1]`` after the prompt and arm ``y1`` (five contexts; only the head moves),
    and only the arms as possible tokens (see :func:`_only_arms`)."""
    model, tok = tiny_causal_lm(seed)
    arm_ids = [tok.encode(a)[0] for a in ARMS]
    model.lm_head.register_forward_hook(_only_arms(arm_ids, model.lm_head.out_features))
    with torch.no_grad():
        hidden = torch.stack([model.model(torch.tensor([c])).last_hidden_state[0, -1]
                              for c in _contexts(tok, arm_ids)])
    target = torch.zeros(5, len(tok))
    target[0, arm_ids] = torch.tensor(REF_TARGET, dtype=torch.float32)
    target[1:, arm_ids] = torch.tensor(REF_SECOND, dtype=torch.float32)
    head = model.lm_head.weight
    opt = torch.optim.Adam([head], lr=0.05)
    for _ in range(steps):
        loss = -(target * torch.log_softmax(model.lm_head(hidden), -1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.grad = None
    return model, tok, arm_ids


def sequence_probs(model, tok, arm_ids) -> np.ndarray:
    """The policy's distribution over the 16 answers, ``[4, 4]`` (each step renormalized over
    the arms, as generation samples it)."""
    contexts = _contexts(tok, arm_ids)
    with torch.no_grad():
        rows = []
        for c in contexts:
            p = torch.softmax(model(torch.tensor([c])).logits[0, -1].float(), -1)[arm_ids]
            rows.append((p / p.sum()).double().numpy())
    return rows[0][:, None] * np.stack(rows[1:])


def pair_optimum(ref: np.ndarray, coef, beta: float) -> np.ndarray:
    """``pi*(y1 y2) ∝ ref(y1 y2) exp(PAIR_REWARDS[y1, y2] . coef / beta)``, ``[4, 4]``."""
    p = ref * np.exp(PAIR_REWARDS @ np.asarray(coef) / beta)
    return p / p.sum()
