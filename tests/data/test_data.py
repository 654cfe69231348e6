"""The canonical preference schema: validation, mixing, counting, orienting, splitting, truncation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from datasets import Dataset

import moalign
from moalign.data import (
    PREF_PREFIX,
    label_counts,
    load_hh_rlhf,
    mix_preference_datasets,
    objectives_in,
    pairs_for_objective,
    pref_column,
    train_test_split_pairs,
    truncate_prompt,
    truncate_prompts,
    validate_preference_dataset,
)
from moalign.errors import DataError
from moalign.models import tiny_tokenizer

NAN = math.nan


def user(text):
    return [{"role": "user", "content": text}]


def reply(text):
    return [{"role": "assistant", "content": text}]


def chat_ds(n=4, **labels):
    rows = {
        "prompt": [user(f"question {i}") for i in range(n)],
        "chosen": [reply(f"good {i}") for i in range(n)],
        "rejected": [reply(f"bad {i}") for i in range(n)],
    }
    rows.update({pref_column(k): v for k, v in labels.items()})
    return Dataset.from_dict(rows)


def test_names_and_public_access():
    assert PREF_PREFIX == "pref_" and pref_column("helpfulness") == "pref_helpfulness"
    assert moalign.data.load_hh_rlhf is load_hh_rlhf
    ds = chat_ds(2, b=[1.0, 0.0], a=[NAN, -1.0])
    assert objectives_in(ds) == ["b", "a"]
    for bad in ("Helpful", "2x", "", "a-b", None):
        with pytest.raises(DataError, match="invalid objective name"):
            pref_column(bad)


def test_validate_accepts_good_data_and_returns_objectives():
    ds = chat_ds(3, helpfulness=[1.0, -1.0, 0.0], harmlessness=[NAN, NAN, 1.0])
    assert validate_preference_dataset(ds) == ["helpfulness", "harmlessness"]
    assert validate_preference_dataset(ds, objectives=["harmlessness"]) == ["harmlessness"]
    text = Dataset.from_dict({"prompt": ["q"], "chosen": [" a"], "rejected": [" b"],
                              "pref_x": [1.0]})
    assert validate_preference_dataset(text) == ["x"]
    # a system turn and earlier assistant turns are fine; an empty completion is fine
    ds2 = Dataset.from_dict({
        "prompt": [[{"role": "system", "content": "s"}, *user("a"), *reply("b"), *user("c")]],
        "chosen": [reply("")], "rejected": [reply("d")], "pref_x": [1.0]})
    assert validate_preference_dataset(ds2) == ["x"]


def with_row(ds, i, **changes):
    rows = ds.to_list()
    rows[i] = {**rows[i], **changes}
    return Dataset.from_list(rows)


BASE = chat_ds(4, helpfulness=[1.0, -1.0, NAN, 0.0])


@pytest.mark.parametrize(
    "ds, kwargs, match",
    [
        (BASE.remove_columns("rejected"), {}, "no column 'rejected'"),
        (BASE.remove_columns("pref_helpfulness"), {}, "no 'pref_<objective>' label column"),
        (BASE, {"objectives": ["harmlessness"]}, "no column 'pref_harmlessness'"),
        (with_row(BASE, 2, prompt=user("   ")), {}, r"row 2, column 'prompt': empty prompt"),
        (with_row(BASE, 1, prompt=[]), {}, r"row 1, column 'prompt'"),
        (with_row(BASE, 3, prompt=[{"role": "robot", "content": "x"}]), {},
         r"row 3, column 'prompt': message 0 has role 'robot'"),
        (with_row(BASE, 1, prompt=[*user("a"), *reply("b")]), {},
         r"row 1, column 'prompt': the prompt must end with a 'user' message"),
        (with_row(BASE, 2, chosen=user("x")), {}, r"row 2, column 'chosen': message 0 has role 'user'"),
        (with_row(BASE, 1, rejected=[]), {}, r"row 1, column 'rejected'"),
        (with_row(BASE, 3, pref_helpfulness=0.5), {},
         r"row 3, column 'pref_helpfulness': label 0.5 is not \+1, -1, 0 or NaN"),
        (chat_ds(2, helpfulness=[NAN, NAN]), {}, "column 'pref_helpfulness'.*no labelled row"),
        (BASE.select([]), {}, "empty"),
    ],
)
def test_validate_names_column_and_row(ds, kwargs, match):
    with pytest.raises(DataError, match=match):
        validate_preference_dataset(ds, **kwargs)


def test_validate_checks_message_keys_and_mixed_formats():
    rows = [{"prompt": user("a"), "chosen": reply("b"), "rejected": reply("c"), "pref_x": 1.0},
            {"prompt": user("a"), "chosen": reply("b"), "rejected": reply("c"), "pref_x": 1.0}]
    # a plain Python list slipped in as a non-message (datasets stores missing keys as None)
    ds = Dataset.from_list([rows[0], {**rows[1], "chosen": [{"role": "assistant"}]}])
    with pytest.raises(DataError, match=r"row 1, column 'chosen'"):
        validate_preference_dataset(ds)
    text = Dataset.from_dict({"prompt": ["q", ""], "chosen": ["a", "b"], "rejected": ["c", "d"],
                              "pref_x": [1.0, 1.0]})
    with pytest.raises(DataError, match=r"row 1, column 'prompt': empty prompt"):
        validate_preference_dataset(text)
    with pytest.raises(DataError, match="no labelled row"):
        validate_preference_dataset(
            chat_ds(2, x=[1.0, 1.0], y=[NAN, NAN]), objectives=["x"], require_labels_for=["y"])
    assert validate_preference_dataset(chat_ds(2, x=[1.0, 1.0], y=[NAN, NAN]),
                                       require_labels_for=["x"]) == ["x", "y"]


def test_mix_fills_missing_objectives_with_nan():
    a = chat_ds(2, helpfulness=[1.0, -1.0])
    b = chat_ds(3, harmlessness=[1.0, 0.0, NAN]).add_column("source", ["pku"] * 3)
    mixed = mix_preference_datasets(a, b)
    assert mixed.column_names == ["prompt", "chosen", "rejected", "pref_helpfulness",
                                  "pref_harmlessness", "source"]
    h = np.asarray(mixed["pref_helpfulness"], dtype=float)
    s = np.asarray(mixed["pref_harmlessness"], dtype=float)
    np.testing.assert_array_equal(np.isnan(h), [False, False, True, True, True])
    np.testing.assert_array_equal(np.isnan(s), [True, True, False, False, True])
    assert h[:2].tolist() == [1.0, -1.0] and s[2:4].tolist() == [1.0, 0.0]
    assert mixed["source"] == [None, None, "pku", "pku", "pku"]
    assert str(mixed.features["pref_helpfulness"].dtype) == "float32"
    assert label_counts(mixed) == {
        "helpfulness": {"chosen": 1, "rejected": 1, "tie": 0, "unlabeled": 3},
        "harmlessness": {"chosen": 1, "rejected": 0, "tie": 1, "unlabeled": 3},
    }


def test_mix_rejects_mixed_formats_and_bad_input():
    text = Dataset.from_dict({"prompt": ["q"], "chosen": ["a"], "rejected": ["b"], "pref_x": [1.0]})
    with pytest.raises(DataError, match=r"dataset 1, column 'prompt'"):
        mix_preference_datasets(chat_ds(1, x=[1.0]), text)
    with pytest.raises(DataError, match="dataset 1 has no column 'chosen'"):
        mix_preference_datasets(text, text.remove_columns("chosen"))
    with pytest.raises(DataError, match="at least one"):
        mix_preference_datasets()


def test_label_counts_rejects_bad_labels():
    with pytest.raises(DataError, match=r"row 1, column 'pref_x'"):
        label_counts(chat_ds(2, x=[1.0, 2.0]))


def test_pairs_for_objective_orients_chosen_as_the_better_one():
    ds = chat_ds(4, helpfulness=[1.0, -1.0, NAN, 0.0], harmlessness=[-1.0, 1.0, 1.0, NAN])
    help_ = pairs_for_objective(ds, "helpfulness")
    assert [r["chosen"][0]["content"] for r in help_] == ["good 0", "bad 1"]
    assert help_["pref_helpfulness"] == [1.0, 1.0]
    assert help_["pref_harmlessness"] == [-1.0, -1.0]  # row 1 swapped: its harm label flips
    harm = pairs_for_objective(ds, "harmlessness")
    assert [r["chosen"][0]["content"] for r in harm] == ["bad 0", "good 1", "good 2"]
    assert harm["pref_harmlessness"] == [1.0, 1.0, 1.0]
    assert harm.column_names == ds.column_names
    assert len(pairs_for_objective(ds, "helpfulness", include_ties=True)) == 3
    with pytest.raises(DataError, match="no column 'pref_honesty'"):
        pairs_for_objective(ds, "honesty")


# --------------------------------------------------------------------------------------------
# splitting
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hh_both():
    return load_hh_rlhf("both").dataset


def test_split_is_deterministic_stratified_and_prompt_disjoint(hh_both):
    split = train_test_split_pairs(hh_both, test_size=0.2, seed=0)
    again = train_test_split_pairs(hh_both, test_size=0.2, seed=0)
    other = train_test_split_pairs(hh_both, test_size=0.2, seed=1)
    assert split["test"]["prompt"] == again["test"]["prompt"]
    assert split["test"]["prompt"] != other["test"]["prompt"]
    assert len(split["train"]) + len(split["test"]) == len(hh_both)
    for name in ("helpfulness", "harmlessness"):
        n_all = label_counts(hh_both)[name]["chosen"]
        n_test = label_counts(split["test"])[name]["chosen"]
        assert abs(n_test - 0.2 * n_all) <= 3, (name, n_test, n_all)
    key = str
    train_prompts = {key(p) for p in split["train"]["prompt"]}
    assert not any(key(p) in train_prompts for p in split["test"]["prompt"])


def test_split_keeps_groups_together_and_counts():
    prompts = [user(f"p{i // 3}") for i in range(30)]  # 10 prompts x 3 pairs
    ds = Dataset.from_dict({"prompt": prompts, "chosen": [reply("a")] * 30,
                            "rejected": [reply("b")] * 30, "pref_x": [1.0] * 30})
    split = train_test_split_pairs(ds, test_size=6, seed=3)
    assert len(split["test"]) == 6
    test_prompts = {p[0]["content"] for p in split["test"]["prompt"]}
    assert len(test_prompts) == 2
    assert not test_prompts & {p[0]["content"] for p in split["train"]["prompt"]}
    loose = train_test_split_pairs(ds, test_size=0.1, group_by_prompt=False)
    assert len(loose["test"]) == 3


@pytest.mark.parametrize("size, match", [(0.0, r"\(0, 1\)"), (1.5, r"\(0, 1\)"), (10, r"\[1, 9\]"),
                                         ("a", "fraction"), (True, "fraction")])
def test_split_bad_sizes(size, match):
    with pytest.raises(DataError, match=match):
        train_test_split_pairs(chat_ds(10, x=[1.0] * 10), test_size=size)


# --------------------------------------------------------------------------------------------
# truncation (the tiny tokenizer is byte-level: one token per UTF-8 byte, ChatML specials)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def n_chat(tok, messages):
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_truncate_chat_drops_early_turns_first(tok):
    system = {"role": "system", "content": "be nice"}
    msgs = [system, *user("first " * 10), *reply("answer " * 10), *user("second question")]
    full = n_chat(tok, msgs)
    assert truncate_prompt(msgs, tok, full) is msgs  # fits: unchanged
    out = truncate_prompt(msgs, tok, full - 1)
    assert out == [system, *user("second question")]
    assert n_chat(tok, out) <= full - 1


def test_truncate_chat_trims_last_user_turn_from_the_left(tok):
    msgs = [*user("old"), *reply("old reply"), *user("0123456789" * 5)]
    limit = n_chat(tok, user("")) + 12
    out = truncate_prompt(msgs, tok, limit)
    assert out == user(("0123456789" * 5)[-12:])  # byte-level: exactly 12 characters kept
    assert n_chat(tok, out) == limit
    with pytest.raises(DataError, match="too small"):
        truncate_prompt(msgs, tok, 3)


def test_truncate_text_prompts(tok):
    hh = "\n\nHuman: one\n\nAssistant: two\n\nHuman: three four\n\nAssistant:"
    last = "\n\nHuman: three four\n\nAssistant:"
    assert truncate_prompt(hh, tok, len(hh)) == hh
    assert truncate_prompt(hh, tok, len(last)) == last
    assert truncate_prompt(hh, tok, len(last) - 5) == "\n\nHuman: four\n\nAssistant:"
    assert truncate_prompt("abcdefgh", tok, 3) == "fgh"
    with pytest.raises(DataError, match="positive integer"):
        truncate_prompt("abc", tok, 0)


def test_truncate_prompts_over_a_dataset(tok):
    ds = chat_ds(3, x=[1.0, 1.0, 1.0])
    ds = ds.add_column("keep", [1, 2, 3])
    long = user("x" * 200)
    ds = Dataset.from_list([{**r, "prompt": long} if i == 1 else r for i, r in enumerate(ds.to_list())])
    limit = n_chat(tok, user("question 0"))
    out, changed = truncate_prompts(ds, tok, limit)
    assert changed == 1 and out.column_names == ds.column_names
    assert out[0]["prompt"] == ds[0]["prompt"] and out["keep"] == [1, 2, 3]
    assert all(n_chat(tok, p) <= limit for p in out["prompt"])
    assert out[1]["prompt"][0]["content"] == "x" * len(out[1]["prompt"][0]["content"])
