"""HH-RLHF adapter on the real bundled test splits: every row accounted for, exact round trip."""

from __future__ import annotations

import gzip
import json
import math
import shutil

import pytest

from moalign.data import (
    format_hh_dialogue,
    format_hh_transcript,
    from_hh_rlhf,
    label_counts,
    load_hh_rlhf,
    parse_hh_dialogue,
    split_hh_pair,
    validate_preference_dataset,
)
from moalign.data.bundled import bundled_path
from moalign.errors import DataError

A = "\n\nAssistant:"


def raw_rows(subset: str) -> list[dict]:
    with gzip.open(bundled_path(f"hh-rlhf/{subset}"), "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def raw():
    return {s: raw_rows(s) for s in ("helpful-base", "harmless-base")}


@pytest.fixture(scope="module")
def chat():
    return {s: load_hh_rlhf(s) for s in ("helpful-base", "harmless-base")}


@pytest.fixture(scope="module")
def text():
    return {s: load_hh_rlhf(s, as_chat=False) for s in ("helpful-base", "harmless-base")}


def kept_indices(report) -> list[int]:
    dropped = {i for ids in report.dropped_indices.values() for i in ids}
    return [i for i in range(report.records_in) if i not in dropped]


@pytest.mark.parametrize(
    "subset, n_rows, n_ties, empty_side",
    [("helpful-base", 2354, 2, "rejected"), ("harmless-base", 2312, 0, "chosen")],
)
def test_every_row_accounted_for(raw, chat, subset, n_rows, n_ties, empty_side):
    ds, report = chat[subset]
    rows = raw[subset]
    assert len(rows) == n_rows == report.records_in
    ties = [i for i, r in enumerate(rows) if r["chosen"] == r["rejected"]]
    assert len(ties) == n_ties
    assert report.dropped == ({"chosen == rejected": n_ties} if n_ties else {})
    assert report.dropped_indices.get("chosen == rejected", []) == ties
    assert report.accounted_for and report.records_kept == len(ds) == n_rows - n_ties
    # empty final replies are kept (4 per file, always on the same side) and counted
    assert report.notes == {f"empty {empty_side} reply": 4}
    assert sum(row[empty_side][0]["content"] == "" for row in ds) == 4
    label = "pref_helpfulness" if subset == "helpful-base" else "pref_harmlessness"
    assert ds.column_names == ["prompt", "chosen", "rejected", label]
    assert set(ds[label]) == {1.0}
    assert validate_preference_dataset(ds) == [label[len("pref_"):]]


@pytest.mark.parametrize("subset", ["helpful-base", "harmless-base"])
def test_round_trip_exact_over_all_rows_chat(raw, chat, subset):
    ds, report = chat[subset]
    rows = raw[subset]
    for i, row in zip(kept_indices(report), ds, strict=True):
        assert format_hh_transcript(row["prompt"], row["chosen"]) == rows[i]["chosen"], i
        assert format_hh_transcript(row["prompt"], row["rejected"][0]["content"]) == rows[i]["rejected"], i
        assert row["prompt"][-1]["role"] == "user"
        assert row["prompt"][0]["role"] == "user"
        assert {m["role"] for m in row["prompt"]} <= {"user", "assistant"}


@pytest.mark.parametrize("subset", ["helpful-base", "harmless-base"])
def test_round_trip_exact_over_all_rows_text(raw, text, subset):
    ds, report = text[subset]
    rows = raw[subset]
    assert len(ds) == len(kept_indices(report))
    for i, row in zip(kept_indices(report), ds, strict=True):
        assert row["prompt"].endswith(A) and row["prompt"].startswith("\n\nHuman: ")
        assert row["chosen"].startswith(" ") and row["rejected"].startswith(" ")
        assert row["prompt"] + row["chosen"] == rows[i]["chosen"], i
        assert row["prompt"] + row["rejected"] == rows[i]["rejected"], i


@pytest.mark.parametrize("subset, n_naive_wrong", [("helpful-base", 9), ("harmless-base", 5)])
def test_prompt_is_shared_prefix_not_each_sides_last_assistant(raw, chat, text, subset, n_naive_wrong):
    """Splitting each side at its own last "Assistant:" is wrong where a reply contains one."""
    rows = raw[subset]
    wrong = [
        i for i, r in enumerate(rows)
        if r["chosen"] != r["rejected"]
        and r["chosen"][: r["chosen"].rfind(A)] != r["rejected"][: r["rejected"].rfind(A)]
    ]
    assert len(wrong) == n_naive_wrong
    ds_text, report = text[subset]
    by_input = dict(zip(kept_indices(report), range(len(ds_text)), strict=True))
    for i in wrong:
        row = ds_text[by_input[i]]
        # the converted prompt is a prefix of both sides, and one reply holds an "Assistant:"
        assert rows[i]["chosen"].startswith(row["prompt"])
        assert rows[i]["rejected"].startswith(row["prompt"])
        assert A in row["chosen"] or A in row["rejected"]
        # and each side's own last "Assistant:" would have cut that reply short
        naive = {s: rows[i][s][: rows[i][s].rfind(A) + len(A)] for s in ("chosen", "rejected")}
        assert naive["chosen"] != naive["rejected"]
        assert row["prompt"] in (naive["chosen"], naive["rejected"])
    # every prompt of the chat version ends at a Human turn and matches the text version
    ds_chat, _ = chat[subset]
    for k in (by_input[i] for i in wrong):
        assert format_hh_dialogue(ds_chat[k]["prompt"]) + A == ds_text[k]["prompt"]


def test_known_row_with_assistant_text_inside_a_reply(raw, chat):
    """helpful-base row 743: the rejected reply itself contains "\\n\\nAssistant: ..."."""
    ds, report = chat["helpful-base"]
    k = kept_indices(report).index(743)
    row = ds[k]
    assert row["prompt"][-1] == {"role": "user", "content": "Cool! Any others I could learn about?"}
    assert row["rejected"][0]["content"].startswith("A character called Hermes")
    assert "\n\nAssistant: Let’s see what we can find out about Hermes" in row["rejected"][0]["content"]


def test_both_mixes_with_nan_where_a_row_says_nothing(chat):
    ds, report = load_hh_rlhf("both")
    n_help, n_harm = len(chat["helpful-base"].dataset), len(chat["harmless-base"].dataset)
    assert len(ds) == n_help + n_harm == report.rows_out
    assert report.records_in == 2354 + 2312 and report.accounted_for
    help_, harm = ds["pref_helpfulness"], ds["pref_harmlessness"]
    assert all(v == 1.0 for v in help_[:n_help]) and all(math.isnan(v) for v in harm[:n_help])
    assert all(math.isnan(v) for v in help_[n_help:]) and all(v == 1.0 for v in harm[n_help:])
    assert label_counts(ds) == {
        "helpfulness": {"chosen": n_help, "rejected": 0, "tie": 0, "unlabeled": n_harm},
        "harmlessness": {"chosen": n_harm, "rejected": 0, "tie": 0, "unlabeled": n_help},
    }
    assert ds[n_help]["prompt"] == chat["harmless-base"].dataset[0]["prompt"]
    assert validate_preference_dataset(ds) == ["helpfulness", "harmlessness"]


def test_drop_empty_replies_is_counted(chat):
    ds, report = load_hh_rlhf("harmless-base", drop_empty=True)
    assert len(ds) == 2312 - 4
    assert report.dropped == {"empty chosen reply": 4} and report.accounted_for
    assert report.notes == {}


def test_path_in_upstream_layout_and_single_file(tmp_path, chat):
    (tmp_path / "helpful-base").mkdir()
    shutil.copy(bundled_path("hh-rlhf/helpful-base"), tmp_path / "helpful-base" / "test.jsonl.gz")
    ds, _ = load_hh_rlhf("helpful-base", path=tmp_path)
    assert ds["prompt"][:50] == chat["helpful-base"].dataset["prompt"][:50]
    assert len(ds) == 2352
    ds_file, _ = load_hh_rlhf("helpful-base", path=bundled_path("hh-rlhf/helpful-base"))
    assert len(ds_file) == 2352
    with pytest.raises(DataError, match="harmless-base/test.jsonl.gz"):
        load_hh_rlhf("both", path=tmp_path)
    with pytest.raises(DataError, match="one file"):
        load_hh_rlhf("both", path=bundled_path("hh-rlhf/helpful-base"))


# --------------------------------------------------------------------------------------------
# parsing primitives and bad input
# --------------------------------------------------------------------------------------------

GOOD = {
    "chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: fine",
    "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant: Human: bad",
}


def test_parse_and_format_are_inverse():
    text = "\n\nHuman: a\n\nb\n\nAssistant: c\n\nHuman:d\n\nHuman: e"
    messages = parse_hh_dialogue(text)
    assert messages == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c\n\nHuman:d"},  # no space: not a turn marker
        {"role": "user", "content": "e"},
    ]
    assert format_hh_dialogue(messages) == text
    prompt, c, r = split_hh_pair(GOOD["chosen"], GOOD["rejected"])
    assert [m["content"] for m in prompt] == ["hi", "hello", "how are you?"]
    assert (c, r) == ("fine", "Human: bad")


