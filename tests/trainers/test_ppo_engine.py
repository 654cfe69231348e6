"""MO-PPO under DeepSpeed (``moalign.trainers.ppo_engine``), in one process.

Real runs, 2 CPU processes under ZeRO-2 and ZeRO-3, are ``scripts/zero_check.py``
(``tests/project/test_zero_check.py``). Before these fixes MO-PPO there failed at its first
gather (the config had no ``ddp_backend``, so the process group was not gloo), its checkpoint
held process 0's part of the ZeRO optimizer state (a resume failed to read it), and saving
under ZeRO-3 asked accelerate for the state of the unwrapped policy, which is no engine. Here:

- ``ddp_backend`` reaches the ``Accelerator``;
- DeepSpeed's ``auto`` micro-batch size and clipping are filled from the config (accelerate
  fills the first only from a dataloader, and MO-PPO has none);
- under emulated ZeRO-3 (the trainable tensors of the module emptied, as each process holds a
  slice; an engine that gathers them) the saved policy, and the checkpoint's policy and critic,
  are the gathered tensors;
- under emulated DeepSpeed the optimizer state goes through the engine's own checkpoint
  (``global_step<N>``) and back to the engine on resume; a checkpoint written with DeepSpeed is
  refused without it, and the reverse.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("accelerate")

from moalign.errors import CheckpointError  # noqa: E402
from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.objective import Objective  # noqa: E402
from moalign.trainers import ppo_engine, runs  # noqa: E402
from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer  # noqa: E402


class Length(Objective):
    __name__ = "length"

    def score(self, prompts, completions, **columns):
        return [float(len(c)) for c in completions]


class Vowels(Objective):
    __name__ = "vowels"

    def score(self, prompts, completions, **columns):
        return [float(sum(ch in "aeiou" for ch in c)) for c in completions]


def _trainer(tmp_path: Path, **overrides) -> MultiObjectivePPOTrainer:
    from peft import LoraConfig

    model, tok = tiny_causal_lm(1)
    settings = dict(output_dir=str(tmp_path), max_steps=1, batch_size=4, max_new_tokens=3,
                    mini_batch_size=4, ppo_epochs=1, use_cpu=True, save_final=False,
                    learning_rate=1e-2, constraints={"length": 10.0}, lagrangian_lr=0.5,
                    schedule={"name": "anneal", "start": [0.9, 0.1], "end": [0.1, 0.9],
                              "steps": 4})
    settings.update(overrides)
    return MultiObjectivePPOTrainer(
        model, [Length(), Vowels()], MultiObjectivePPOConfig(**settings),
        train_dataset=[{"prompt": f"p{i}"} for i in range(4)], processing_class=tok,
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                               target_modules=["q_proj", "v_proj"]))


class _Engine:
    """What MO-PPO uses of a DeepSpeed engine: under ZeRO-3 the gathering of the weights
    (collective in DeepSpeed, here a saved copy), and its own checkpoint of the (partitioned)
    optimizer state."""

    def __init__(self, gathered: dict[str, torch.Tensor] | None = None):
        self.gathered = gathered
        self.saved: list[tuple[str, str, bool]] = []
        self.loaded: list[tuple[str, str, dict]] = []

    def zero_optimization_partition_weights(self) -> bool:
        return self.gathered is not None

    def _zero3_consolidated_16bit_state_dict(self, exclude_frozen_parameters=False):
        return {k: v.clone() for k, v in self.gathered.items()}

    def save_checkpoint(self, save_dir, tag=None, exclude_frozen_parameters=False):
        (Path(save_dir) / tag).mkdir()
        for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"):
            torch.save({}, Path(save_dir) / tag / name)  # ZeRO-2's files, one process
        (Path(save_dir) / "latest").write_text(tag)
        self.saved.append((str(save_dir), tag, exclude_frozen_parameters))

    def load_checkpoint(self, load_dir, tag=None, **kwargs):
        self.loaded.append((str(load_dir), tag, kwargs))
        return str(load_dir), {}


def _as_deepspeed(trainer, monkeypatch, zero3: bool) -> dict[str, torch.Tensor]:
    """Switch ``trainer`` to an emulated DeepSpeed engine; with ``zero3`` its trainable
    tensors are emptied as under ZeRO-3 and only the engine has them. Returns the trained
    values by key of the prepared module."""
    trained = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
               if p.requires_grad}
    if zero3:
        for p in trainer.model.parameters():
            if p.requires_grad:
                p.data = torch.empty(0, dtype=p.dtype)
    monkeypatch.setattr(ppo_engine, "is_deepspeed", lambda accelerator: True)
    trainer.model = _Engine(trained if zero3 else None)
    return trained


def test_the_config_backend_starts_the_process_group(tmp_path, monkeypatch):
    import accelerate

    seen = []

    class Started(Exception):
        pass

    def accelerator(**kwargs):
        seen.append(kwargs.get("kwargs_handlers"))
        raise Started

    monkeypatch.setattr(accelerate, "Accelerator", accelerator)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as a launcher of 2 processes sets it
    with pytest.raises(Started):
        _trainer(tmp_path, ddp_backend="gloo")
    with pytest.raises(Started):
        _trainer(tmp_path)
    (handler,), none = seen
    assert handler.backend == "gloo" and none == []  # unset: accelerate's choice
    # one process without a launcher has no process group: the backend is not used
    monkeypatch.delenv("WORLD_SIZE")
    assert ppo_engine.process_group_kwargs("gloo") == []


def test_deepspeed_autos_are_filled_from_the_config():
    from accelerate.utils import DeepSpeedPlugin

    def accelerator(config):
        plugin = DeepSpeedPlugin(hf_ds_config=config)
        return SimpleNamespace(distributed_type="DEEPSPEED",
                               state=SimpleNamespace(deepspeed_plugin=plugin)), plugin

    acc, plugin = accelerator({"train_micro_batch_size_per_gpu": "auto",
                               "gradient_clipping": "auto", "zero_optimization": {"stage": 3}})
    ppo_engine.fill_deepspeed_autos(acc, 6, 0.5)
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 6
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5
    ppo_engine.fill_deepspeed_autos(acc, 8, None)  # what is set stays
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 6
    acc, plugin = accelerator({"train_micro_batch_size_per_gpu": "auto",
                               "gradient_clipping": "auto", "zero_optimization": {"stage": 2}})
    ppo_engine.fill_deepspeed_autos(acc, 4, None)  # no clipping: 0
    assert plugin.deepspeed_config["gradient_clipping"] == 0.0
    # not DeepSpeed: nothing to fill
    ppo_engine.fill_deepspeed_autos(SimpleNamespace(distributed_type="MULTI_GPU"), 4, 1.0)


def test_zero3_saves_the_gathered_policy_and_critic(tmp_path, monkeypatch):
    from peft import PeftModel
    from safetensors.torch import load_file

    trainer = _trainer(tmp_path / "run")
    trainer.train()
    trained = _as_deepspeed(trainer, monkeypatch, zero3=True)
    assert all(p.numel() == 0 for n, p in trainer.policy.named_parameters() if "lora_" in n)

    runs.save_policy(trainer, tmp_path / "policy")  # checks that no tensor is empty
    fresh, _ = tiny_causal_lm(1)
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path / "policy"))
    got = {f"policy.{n}": p for n, p in reloaded.named_parameters() if "lora_" in n}
    assert got and got.keys() == {k for k in trained if k.startswith("policy.")}
    assert all(torch.equal(got[k], trained[k]) for k in got)

    folder = trainer.save_checkpoint()
    runs.check_saved_policy(folder)
    critic = load_file(str(folder / "critic.safetensors"))
    want = {k[len("critic."):]: v for k, v in trained.items() if k.startswith("critic.")}
    assert critic.keys() == want.keys()
    assert all(torch.equal(critic[k], v) for k, v in want.items())


def test_deepspeed_optimizer_state_goes_through_the_engine(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run")
    trainer.train()
    _as_deepspeed(trainer, monkeypatch, zero3=False)
    folder = trainer.save_checkpoint()
    assert trainer.model.saved == [(str(trainer.model.saved[0][0]), "global_step1", True)]
    assert (folder / "global_step1").is_dir() and (folder / "latest").read_text() == "global_step1"
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    assert saved.keys() == {"engine", "scheduler"}  # no partition of the optimizer state
    # the same checkpoint passes the one check a resume makes
    from moalign.storage.checkpoints import check_trainer_checkpoint

    check_trainer_checkpoint(folder)

    resumed = _trainer(tmp_path / "resumed", max_steps=2)
    fresh_state = resumed.tradeoff.state_dict()
    _as_deepspeed(resumed, monkeypatch, zero3=False)
    resumed.load_checkpoint(folder)
    (where, tag, kwargs), = resumed.model.loaded
    assert (Path(where), tag) == (folder, "global_step1")
    assert kwargs["load_optimizer_states"] and not kwargs["load_module_strict"]
    assert resumed.step == 1
    assert resumed.tradeoff.state_dict() == trainer.tradeoff.state_dict() != fresh_state

    monkeypatch.setattr(ppo_engine, "is_deepspeed", lambda accelerator: False)
    with pytest.raises(CheckpointError, match="written with DeepSpeed; resume it with"):
        _trainer(tmp_path / "plain").load_checkpoint(folder)


def test_a_checkpoint_without_deepspeed_is_not_resumed_under_it(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path / "run")
    trainer.train()
    folder = trainer.save_checkpoint()
    resumed = _trainer(tmp_path / "resumed")
    _as_deepspeed(resumed, monkeypatch, zero3=False)
    with pytest.raises(CheckpointError, match="written without DeepSpeed; resume it without"):
        resumed.load_checkpoint(folder)
    assert resumed.model.loaded == []
