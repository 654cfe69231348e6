"""MO-PPO and MO-GRPO reach the exact KL-regularized optimum of the bandits, within TV 0.02.

Each check comes with negative controls that fail the same check (``rl_bandit.
assert_only_the_optimum_passes``): the optimum of a KL coefficient 1.6x off, of weights 0.1
off, and a policy 60% or 80% of the way there. The trainers reach TV 0.003-0.008 here.

- one-token bandit, PPO (Monte-Carlo returns) and GRPO (TRL's loss; its fixed point has the
  coefficient ``rl_bandit.GRPO_BETA``, see there), two weight vectors each;
- two-token bandit, PPO with GAE (lambda 0.9), whitened advantages and value clipping: the
  first token's credit comes through the critic;
- the Lagrangian combination at a fixed multiplier: Safe RLHF's normalized form
  ``(r_first + lambda r_second) / (1 + lambda)`` is reached, the plain ``r_first + lambda
  r_second`` is not (the multiplier is held at 1 by a negligible dual step size).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("accelerate")
pytest.importorskip("trl")

import moalign.trainers.ppo_core as ppo_core  # noqa: E402
from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer  # noqa: E402
from tests.support import rl_bandit as bandit  # noqa: E402

pytestmark = pytest.mark.slow  # each test trains PPO / GRPO until it reaches the optimum

BETA = bandit.BETA
FROZEN = 1e-12  # dual-ascent step size that keeps a multiplier where it starts


@pytest.fixture(scope="module")
def reference():
    model, tok, arm_ids = bandit.reference_policy()
    return bandit.arm_probs(model, tok, arm_ids)


def test_the_check_has_power(reference):
    """The check passes the optimum itself and fails every negative control."""
    for w in ([0.8, 0.2], [0.2, 0.8]):
        bandit.assert_only_the_optimum_passes(bandit.optimum(reference, w, BETA), reference, w, BETA)
    with pytest.raises(AssertionError):  # a KL coefficient off by 1.6x does not pass
        bandit.assert_only_the_optimum_passes(bandit.optimum(reference, [0.8, 0.2], 1.6 * BETA),
                                              reference, [0.8, 0.2], BETA)


def test_ppo_reaches_the_optimum_for_two_weight_vectors(tmp_path):
    finals = {}
    for w in ([0.8, 0.2], [0.2, 0.8]):
        trainer, ref, handles = bandit.ppo_trainer(tmp_path / str(w[0]), steps=40, weights=w)
        trainer.train()
        finals[w[0]] = bandit.ppo_policy_probs(trainer, handles)
        bandit.assert_only_the_optimum_passes(finals[w[0]], ref, w, BETA)
    assert finals[0.8][0] > finals[0.2][0] + 0.3
    assert finals[0.2][1] > finals[0.8][1] + 0.3


def test_grpo_reaches_the_optimum_for_two_weight_vectors(tmp_path):
    for w in ([0.8, 0.2], [0.2, 0.8]):
        trainer, ref, handles = bandit.grpo_trainer(tmp_path / str(w[0]), steps=100, weights=w)
        trainer.train()
        final = bandit.grpo_policy_probs(trainer, handles)
        bandit.assert_only_the_optimum_passes(final, ref, w, bandit.GRPO_BETA)


def test_ppo_with_gae_whitening_and_value_clipping_reaches_the_two_token_optimum(
        tmp_path, monkeypatch):
    clipped = []
    original = ppo_core.clipped_value_loss

    def watch(values, old_values, returns, mask, clip=0.2):
        # share of (token, head) entries where the clipped error is the one used
        m = mask.unsqueeze(-1).expand_as(values) if mask.dim() == 2 else mask
        inside = old_values + (values - old_values).clamp(-clip, clip)
        active = ((inside - returns) ** 2 > (values - returns) ** 2) & m.bool()
        clipped.append(float(active.sum()) / max(float(m.sum()), 1.0))
        return original(values, old_values, returns, mask, clip)

    monkeypatch.setattr(ppo_core, "clipped_value_loss", watch)
    model, tok, arm_ids = bandit.two_token_reference()
    ref = bandit.sequence_probs(model, tok, arm_ids)
    w = [0.8, 0.2]
    config = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=80, batch_size=1, num_samples_per_prompt=128,
        max_new_tokens=2, mini_batch_size=128, ppo_epochs=2, use_cpu=True, learning_rate=3e-3,
        critic_learning_rate=1e-2, kl_coef=BETA, lam=0.9, gamma=1.0, whiten_advantages=True,
        cliprange_value=0.2, weights=w, save_final=False, lr_scheduler_type="linear",
        generation_kwargs={"suppress_tokens": bandit.suppressed(tok, arm_ids)})
    trainer = MultiObjectivePPOTrainer(model, bandit.pair_objectives(), config,
                                       train_dataset=[{"prompt": bandit.PROMPT}],
                                       processing_class=tok)
    trainer.train()
    final = bandit.sequence_probs(trainer.accelerator.unwrap_model(trainer.policy), tok, arm_ids)
    bandit.assert_only_the_optimum_passes(
        final, ref, w, BETA, optimum_of=lambda c, b: bandit.pair_optimum(ref, c, b))
    assert max(clipped) > 0.1  # value clipping did bind (early, while the critic learns)
    # the first token's choice depends on what follows it: its optimum is not the one-token
    # tilt of its own reward, which the same check rejects
    myopic = bandit.optimum(ref.sum(axis=1), w, BETA)
    assert not bandit.at_optimum(final.sum(axis=1), myopic)


def lagrangian_optimum(ref, lam, beta, normalized):
    coef = np.array([1.0, lam]) / (1 + lam if normalized else 1.0)
    return bandit.optimum(ref, coef, beta)


def test_ppo_lagrangian_trains_on_the_normalized_combination(tmp_path):
    trainer, ref, handles = bandit.ppo_trainer(
        tmp_path, steps=40, weights=[1.0, 0.0], constraints={"second": 0.9},
        lagrangian_init=1.0, lagrangian_lr=FROZEN)
    trainer.train()
    assert trainer.tradeoff.multipliers[1] == pytest.approx(1.0, abs=1e-6)
    final = bandit.ppo_policy_probs(trainer, handles)
    normalized = lagrangian_optimum(ref, 1.0, BETA, normalized=True)
    plain = lagrangian_optimum(ref, 1.0, BETA, normalized=False)
    assert bandit.at_optimum(final, normalized), bandit.total_variation(final, normalized)
    assert not bandit.at_optimum(final, plain), bandit.total_variation(final, plain)
    assert bandit.total_variation(normalized, plain) > 0.04  # the two forms are far apart


def test_grpo_lagrangian_trains_on_the_normalized_combination(tmp_path):
    trainer, ref, handles = bandit.grpo_trainer(
        tmp_path, steps=100, weights=[1.0, 0.0], constraints={"second": 0.9},
        lagrangian_init=1.0, lagrangian_lr=FROZEN)
    trainer.train()
    assert trainer.reward_weights.tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    final = bandit.grpo_policy_probs(trainer, handles)
    beta = bandit.GRPO_BETA
    assert bandit.at_optimum(final, lagrangian_optimum(ref, 1.0, beta, normalized=True))
    assert not bandit.at_optimum(final, lagrangian_optimum(ref, 1.0, beta, normalized=False))
