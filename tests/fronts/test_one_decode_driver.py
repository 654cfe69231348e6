"""The one decode driver (``evaluation.generation.generate_completions`` with a ``NextToken``
hook): single-policy and MOD greedy replies equal the replies recorded with the generation code
that came before it, and MOD gets the driver's out-of-memory split and throughput; rollouts
and evaluation render and cut prompts alike."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from moalign.evaluation import generate_completions, measure_throughput
from moalign.evaluation.prompts import prompt_ids, render_prompt
from moalign.fronts.decoding import generate_mixture
from moalign.models import tiny_causal_lm
from moalign.trainers.rollout import encode_prompts

PROMPTS = ["Hi", "A longer prompt, with more tokens", [{"role": "user", "content": "Say hi"}],
           "Once upon a time there was a model that wrote long answers to short questions",
           "Tell me"]
SETTINGS = {"plain": dict(batch_size=16, max_batch_tokens=None),
            "budget": dict(batch_size=4, max_batch_tokens=40),
            "cut": dict(batch_size=2, max_prompt_length=6)}

# Replies recorded with the generation code before the one decode driver (tiny models, greedy)
SINGLE = {  # settings name -> [replies of tiny_causal_lm(seed=0), of seed=1]
    'plain': [
        [
            "Zk(\ufffds\ufffd\ufffd|\r\ufffd+",
            "\u0116\ufffd(\ufffd\ufffd\ufffd1\ufffd\ufffd1\ufffd",
            "l\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\fs\u001e\ufffdw",
            "\u0116\u030d\ufffd\u0019\u0016\u001aXg\ufffd\ufffd",
            "\ufffd\ufffdp\ufffd\ufffdi\b\ufffd\ufffd\b\ufffd\ufffd",
        ],
        [
            "\ufffd:\ufffdS\ufffd\u0019\ufffd\ufffd% L\ufffd",
            "zdt0\ufffd\ufffd\ufffdQYU",
            "\ufffd\u001d\\",
            "zdtA\ufffd7t0\ufffd\ufffd\ufffd",
            "\ufffd\u0016\ufffddt\ufffd\u001e\ufffd\u0763m\ufffd",
        ],
    ],
    'cut': [
        [
            "Zk(\ufffds\ufffd\ufffd|\r\ufffd+",
            "\u001e\ufffd\u000b\ufffd\u0007\ufffd\ufffd(\ufffdZk(",
            "l\ufffd\u001f(\ufffd\u0019\ufffd\u0007\ufffd\ufffdp",
            "\ufffd\ufffd|\ufffd+\ufffd\ufffd\ufffd\ufffd",
            "Ic>c>c>c>c>c",
        ],
        [
            "\ufffd:\ufffdS\ufffd\u0019\ufffd\ufffd% L\ufffd",
            "zdt\ufffd\u001e\ufffd\u0763\ufffdr\ufffd7",
            "\ufffd\u001d\u0178\ufffd\ufffd\ufffd\ufffd\u038a\ufffd",
            "zdt\ufffd\u001e\u0004\ufffd$\ufffd\r\ufffd\ufffd",
            "\ufffd\u0016\ufffdM\ufffd7t0-\ufffd\u0004\ufffd",
        ],
    ],
}
MIXTURE = {  # 'policies weights' -> replies
    'models [0.3, 0.7]': [
        "\ufffd\ufffd,\ufffdjszdt\ufffd\u0013,",
        "z\ufffdz\ufffdz\ufffdz\ufffdz\ufffdzd",
        "\ufffd\u001d\\\\\\\\/\ufffddt\ufffd\r",
        "z\ufffdz\ufffdz\ufffdz\ufffdz\ufffdz\ufffd",
        "----\ufffd,\u0016\ufffd\u0763j\ufffd",
    ],
    'models [0.5, 0.5]': [
        "\ufffd\ufffd,\u075bD\t)yI \ufffd",
        "\u001e\ufffd\ufffd\ufffd\ufffd3\ufffd\ufffd\ufffdr\ufffd",
        "\ufffd\u0116SSSSSSSSS",
        "\u001e\ufffd\ufffd\ufffd\ufffd3\ufffd\u0011\ufffd\u0004\ufffd",
        "\u000f\b\ufffd7t%\u000f\b\ufffd7t%",
    ],
    'models [0.85, 0.15]': [
        "Z\ufffd\ufffd\ufffd(\u001c1\ufffd:.\ufffd+",
        "\u001e\u0116\ufffd5\u0016\u001aXg\ufffd\ufffd\ufffd",
        "\u0004\ufffdx\ufffdF\ufffd1\ufffdw\u001aXz",
        "\u001e\u0116\ufffd5\u0016\u001aXg\ufffd\ufffd\u001a",
        "Ic>\ufffd\ufffd\ufffd@\ufffd\ufffd\ufffd(\ufffd",
    ],
    'models [1.0, 0.0]': [
        "Zk(\ufffds\ufffd\ufffd|\r\ufffd+",
        "\u0116\ufffd(\ufffd\ufffd\ufffd1\ufffd\ufffd1\ufffd",
        "l\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\fs\u001e\ufffdw",
        "\u0116\u030d\ufffd\u0019\u0016\u001aXg\ufffd\ufffd",
        "\ufffd\ufffdp\ufffd\ufffdi\b\ufffd\ufffd\b\ufffd\ufffd",
    ],
    'adapters [0.3, 0.7]': [
        "\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd?",
        "\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f",
        "\u0011\ufffdN\u5a8d===\ufffdv=",
        "111111111111",
        "=\ufffd\ufffd\ufffd\ufffd\ufffd=\ufffdy=\u0003N",
    ],
    'adapters [0.5, 0.5]': [
        "\ufffd\ufffd\u0002\ufffdMj\u0002\u0002\u0002M\u0014M",
        "\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f\u000f",
        "\u0011\u0004\ufffd\ufffd\ufffd)\ufffd1\ufffd\ufffd\u0011\u0002",
        "111111111111",
        "=\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd)\ufffd",
    ],
    'adapters [0.85, 0.15]': [
        "\ufffdH%\u0019HOOOO\ufffd\ufffd\ufffd",
        "\ufffd\ufffd111\ufffd\ufffd11111",
        ")\ufffd)\ufffd)\ufffd)\ufffd)\ufffd)",
        "\ufffd\ufffd\ufffd11\ufffd\ufffd\ufffd1111",
        "\ufffd))\ufffd\ufffd\ufffd\u0011\ufffd\u0011\ufffd\ufffd",
    ],
    'adapters [1.0, 0.0]': [
        "\ufffd\ufffd\ufffdH%\ufffd1H%%%%",
        "\u00d411\ufffd\ufffd\ufffd\ufffd1111",
        ")))\u0004))\ufffd)\u0004",
        "\ufffd\ufffd\ufffd11\ufffd\ufffd\ufffd111\ufffd",
        "\ufffd))\ufffd\ufffd\ufffd)\ufffd)))",
    ],
}


def _two_adapters():
    base, tok = tiny_causal_lm(seed=0)
    options = dict(r=4, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                   init_lora_weights=False)
    torch.manual_seed(1)
    model = get_peft_model(base, LoraConfig(**options), adapter_name="a")
    torch.manual_seed(2)
    model.add_adapter("b", LoraConfig(**options))
    return [(model, "a"), (model, "b")], tok


def _two_models():
    m0, tok = tiny_causal_lm(seed=0)
    return [m0, tiny_causal_lm(seed=1)[0]], tok


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_greedy_replies_equal_the_recorded_ones(name):
    expected = SINGLE["cut" if name == "cut" else "plain"]
    for seed, replies in enumerate(expected):
        model, tok = tiny_causal_lm(seed=seed)
        got = generate_completions(model, tok, PROMPTS, max_new_tokens=12, **SETTINGS[name])
        assert got == replies


@pytest.mark.parametrize("key", sorted(MIXTURE))
def test_mixture_replies_equal_the_recorded_ones(key):
    which, weights = key.split(" ", 1)
    policies, tok = {"models": _two_models, "adapters": _two_adapters}[which]()
    w = [float(x) for x in weights.strip("[]").split(",")]
    got = generate_mixture(policies, w, tok, PROMPTS, max_new_tokens=12, batch_size=3,
                           max_batch_tokens=60)
    assert got == MIXTURE[key]


class RunsOutOfMemory:
    """A policy whose forward pass on a prompt batch of more than one row runs out of memory."""

    def __init__(self, model):
        self.model, self.refused = model, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, **kwargs):
        if kwargs.get("past_key_values") is None and kwargs["input_ids"].shape[0] > 1:
            self.refused += 1
            raise RuntimeError("CUDA out of memory (simulated)")
        return self.model(**kwargs)


def test_a_mixture_batch_that_runs_out_of_memory_is_split_and_measured():
    (m0, m1), tok = _two_models()
    flaky = RunsOutOfMemory(m0)
    with measure_throughput() as meter:
        got = generate_mixture([flaky, m1], [0.3, 0.7], tok, PROMPTS, max_new_tokens=12,
                               batch_size=3, max_batch_tokens=60)
    assert got == MIXTURE["models [0.3, 0.7]"]
    assert flaky.refused > 0
    assert meter.rates()["generation"]["units"] > len(PROMPTS)


def test_seeded_mixture_sampling_reproduces():
    policies, tok = _two_models()
    kw = dict(max_new_tokens=8, do_sample=True, temperature=1.0, top_p=0.9, batch_size=2)
    a = generate_mixture(policies, [0.5, 0.5], tok, PROMPTS, seed=3, **kw)
    assert a == generate_mixture(policies, [0.5, 0.5], tok, PROMPTS, seed=3, **kw)
    assert a != generate_mixture(policies, [0.5, 0.5], tok, PROMPTS, seed=4, **kw)


@pytest.mark.parametrize("template", [True, False])
def test_rollouts_and_evaluation_render_and_cut_prompts_alike(template):
    _, tok = tiny_causal_lm(seed=0)
    if not template:
        tok.chat_template = None
    ids, mask = encode_prompts(tok, PROMPTS, 6)
    rows = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
    assert rows == prompt_ids(tok, PROMPTS, 6)
    full, _ = encode_prompts(tok, PROMPTS[2:3], None)
    assert tok.decode(full[0]) == render_prompt(tok, PROMPTS[2])
