"""MO-GRPO: TRL's GRPO with scheduled weights, constraints and per-objective metrics."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from moalign.errors import (  # noqa: E402
    ConfigError,
    DataError,
    ObjectiveError,
    UnknownObjectiveError,
    WeightsError,
)
from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.schedule import AnnealedWeights  # noqa: E402
from moalign.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer  # noqa: E402
from tests.support import rl_bandit as bandit  # noqa: E402

BETA = bandit.BETA
G = bandit.G
settings = bandit.grpo_settings
dataset = bandit.prompts_dataset
bandit_grpo = bandit.grpo_trainer
policy_probs = bandit.grpo_policy_probs


def expected(probs, column):
    return float(probs @ bandit.REWARDS[:, column])


def test_fixed_weights_match_trl_grpo_exactly(tmp_path):
    """Without schedule or constraints MO-GRPO is TRL's GRPO with the same reward weights."""
    runs = []
    for config_class, trainer_class in ((MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer),
                                        (GRPOConfig, GRPOTrainer)):
        model, tok, arm_ids = bandit.reference_policy()
        # moalign's field is `weights`; TRL's own GRPOConfig calls it `reward_weights`
        key = "weights" if config_class is MultiObjectiveGRPOConfig else "reward_weights"
        args = settings(tmp_path / config_class.__name__, 3, tok, arm_ids, config_class,
                        **{key: [0.3, 0.7]}, scale_rewards="group")
        if trainer_class is GRPOTrainer:
            model.save_pretrained(tmp_path / "ref")
            model.config._name_or_path = str(tmp_path / "ref")
            trainer = trainer_class(model, bandit.objectives(), args, train_dataset=dataset(),
                                    processing_class=tok)
        else:
            trainer = trainer_class(model, bandit.objectives(), args, train_dataset=dataset(),
                                    processing_class=tok)
        trainer.train()
        runs.append(trainer)
    ours, theirs = (dict(t.model.named_parameters()) for t in runs)
    for name, p in ours.items():
        assert torch.equal(p, theirs[name]), name
    assert [h["reward"] for h in runs[0].state.log_history[:-1]] == \
        [h["reward"] for h in runs[1].state.log_history[:-1]]


class RecordWeights(TrainerCallback):
    def __init__(self, trainer):
        self.trainer, self.seen = trainer, []

    def on_step_end(self, args, state, control, **kwargs):
        self.seen.append(self.trainer.reward_weights.tolist())


def test_schedule_drives_the_weights_trl_uses(tmp_path):
    schedule = AnnealedWeights([1.0, 0.0], [0.0, 1.0], steps=4)
    trainer, _, _ = bandit_grpo(tmp_path, steps=5, schedule=schedule, learning_rate=1e-3)
    record = RecordWeights(trainer)
    trainer.add_callback(record)
    trainer.train()
    firsts = [w[0] for w in record.seen]
    assert firsts == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    for entry in trainer.state.log_history[:-1]:
        # TRL's logged reward is the mean of sum_k reward_weights_k * r_k: our weights were used
        weighted = entry["weights/first"] * entry["rewards/first/mean"] + \
            entry["weights/second"] * entry["rewards/second/mean"]
        assert entry["reward"] == pytest.approx(weighted, abs=1e-5)


@pytest.mark.slow
def test_grpo_lagrangian_satisfies_a_binding_constraint(tmp_path):
    threshold = 0.4
    assert expected(bandit.optimum(bandit.REF_TARGET, [1.0, 0.0], BETA), 1) < threshold - 0.15
    trainer, _, handles = bandit_grpo(tmp_path, steps=120, weights=[1.0, 0.0],
                                      constraints={"second": threshold}, lagrangian_lr=0.2)
    trainer.train()
    final = policy_probs(trainer, handles)
    lam = trainer.tradeoff.multipliers[1]
    assert expected(final, 1) > threshold - 0.05
    assert lam > 0.1
    # TRL was given the Lagrangian coefficients (w + lambda) / (1 + sum lambda)
    assert trainer.reward_weights.tolist() == pytest.approx([1 / (1 + lam), lam / (1 + lam)])
    assert trainer.state.log_history[-2]["lagrange/second"] > 0


