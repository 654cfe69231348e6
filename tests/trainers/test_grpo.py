"""MO-GRPO: TRL's GRPO with scheduled weights, constraints and per-objective metrics."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("trl")

import rl_bandit as bandit  # noqa: E402
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

BETA = 0.5
G = 32  # the group-mean baseline scales the reward by (G - 1) / G; 32 keeps that small



def settings(tmp_path, steps, tok, arm_ids, config_class=MultiObjectiveGRPOConfig, **overrides):
    values = dict(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=G,
        num_generations=G, max_completion_length=1, learning_rate=1e-2,
        lr_scheduler_type="linear", beta=BETA, scale_rewards="none", loss_type="grpo",
        use_cpu=True, bf16=False, gradient_checkpointing=False, report_to=[], logging_steps=1,
        save_strategy="no", seed=0, disable_tqdm=True,
        generation_kwargs={"suppress_tokens": bandit.suppressed(tok, arm_ids)},
    )
    values.update(overrides)
    return config_class(**values)


def dataset(n=4096):
    return Dataset.from_dict({"prompt": [bandit.PROMPT] * n})


def bandit_grpo(tmp_path, steps, silent_second=False, schedule=None, **overrides):
    model, tok, arm_ids = bandit.reference_policy()
    ref = bandit.arm_probs(model, tok, arm_ids)
    trainer = MultiObjectiveGRPOTrainer(
        model, bandit.objectives(silent_second), settings(tmp_path, steps, tok, arm_ids, **overrides),
        train_dataset=dataset(), processing_class=tok, schedule=schedule)
    return trainer, ref, (tok, arm_ids)


def policy_probs(trainer, handles):
    return bandit.arm_probs(trainer.accelerator.unwrap_model(trainer.model), *handles)


def expected(probs, column):
    return float(probs @ bandit.REWARDS[:, column])


def test_grpo_reaches_kl_regularized_optimum_for_two_weight_vectors(tmp_path):
    finals = {}
    for w in ([0.8, 0.2], [0.2, 0.8]):
        trainer, ref, handles = bandit_grpo(tmp_path / str(w[0]), steps=100, weights=w)
        target = bandit.optimum(ref, w, BETA)
        assert bandit.total_variation(ref, target) > 0.15
        trainer.train()
        finals[w[0]] = policy_probs(trainer, handles)
        assert bandit.total_variation(finals[w[0]], target) < 0.1, (finals[w[0]], target)
    assert finals[0.8][0] > finals[0.2][0] + 0.3
    assert finals[0.2][1] > finals[0.8][1] + 0.3


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

    from moalign.cli.train import resolve_train_config
    from moalign.config import load_yaml

    data = load_yaml(Path(__file__).parents[2] / "examples" / "configs" / "grpo_gsm8k.yaml")
    data["output_dir"] = str(tmp_path / "run")
    resolved = resolve_train_config(data)
    assert isinstance(resolved.args, MultiObjectiveGRPOConfig)
    assert resolved.args.multi_objective_aggregation == "normalize_then_sum"
    assert resolved.args.schedule["name"] == "anneal"
    assert resolved.run.objectives == ["reasoning_accuracy", "length"]
