"""MO-PPO at scale: chunked log-probs, one prepared module, a LoRA critic, one host sync per update.

- log-probs and entropies are computed chunk by chunk of rows with a logsumexp, never as a
  full-vocabulary log-softmax; they equal the full computation (values and gradients);
- policy and critic are one module, prepared once with one optimizer (DeepSpeed and FSDP2
  accept a single model per ``prepare``), and a checkpoint of the former two optimizers loads;
- a LoRA policy gets a LoRA critic over the same frozen base: only its adapter and its value
  heads are trainable, and it learns;
- ``update`` reads its statistics from the device once, whatever the number of minibatches.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")

from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.objective import Objective  # noqa: E402
from moalign.trainers import ppo_core as core  # noqa: E402
from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer  # noqa: E402


class PromptIs(Objective):
    """``value`` when the prompt is ``word`` else 0: a return the critic can predict."""

    def __init__(self, word: str, value: float):
        self.word, self.value = word, value

    @property
    def __name__(self) -> str:
        return f"is_{self.word}"

    def score(self, prompts, completions, **columns):
        return [self.value if p == self.word else 0.0 for p in prompts]


def _lora():
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])


def _trainer(tmp_path, peft=True, **overrides):
    model, tok = tiny_causal_lm(1)
    settings = dict(output_dir=str(tmp_path), max_steps=2, batch_size=8, max_new_tokens=4,
                    mini_batch_size=4, ppo_epochs=2, use_cpu=True, kl_coef=0.1, save_final=False,
                    temperature=0.7, learning_rate=1e-3, critic_learning_rate=3e-3)
    settings.update(overrides)
    return MultiObjectivePPOTrainer(
        model, [PromptIs("left", 1.0), PromptIs("right", 2.0)], MultiObjectivePPOConfig(**settings),
        train_dataset=[{"prompt": "left"}, {"prompt": "right"}], processing_class=tok,
        peft_config=_lora() if peft else None)


# ------------------------------------------------------------------ chunked log-probs


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk", [1, 700, 1 << 22])  # one row per chunk, a few rows, all rows
def test_chunked_logprobs_equal_the_full_log_softmax(temperature, chunk):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(5, 7, 50, generator=g)).requires_grad_(True)
    tokens = torch.randint(0, 50, (5, 7), generator=g)
    weights = torch.randn(5, 7, generator=g)

    full = core.logprobs_from_logits(logits / temperature, tokens)
    (full * weights).sum().backward()
    expected_grad, logits.grad = logits.grad.clone(), None
    got = core.selective_logprobs(logits, tokens, temperature, chunk_elements=chunk)
    (got * weights).sum().backward()
    assert got.dtype == torch.float32
    assert torch.allclose(got, full, atol=1e-5, rtol=0)
    assert torch.allclose(logits.grad, expected_grad, atol=1e-5, rtol=0)

    logp, entropy = core.selective_logprobs_and_entropy(logits.detach(), tokens, temperature,
                                                        chunk_elements=chunk)
    assert torch.allclose(logp, full.detach(), atol=1e-5, rtol=0)
    assert torch.allclose(entropy, core.entropy_from_logits(logits.detach() / temperature),
                          atol=1e-5, rtol=0)


def test_chunked_logprobs_of_bfloat16_logits_are_float32_and_get_a_bfloat16_gradient():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 40, generator=g).bfloat16().requires_grad_(True)
    tokens = torch.randint(0, 40, (3, 4), generator=g)
    got = core.selective_logprobs(logits, tokens, 0.5, chunk_elements=1)
    assert got.dtype == torch.float32
    assert torch.allclose(got, core.logprobs_from_logits(logits.float() / 0.5, tokens), atol=1e-5)
    got.sum().backward()
    assert logits.grad.dtype == torch.bfloat16


def test_ppo_never_takes_a_full_vocabulary_log_softmax(tmp_path, monkeypatch):
    """make_batch and update go through the chunked logsumexp: a log-softmax (a full copy of
    the logits, then its gradient) is never computed."""
    trainer = _trainer(tmp_path)
    trainer.tradeoff.ask()
    rollout = trainer.rollout()
    rewards = trainer.score(rollout)

    def refuse(*args, **kwargs):
        raise AssertionError("full-vocabulary log_softmax")

    monkeypatch.setattr(torch, "log_softmax", refuse)
    monkeypatch.setattr(torch.Tensor, "log_softmax", refuse)
    monkeypatch.setattr(torch.nn.functional, "log_softmax", refuse)
    batch = trainer.make_batch(rollout, rewards)
    losses = trainer.update(batch)
    assert np.isfinite(losses["loss/policy"]) and np.isfinite(batch["entropy"].item())


# ------------------------------------------------------------------ one prepared module


@pytest.mark.parametrize("peft", [True, False])
def test_policy_and_critic_are_one_prepared_model_with_one_optimizer(tmp_path, monkeypatch, peft):
    from accelerate import Accelerator

    prepared = []
    original = Accelerator.prepare

    def spy(self, *args, **kwargs):
        prepared.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "prepare", spy)
    trainer = _trainer(tmp_path, peft=peft)
    modules = [a for args in prepared for a in args if isinstance(a, torch.nn.Module)]
    optimizers = [a for args in prepared for a in args if isinstance(a, torch.optim.Optimizer)]
    assert len(modules) == 1 and len(optimizers) == 1
    assert len(trainer.accelerator._models) == 1 and len(trainer.accelerator._optimizers) == 1
    joint = trainer.accelerator.unwrap_model(trainer.model)
    assert joint.policy is trainer.policy and joint.critic is trainer.critic
    # a parameter group per part, with its own learning rate
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [1e-3, 3e-3]
    policy_ids = {id(p) for p in trainer.policy.parameters() if p.requires_grad}
    critic_ids = {id(p) for p in trainer.critic.parameters() if p.requires_grad}
    assert {id(p) for p in groups[0]["params"]} == policy_ids
    assert {id(p) for p in groups[1]["params"]} == critic_ids
    before = [[p.clone() for p in g["params"]] for g in groups]
    trainer.train()  # and it trains: both parts move
    for group, old in zip(groups, before):
        assert any(not torch.equal(p, q) for p, q in zip(group["params"], old))


def test_a_checkpoint_of_two_optimizers_loads_into_the_joint_optimizer():
    from moalign.trainers.ppo_models import joint_optimizer_state

    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(2, 4)
    first = torch.optim.AdamW(a.parameters(), lr=0.1)
    second = torch.optim.AdamW(b.parameters(), lr=0.2)
    joint = torch.optim.AdamW([{"params": list(a.parameters()), "lr": 0.1},
                               {"params": list(b.parameters()), "lr": 0.2}], lr=0.1)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1 / (s + 1))
                  for o in (first, second, joint)]
    for _ in range(2):
        (a(torch.ones(3)).sum() + b(torch.ones(2)).sum()).backward()
        for optimizer, scheduler in zip((first, second), schedulers):
            optimizer.step()
            scheduler.step()
    legacy = {"policy": first.state_dict(), "critic": second.state_dict(),
              "schedulers": [s.state_dict() for s in schedulers[:2]]}
    converted = joint_optimizer_state(legacy)
    joint.load_state_dict(converted["optimizer"])
    schedulers[2].load_state_dict(converted["scheduler"])
    assert schedulers[2].get_last_lr() == [*schedulers[0].get_last_lr(), *schedulers[1].get_last_lr()]
    params = [*a.parameters(), *b.parameters()]
    reference = [*(first.state[p] for p in a.parameters()), *(second.state[p] for p in b.parameters())]
    for p, expected in zip(params, reference):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(joint.state[p][key], expected[key])
    assert joint_optimizer_state(converted) == converted  # the current format passes through


# ------------------------------------------------------------------ LoRA critic


def test_a_lora_policy_gets_a_lora_critic_over_the_same_frozen_base(tmp_path):
    from moalign.trainers.ppo_models import LoraValueModel

    trainer = _trainer(tmp_path, max_steps=25, batch_size=8, mini_batch_size=8, lam=1.0,
                       kl_coef=0.0, learning_rate=1e-4, critic_learning_rate=3e-3, max_new_tokens=3)
    critic, policy = trainer.critic, trainer.policy
    assert isinstance(critic, LoraValueModel)
    base = policy.get_base_model()
    config = base.config
    hidden, layers = config.hidden_size, config.num_hidden_layers
    q_out = config.num_attention_heads * (hidden // config.num_attention_heads)
    v_out = config.num_key_value_heads * (hidden // config.num_attention_heads)
    adapter = layers * 4 * ((hidden + q_out) + (hidden + v_out))  # r = 4 on q_proj and v_proj
    heads = hidden * 3 + 3  # is_left, is_right, kl
    trainable = {n: p.numel() for n, p in critic.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == adapter + heads, trainable
    assert all(n.startswith(("adapters.", "head.")) for n in critic.state_dict())
    backbone = sum(p.numel() for p in base.model.parameters())
    assert sum(trainable.values()) < backbone / 10  # not a copy of the backbone
    frozen = {k: v.clone() for k, v in base.state_dict().items() if "lora_" not in k}
    policy_adapter = {k: v.clone() for k, v in policy.state_dict().items() if "lora_" in k}
    adapter_before = {k: v.clone() for k, v in critic.adapters.state_dict().items()}

    trainer.train()
    # the base is shared and stays frozen; the critic's adapter and heads trained
    for key, value in base.state_dict().items():
        if "lora_" not in key:
            assert torch.equal(value, frozen[key]), key
    assert any(not torch.equal(v, adapter_before[k]) for k, v in critic.adapters.state_dict().items())
    assert any(not torch.equal(v, policy_adapter[k]) for k, v in policy.state_dict().items()
               if "lora_" in k)
    # the values move and each head predicts its own objective
    rollout = trainer.rollout()
    rewards = trainer.score(rollout)
    with torch.no_grad():
        values = trainer.values(rollout)
    mask = rollout.response_mask.bool()
    for k in range(2):
        returns = rewards[:, k:k + 1].expand_as(mask)[mask].numpy()
        predicted = values[..., k][mask].numpy()
        assert 1 - np.var(returns - predicted) / np.var(returns) > 0.5, k
    # the critic's adapter is active only in its own forward: the policy is unchanged by it
    with torch.no_grad():
        ids, att = rollout.input_ids, rollout.attention_mask
        logits = policy(input_ids=ids, attention_mask=att).logits
        critic.adapters["base_model-model-model-layers-0-self_attn-q_proj"].B.weight.add_(1.0)
        assert torch.equal(policy(input_ids=ids, attention_mask=att).logits, logits)


def test_a_lora_critic_checkpoint_roundtrips_and_refuses_a_full_one(tmp_path):
    from moalign.errors import CheckpointError

    trainer = _trainer(tmp_path / "a")
    trainer.train()
    path = trainer.save_checkpoint()
    other = _trainer(tmp_path / "b")
    other.load_checkpoint(path)
    for key, value in trainer.critic.state_dict().items():
        assert torch.equal(value, other.critic.state_dict()[key]), key
    full = _trainer(tmp_path / "c", critic="full")
    with pytest.raises(CheckpointError, match="holds a lora critic.*critic='lora'"):
        full.load_checkpoint(path)


def test_full_fine_tuning_keeps_the_full_critic_and_a_lora_critic_needs_lora(tmp_path):
    from moalign.errors import ConfigError
    from moalign.trainers.value_heads import VectorValueModel

    assert type(_trainer(tmp_path, peft=False).critic) is VectorValueModel
    assert type(_trainer(tmp_path, critic="full").critic) is VectorValueModel
    with pytest.raises(ConfigError, match="LoRA critic needs a LoRA policy"):
        _trainer(tmp_path, peft=False, critic="lora")
    with pytest.raises(ConfigError, match="'critic' must be one of"):
        MultiObjectivePPOConfig(critic="shared")


# ------------------------------------------------------------------ host syncs


def test_update_reads_its_statistics_from_the_device_once(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path, batch_size=8, mini_batch_size=2, ppo_epochs=2)  # 8 minibatches
    trainer.tradeoff.ask()
    rollout = trainer.rollout()
    batch = trainer.make_batch(rollout, trainer.score(rollout))
    reads = []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def read(self, *args, **kwargs):
            if "moalign/trainers/ppo" in sys._getframe(1).f_code.co_filename:
                reads.append(name)
            return original(self, *args, **kwargs)
        return read

    for name in ("__float__", "item", "tolist", "cpu", "numpy", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    losses = trainer.update(batch)
    monkeypatch.undo()
    assert reads == ["tolist"], reads
    assert set(losses) >= {"loss/policy", "loss/value", "policy/clipfrac", "policy/approx_kl",
                           "value/is_left/loss", "value/kl/loss"}
    assert all(isinstance(v, float) for v in losses.values())


# ------------------------------------------------------------------ micro-batches


def _one_update(tmp_path, **overrides):
    """The losses and trained parameters of one update of a fixed rollout."""
    trainer = _trainer(tmp_path, **{"ppo_epochs": 1, "mini_batch_size": 8, **overrides})
    trainer.tradeoff.ask()
    rollout = trainer.rollout()
    batch = trainer.make_batch(rollout, trainer.score(rollout))
    losses = trainer.update(batch)
    params = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return losses, params


@pytest.mark.parametrize("peft", [True, False])
def test_micro_batches_add_up_to_the_minibatch_step(tmp_path, peft):
    """A minibatch of 8 in micro-batches of 3 (3 + 3 + 2 rows) takes the step
    the whole minibatch takes: same loss statistics, same parameters after the step."""
    whole, p_whole = _one_update(tmp_path / "a", peft=peft)
    micro, p_micro = _one_update(tmp_path / "b", peft=peft, micro_batch_size=3)
    assert whole.keys() == micro.keys()
    for key in whole:
        assert micro[key] == pytest.approx(whole[key], rel=1e-4, abs=1e-6), key
    for name in p_whole:
        assert torch.allclose(p_micro[name], p_whole[name], atol=1e-6, rtol=1e-5), name
    # control: two steps of 4 (what micro-batches must not become) end elsewhere
    _, p_split = _one_update(tmp_path / "c", peft=peft, mini_batch_size=4)
    assert any(not torch.allclose(p_split[n], p_whole[n], atol=1e-6, rtol=1e-5) for n in p_whole)


def test_micro_batch_size_is_checked():
    from moalign.errors import ConfigError

    with pytest.raises(ConfigError, match="micro_batch_size"):
        MultiObjectivePPOConfig(micro_batch_size=0)
