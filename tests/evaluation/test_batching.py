"""Evaluation batches: widest first under a token budget, split when memory runs out, and the
results do not depend on how the examples were batched."""

from __future__ import annotations

import numpy as np
import pytest

from moalign.evaluation import generate_completions, measure_throughput, sequence_logprobs
from moalign.evaluation.batching import length_batches, run_batched
from moalign.models import tiny_causal_lm


def test_length_batches_sort_and_respect_the_budget():
    lengths = [3, 10, 7, 10, 1, 5]
    batches = length_batches(lengths, batch_size=8, max_batch_tokens=20)
    assert sorted(i for b in batches for i in b) == list(range(6))
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    assert flat[:2] == [1, 3]  # ties keep input order
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 20 or len(b) == 1
    assert length_batches(lengths, batch_size=2, max_batch_tokens=None) == [[1, 3], [2, 5], [0, 4]]
    assert length_batches([50], batch_size=4, max_batch_tokens=8) == [[0]]  # one row always fits
    with pytest.raises(ValueError):
        length_batches(lengths, batch_size=0)


def test_run_batched_splits_a_batch_that_runs_out_of_memory():
    seen = []

    def fn(batch):
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        seen.append(list(batch))

    run_batched(fn, [[0, 1, 2, 3, 4], [5, 6, 7]])
    assert sorted(i for b in seen for i in b) == list(range(8))
    assert all(len(b) <= 2 for b in seen)

    def other(batch):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_batched(other, [[0, 1]])


@pytest.fixture(scope="module")
def tiny():
    return tiny_causal_lm(seed=0)


PROMPTS = ["Hello there", "A", "A much longer prompt than the others, with many words in it",
           [{"role": "user", "content": "Say hi"}], "Two words"]
REPLIES = ["hi", "a longer reply of several words", "ok", "hello to you", "x"]


def test_logprobs_do_not_depend_on_the_batching(tiny):
    model, tok = tiny
    one = sequence_logprobs(model, tok, PROMPTS, REPLIES, batch_size=1)
    many = sequence_logprobs(model, tok, PROMPTS, REPLIES, batch_size=64, max_batch_tokens=None)
    tight = sequence_logprobs(model, tok, PROMPTS, REPLIES, max_batch_tokens=40)
    np.testing.assert_allclose(many, one, atol=1e-4)
    np.testing.assert_allclose(tight, one, atol=1e-4)


def test_greedy_replies_come_back_in_prompt_order(tiny):
    model, tok = tiny
    one = [generate_completions(model, tok, [p], max_new_tokens=5)[0] for p in PROMPTS]
    assert generate_completions(model, tok, PROMPTS, max_new_tokens=5, batch_size=1) == one


def test_throughput_is_recorded_inside_measure_throughput(tiny):
    model, tok = tiny
    with measure_throughput() as meter:
        sequence_logprobs(model, tok, PROMPTS, REPLIES)
        generate_completions(model, tok, PROMPTS[:2], max_new_tokens=4)
    rates = meter.rates()
    assert set(rates) == {"logprob", "generation"}
    assert rates["logprob"]["units"] > len(PROMPTS) and rates["logprob"]["per_second"] > 0
    assert 0 < rates["generation"]["units"] <= 2 * 4
    sequence_logprobs(model, tok, PROMPTS, REPLIES)  # outside: not recorded
    assert meter.rates()["logprob"]["units"] == rates["logprob"]["units"]
