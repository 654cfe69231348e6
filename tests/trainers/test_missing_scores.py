"""One rule for a missing score (an objective returning ``None``): MO-GRPO and MO-PPO both
renormalize each row's weights over the objectives that scored it, as the linear scalarizer
does, so the same rewards give the same weighted reward in both trainers."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402

from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.objective import Objective, as_text  # noqa: E402
from moalign.tradeoff.scalarize import linear  # noqa: E402

WEIGHTS = [0.3, 0.7]


class Share(Objective):
    """Share of ASCII characters; ``gaps`` leaves every third completion of a batch unscored."""

    def __init__(self, name: str, gaps: bool):
        self.name, self.gaps = name, gaps

    def score(self, prompts, completions, **columns):
        out = []
        for i, c in enumerate(completions):
            text = as_text(c)
            share = sum(ch < "\x80" for ch in text) / len(text) if text else 0.5
            out.append(None if self.gaps and i % 3 == 0 else share + (0.0 if self.gaps else 1.0))
        return out


def objectives():
    return [Share("gappy", True), Share("full", False)]


def grpo_rewards(tmp_path):
    """One MO-GRPO step: the rewards ``[B, K]`` it scored, TRL's weighted reward per completion
    with the weights the trainer handed it, and TRL's logged mean reward."""
    from moalign.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    seen = []

    class Watched(MultiObjectiveGRPOTrainer):
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            # what TRL computes right after this returns
            weighted = (rewards * self.reward_weights.to(rewards.device).unsqueeze(0)).nansum(1)
            seen.append((rewards.clone(), weighted))
            return rewards

    args = MultiObjectiveGRPOConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=6, learning_rate=1e-3, beta=0.0, logging_steps=1, report_to=[],
        save_strategy="no", use_cpu=True, bf16=False, disable_tqdm=True, seed=0, weights=WEIGHTS)
    model, tok = tiny_causal_lm(seed=0)
    data = Dataset.from_dict({"prompt": [f"Say something {i}:" for i in range(8)]})
    trainer = Watched(model, objectives(), args, train_dataset=data, processing_class=tok)
    trainer.train()
    (rewards, weighted), = seen
    return rewards, weighted, trainer.state.log_history[0]["reward"]


def ppo_weighted(tmp_path, rewards: torch.Tensor) -> torch.Tensor:
    """MO-PPO's combined advantage for ``rewards``, with a zero critic, Monte-Carlo returns and
    no KL or whitening: each response token's advantage is its row's weighted reward."""
    from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    args = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=1, batch_size=rewards.shape[0], max_new_tokens=4,
        mini_batch_size=8, ppo_epochs=1, kl_coef=0.0, lam=1.0, gamma=1.0, use_cpu=True,
        whiten_advantages=False, save_final=False, seed=0, weights=WEIGHTS)
    model, tok = tiny_causal_lm(seed=0)
    trainer = MultiObjectivePPOTrainer(model, objectives(), args,
                                       train_dataset=[{"prompt": "Say something:"}] * 8,
                                       processing_class=tok)
    head = trainer.accelerator.unwrap_model(trainer.critic).head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    rollout = trainer.rollout()
    batch = trainer.make_batch(rollout, rewards.to(rollout.response_ids.device))
    mask = rollout.response_mask.bool()
    per_row = [batch["advantages"][b][mask[b]] for b in range(rewards.shape[0])]
    for row in per_row:  # one value along the response
        assert torch.allclose(row, row[0].expand_as(row), atol=1e-6)
    return torch.stack([row[0] for row in per_row])


def test_grpo_and_ppo_scalarize_a_missing_score_alike(tmp_path):
    rewards, grpo, logged = grpo_rewards(tmp_path / "grpo")
    missing = torch.isnan(rewards)
    assert missing[:, 0].any() and not missing[:, 1].any() and not missing.all(1).any()
    expected = linear()(rewards.double(), torch.tensor(WEIGHTS, dtype=torch.float64))
    # a row missing 'gappy' is scored by 'full' alone (its weight renormalized to 1), not 0.7 x
    assert torch.allclose(expected[missing[:, 0]], rewards[missing[:, 0], 1].double())
    assert torch.allclose(grpo.double(), expected, atol=1e-6)
    assert logged == pytest.approx(float(expected.mean()), abs=1e-5)
    ppo = ppo_weighted(tmp_path / "ppo", rewards.float())
    assert torch.allclose(ppo.double(), expected, atol=1e-5)
