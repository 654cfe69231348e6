"""MO-PPO: exact optimum of a bandit, PPO-Lagrangian, the vector critic, resume, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

pytest.importorskip("accelerate")

from moalign.errors import ObjectiveError, UnknownObjectiveError, WeightsError  # noqa: E402
from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.objective import Objective  # noqa: E402
from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer  # noqa: E402
from tests.support import rl_bandit as bandit  # noqa: E402

BETA = bandit.BETA
bandit_trainer = bandit.ppo_trainer
policy_probs = bandit.ppo_policy_probs


def test_reference_policy_is_the_fitted_distribution():
    model, tok, arm_ids = bandit.reference_policy()
    assert bandit.total_variation(bandit.arm_probs(model, tok, arm_ids), bandit.REF_TARGET) < 0.01


def expected(probs: np.ndarray, column: int) -> float:
    return float(probs @ bandit.REWARDS[:, column])


@pytest.mark.slow
def test_ppo_lagrangian_satisfies_a_binding_constraint(tmp_path):
    unconstrained = bandit.optimum(bandit.REF_TARGET, [1.0, 0.0], BETA)
    threshold = 0.4
    assert expected(unconstrained, 1) < threshold - 0.15  # the constraint binds
    trainer, _, handles = bandit_trainer(
        tmp_path, steps=80, weights=[1.0, 0.0], constraints={"second": threshold},
        lagrangian_lr=0.2)
    trainer.train()
    final = policy_probs(trainer, handles)
    assert expected(final, 1) > threshold - 0.05
    # the multiplier approaches the dual optimum: E[second] = threshold under
    # pi_lambda ∝ pi_ref exp((r_first + lambda r_second) / ((1 + lambda) beta))
    lam_star = brentq(lambda lam: expected(bandit.optimum(
        bandit.REF_TARGET, np.array([1.0, lam]) / (1 + lam), BETA), 1) - threshold, 0.0, 10.0)
    assert abs(trainer.tradeoff.multipliers[1] - lam_star) < 0.15, (trainer.tradeoff.multipliers, lam_star)
    assert trainer.log_history[-1]["lagrange/second"] == pytest.approx(trainer.tradeoff.multipliers[1])
    # the first objective is still pursued: better than the reference policy's
    assert expected(final, 0) > expected(bandit.REF_TARGET, 0)


def test_ppo_lagrangian_multiplier_vanishes_for_a_loose_constraint(tmp_path):
    trainer, _, _ = bandit_trainer(
        tmp_path, steps=20, weights=[1.0, 0.0], constraints={"second": 0.05},
        lagrangian_lr=0.5, lagrangian_init=1.0)
    trainer.train()
    assert trainer.tradeoff.multipliers[1] == 0.0
    assert trainer.log_history[0]["lagrange/second"] < 1.0


class PromptIs(Objective):
    """1 when the prompt is ``word`` else 0: a return the critic can predict from the prompt."""

    def __init__(self, word: str, value: float):
        self.word, self.value = word, value

    @property
    def __name__(self) -> str:
        return f"is_{self.word}"

    def score(self, prompts, completions, **columns):
        return [self.value if p == self.word else 0.0 for p in prompts]


def test_each_value_head_predicts_its_own_objective(tmp_path):
    model, tok = tiny_causal_lm(1)
    config = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=25, batch_size=8, max_new_tokens=3,
        mini_batch_size=8, ppo_epochs=2, use_cpu=True, learning_rate=1e-4,
        critic_learning_rate=3e-3, lam=1.0, kl_coef=0.0, save_final=False)
    trainer = MultiObjectivePPOTrainer(
        model, [PromptIs("left", 1.0), PromptIs("right", 2.0)], config,
        train_dataset=[{"prompt": "left"}, {"prompt": "right"}], processing_class=tok)
    trainer.train()
    rollout = trainer.rollout()
    rewards = trainer.score(rollout)
    with torch.no_grad():
        values = trainer.values(rollout)
    mask = rollout.response_mask.bool()
    for k in range(2):
        # gamma = 1 and a terminal reward: the return at every response token is the reward
        returns = rewards[:, k:k + 1].expand_as(mask)[mask].numpy()
        predicted = values[..., k][mask].numpy()
        swapped = values[..., 1 - k][mask].numpy()
        ev = 1 - np.var(returns - predicted) / np.var(returns)
        assert ev > 0.5, (k, ev)
        assert 1 - np.var(returns - swapped) / np.var(returns) < 0  # heads are not interchangeable


class Crash(Exception):
    pass


def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(tmp_path):
    def trainer_for(output):
        trainer, _, _ = bandit_trainer(output, steps=4, weights=[0.5, 0.5],
                                       constraints={"second": 0.5}, save_steps=2,
                                       num_samples_per_prompt=16, mini_batch_size=8)
        return trainer

    straight = trainer_for(tmp_path / "a")
    straight.train()

    def crash_at_step_3(trainer, metrics):
        if trainer.step == 3:
            raise Crash

    crashed = trainer_for(tmp_path / "b")
    crashed.callbacks.append(crash_at_step_3)
    with pytest.raises(Crash):
        crashed.train()
    resumed = trainer_for(tmp_path / "b")
    resumed.train(resume_from_checkpoint=True)  # the latest: checkpoint-2
    assert resumed.step == 4
    for module in ("policy", "critic"):
        a = getattr(straight, module).state_dict()
        b = getattr(resumed, module).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), (module, key)
    assert resumed.tradeoff.multipliers.tolist() == straight.tradeoff.multipliers.tolist()
    for key in ("rewards/first/mean", "loss/policy", "value/second/loss", "lagrange/second"):
        assert [m[key] for m in resumed.log_history] == [m[key] for m in straight.log_history]


def test_objective_silent_on_a_whole_batch_is_an_error(tmp_path):
    trainer, _, _ = bandit_trainer(tmp_path, steps=1, silent_second=True)
    with pytest.raises(ObjectiveError, match="'second' returned None for all 64 completions"):
        trainer.train()


def test_weights_off_the_simplex_are_an_error():
    with pytest.raises(WeightsError, match="sum to 1"):
        MultiObjectivePPOConfig(weights=[0.7, 0.7])
    with pytest.raises(WeightsError, match="non-negative"):
        MultiObjectivePPOConfig(weights=[1.5, -0.5])


def test_weights_of_the_wrong_length_are_an_error(tmp_path):
    model, tok = tiny_causal_lm(0)
    with pytest.raises(WeightsError, match="3 entries but there are 2 objectives"):
        MultiObjectivePPOTrainer(model, bandit.objectives(),
                                 MultiObjectivePPOConfig(weights=[0.2, 0.3, 0.5], use_cpu=True),
                                 train_dataset=[{"prompt": "x"}], processing_class=tok)


def test_constraint_on_an_unknown_objective_is_an_error():
    model, tok = tiny_causal_lm(0)
    with pytest.raises(UnknownObjectiveError, match="'safety'.*first, second"):
        MultiObjectivePPOTrainer(model, bandit.objectives(),
                                 MultiObjectivePPOConfig(constraints={"safety": 0.5}, use_cpu=True),
                                 train_dataset=[{"prompt": "x"}], processing_class=tok)


def test_lora_policy_uses_the_adapter_disabled_base_as_reference(tmp_path):
    from peft import LoraConfig

    model, tok = tiny_causal_lm(2)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    config = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=2, batch_size=4, max_new_tokens=3, mini_batch_size=4,
        ppo_epochs=1, use_cpu=True, learning_rate=5e-2, kl_coef=0.1, save_final=True)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    trainer = MultiObjectivePPOTrainer(
        model, [PromptIs("left", 1.0), PromptIs("right", 1.0)], config,
        train_dataset=[{"prompt": "left"}, {"prompt": "right"}], processing_class=tok,
        peft_config=lora)
    assert trainer.ref_model is None
    trainer.train()
    policy = trainer.accelerator.unwrap_model(trainer.policy)
    for key, value in policy.get_base_model().state_dict().items():
        if "lora_" not in key:
            assert torch.equal(value, base[key.replace(".base_layer", "")]), key
    assert trainer.log_history[-1]["kl"] != 0  # the adapter moved the policy off its base
    assert (tmp_path / "checkpoint-2" / "adapter_model.safetensors").is_file()


def test_sequence_and_token_kl_penalties_have_the_same_total(tmp_path):
    model, tok = tiny_causal_lm(3)
    ref = copy.deepcopy(model)
    with torch.no_grad():
        model.lm_head.weight.add_(0.5 * torch.randn_like(model.lm_head.weight))
    config = MultiObjectivePPOConfig(output_dir=str(tmp_path), batch_size=4, max_new_tokens=4,
                                     use_cpu=True, kl_coef=0.1, lam=1.0, gamma=1.0)
    trainer = MultiObjectivePPOTrainer(
        model, [PromptIs("left", 1.0)], config, train_dataset=[{"prompt": "left"}],
        processing_class=tok, ref_model=ref)
    rollout = trainer.rollout()
    rewards = trainer.score(rollout)
    token = trainer.make_batch(rollout, rewards)["returns"][..., 1]
    trainer.args.kl_penalty = "sequence"
    sequence = trainer.make_batch(rollout, rewards)["returns"][..., 1]
    mask = rollout.response_mask.bool()
    total = token[:, 0]
    assert total.abs().max() > 0
    assert torch.allclose(sequence[:, 0], total, atol=1e-6)
    # per token: the KL still to come; per sequence: the whole sum, seen from every token
    assert torch.allclose(sequence[mask], total.unsqueeze(1).expand_as(mask)[mask], atol=1e-6)
    assert not torch.allclose(token[mask], sequence[mask])


def advantage_trainer(tmp_path, scalarizer=None, **overrides):
    model, tok = tiny_causal_lm(4)
    ref = copy.deepcopy(model)
    with torch.no_grad():
        model.lm_head.weight.add_(0.3 * torch.randn_like(model.lm_head.weight))
    config = MultiObjectivePPOConfig(**{**dict(
        output_dir=str(tmp_path), batch_size=6, max_new_tokens=4, use_cpu=True, kl_coef=0.2,
        lam=0.9, gamma=0.95, whiten_advantages=False, weights=[0.3, 0.7],
        constraints={"is_right": 0.9}, lagrangian_init=0.5), **overrides})
    trainer = MultiObjectivePPOTrainer(
        model, [PromptIs("left", 1.0), PromptIs("right", 2.0)], config,
        train_dataset=[{"prompt": "left"}, {"prompt": "right"}], processing_class=tok,
        ref_model=ref, scalarizer=scalarizer)
    trainer.tradeoff.ask()
    rollout = trainer.rollout()
    rewards = trainer.score(rollout)
    batch = trainer.make_batch(rollout, rewards)
    tokens = rollout.response_mask.bool()
    adv = (batch["returns"] - batch["old_values"])[tokens]  # per channel: objectives, then KL
    return batch["advantages"][tokens], adv, rewards


def test_advantages_are_the_weighted_objective_advantages_minus_the_kl_term(tmp_path):
    got, adv, _ = advantage_trainer(tmp_path)
    # linear (w . A), then Safe RLHF's (s + lambda A_right) / (1 + lambda), then the KL channel
    expected = (0.3 * adv[:, 0] + 0.7 * adv[:, 1] + 0.5 * adv[:, 1]) / 1.5 - 0.2 * adv[:, 2]
    assert torch.allclose(got, expected, atol=1e-5)


def test_tchebycheff_weights_the_advantages_by_its_gradient_at_the_mean_rewards(tmp_path):
    from moalign.scalarize import tchebycheff

    got, adv, rewards = advantage_trainer(tmp_path, scalarizer=tchebycheff(ideal=[1.0, 2.0]))
    # S(J) = -max_k w_k (z_k - J_k) at the batch means J: dS/dJ = w_k* at the largest term
    J = rewards.double().mean(dim=0)
    terms = torch.tensor([0.3, 0.7], dtype=torch.float64) * (torch.tensor([1.0, 2.0]) - J)
    assert abs(float(terms[0] - terms[1])) > 0.05  # away from the kink
    g = torch.zeros(2, dtype=torch.float64)
    g[int(terms.argmax())] = [0.3, 0.7][int(terms.argmax())]
    coef = (g + torch.tensor([0.0, 0.5], dtype=torch.float64)) / 1.5  # lambda = 0.5 on is_right
    expected = adv[:, :2].double() @ coef - 0.2 * adv[:, 2].double()
    assert torch.allclose(got.double(), expected, atol=1e-5)


def test_the_constrained_example_config_is_valid():
    import dataclasses
    from pathlib import Path

    from moalign.config import build_config, load_yaml
    from moalign.tradeoff.tradeoff import TradeOff

    data = load_yaml(Path(__file__).parents[2] / "examples" / "configs" / "ppo_constrained.yaml")
    assert data.pop("trainer") == "ppo"
    run_keys = ("model", "dataset", "objectives", "output_dir", "lora", "max_examples",
                "max_prompt_tokens")
    args = build_config(MultiObjectivePPOConfig, {k: v for k, v in data.items() if k not in run_keys})
    assert dataclasses.asdict(args)["constraints"] == {"harmlessness": 0.0}
    trade = TradeOff(data["objectives"], weights=args.weights, constraints=args.constraints)
    assert trade.linear_weights().tolist() == [1.0, 0.0]  # multiplier 0 at the start
