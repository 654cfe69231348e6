"""Evaluation: generation, scoring, log-probs and the implicit-reward metric on tiny models."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from moalign.evaluation import (
    evaluate_policy,
    generate_completions,
    implicit_reward_accuracy,
    mean_and_stderr,
    sequence_logprobs,
)
from moalign.models import tiny_causal_lm


@pytest.fixture(scope="module")
def tiny():
    return tiny_causal_lm(seed=0)


def test_mean_and_stderr_matches_hand_computation():
    m, se, n = mean_and_stderr([1.0, 2.0, 3.0, float("nan")])
    assert n == 3 and m == pytest.approx(2.0)
    assert se == pytest.approx(1.0 / math.sqrt(3))
    assert mean_and_stderr([5.0]) == (5.0, 0.0, 1)
    m, se, n = mean_and_stderr([float("nan")])
    assert n == 0 and math.isnan(m)


def test_greedy_generation_is_deterministic_and_returns_one_per_prompt(tiny):
    model, tok = tiny
    prompts = ["Hello", [{"role": "user", "content": "Say hi"}], "A much longer prompt here"]
    a = generate_completions(model, tok, prompts, max_new_tokens=6, batch_size=2)
    b = generate_completions(model, tok, prompts, max_new_tokens=6, batch_size=2)
    assert a == b and len(a) == 3 and all(isinstance(x, str) for x in a)
    assert tok.padding_side == "right", "generation must restore the tokenizer's padding side"


def test_seeded_sampling_reproduces(tiny):
    model, tok = tiny
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.0, batch_size=2)
    a = generate_completions(model, tok, ["x", "y", "z"], seed=3, **kw)
    b = generate_completions(model, tok, ["x", "y", "z"], seed=3, **kw)
    c = generate_completions(model, tok, ["x", "y", "z"], seed=4, **kw)
    assert a == b
    assert a != c


def test_evaluate_policy_refuses_two_objectives_with_one_name(tiny):
    from moalign.errors import ObjectiveError

    model, tok = tiny
    with pytest.raises(ObjectiveError, match="repeated: length"):
        evaluate_policy(model, tok, ["p1"], ["length:target=2", "length:target=50"],
                        max_new_tokens=2)


def test_evaluate_policy_means_match_per_example(tiny):
    model, tok = tiny
    ev = evaluate_policy(model, tok, ["p1", "p2", "p3"], ["length:target=4,unit=chars"],
                         max_new_tokens=5)
    per = ev.per_example[:, 0]
    assert ev.scores["length"] == pytest.approx(per.mean())
    assert ev.stderr["length"] == pytest.approx(per.std(ddof=1) / math.sqrt(3))
    assert ev.counts["length"] == 3 and len(ev.completions) == 3


def test_sequence_logprobs_match_unpadded_forward(tiny):
    model, tok = tiny
    prompts = ["The cat", "A"]
    completions = [" sat on the mat", " very long completion text"]
    got = sequence_logprobs(model, tok, prompts, completions, batch_size=2)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        pi = tok(p, add_special_tokens=False)["input_ids"]
        ci = tok(c + tok.eos_token, add_special_tokens=False)["input_ids"]  # EOS, as in training
        ids = torch.tensor([pi + ci])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        expected = sum(logp[len(pi) - 1 + j, ci[j]].item() for j in range(len(ci)))
        assert got[i] == pytest.approx(expected, abs=1e-4)


def test_implicit_reward_accuracy_matches_definition(tiny):
    model, tok = tiny
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rows = [
        {"prompt": "q1", "chosen": " yes", "rejected": " no", "pref_a": 1.0, "pref_b": float("nan")},
        {"prompt": "q2", "chosen": " maybe", "rejected": " never", "pref_a": -1.0, "pref_b": 1.0},
        {"prompt": "q3", "chosen": " ok", "rejected": " fine", "pref_a": 0.0, "pref_b": -1.0},
    ]
    res = implicit_reward_accuracy(model, tok, rows, ["a", "b"], ref_model=ref, beta=0.5)
    prompts = [r["prompt"] for r in rows]
    d = 0.5 * (
        (sequence_logprobs(model, tok, prompts, [r["chosen"] for r in rows])
         - sequence_logprobs(ref, tok, prompts, [r["chosen"] for r in rows]))
        - (sequence_logprobs(model, tok, prompts, [r["rejected"] for r in rows])
           - sequence_logprobs(ref, tok, prompts, [r["rejected"] for r in rows]))
    )
    a_signed = np.array([d[0], -d[1]])
    b_signed = np.array([d[1], -d[2]])
    assert res["a"]["n"] == 2 and res["b"]["n"] == 2
    assert res["a"]["accuracy"] == pytest.approx((a_signed > 0).mean())
    assert res["a"]["margin"] == pytest.approx(a_signed.mean(), abs=1e-6)
    assert res["b"]["margin"] == pytest.approx(b_signed.mean(), abs=1e-6)


def test_implicit_reward_accuracy_needs_a_reference(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="reference"):
        implicit_reward_accuracy(model, tok, [{"prompt": "q", "chosen": "a", "rejected": "b",
                                               "pref_a": 1.0}], ["a"])


def test_long_pairs_keep_the_start_of_the_prompt_and_cut_the_reply(tiny):
    """A weight condition sits at the start of a prompt: it must survive truncation."""
    from moalign.evaluation.logprobs import _tokenize_pair

    _, tok = tiny
    prompt = "Objective weights: a=0.30, b=0.70\nquestion"
    p, c = _tokenize_pair(tok, prompt, " " + "x" * 500, max_length=64)
    assert tok.decode(p) == prompt
    assert len(p) + len(c) == 64
    p, c = _tokenize_pair(tok, "y" * 100, " z", max_length=64)  # the prompt alone is too long
    assert len(p) == 63 and len(c) == 1 and tok.decode(p) == "y" * 63
