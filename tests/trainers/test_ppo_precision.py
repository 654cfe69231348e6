"""MO-PPO follows the run's precision like the TRL trainers: bfloat16 autocast when ``bf16`` is
set (policy, critic, reference and generation), float32 otherwise, and trainers of different
precisions follow each other in one process."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from tests.support import rl_bandit as bandit  # noqa: E402


def _record_autocast(module: torch.nn.Module, seen: list) -> None:
    """Record, at every forward of ``module``, whether CPU autocast is on and the output dtype."""
    def hook(mod, args, output):
        seen.append((torch.is_autocast_enabled("cpu"), output.dtype))
    module.register_forward_hook(hook)


@pytest.mark.parametrize("bf16", [True, False])
def test_ppo_trains_in_bf16_autocast_when_asked(tmp_path, bf16):
    trainer, _, _ = bandit.ppo_trainer(tmp_path, steps=1, bf16=bf16, kl_coef=0.1,
                                       num_samples_per_prompt=8, mini_batch_size=8,
                                       ppo_epochs=1)
    assert trainer.accelerator.mixed_precision == ("bf16" if bf16 else "no")
    policy = trainer.accelerator.unwrap_model(trainer.policy)
    policy_seen, ref_seen, critic_seen = [], [], []
    _record_autocast(policy.get_output_embeddings(), policy_seen)
    _record_autocast(trainer.ref_model.get_output_embeddings(), ref_seen)
    critic = trainer.accelerator.unwrap_model(trainer.critic)
    _record_autocast(critic.head, critic_seen)
    trainer.train()
    dtype = torch.bfloat16 if bf16 else torch.float32
    for seen in (policy_seen, ref_seen, critic_seen):
        assert seen, "the hook never ran"
        assert {s for s, _ in seen} == {bf16}
        assert {d for _, d in seen} == {dtype}
    # generation ran in the run's precision too (the rollout's forwards are among policy_seen)
    assert len(policy_seen) > 2
    # the weights the optimizer holds stay float32 under autocast
    assert {p.dtype for p in policy.parameters()} == {torch.float32}


@pytest.mark.parametrize("first_bf16", [True, False])
def test_trainers_of_different_precisions_follow_each_other_in_one_process(tmp_path, first_bf16):
    """GRPO in one precision then MO-PPO in the other (and the reverse order of precisions):
    each trainer sets up its own accelerator state, as TRL's trainers do."""
    grpo, _, _ = bandit.grpo_trainer(tmp_path / "grpo", steps=1, bf16=first_bf16,
                                     per_device_train_batch_size=8, num_generations=8)
    grpo.train()
    assert grpo.accelerator.mixed_precision == ("bf16" if first_bf16 else "no")
    ppo, _, _ = bandit.ppo_trainer(tmp_path / "ppo", steps=1, bf16=not first_bf16,
                                   num_samples_per_prompt=8, mini_batch_size=8, ppo_epochs=1)
    ppo.train()
    assert ppo.accelerator.mixed_precision == ("no" if first_bf16 else "bf16")
    again, _, _ = bandit.grpo_trainer(tmp_path / "grpo2", steps=1, bf16=first_bf16,
                                      per_device_train_batch_size=8, num_generations=8)
    again.train()  # and back
    assert again.accelerator.mixed_precision == ("bf16" if first_bf16 else "no")