def test_grpo_lagrangian_multiplier_vanishes_for_a_loose_constraint(tmp_path):
    trainer, _, _ = bandit_grpo(tmp_path, steps=12, weights=[1.0, 0.0],
                                constraints={"second": 0.05}, lagrangian_lr=0.5,
                                lagrangian_init=1.0)
    trainer.train()
    assert trainer.tradeoff.multipliers[1] == 0.0
    assert trainer.reward_weights.tolist() == pytest.approx([1.0, 0.0])


def test_normalize_then_sum_is_exposed(tmp_path):
    trainer, _, _ = bandit_grpo(tmp_path, steps=2, weights=[0.5, 0.5],
                                multi_objective_aggregation="normalize_then_sum")
    assert trainer.multi_objective_aggregation == "normalize_then_sum"
    trainer.train()
    with pytest.raises(ConfigError, match="multi_objective_aggregation"):
        MultiObjectiveGRPOConfig(output_dir=str(tmp_path), multi_objective_aggregation="max",
                                 use_cpu=True, bf16=False)


def hand_advantages(rewards: torch.Tensor, w: torch.Tensor, groups: int, aggregation: str):
    """GRPO's advantages written out: ``[B]`` from rewards ``[B, K]`` in ``groups`` consecutive
    groups. ``sum_then_normalize``: the weighted sum, centred and scaled within each group
    (GRPO, Shao et al. 2024); ``normalize_then_sum``: each objective standardized within its
    group, weighted and summed, then standardized over the batch (GDPO). Sample standard
    deviations, + 1e-4 in the denominators."""
    r = rewards.double().view(groups, -1, rewards.shape[1])
    if aggregation == "sum_then_normalize":
        s = r @ w
        return ((s - s.mean(1, keepdim=True)) / (s.std(1, keepdim=True) + 1e-4)).reshape(-1)
    z = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)
    s = (z @ w).reshape(-1)
    return (s - s.mean()) / (s.std() + 1e-4)


def test_both_aggregations_give_the_hand_computed_advantages(tmp_path):
    """Two groups of 8 responses: TRL's advantages for each aggregation are the
    hand-computed ones, and each differs from the other aggregation's formula."""
    n, groups = 8, 2
    w = torch.tensor([0.3, 0.7], dtype=torch.float64)
    for aggregation, other in (("sum_then_normalize", "normalize_then_sum"),
                               ("normalize_then_sum", "sum_then_normalize")):
        trainer, _, (tok, _) = bandit_grpo(
            tmp_path / aggregation, steps=1, weights=w.tolist(), num_generations=n,
            per_device_train_batch_size=n * groups, scale_rewards="group",
            multi_objective_aggregation=aggregation)
        out = trainer._generate_and_score_completions([{"prompt": bandit.PROMPT}] * (n * groups))
        texts = tok.batch_decode(out["completion_ids"], skip_special_tokens=True)
        arms = [bandit.ARMS.index(t) for t in texts]
        assert all(len(set(arms[g * n:(g + 1) * n])) > 1 for g in range(groups))
        rewards = torch.tensor(bandit.REWARDS[arms])
        got = out["advantages"].double()
        expected = hand_advantages(rewards, w, groups, aggregation)
        assert torch.allclose(got, expected, atol=1e-5), (aggregation, got, expected)
        assert not torch.allclose(got, hand_advantages(rewards, w, groups, other), atol=1e-2)


