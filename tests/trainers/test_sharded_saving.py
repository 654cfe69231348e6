"""The policy a run saves is gathered from sharded training states (ZeRO-3 / FSDP).

Under DeepSpeed ZeRO-3 every process holds only its partition of each parameter: the module's
own tensors are empty (``numel() == 0``), and only the engine can gather them. Saving with the
module's ``save_pretrained`` then writes empty tensors (an adapter of 16 empty tensors was seen
with MO-DPO + LoRA under ZeRO-3 on 2 CPU processes). The emulation here empties the trained
parameters as ZeRO-3 does and gives the trainer an engine that gathers them as DeepSpeed's
``_zero3_consolidated_16bit_state_dict`` does; ``transformers.Trainer.save_model`` runs its own
DeepSpeed code path on it. The saved adapter must be the trained one.
"""

from __future__ import annotations

import json
import struct
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl")

from moalign.errors import CheckpointError  # noqa: E402
from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.trainers import runs  # noqa: E402
from moalign.trainers.dpo import MultiObjectiveDPOConfig  # noqa: E402
from moalign.trainers.registry import TRAINERS  # noqa: E402
from tests.support.dpo_testkit import conflicting_pairs, cpu_args  # noqa: E402


class _Zero3Engine:
    """What ``Trainer.save_model`` uses of a ZeRO-3 DeepSpeed engine: its config and the
    gathering of the trainable parameters (collective in DeepSpeed, here a saved copy)."""

    def __init__(self, gathered: dict[str, torch.Tensor]):
        self.config = {"zero_optimization": {"stage": 3}}
        self.gathered = gathered

    def _zero3_consolidated_16bit_state_dict(self, exclude_frozen_parameters=False):
        return dict(self.gathered)

    def save_checkpoint(self, save_dir, exclude_frozen_parameters=False):  # pragma: no cover
        raise AssertionError("the gathered weights were not used")


def _partition_like_zero3(trainer) -> dict[str, torch.Tensor]:
    """Empty every trainable parameter of the trained model (each process of a ZeRO-3 run holds
    only a partition; the module's tensors have no elements) and switch the trainer to the
    DeepSpeed path; returns the trained values, by state-dict key."""
    model = trainer.model
    gathered = {k: v.detach().clone() for k, v in model.state_dict().items()
                if "lora_" in k}
    for p in model.parameters():
        if p.requires_grad:
            p.data = torch.empty(0, dtype=p.dtype)
    trainer.is_deepspeed_enabled = True
    trainer.deepspeed = trainer.model_wrapped = _Zero3Engine(gathered)
    return gathered


def _tensor_shapes(path) -> dict[str, list[int]]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def test_a_run_saves_the_gathered_adapter_not_the_empty_partition(tmp_path, monkeypatch):
    from peft import LoraConfig, PeftModel

    spec = TRAINERS["mo_dpo"]
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path / "trainer", max_steps=2,
                                              learning_rate=5e-2),
                                   objectives=["a", "b"], weights=[0.7, 0.3])
    model, tok = tiny_causal_lm(0)
    seen: dict[str, dict[str, torch.Tensor]] = {}
    original = runs.build_trainer

    def build(*a, **k):
        trainer = original(*a, **k)
        train = trainer.train

        def train_then_partition(*ta, **tk):
            result = train(*ta, **tk)
            seen["trained"] = _partition_like_zero3(trainer)
            return result

        trainer.train = train_then_partition
        return trainer

    monkeypatch.setattr(runs, "build_trainer", build)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    runs.train_and_save(spec, args, model, tok, conflicting_pairs(16), tmp_path / "adapter",
                        peft_config=lora, print_metrics=False)
    saved = tmp_path / "adapter"
    shapes = _tensor_shapes(saved / "adapter_model.safetensors")
    assert shapes and all(0 not in s for s in shapes.values()), shapes
    # adapter only: no full model, no pickled training arguments
    assert not (saved / "model.safetensors").exists()
    assert not (saved / "training_args.bin").exists()
    fresh, _ = tiny_causal_lm(0)
    reloaded = PeftModel.from_pretrained(fresh, str(saved))
    got = {k.replace(".default", ""): v for k, v in reloaded.state_dict().items() if "lora_" in k}
    want = {k.replace(".default", ""): v for k, v in seen["trained"].items()}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


def test_a_saved_policy_of_empty_tensors_is_an_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.empty(0), "b": torch.ones(2)}, str(tmp_path / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError, match="1 empty tensors.*'w'.*without being gathered"):
        runs.check_saved_policy(tmp_path)
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        runs.check_saved_policy(tmp_path / "missing")


def test_the_final_save_gathers_whatever_the_checkpoints_use():
    """FSDP's SHARDED_STATE_DICT (what checkpoints use) becomes FULL_STATE_DICT for the final
    save, and a ZeRO-3 engine without 16-bit gathering gathers for it; both are put back."""

    class Plugin:
        state_dict_type = "SHARDED_STATE_DICT"

        def set_state_dict_type(self, value):
            self.state_dict_type = value

    plugin = Plugin()
    zero = SimpleNamespace(gather_16bit_weights_on_model_save=False)
    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin)),
        is_fsdp_enabled=True, is_deepspeed_enabled=True,
        model_wrapped=SimpleNamespace(_config=SimpleNamespace(zero_config=zero)))
    with runs._full_state_on_save(trainer):
        assert plugin.state_dict_type == "FULL_STATE_DICT"
        assert zero.gather_16bit_weights_on_model_save is True
    assert plugin.state_dict_type == "SHARDED_STATE_DICT"
    assert zero.gather_16bit_weights_on_model_save is False
