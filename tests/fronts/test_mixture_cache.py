"""MOD's cached mixture (one KV cache per policy, left-padded batches) against a loop that
recomputes every policy's full-sequence log-probs at each step, with no cache and no padding."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from moalign.fronts.decoding import generate_mixture
from moalign.models import tiny_causal_lm

PROMPTS = ["Hi", "A longer prompt, with more tokens", "Once upon a time"]
NEW_TOKENS = 12
WEIGHTS = [[0.3, 0.7], [0.5, 0.5], [0.85, 0.15]]


def _two_models():
    m0, tok = tiny_causal_lm(seed=0)
    m1, _ = tiny_causal_lm(seed=1)
    return [m0, m1], tok


def _two_adapters():
    base, tok = tiny_causal_lm(seed=0)
    options = dict(r=4, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                   init_lora_weights=False)
    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(**options), adapter_name="a")
    torch.manual_seed(2)
    model.add_adapter("b", LoraConfig(**options))
    return [(model, "a"), (model, "b")], tok


POLICIES = {"two_models": _two_models, "two_adapters_one_base": _two_adapters}


def _logp_last(policy, ids):
    model = policy[0] if isinstance(policy, tuple) else policy
    if isinstance(policy, tuple):
        model.set_adapter(policy[1])
    model.eval()
    with torch.no_grad():
        return torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)


def _reference(policies, weights, tok, prompt, max_new_tokens=NEW_TOKENS):
    """Greedy ``argmax Σ_k w_k log π_k(· | prompt, y_<t)``, every step a fresh full forward."""
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    new: list[int] = []
    for _ in range(max_new_tokens):
        mixed = sum(w * _logp_last(p, ids) for w, p in zip(weights, policies) if w > 0)
        nxt = int(mixed.argmax())
        new.append(nxt)
        if nxt == tok.eos_token_id:
            break
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return new


@pytest.mark.parametrize("which", sorted(POLICIES))
@pytest.mark.parametrize("weights", WEIGHTS)
def test_cached_mixture_equals_the_no_cache_loop(which, weights):
    policies, tok = POLICIES[which]()
    got = generate_mixture(policies, weights, tok, PROMPTS, max_new_tokens=NEW_TOKENS,
                           batch_size=len(PROMPTS))
    for prompt, text in zip(PROMPTS, got):
        ref = _reference(policies, weights, tok, prompt)
        assert len([t for t in ref if t != tok.eos_token_id]) >= 8  # several cached steps
        assert text == tok.decode(ref, skip_special_tokens=True), prompt


@pytest.mark.parametrize("which", sorted(POLICIES))
def test_negative_control_the_loop_tells_weights_and_policies_apart(which):
    """The check above has power: the same loop with other weights, or with either policy
    alone, gives another greedy continuation for some prompt."""
    policies, tok = POLICIES[which]()
    weights = [0.5, 0.5]
    got = generate_mixture(policies, weights, tok, PROMPTS, max_new_tokens=NEW_TOKENS,
                           batch_size=len(PROMPTS))
    for wrong in ([0.85, 0.15], [0.15, 0.85], [1.0, 0.0], [0.0, 1.0]):
        refs = [tok.decode(_reference(policies, wrong, tok, p), skip_special_tokens=True)
                for p in PROMPTS]
        assert refs != got, wrong