def test_shared_prefix_inside_replies_does_not_move_the_boundary():
    # both replies start with the same text, including an "Assistant:" turn of their own
    chosen = "\n\nHuman: q\n\nAssistant: same\n\nAssistant: x"
    rejected = "\n\nHuman: q\n\nAssistant: same\n\nAssistant: y"
    prompt, c, r = split_hh_pair(chosen, rejected)
    assert prompt == [{"role": "user", "content": "q"}]
    assert (c, r) == ("same\n\nAssistant: x", "same\n\nAssistant: y")


def test_reply_holding_a_whole_human_turn_stays_in_the_reply():
    """A reply may contain "\n\nHuman: ...\n\nAssistant: ..." text of its own."""
    chosen = "\n\nHuman: q\n\nAssistant: a\n\nHuman: fake\n\nAssistant: b"
    rejected = "\n\nHuman: q\n\nAssistant: c"
    for c, r in ((chosen, rejected), (rejected, chosen)):
        ds, _ = from_hh_rlhf([{"chosen": c, "rejected": r}])
        row = ds[0]
        assert row["prompt"] == [{"role": "user", "content": "q"}]
        assert format_hh_transcript(row["prompt"], row["chosen"]) == c
        assert format_hh_transcript(row["prompt"], row["rejected"]) == r


