"""MO-PPO with a non-linear scalarizer follows the gradient of the scalarized objectives.

Tchebycheff is a function of the objectives, ``S(J) = -max_k w_k (z*_k - J_k)`` with ``J_k`` the
expected reward of objective k under the policy. On the one-token bandit ``J(theta) = sum_y
pi_theta(y) r(y)`` is exact, so the true gradient ``grad_theta S(J(theta))`` is computed by
autograd. At the starting policy (policy = reference, critic 0) the KL term has zero gradient,
and the trainer's advantage of a response depends on its arm only, so the expected policy
gradient is ``grad_theta sum_y pi_theta(y) A(y)`` exactly, with ``A`` read from the trainer's
batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")

from moalign.errors import ConfigError  # noqa: E402
from tests.support import rl_bandit as bandit  # noqa: E402

UTOPIA = bandit.REWARDS.max(axis=0)  # (1, 1): the best reward of each objective


def flat_grad(value: torch.Tensor, params) -> torch.Tensor:
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def arm_advantages(trainer, samples: int) -> np.ndarray:
    """The advantage the trainer's batch gives each arm (the same for every sample of an arm)."""
    rollout = trainer.rollout()
    batch = trainer.make_batch(rollout, trainer.score(rollout))
    adv = batch["advantages"][:, 0].double().numpy()
    arms = np.array([bandit.ARMS.index(c) for c in rollout.completions])
    assert len(arms) == samples and set(arms) == set(range(4))
    out = np.zeros(4)
    for y in range(4):
        values = adv[arms == y]
        assert np.ptp(values) < 1e-6, (y, values)
        out[y] = values[0]
    return out


def cosines(tmp_path, weights, scalarizer, samples=1024):
    """Cosine of the trainer's expected policy gradient with the true gradient of Tchebycheff
    and with the gradient of the expected per-response Tchebycheff ``E[S(r)]``."""
    trainer, _, (tok, arm_ids) = bandit.ppo_trainer(
        tmp_path, steps=1, weights=list(weights), scalarizer=scalarizer,
        num_samples_per_prompt=samples)
    adv = torch.as_tensor(arm_advantages(trainer, samples))
    policy = trainer.accelerator.unwrap_model(trainer.policy)
    params = [p for p in policy.parameters() if p.requires_grad]
    w, z = torch.as_tensor(weights, dtype=torch.float64), torch.as_tensor(UTOPIA)
    rewards = torch.as_tensor(bandit.REWARDS)

    def probs():
        return bandit.arm_distribution(policy, tok, arm_ids).double()

    ours = flat_grad(probs() @ adv, params)
    true = flat_grad(-(w * (z - probs() @ rewards)).max(), params)
    per_response = flat_grad(probs() @ -(w * (z - rewards)).max(dim=1).values, params)
    cos = torch.nn.functional.cosine_similarity
    return float(cos(ours, true, dim=0)), float(cos(per_response, true, dim=0)), trainer


@pytest.mark.parametrize("weights", [(0.7, 0.3), (0.3, 0.7), (0.5, 0.5)])
def test_tchebycheff_policy_gradient_is_the_true_gradient_at_the_start(tmp_path, weights):
    cos_true, cos_esr, trainer = cosines(tmp_path, weights, "tchebycheff")
    assert cos_true >= 0.99, cos_true
    # the online ideal point is the running maximum of the rewards: the utopia point here
    assert trainer.tradeoff.scalarizer.ideal.tolist() == UTOPIA.tolist()
    # negative control: scalarizing each response's rewards (E[S(r)], what per-token
    # Tchebycheff on the advantages amounts to here) points elsewhere, and fails the check
    assert cos_esr < 0.99, cos_esr


def test_a_fixed_ideal_point_gives_the_same_direction(tmp_path):
    cos_true, _, _ = cosines(tmp_path, (0.7, 0.3),
                             {"name": "tchebycheff", "ideal": UTOPIA.tolist()})
    assert cos_true >= 0.99, cos_true


def test_group_normalizer_before_a_non_linear_scalarizer_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="mean rewards.*normalize 'running'"):
        bandit.ppo_trainer(tmp_path, steps=1, scalarizer="group_normalized_tchebycheff")


def test_unscored_entries_are_left_out_like_the_linear_scalarizer_does():
    from moalign.scalarize import linear
    from moalign.trainers.ppo_core import weighted_channels

    adv = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [float("nan"), float("nan")]])
    w = torch.tensor([0.25, 0.75])
    got = weighted_channels(adv, w)
    assert torch.allclose(got[:2], linear()(adv[:2], w))  # [1.75, 3.0]
    assert got[2] == 0.0
    # coefficients off the simplex keep their total: 2 * the weighted mean over scored entries
    assert torch.allclose(weighted_channels(adv, 2 * w)[:2], 2 * linear()(adv[:2], w))
