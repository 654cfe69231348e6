"""Rewarded soups (exact LoRA interpolation) and MOD decoding-time mixtures on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from moalign.errors import ConfigError
from moalign.evaluation import generate_completions
from moalign.fronts.decoding import generate_mixture
from moalign.fronts.soup import soup_adapter, soup_state_dicts
from moalign.models import tiny_causal_lm
from moalign.models.lora import soup_lora_problems

#: LoRA options of adapters a and b: plain LoRA, rsLoRA, and one of each (rsLoRA first).
VARIANTS = {
    "lora": ({}, {}),
    "rslora": ({"use_rslora": True}, {"use_rslora": True}),
    "mixed": ({"use_rslora": True}, {}),
}


def _two_adapter_model(options_a=None, options_b=None):
    base, tok = tiny_causal_lm(seed=0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False, **(options_a or {}))
    torch.manual_seed(1)
    model = get_peft_model(base, cfg, adapter_name="a")
    torch.manual_seed(2)
    model.add_adapter("b", LoraConfig(r=2, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                      init_lora_weights=False, **(options_b or {})))
    return model, tok


def _logits(model, tok, text="Hello there, how are you?"):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def _max_diff(x, y) -> float:
    return float((x - y).abs().max())


def _merged_weights(model, adapter):
    m = copy.deepcopy(model)
    m.set_adapter(adapter)
    return m.merge_and_unload().state_dict()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_soup_at_a_vertex_reproduces_that_policy_exactly(variant):
    model, tok = _two_adapter_model(*VARIANTS[variant])
    model.set_adapter("a")
    ref_a = _logits(model, tok)
    model.set_adapter("b")
    ref_b = _logits(model, tok)
    soup_adapter(model, ["a", "b"], [1.0, 0.0])
    assert _max_diff(_logits(model, tok), ref_a) < 1e-5
    soup_adapter(model, ["a", "b"], [0.0, 1.0])
    assert _max_diff(_logits(model, tok), ref_b) < 1e-5
    assert _max_diff(ref_a, ref_b) > 1e-1  # the vertices differ, so the check can tell them apart
    model.set_adapter("a")  # the ingredients are left as they were
    assert _max_diff(_logits(model, tok), ref_a) == 0.0


@pytest.mark.parametrize("weights", [[1.0, 0.0], [0.0, 1.0]])
def test_negative_control_peft_cat_alone_is_not_exact_with_rslora(weights):
    """What soup_adapter did before: peft's ``cat`` keeps rsLoRA on the stacked adapter, whose
    scaling becomes sqrt(6) instead of 1; the vertex check above would fail on it."""
    model, tok = _two_adapter_model(*VARIANTS["rslora"])
    model.set_adapter("a" if weights[0] else "b")
    vertex = _logits(model, tok)
    model.add_weighted_adapter(["a", "b"], weights, "raw", combination_type="cat")
    model.set_adapter("raw")
    assert _max_diff(_logits(model, tok), vertex) > 1e-3


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_soup_interpolates_the_weight_updates(variant):
    model, tok = _two_adapter_model(*VARIANTS[variant])
    full = soup_state_dicts([_merged_weights(model, "a"), _merged_weights(model, "b")], [0.3, 0.7])
    name = soup_adapter(model, ["a", "b"], [0.3, 0.7])
    merged = copy.deepcopy(model)
    merged.set_adapter(name)
    merged = merged.merge_and_unload()
    for key, value in merged.state_dict().items():
        assert torch.allclose(value, full[key].to(value.dtype), atol=1e-5), key


def test_a_saved_rslora_soup_reloads_to_the_same_policy(tmp_path):
    model, tok = _two_adapter_model(*VARIANTS["rslora"])
    name = soup_adapter(model, ["a", "b"], [0.3, 0.7], name="soup")
    expected = _logits(model, tok)
    model.save_pretrained(str(tmp_path), selected_adapters=[name])
    base, _ = tiny_causal_lm(seed=0)
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / name))
    assert _max_diff(_logits(reloaded, tok), expected) < 1e-5


@pytest.mark.parametrize("option, value", [("use_dora", True), ("bias", "lora_only"),
                                           ("lora_bias", True)])
def test_soup_refuses_options_it_cannot_interpolate(option, value):
    model, _ = _two_adapter_model({}, {option: value})
    with pytest.raises(ConfigError, match=f"'b': '{option}: {str(value).lower()}'.*method soup"):
        soup_adapter(model, ["a", "b"], [0.5, 0.5])
    assert list(model.peft_config) == ["a", "b"]  # refused before anything was added


def test_soup_lora_problems_names_each_refused_option():
    problems = soup_lora_problems({"r": 8, "use_dora": True, "bias": "all", "use_rslora": True})
    assert len(problems) == 2
    assert "'lora': 'use_dora: true'" in problems[0] and "magnitude" in problems[0]
    assert "'lora': 'bias: all'" in problems[1] and "'bias: none'" in problems[1]
    for fine in (None, True, False, {}, {"r": 8, "use_rslora": True, "bias": "none"},
                 {"use_dora": False, "lora_bias": False}):
        assert soup_lora_problems(fine) == []
    assert soup_lora_problems(LoraConfig(use_dora=True), key="x")[0].startswith("'x': 'use_dora")


def test_soup_name_reuse_replaces_the_old_soup():
    model, tok = _two_adapter_model()
    soup_adapter(model, ["a", "b"], [1.0, 0.0], name="mix")
    first = _logits(model, tok)
    soup_adapter(model, ["a", "b"], [0.0, 1.0], name="mix")
    assert not torch.allclose(_logits(model, tok), first, atol=1e-4)


def test_soup_rejects_bad_weights_and_unknown_adapters():
    from moalign.errors import WeightsError

    model, _ = _two_adapter_model()
    with pytest.raises(WeightsError, match="sum to 1"):
        soup_adapter(model, ["a", "b"], [0.5, 0.6])
    with pytest.raises(ValueError, match="not loaded"):
        soup_adapter(model, ["a", "c"], [0.5, 0.5])


def test_mixture_at_a_vertex_equals_greedy_generation_of_that_policy():
    m0, tok = tiny_causal_lm(seed=0)
    m1, _ = tiny_causal_lm(seed=1)
    prompts = ["Hi", "A longer prompt", [{"role": "user", "content": "chat"}]]
    for w, policy in (([1.0, 0.0], m0), ([0.0, 1.0], m1)):
        got = generate_mixture([m0, m1], w, tok, prompts, max_new_tokens=6, batch_size=3)
        assert got == generate_completions(policy, tok, prompts, max_new_tokens=6, batch_size=1)


def test_mixture_first_token_is_argmax_of_weighted_logprobs():
    m0, tok = tiny_causal_lm(seed=0)
    m1, _ = tiny_causal_lm(seed=1)
    ids = tok("Hello", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        mix = 0.4 * torch.log_softmax(m0(ids).logits[0, -1], -1) + 0.6 * torch.log_softmax(
            m1(ids).logits[0, -1], -1)
    got = generate_mixture([m0, m1], [0.4, 0.6], tok, ["Hello"], max_new_tokens=1)
    assert got[0] == tok.decode([int(mix.argmax())], skip_special_tokens=True)


def test_mixture_of_adapters_on_one_base():
    model, tok = _two_adapter_model()
    model.set_adapter("a")
    alone = generate_completions(model, tok, ["Hello"], max_new_tokens=5)
    got = generate_mixture([(model, "a"), (model, "b")], [1.0, 0.0], tok, ["Hello"],
                           max_new_tokens=5)
    assert got == alone