@pytest.mark.parametrize(
    "rows, match",
    [
        ([GOOD, {"chosen": "Human: hi\n\nAssistant: a", "rejected": GOOD["rejected"]}],
         r"row 1, column 'chosen'.*does not start"),
        ([GOOD, GOOD, {"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: ho"}],
         r"row 2, column 'chosen'.*no '\\n\\nAssistant:' turn"),
        ([{"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant: a"}],
         r"row 0, column 'chosen'.*space"),
        ([{"chosen": "\n\nHuman:  \n\nAssistant: a", "rejected": "\n\nHuman:  \n\nAssistant: b"}],
         r"row 0, column 'chosen'.*empty prompt"),
        ([GOOD, {"chosen": None, "rejected": "x"}], r"row 1, column 'chosen'.*string"),
        ([GOOD, {"chosen": GOOD["chosen"]}], r"row 1 has no column 'rejected'"),
    ],
)
def test_malformed_transcripts_name_row_and_column(rows, match):
    with pytest.raises(DataError, match=match):
        from_hh_rlhf(rows)


def test_errors_drop_counts_malformed_rows():
    rows = [GOOD, {"chosen": "oops", "rejected": "oops!"}, GOOD, {"chosen": "x", "rejected": "x"}]
    ds, report = from_hh_rlhf(rows, "harmlessness", errors="drop")
    assert len(ds) == 2 and ds.column_names[-1] == "pref_harmlessness"
    assert report.dropped_indices == {
        "malformed: transcript does not start with '\\n\\nHuman: '": [1],
        "chosen == rejected": [3],
    }
    assert report.accounted_for


def test_bad_arguments():
    with pytest.raises(DataError, match="subset 'nope'"):
        load_hh_rlhf("nope")
    with pytest.raises(DataError, match="only the 'test' split"):
        load_hh_rlhf("helpful-base", split="train")
    with pytest.raises(DataError, match="invalid objective name"):
        from_hh_rlhf([GOOD], "Helpful Ness")
    with pytest.raises(DataError, match="errors must be"):
        from_hh_rlhf([GOOD], errors="ignore")


def test_converted_rows_are_what_trl_expects(chat):
    """TRL's own data utilities recognise the rows as conversational and render them."""
    from trl.data_utils import apply_chat_template, is_conversational

    from moalign.models import tiny_tokenizer

    tok = tiny_tokenizer()
    row = chat["helpful-base"].dataset[0]
    assert is_conversational(row)
    rendered = apply_chat_template(row, tok)
    assert rendered["prompt"].endswith("<|im_start|>assistant\n")
    assert rendered["chosen"].startswith(row["chosen"][0]["content"])
