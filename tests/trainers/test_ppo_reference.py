"""MO-PPO's reference: a ``ref_model`` passed is the one the KL is taken against, with a LoRA
policy too; the adapter-disabled base is only the default."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("peft")

from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.objective import Objective  # noqa: E402
from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer  # noqa: E402


class Length(Objective):
    name = "length"

    def score(self, prompts, completions, **columns):
        return [float(len(str(c))) for c in completions]


def response_logprobs(model, rollout) -> torch.Tensor:
    """Log-probabilities of each response token under ``model``, written out: ``[B, T]``."""
    ids, mask = rollout.input_ids, rollout.attention_mask
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
    T = rollout.response_ids.shape[1]
    logp = torch.log_softmax(logits[:, -T - 1:-1], dim=-1)
    return logp.gather(-1, rollout.response_ids.unsqueeze(-1)).squeeze(-1)


def _trainer(tmp_path, ref_model=None):
    from peft import LoraConfig

    model, tok = tiny_causal_lm(2)
    config = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=1, batch_size=4, max_new_tokens=5, mini_batch_size=4,
        ppo_epochs=1, use_cpu=True, kl_coef=0.1, kl_estimator="k1", save_final=False)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    return MultiObjectivePPOTrainer(model, [Length()], config,
                                    train_dataset=[{"prompt": "left"}, {"prompt": "right"}],
                                    processing_class=tok, peft_config=lora, ref_model=ref_model)


def test_a_passed_reference_is_used_under_lora(tmp_path):
    ref, _ = tiny_causal_lm(7)  # another model than the policy's base
    trainer = _trainer(tmp_path, ref_model=ref)
    assert trainer.ref_model is ref
    rollout = trainer.rollout()
    batch = trainer.make_batch(rollout, trainer.score(rollout))
    mask = rollout.response_mask.float()
    expected_ref = response_logprobs(ref, rollout)
    policy = trainer.accelerator.unwrap_model(trainer.policy)
    with policy.disable_adapter():
        base = response_logprobs(policy, rollout)
    assert ((expected_ref - base).abs() * mask).max() > 0.1  # the two references differ
    assert torch.allclose(trainer._ref_logprobs(rollout) * mask, expected_ref * mask, atol=1e-5)
    kl = ((batch["old_logp"] - expected_ref) * mask).sum(-1)  # k1 against the passed reference
    assert torch.allclose(batch["kl"], kl, atol=1e-4)


def test_without_one_the_reference_is_the_adapter_disabled_base(tmp_path):
    trainer = _trainer(tmp_path)
    assert trainer.ref_model is None
    rollout = trainer.rollout()
    mask = rollout.response_mask.float()
    policy = trainer.accelerator.unwrap_model(trainer.policy)
    with policy.disable_adapter():
        base = response_logprobs(policy, rollout)
    assert torch.allclose(trainer._ref_logprobs(rollout) * mask, base * mask, atol=1e-5)
