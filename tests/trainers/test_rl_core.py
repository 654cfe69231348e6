"""Pure pieces of the online trainers: GAE, clipped losses, KL estimators, trade-off, rollouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moalign.errors import CheckpointError, ConfigError, ObjectiveError, WeightsError
from moalign.tradeoff.tradeoff import TradeOff, check_scored
from moalign.trainers import ppo_core as core
from moalign.trainers.rollout import (
    PromptSampler,
    cut_after_eos,
    encode_prompts,
    sample_responses,
)
from moalign.trainers.value_heads import VectorValueModel

# ------------------------------------------------------------------------------------- GAE


def test_gae_matches_a_hand_computation():
    # one sequence of 3 tokens, terminal reward 1, gamma 0.9, lambda 0.8
    rewards = torch.tensor([[[0.0], [0.0], [1.0]]])
    values = torch.tensor([[[0.5], [0.4], [0.3]]])
    adv, ret = core.gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    # delta_2 = 1 - 0.3 = 0.7                 A_2 = 0.7
    # delta_1 = 0.9 * 0.3 - 0.4 = -0.13       A_1 = -0.13 + 0.72 * 0.7 = 0.374
    # delta_0 = 0.9 * 0.4 - 0.5 = -0.14       A_0 = -0.14 + 0.72 * 0.374 = 0.12928
    assert adv[0, :, 0].tolist() == pytest.approx([0.12928, 0.374, 0.7])
    assert ret[0, :, 0].tolist() == pytest.approx([0.62928, 0.774, 1.0])


def test_gae_channels_are_independent_and_padding_ends_the_episode():
    rewards = torch.tensor([[[0.0, 2.0], [1.0, -1.0], [5.0, 5.0]]])  # last token is padding
    values = torch.tensor([[[0.2, 0.1], [0.6, 0.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0]])
    adv, ret = core.gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # channel 0: A_1 = 1 - 0.6 = 0.4 (the value after the last token is 0, not 9);
    #            A_0 = (0 + 0.6 - 0.2) + 0.5 * 0.4 = 0.6
    # channel 1: A_1 = -1 - 0 = -1;  A_0 = (2 + 0 - 0.1) + 0.5 * -1 = 1.4
    assert adv[0, :, 0].tolist() == pytest.approx([0.6, 0.4, 0.0])
    assert adv[0, :, 1].tolist() == pytest.approx([1.4, -1.0, 0.0])
    assert ret[0, 2].tolist() == [0.0, 0.0]


def test_gae_with_lambda_one_gives_monte_carlo_returns():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(3, 5, 2, generator=g), torch.randn(3, 5, 2, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    _, ret = core.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = (rewards * mask.unsqueeze(-1)).flip(1).cumsum(1).flip(1) * mask.unsqueeze(-1)
    assert torch.allclose(ret, to_go, atol=1e-6)


def test_weighted_sum_of_channel_advantages_is_the_advantage_of_the_weighted_reward():
    g = torch.Generator().manual_seed(1)
    rewards, values = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    mask = (torch.rand(4, 6, generator=g) > 0.3).long().cummin(dim=1).values
    w = torch.tensor([0.2, 0.5, 0.3])
    adv, _ = core.gae(rewards, values, mask, gamma=0.95, lam=0.9)
    adv_w, _ = core.gae((rewards * w).sum(-1, keepdim=True), (values * w).sum(-1, keepdim=True),
                        mask, gamma=0.95, lam=0.9)
    assert torch.allclose((adv * w).sum(-1), adv_w[..., 0], atol=1e-5)


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\[B, T, C\]"):
        core.gae(torch.zeros(2, 3, 1), torch.zeros(2, 3, 2), torch.ones(2, 3))


def test_place_at_last_token():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    out = core.place_at_last_token(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), mask)
    assert out[0, 2].tolist() == [1.0, 2.0] and out[1, 0].tolist() == [3.0, 4.0]
    assert out.abs().sum() == 10.0  # nothing else, and nothing for the empty response


# ------------------------------------------------------------------------- KL estimators


def categorical_pair():
    g = torch.Generator().manual_seed(2)
    return torch.softmax(torch.randn(6, generator=g), 0), torch.softmax(torch.randn(6, generator=g), 0)


def test_k1_and_k3_have_the_exact_kl_as_expectation():
    pi, ref = categorical_pair()
    kl = float((pi * (pi / ref).log()).sum())
    for estimator in ("k1", "k3"):
        per_sample = core.kl_estimate(pi.log(), ref.log(), estimator)
        assert float((pi * per_sample).sum()) == pytest.approx(kl, rel=1e-5)


def test_k3_is_nonnegative_and_k2_is_half_squared_log_ratio():
    pi, ref = categorical_pair()
    assert (core.kl_estimate(pi.log(), ref.log(), "k3") >= 0).all()
    log_ratio = pi.log() - ref.log()
    assert torch.allclose(core.kl_estimate(pi.log(), ref.log(), "k2"), 0.5 * log_ratio ** 2)
    assert core.kl_estimate(pi.log(), pi.log(), "k3").abs().max() == 0


def test_unknown_kl_estimator():
    with pytest.raises(ValueError, match="unknown KL estimator 'k9'"):
        core.kl_estimate(torch.zeros(1), torch.zeros(1), "k9")


# ------------------------------------------------------------------------ clipped losses


def test_clipped_policy_loss_matches_a_hand_computation():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 1.5]]))  # ratios 1.5, 0.5, 1.1, 1.5
    adv = torch.tensor([[1.0, 1.0, -2.0, -1.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, stats = core.clipped_policy_loss(logp, old, adv, mask, clip=0.2)
    # per token max(-A r, -A clip(r)): 1.5 -> max(-1.5, -1.2) = -1.2 (clipped)
    # 0.5 -> max(-0.5, -0.8) = -0.5;  1.1 with A=-2 -> max(2.2, 2.2) = 2.2; 4th token masked
    assert float(loss) == pytest.approx((-1.2 - 0.5 + 2.2) / 3)
    assert float(stats["clipfrac"]) == pytest.approx(1 / 3)


def test_clipped_policy_loss_has_no_gradient_beyond_the_clip():
    logp = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_(True)
    loss, _ = core.clipped_policy_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]),
                                       torch.ones(1, 2), clip=0.2)
    loss.backward()
    assert logp.grad.abs().max() == 0  # both ratios moved past the clip in the advantage's direction


def test_clipped_value_loss_per_head_with_masks():
    old = torch.zeros(1, 2, 2)
    values = torch.tensor([[[0.5, 2.0], [0.1, 0.0]]])
    returns = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[[1, 1], [1, 0]]])  # head 1 unscored on token 1
    mean, per_head = core.clipped_value_loss(values, old, returns, mask, clip=0.2)
    # head 0: token 0 max((0.5-1)^2, (0.2-1)^2) = 0.64; token 1 max(0.01, 0.01) = 0.01
    # head 1: token 0 max((2-0)^2, (0.2-0)^2) = 4
    assert per_head.tolist() == pytest.approx([0.5 * (0.64 + 0.01) / 2, 0.5 * 4.0])
    assert float(mean) == pytest.approx(per_head.mean().item())
    _, unclipped = core.clipped_value_loss(values, old, returns, mask, clip=None)
    assert unclipped[0].item() == pytest.approx(0.5 * (0.25 + 0.01) / 2)


# --------------------------------------------------------------------------- statistics


def test_masked_whiten_and_explained_variance():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    white = core.masked_whiten(x, mask)
    assert white[0, 3] == 0
    assert float(core.masked_mean(white, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(core.masked_var(white, mask)) == pytest.approx(1.0, rel=1e-4)
    assert float(core.explained_variance(x, x, mask)) == pytest.approx(1.0)
    assert float(core.explained_variance(torch.full_like(x, 2.0), x, mask)) == pytest.approx(0.0)
    assert math.isnan(float(core.explained_variance(x, torch.ones_like(x), mask)))


# ---------------------------------------------------------------------------- trade-off


def test_linear_weights_with_multipliers():
    t = TradeOff(["a", "b", "c"], weights=[0.5, 0.5, 0.0], constraints={"c": 0.3},
                 lagrangian_init=1.0)
    t.ask()
    assert t.linear_weights().tolist() == pytest.approx([0.25, 0.25, 0.5])
    t.update_multipliers(torch.tensor([[0.0, 0.0, 1.3]]))  # slack 1.0 -> lambda 1 - 0.05
    lam = 0.95
    assert t.multipliers.tolist() == pytest.approx([0.0, 0.0, lam])
    assert t.linear_weights().tolist() == pytest.approx([0.5 / (1 + lam), 0.5 / (1 + lam), lam / (1 + lam)])
    assert t.metrics() == {"weights/a": 0.5, "weights/b": 0.5, "weights/c": 0.0,
                           "lagrange/c": pytest.approx(lam)}
    # with the batch's mean rewards: their means, and the constraint's slack
    assert t.metrics([0.1, 0.2, 0.5]) == {
        "weights/a": 0.5, "weights/b": 0.5, "weights/c": 0.0, "lagrange/c": pytest.approx(lam),
        "rewards/a/mean": 0.1, "rewards/b/mean": 0.2, "rewards/c/mean": 0.5,
        "constraint/c/slack": pytest.approx(0.2)}
    assert "rewards/a/mean" not in t.metrics([0.1, 0.2, 0.5], log_rewards=False)


def test_tradeoff_state_roundtrip_and_schedule_validation():
    t = TradeOff(["a", "b"], schedule={"name": "anneal", "start": [1, 0], "end": [0, 1], "steps": 2},
                 constraints={"b": 0.5})
    t.ask()
    t.update_multipliers(torch.tensor([[0.0, 0.0]]))
    state = t.state_dict()
    fresh = TradeOff(["a", "b"], schedule={"name": "anneal", "start": [1, 0], "end": [0, 1], "steps": 2},
                     constraints={"b": 0.5})
    fresh.load_state_dict(state)
    assert fresh.multipliers.tolist() == t.multipliers.tolist()
    assert fresh.ask().tolist() == t.ask().tolist() == [0.5, 0.5]

    class Bad:
        def ask(self):
            return np.array([0.9, 0.9])

    with pytest.raises(WeightsError, match="weights from the schedule"):
        TradeOff(["a", "b"], schedule=Bad()).ask()


def test_schedules_that_decide_between_runs_are_refused():
    with pytest.raises(ConfigError, match="'sweep' schedule cannot drive the weights"):
        TradeOff(["a", "b"], schedule="sweep")
    with pytest.raises(ConfigError, match="'mgda'.*per-objective policy gradients"):
        TradeOff(["a", "b"], schedule="mgda")


def test_check_scored_names_the_silent_objective():
    rewards = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    with pytest.raises(ObjectiveError, match="'quiet' returned None for all 2"):
        check_scored(rewards, ["loud", "quiet"])
    check_scored(torch.tensor([[1.0, float("nan")], [0.0, 2.0]]), ["loud", "quiet"])


# ----------------------------------------------------------------------- rollouts, critic


def test_prompt_sampler_epochs_and_state():
    s = PromptSampler(5, seed=3)
    first = s.next_indices(4)
    state = s.state_dict()
    rest = s.next_indices(6)
    assert sorted(first + rest[:1]) == list(range(5))  # one epoch is a permutation
    s2 = PromptSampler(5, seed=3)
    s2.load_state_dict(state)
    assert s2.next_indices(6) == rest


def test_cut_after_eos():
    response = torch.tensor([[4, 9, 5, 9], [4, 5, 6, 7], [8, 4, 8, 4]])
    ids, mask = cut_after_eos(response, eos_ids=[9, 8], pad_id=0)
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ids.tolist() == [[4, 9, 0, 0], [4, 5, 6, 7], [8, 0, 0, 0]]


def test_prompts_are_left_padded_and_sampling_is_seeded():
    from moalign.models import tiny_causal_lm

    model, tok = tiny_causal_lm(0)
    ids, mask = encode_prompts(tok, ["ab", "c", [{"role": "user", "content": "hi"}]],
                               max_length=4)
    assert mask[:2, -3:].tolist() == [[0, 1, 1], [0, 0, 1]]
    assert tok.decode(ids[2][mask[2].bool()]) == "ant\n"  # end of the chat template: 4 bytes
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(sample_responses(model, tok, ids, mask, {"max_new_tokens": 5}))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][0].shape == (3, 5)


def test_vector_critic_starts_at_zero_and_roundtrips(tmp_path):
    from moalign.models import tiny_causal_lm

    model, _ = tiny_causal_lm(0)
    critic = VectorValueModel.from_causal_lm(model, ("a", "b", "kl"))
    ids = torch.tensor([[5, 6, 7]])
    assert critic(ids, torch.ones_like(ids)).shape == (1, 3, 3)
    assert critic(ids).abs().max() == 0
    torch.nn.init.normal_(critic.head.weight)
    critic.save(tmp_path)
    other = VectorValueModel.from_causal_lm(model, ("a", "b", "kl"))
    other.load(tmp_path)
    assert torch.equal(other(ids), critic(ids))
    # the critic's backbone is a copy: training it leaves the policy alone
    assert critic.backbone is not model.model
    with pytest.raises(CheckpointError, match=r"heads \['a', 'b', 'kl'\]"):
        VectorValueModel.from_causal_lm(model, ("a", "kl")).load(tmp_path)


def test_whitening_with_summed_moments_equals_whitening_the_whole_batch():
    g = torch.Generator().manual_seed(5)
    x, mask = torch.randn(6, 4, generator=g), (torch.rand(6, 4, generator=g) > 0.3).long()
    whole = core.masked_whiten(x, mask)
    moments = core.masked_moments(x[:3], mask[:3]) + core.masked_moments(x[3:], mask[3:])
    halves = torch.cat([core.masked_whiten(x[:3], mask[:3], moments=moments),
                        core.masked_whiten(x[3:], mask[3:], moments=moments)])
    assert torch.allclose(whole, halves, atol=1e-6)
    assert not torch.allclose(core.masked_whiten(x[:3], mask[:3]), whole[:3])
