"""Conditioned MO-GRPO and MO-PPO (``conditioning="prompt"``): each prompt shows its own weights
and its completions are rewarded with those weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402

from moalign.errors import ConfigError  # noqa: E402
from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.objective import Objective, as_text  # noqa: E402
from moalign.tradeoff.conditioning import CONDITION_HEADER, WEIGHTS_COLUMN  # noqa: E402

NAMES = ("ascii", "other")


class Share(Objective):
    """Share of ASCII (or of the other) characters in the reply."""

    def __init__(self, name: str, ascii_: bool):
        self.name, self.ascii = name, ascii_

    def score(self, prompts, completions, **columns):
        out = []
        for c in completions:
            text = as_text(c)
            share = sum(ch < "\x80" for ch in text) / len(text) if text else 0.5
            out.append(share if self.ascii else 1.0 - share)
        return out


def objectives():
    return [Share("ascii", True), Share("other", False)]


def prompts(n=32):
    return Dataset.from_dict({"prompt": [f"Say something {i}:" for i in range(n)]})


def _grpo(tmp_path, steps=3, eval_dataset=None, **overrides):
    from moalign.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    class Watched(MultiObjectiveGRPOTrainer):
        seen: list = []

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self.seen.append((rewards.clone(), [x[WEIGHTS_COLUMN] for x in inputs],
                              list(prompts)))
            return rewards

    args = MultiObjectiveGRPOConfig(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=8,
        num_generations=4, max_completion_length=8, learning_rate=1e-2, beta=0.0,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, bf16=False,
        disable_tqdm=True, seed=0, conditioning="prompt", **overrides)
    model, tok = tiny_causal_lm(seed=0)
    trainer = Watched(model, objectives(), args, train_dataset=prompts(),
                      eval_dataset=eval_dataset, processing_class=tok)
    trainer.seen = []
    return trainer


def test_conditioned_grpo_rewards_each_completion_with_its_prompts_weights(tmp_path):
    trainer = _grpo(tmp_path)
    first = trainer.train_dataset[0]
    assert WEIGHTS_COLUMN in trainer.train_dataset.column_names
    weights = np.asarray(trainer.train_dataset[WEIGHTS_COLUMN])
    assert np.allclose(weights.sum(1), 1) and weights[:, 0].std() > 0.1  # Dirichlet draws
    assert first["prompt"].startswith(f"{CONDITION_HEADER} ascii={weights[0][0]:.2f}, other=")
    drawn = dict(zip(trainer.train_dataset["prompt"], trainer.train_dataset[WEIGHTS_COLUMN]))
    trainer.train()
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == len(trainer.seen) == 3
    for entry, (rewards, rows, shown) in zip(logged, trainer.seen):
        w = torch.tensor(rows, dtype=torch.float32)
        for text, row in zip(shown, rows):  # every completion's prompt shows its weights
            assert f"ascii={row[0]:.2f}, other={row[1]:.2f}" in as_text(text)
            assert row == drawn[as_text(text)]  # exactly the weights drawn for that prompt
        expected = float((rewards * w).sum(1).mean())  # sum_k w_bk r_bk, averaged
        assert entry["reward"] == pytest.approx(expected, abs=1e-6)
        uniform = float(rewards.mean(1).mean())
        assert abs(expected - uniform) > 1e-4  # the per-prompt weights made a difference
        assert entry["weights/ascii"] == pytest.approx(float(w[:, 0].mean()), abs=1e-6)


def test_conditioned_grpo_evaluates_with_the_eval_prompts_own_weights(tmp_path):
    # an eval batch (4 completions) smaller than the training one (8): the training batch's
    # per-completion weights can neither be used nor broadcast
    evals = Dataset.from_dict({"prompt": [f"Write a word {i}:" for i in range(3)]})
    trainer = _grpo(tmp_path, steps=1, eval_dataset=evals, per_device_eval_batch_size=4)
    weights = np.asarray(trainer.eval_dataset[WEIGHTS_COLUMN])
    assert np.allclose(weights.sum(1), 1) and weights[:, 0].std() > 0.05  # their own draws
    assert not np.allclose(weights, np.asarray(trainer.train_dataset[WEIGHTS_COLUMN])[:3])
    for row, w in zip(trainer.eval_dataset, weights):
        assert row["prompt"].startswith(f"{CONDITION_HEADER} ascii={w[0]:.2f}, other={w[1]:.2f}")
    trainer.train()
    trainer.seen = []
    metrics = trainer.evaluate()
    assert len(trainer.seen) == 3  # one prompt x 4 generations per eval batch
    batch_rewards, batch_weights = [], []
    for rewards, rows, shown in trainer.seen:
        assert rewards.shape[0] == 4
        w = torch.tensor(rows, dtype=torch.float32)
        row = next(i for i, p in enumerate(evals["prompt"]) if p in shown[0])
        assert torch.allclose(w, torch.tensor(weights[row], dtype=torch.float32).expand(4, 2))
        batch_rewards.append(float((rewards * w).sum(1).mean()))
        batch_weights.append(float(w[:, 0].mean()))
    assert metrics["eval_reward"] == pytest.approx(np.mean(batch_rewards), abs=1e-6)
    assert metrics["eval_weights/ascii"] == pytest.approx(np.mean(batch_weights), abs=1e-6)
    assert sorted(batch_weights) == pytest.approx(sorted(weights[:, 0]), abs=1e-6)


def test_conditioned_ppo_advantages_use_each_prompts_weights(tmp_path):
    from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    args = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=1, batch_size=4, num_samples_per_prompt=2,
        max_new_tokens=6, mini_batch_size=8, ppo_epochs=1, kl_coef=0.0, use_cpu=True,
        whiten_advantages=False, save_final=False, conditioning="prompt", seed=0)
    model, tok = tiny_causal_lm(seed=0)
    trainer = MultiObjectivePPOTrainer(model, objectives(), args, train_dataset=prompts(),
                                       processing_class=tok)
    assert all(r["prompt"].startswith(CONDITION_HEADER) for r in trainer.rows)
    rollout = trainer.rollout()
    rewards = trainer.score(rollout)
    batch = trainer.make_batch(rollout, rewards)
    w = torch.tensor(rollout.columns[WEIGHTS_COLUMN], dtype=torch.float32)
    assert w[:, 0].std() > 0.05  # different prompts, different weights
    mask = rollout.response_mask.bool()
    objective_adv = (batch["returns"] - batch["old_values"])[..., :2]  # GAE: A = R - V
    expected = (objective_adv * w.unsqueeze(1)).sum(-1)
    assert torch.allclose(batch["advantages"][mask], expected[mask], atol=1e-5)
    drawn = {r["prompt"]: r[WEIGHTS_COLUMN] for r in trainer.rows}
    assert [drawn[p] for p in rollout.prompts] == rollout.columns[WEIGHTS_COLUMN]
    stepped = []
    trainer.rollout = lambda rollout=trainer.rollout: stepped.append(rollout()) or stepped[-1]
    metrics = trainer.train_step()
    (used,) = stepped
    w = np.asarray([drawn[p] for p in used.prompts])  # the weights of the prompts sampled
    assert np.asarray(used.columns[WEIGHTS_COLUMN]).tolist() == w.tolist()
    assert metrics["weights/ascii"] == pytest.approx(w[:, 0].mean(), abs=1e-9)
    assert metrics["weights/other"] == pytest.approx(w[:, 1].mean(), abs=1e-9)


def test_conditioned_ppo_logs_the_weights_of_every_process(tmp_path, monkeypatch):
    """weights/<k> is the mean over the global batch: a second process is stood in for by a
    gather that appends its rows (all weight on 'other')."""
    from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    args = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=1, batch_size=4, num_samples_per_prompt=1,
        max_new_tokens=4, mini_batch_size=4, ppo_epochs=1, kl_coef=0.0, use_cpu=True,
        whiten_advantages=False, save_final=False, conditioning="prompt", seed=0)
    model, tok = tiny_causal_lm(seed=0)
    trainer = MultiObjectivePPOTrainer(model, objectives(), args, train_dataset=prompts(),
                                       processing_class=tok)
    rollout = trainer.rollout()
    rewards = trainer.score(rollout)
    local = torch.tensor(rollout.columns[WEIGHTS_COLUMN], dtype=torch.float64)
    other = torch.tensor([[0.0, 1.0]] * 4, dtype=torch.float64)
    monkeypatch.setattr(trainer.accelerator, "gather",
                        lambda t: torch.cat([t, other.to(t.device, t.dtype)]))
    trainer.make_batch(rollout, rewards)
    logged = trainer.tradeoff.metrics()
    expected = torch.cat([local, other]).mean(0)
    assert logged["weights/ascii"] == pytest.approx(float(expected[0]), abs=1e-9)
    assert logged["weights/other"] == pytest.approx(float(expected[1]), abs=1e-9)
    assert float(local[:, 0].mean()) != pytest.approx(float(expected[0]), abs=1e-3)


@pytest.mark.parametrize("changes, match", [
    ({"weights": [0.5, 0.5]}, "conditioning draws a weight vector per prompt"),
    ({"condition_style": "suffix"}, "condition_style"),
    ({"dirichlet_alpha": 0}, "dirichlet_alpha"),
    ({"conditioning": "reply"}, "'conditioning' must be 'prompt'"),
])
def test_conditioning_fields_are_checked(tmp_path, changes, match):
    from moalign.trainers.grpo import MultiObjectiveGRPOConfig
    from moalign.trainers.ppo import MultiObjectivePPOConfig

    values = {"conditioning": "prompt", **changes}
    with pytest.raises(ConfigError, match=match):
        MultiObjectivePPOConfig(output_dir=str(tmp_path), **values)
    with pytest.raises(ConfigError, match=match):
        MultiObjectiveGRPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **values)
    with pytest.raises(ConfigError, match="scalarizer: linear"):
        MultiObjectivePPOConfig(conditioning="prompt", scalarizer="tchebycheff")


def test_the_conditioning_fields_keep_the_configs_positional_order(tmp_path):
    from moalign.trainers.grpo import MultiObjectiveGRPOConfig
    from moalign.trainers.ppo import MultiObjectivePPOConfig

    assert MultiObjectivePPOConfig(str(tmp_path)).output_dir == str(tmp_path)
    assert MultiObjectiveGRPOConfig(str(tmp_path), use_cpu=True).output_dir == str(tmp_path)
