"""A weight condition survives every cut: MO-PPO rollouts and evaluation generation keep the
condition line of a prompt longer than ``max_prompt_length`` and cut the user text instead (or
refuse the prompt, counted); conditioned MO-DPO refuses ``truncation_mode: keep_end``."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")

from datasets import Dataset  # noqa: E402

from moalign.errors import ConfigError, DataError  # noqa: E402
from moalign.evaluation.generation import generate_completions  # noqa: E402
from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.objective import Objective, as_text  # noqa: E402
from moalign.tradeoff.conditioning import (  # noqa: E402
    WEIGHTS_COLUMN,
    apply_condition,
    format_condition,
)

NAMES = ("ascii", "other")
TAIL = " and end here please"


class Share(Objective):
    def __init__(self, name: str, ascii_: bool):
        self.name, self.ascii = name, ascii_

    def score(self, prompts, completions, **columns):
        shares = [sum(ch < "\x80" for ch in as_text(c)) / max(len(as_text(c)), 1)
                  for c in completions]
        return [s if self.ascii else 1.0 - s for s in shares]


def long_prompt(i: int, words: int = 60) -> str:
    return f"Item {i}: " + " ".join(f"word{j}" for j in range(words)) + TAIL


def _ppo(tmp_path, max_prompt_length):
    from moalign.trainers.ppo import MultiObjectivePPOConfig, MultiObjectivePPOTrainer

    args = MultiObjectivePPOConfig(
        output_dir=str(tmp_path), max_steps=1, batch_size=4, num_samples_per_prompt=1,
        max_new_tokens=4, mini_batch_size=4, ppo_epochs=1, kl_coef=0.0, use_cpu=True,
        save_final=False, conditioning="prompt", seed=0, max_prompt_length=max_prompt_length)
    model, tok = tiny_causal_lm(seed=0)
    data = Dataset.from_dict({"prompt": [long_prompt(i) for i in range(8)]})
    return MultiObjectivePPOTrainer(model, [Share("ascii", True), Share("other", False)], args,
                                    train_dataset=data, processing_class=tok)


def test_ppo_rollouts_keep_the_condition_of_a_long_prompt(tmp_path):
    limit = 80
    trainer = _ppo(tmp_path, limit)
    tok = trainer.tokenizer
    assert len(tok(trainer.rows[0]["prompt"], add_special_tokens=False)["input_ids"]) > 2 * limit
    rollout = trainer.rollout()
    for ids, mask, weights in zip(rollout.query_ids, rollout.query_mask,
                                  rollout.columns[WEIGHTS_COLUMN]):
        assert int(mask.sum()) == limit
        seen = tok.decode(ids[mask.bool()])
        condition = format_condition(weights, NAMES)
        assert seen.startswith(condition + "\n"), seen  # the whole condition, first
        assert seen.endswith(TAIL)  # the user text lost its start, not its end
    trainer.train_step()  # the advantages of these rows use the weights the policy saw


def test_ppo_refuses_a_prompt_whose_condition_does_not_fit(tmp_path):
    trainer = _ppo(tmp_path, 6)
    with pytest.raises(DataError, match=r"4 of 4 prompts refused.*max_prompt_length=6"):
        trainer.rollout()


class Spy:
    """Records the prompt tokens handed to ``generate``."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def generate(self, input_ids, attention_mask, **kwargs):
        self.seen.extend(row[m.bool()].tolist() for row, m in zip(input_ids, attention_mask))
        return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


@pytest.mark.parametrize("chat", [False, True])
def test_evaluation_generation_keeps_the_condition(chat):
    model, tok = tiny_causal_lm(seed=0)
    spy = Spy(model)
    weights = [(0.3, 0.7), (0.85, 0.15)]
    base = [long_prompt(i) for i in range(2)]
    if chat:
        base = [[{"role": "user", "content": p}] for p in base]
    prompts = [apply_condition(p, w, NAMES, "system") for p, w in zip(base, weights)]
    limit = 100
    replies = generate_completions(spy, tok, prompts, max_new_tokens=3, max_prompt_length=limit,
                                   batch_size=2)
    assert len(replies) == 2 and len(spy.seen) == 2
    shown = sorted(tok.decode(ids) for ids in spy.seen)
    for text, w in zip(sorted(shown), sorted(weights)):
        assert format_condition(w, NAMES) in text, text
    for ids in spy.seen:
        assert len(ids) == limit
        assert TAIL.strip() in tok.decode(ids)  # the end of the user text (and of the template)


def test_the_rule_without_a_condition_keeps_the_last_tokens():
    from moalign.evaluation.generation import keep_prompt_ids

    _, tok = tiny_causal_lm(seed=0)
    text = long_prompt(0)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert keep_prompt_ids(tok, [text], 10) == [ids[-10:]]
    assert keep_prompt_ids(tok, [text], None) == [ids]
    conditioned = apply_condition(text, [0.5, 0.5], NAMES)
    (kept,) = keep_prompt_ids(tok, [conditioned], 60)
    head = tok(format_condition([0.5, 0.5], NAMES) + "\n", add_special_tokens=False)["input_ids"]
    assert len(kept) == 60 and kept[-(60 - len(head)):] == ids[-(60 - len(head)):]
    assert tok.decode(kept).startswith(format_condition([0.5, 0.5], NAMES) + "\n")


def test_conditioned_dpo_refuses_keep_end(tmp_path):
    from moalign.trainers import MultiObjectiveDPOConfig

    common = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none",
                  objectives=list(NAMES), max_length=64)
    with pytest.raises(ConfigError, match="keep_end"):
        MultiObjectiveDPOConfig(conditioning="prompt", truncation_mode="keep_end", **common)
    MultiObjectiveDPOConfig(conditioning="prompt", truncation_mode="keep_start", **common)
    MultiObjectiveDPOConfig(truncation_mode="keep_end", **common)  # no condition to keep
