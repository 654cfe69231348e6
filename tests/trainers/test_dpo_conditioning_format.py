"""The weight condition text shared by conditioned training and evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from moalign.errors import DataError, WeightsError
from moalign.models import tiny_tokenizer
from moalign.tradeoff.conditioning import (
    apply_condition,
    format_condition,
    has_condition,
    quantize_weights,
)

NAMES = ["helpfulness", "harmlessness"]


def test_format_condition_exact_text():
    assert format_condition([0.3, 0.7], NAMES) == "Objective weights: helpfulness=0.30, harmlessness=0.70"
    assert format_condition([1, 0, 0], ["a", "b", "c"]) == "Objective weights: a=1.00, b=0.00, c=0.00"


def test_quantize_keeps_the_sum_at_one():
    w = quantize_weights([1 / 3, 1 / 3, 1 / 3])
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert sorted(w.tolist()) == [0.33, 0.33, 0.34]
    rng = np.random.default_rng(0)
    for row in rng.dirichlet([0.5, 0.5, 0.5, 0.5], size=200):
        q = quantize_weights(row)
        assert abs(q.sum() - 1.0) < 1e-12
        assert np.all(np.abs(q - row) <= 0.01 + 1e-12)
        text = format_condition(row, list("abcd"))
        printed = [float(part.split("=")[1]) for part in text.split(": ")[1].split(", ")]
        assert np.allclose(printed, q)


def test_bad_weights_name_the_problem():
    with pytest.raises(WeightsError, match="2 objectives"):
        format_condition([0.2, 0.3, 0.5], NAMES)
    with pytest.raises(WeightsError, match="sum to 1"):
        format_condition([0.2, 0.3], NAMES)


def test_plain_prompt_gets_a_first_line():
    out = apply_condition("Human: hi\n\nAssistant:", [0.25, 0.75], NAMES)
    assert out == "Objective weights: helpfulness=0.25, harmlessness=0.75\nHuman: hi\n\nAssistant:"
    assert apply_condition("x", [0.25, 0.75], NAMES, style="prefix") == out.split("\n")[0] + "\nx"
    with pytest.raises(DataError, match="already carries"):
        apply_condition(out, [0.5, 0.5], NAMES)


def test_chat_prompt_system_and_prefix_styles():
    chat = [{"role": "user", "content": "hi"}]
    system = apply_condition(chat, [0.5, 0.5], NAMES)
    assert system == [
        {"role": "system", "content": "Objective weights: helpfulness=0.50, harmlessness=0.50"},
        {"role": "user", "content": "hi"},
    ]
    assert chat == [{"role": "user", "content": "hi"}]  # input untouched
    with_system = [{"role": "system", "content": "Be brief."}, *chat]
    merged = apply_condition(with_system, [0.5, 0.5], NAMES)
    assert merged[0]["content"] == "Objective weights: helpfulness=0.50, harmlessness=0.50\nBe brief."
    assert len(merged) == 2
    prefix = apply_condition(chat, [0.5, 0.5], NAMES, style="prefix")
    assert prefix == [{"role": "user", "content":
                       "Objective weights: helpfulness=0.50, harmlessness=0.50\nhi"}]
    assert has_condition(system) and has_condition(prefix) and not has_condition(chat)
    with pytest.raises(DataError, match="style"):
        apply_condition(chat, [0.5, 0.5], NAMES, style="suffix")


def test_chat_template_renders_the_condition_once_and_tokens_round_trip():
    tok = tiny_tokenizer()
    chat = apply_condition([{"role": "user", "content": "hi"}], [0.1, 0.9], NAMES)
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nObjective weights: helpfulness=0.10, "
                           "harmlessness=0.90<|im_end|>\n<|im_start|>user\nhi")
    line = format_condition([0.1, 0.9], NAMES)
    assert tok.decode(tok(line, add_special_tokens=False)["input_ids"]) == line
