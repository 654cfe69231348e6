"""Evaluation weights: the adapter merged in float32, a bfloat16 copy, and the model given back
bit for bit afterwards."""

from __future__ import annotations

import pytest
import torch

from moalign.models import tiny_causal_lm
from moalign.models.inference import inference_weights, mergeable_lora_layers


def _peft(seed: int = 0, **lora):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny_causal_lm(seed=seed)
    config = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules="all-linear",
                        **lora)
    peft = get_peft_model(model, config)
    with torch.no_grad():  # a LoRA update that changes the outputs (B starts at 0)
        g = torch.Generator().manual_seed(seed)
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return peft.eval(), tok


def _state(model):
    return {k: (v.dtype, v.clone()) for k, v in model.state_dict().items()}


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


IDS = torch.tensor([[5, 9, 23, 7, 41, 3, 17, 2]])


def test_merged_float32_agrees_with_lora_and_restores_the_model():
    model, _ = _peft()
    before = _state(model)
    plain = _logits(model, IDS)
    with model.disable_adapter():
        base = _logits(model, IDS)
    assert (plain - base).abs().max() > 1e-3  # the adapter changes the outputs
    calls = []
    lora = mergeable_lora_layers(model)
    assert lora  # every LoRA layer of the tiny model can merge
    originals = [m.forward for m in lora]
    hook = lora[0].lora_A["default"].register_forward_hook(lambda *a: calls.append(1))
    with inference_weights(model, "float32"):
        merged = _logits(model, IDS)
        assert all(m.merged for m in lora)
    hook.remove()
    assert not calls  # merged: the LoRA factors are not run
    torch.testing.assert_close(merged, plain, atol=1e-5, rtol=1e-5)
    after = _state(model)
    assert after.keys() == before.keys()
    for k, (dtype, value) in before.items():
        assert after[k][0] == dtype and torch.equal(after[k][1], value), k
    assert not any(m.merged for m in lora) and [m.forward for m in lora] == originals
    assert torch.equal(_logits(model, IDS), plain)


def test_bfloat16_copy_keeps_the_adapter_apart_and_restores_float32():
    model, _ = _peft()
    before = _state(model)
    plain = _logits(model, IDS)
    with inference_weights(model, "bfloat16"):
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        low = _logits(model, IDS)
        with model.disable_adapter():
            low_base = _logits(model, IDS)
    assert not any(m.merged for m in mergeable_lora_layers(model))
    torch.testing.assert_close(low, plain, atol=0.1, rtol=0.05)
    assert (low - low_base).abs().max() > 1e-3  # the update survives bfloat16
    for k, (dtype, value) in _state(model).items():
        assert dtype == before[k][0] and torch.equal(value, before[k][1]), k


def test_disabled_adapters_and_dora_are_not_merged():
    model, _ = _peft()
    with model.disable_adapter():
        assert mergeable_lora_layers(model) is None
        base = _logits(model, IDS)
        with inference_weights(model, "float32"):
            assert torch.equal(_logits(model, IDS), base)
    dora, _ = _peft(use_dora=True)
    assert mergeable_lora_layers(dora) is None
    want = _logits(dora, IDS)
    with inference_weights(dora, "float32"):
        assert torch.equal(_logits(dora, IDS), want)  # runs as peft runs it


def test_plain_model_and_none_are_untouched():
    model, _ = tiny_causal_lm(seed=0)
    want = _logits(model, IDS)
    with inference_weights(model, "float32"):
        assert torch.equal(_logits(model, IDS), want)
    with inference_weights(model, None):
        assert torch.equal(_logits(model, IDS), want)


def test_weights_come_back_after_an_error():
    model, _ = _peft()
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"), inference_weights(model, "bfloat16"):
        raise RuntimeError("boom")
    for k, (dtype, value) in _state(model).items():
        assert dtype == before[k][0] and torch.equal(value, before[k][1])
