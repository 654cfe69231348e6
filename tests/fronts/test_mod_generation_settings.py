"""MOD (decoding-time mixing) takes every generation setting the other front methods take,
``max_batch_tokens`` included, with the same meaning."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import numpy as np
import pytest

from moalign.evaluation.generation import generate_completions, generation_problems
from moalign.fronts import decoding
from moalign.fronts.decoding import generate_mixture
from moalign.models import tiny_causal_lm

PROMPTS = ["Hi", "A longer prompt, with more tokens", "Once upon a time", "Tell me"]


def _settings() -> list[str]:
    return [p for p in inspect.signature(generate_completions).parameters
            if p not in ("model", "tokenizer", "prompts", "logits_processor")]


def test_every_generation_setting_is_a_mixture_argument():
    assert not generation_problems({name: None for name in _settings()})  # all are settings
    taken = inspect.signature(generate_mixture).parameters
    assert [name for name in _settings() if name not in taken] == []


class Ctx:
    """The part of a front's context the decoding method reads: two full fine-tuned runs."""

    def __init__(self):
        self.models = {"a": tiny_causal_lm(seed=0)[0], "b": tiny_causal_lm(seed=1)[0]}
        self.cfg = SimpleNamespace(lora=None)

    def per_objective_runs(self):
        return ["a", "b"]

    def full_model(self, run):
        return self.models[run]

    def weight_vectors(self):
        return [np.array([1.0, 0.0]), np.array([0.5, 0.5])]


class Counting:
    """A policy that records the padded width and rows of each prompt batch it is given."""

    def __init__(self, model):
        self.model, self.batches = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **kwargs):
        if kwargs.get("past_key_values") is None:
            self.batches.append(tuple(kwargs["input_ids"].shape))
        return self.model(**kwargs)


def test_every_decoding_point_runs_with_a_token_budget():
    _, tok = tiny_causal_lm(seed=0)
    ctx = Ctx()
    settings = {"seed": 0, "max_new_tokens": 4, "batch_size": 4, "max_batch_tokens": 40,
                "do_sample": True, "temperature": 0.8, "top_p": 0.9, "max_prompt_length": 16,
                "progress": False}
    points = list(decoding.policies(ctx))
    assert len(points) == 2
    for _, _, policy in points:  # the call that front evaluation makes for a point
        replies = policy.generate(policy.model, tok, PROMPTS, **settings)
        assert len(replies) == len(PROMPTS) and all(isinstance(r, str) for r in replies)


@pytest.mark.parametrize("budget", [None, 30, 60])
def test_the_token_budget_bounds_each_batch_and_leaves_greedy_replies_alone(budget):
    m0, tok = tiny_causal_lm(seed=0)
    m1, _ = tiny_causal_lm(seed=1)
    spied = Counting(m0)
    new = 5
    whole = generate_mixture([m0, m1], [0.4, 0.6], tok, PROMPTS, max_new_tokens=new,
                             batch_size=len(PROMPTS), max_batch_tokens=None)
    got = generate_mixture([spied, m1], [0.4, 0.6], tok, PROMPTS, max_new_tokens=new,
                           batch_size=len(PROMPTS), max_batch_tokens=budget)
    assert got == whole
    assert sum(rows for rows, _ in spied.batches) == len(PROMPTS)
    if budget is None:
        assert len(spied.batches) == 1
    else:
        longest = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS)
        for rows, width in spied.batches:  # at least one row, else within the budget
            assert rows == 1 or rows * (width + new) <= budget
        assert len(spied.batches) > 1 and longest + new <= 60