def test_resume_restores_weights_and_multipliers(tmp_path):
    """TRL's own resume is not bit-exact here (generation after a restore differs), so this
    checks that the multiplier continues from the saved one: lambda_3 = lambda_2 + lr (c - m_3)."""
    def run(steps, resume=None):
        trainer, _, _ = bandit_grpo(tmp_path, steps=steps, weights=[1.0, 0.0],
                                    constraints={"second": 0.9}, save_strategy="steps",
                                    save_steps=2)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    run(2)
    saved = json.loads((tmp_path / "checkpoint-2" / "moalign_tradeoff.json").read_text())
    lam_2 = saved["tradeoff"]["constraints"]["multipliers"][1]
    assert lam_2 > 0
    resumed = run(3, resume=str(tmp_path / "checkpoint-2"))
    step_3 = [h for h in resumed.state.log_history if h.get("step") == 3 and "reward" in h][0]
    lam_3 = lam_2 + 0.05 * (0.9 - step_3["rewards/second/mean"])
    assert step_3["lagrange/second"] == pytest.approx(lam_3, rel=1e-5)
    assert resumed.tradeoff.multipliers[1] == pytest.approx(lam_3, rel=1e-5)
    assert resumed.reward_weights.tolist() == pytest.approx([1 / (1 + lam_3), lam_3 / (1 + lam_3)])


def test_in_memory_policy_is_saved_as_the_reference(tmp_path):
    trainer, _, _ = bandit_grpo(tmp_path, steps=1, weights=[0.5, 0.5])
    assert (tmp_path / "reference" / "config.json").is_file()
    ref = dict(trainer.ref_model.named_parameters())
    for name, p in trainer.model.named_parameters():
        assert torch.equal(p, ref[name])


def test_objective_silent_on_a_whole_batch_is_an_error(tmp_path):
    trainer, _, _ = bandit_grpo(tmp_path, steps=1, silent_second=True, weights=[0.5, 0.5])
    with pytest.raises(ObjectiveError, match=f"'second' returned None for all {G} completions"):
        trainer.train()


def test_bad_input_is_rejected_before_training(tmp_path):
    common = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[])
    with pytest.raises(WeightsError, match="sum to 1"):
        MultiObjectiveGRPOConfig(weights=[0.6, 0.6], **common)
    with pytest.raises(ConfigError, match="not both"):
        MultiObjectiveGRPOConfig(weights=[0.5, 0.5], schedule="fixed", **common)
    # TRL's own field is filled by the trainer: setting it points to moalign's `weights`
    with pytest.raises(ConfigError, match="'reward_weights' is TRL's field.*as 'weights'"):
        MultiObjectiveGRPOConfig(reward_weights=[0.5, 0.5], **common)
    model, tok = tiny_causal_lm(0)
    with pytest.raises(UnknownObjectiveError, match="'safety'"):
        MultiObjectiveGRPOTrainer(model, bandit.objectives(),
                                  MultiObjectiveGRPOConfig(constraints={"safety": 0.1}, **common),
                                  train_dataset=dataset(8), processing_class=tok)
    with pytest.raises(DataError, match="no column 'prompt'"):
        MultiObjectiveGRPOTrainer(model, bandit.objectives(), MultiObjectiveGRPOConfig(**common),
                                  train_dataset=Dataset.from_dict({"text": ["x"]}),
                                  processing_class=tok)


def test_the_gsm8k_example_config_is_valid(tmp_path):
    from pathlib import Path

    from moalign.config import load_yaml
    from moalign.workflows.train_config import resolve_train_config

    data = load_yaml(Path(__file__).parents[2] / "examples" / "configs" / "grpo_gsm8k.yaml")
    data["output_dir"] = str(tmp_path / "run")
    resolved = resolve_train_config(data)
    assert isinstance(resolved.args, MultiObjectiveGRPOConfig)
    assert resolved.args.multi_objective_aggregation == "normalize_then_sum"
    assert resolved.args.schedule["name"] == "anneal"
    assert resolved.run.objectives == ["reasoning_accuracy", "length"]
