"""Prompt truncation on what the trainers pass it: shuffled, selected, column-selected data."""

from __future__ import annotations

from datasets import Dataset

from moalign.data import truncate_prompts
from moalign.models import tiny_tokenizer


def test_prompt_only_rows_of_a_shuffled_selection_are_truncated():
    """A prompt-only dataset (online trainers drop every other column) used to lose its rows
    when its only column was replaced; rows read through an index mapping must stay aligned."""
    tok = tiny_tokenizer()
    ds = Dataset.from_dict({"prompt": [f"{i} " + "word " * (5 + i) for i in range(20)],
                            "chosen": ["a"] * 20})
    part = ds.shuffle(seed=0).select(range(6)).select_columns(["prompt"])
    out, changed = truncate_prompts(part, tok, 8)
    assert len(out) == 6 and changed == 6
    # each row is still the end of its own prompt
    for before, after in zip(part["prompt"], out["prompt"]):
        assert before.endswith(after) and len(tok(after)["input_ids"]) <= 8
