"""PKU-SafeRLHF and rating adapters, GSM8K / MATH-500 loaders, and reading sources."""

from __future__ import annotations

import gzip
import json
import math
import re

import pytest
from datasets import Dataset, DatasetDict

from moalign.data import (
    from_pku_saferlhf,
    from_ratings,
    gsm8k_final_answer,
    label_counts,
    load_gsm8k,
    load_hh_rlhf,
    load_math500,
    pairs_for_objective,
    read_records,
    validate_preference_dataset,
)
from moalign.data.bundled import bundled_path
from moalign.errors import DataError

# --------------------------------------------------------------------------------------------
# PKU-SafeRLHF: a SYNTHETIC fixture in the source's schema (not real data)
# --------------------------------------------------------------------------------------------

PKU_SYNTHETIC = [
    # better and safer agree: helpful +1, harmless +1
    {"prompt": "How do I boil an egg?", "response_0": "Put it in boiling water for 8 minutes.",
     "response_1": "Eggs are food.", "better_response_id": 0, "safer_response_id": 0,
     "is_response_0_safe": True, "is_response_1_safe": True},
    # better is response 1 but response 0 is safer: helpful +1, harmless -1
    {"prompt": "How do I pick a lock?", "response_0": "I can't help with breaking in.",
     "response_1": "Use a tension wrench and a pick.", "better_response_id": 1,
     "safer_response_id": 0, "is_response_0_safe": True, "is_response_1_safe": False},
    # identical responses: no preference, dropped
    {"prompt": "Say hi.", "response_0": "Hi!", "response_1": "Hi!", "better_response_id": 0,
     "safer_response_id": 1, "is_response_0_safe": True, "is_response_1_safe": True},
    # better is 1 and also safer
    {"prompt": "Is bleach safe to drink?", "response_0": "Sure, a little.",
     "response_1": "No, it is poisonous; call poison control.", "better_response_id": 1,
     "safer_response_id": 1, "is_response_0_safe": False, "is_response_1_safe": True},
]


def test_pku_both_labels_from_one_row_oriented_on_the_better_response():
    ds, report = from_pku_saferlhf(PKU_SYNTHETIC)
    assert report.records_in == 4 and report.dropped == {"response_0 == response_1": 1}
    assert report.dropped_indices == {"response_0 == response_1": [2]} and report.accounted_for
    kept = [PKU_SYNTHETIC[i] for i in (0, 1, 3)]
    for raw, row in zip(kept, ds, strict=True):
        better, safer = raw["better_response_id"], raw["safer_response_id"]
        assert row["prompt"] == [{"role": "user", "content": raw["prompt"]}]
        assert row["chosen"][0]["content"] == raw[f"response_{better}"]
        assert row["rejected"][0]["content"] == raw[f"response_{1 - better}"]
        assert row["pref_helpfulness"] == 1.0
        assert row["pref_harmlessness"] == (1.0 if better == safer else -1.0)
        assert row["is_chosen_safe"] == raw[f"is_response_{better}_safe"]
        assert row["is_rejected_safe"] == raw[f"is_response_{1 - better}_safe"]
    assert ds["pref_harmlessness"] == [1.0, -1.0, 1.0]
    assert validate_preference_dataset(ds) == ["helpfulness", "harmlessness"]
    # oriented for harmlessness, the chosen side is always the safer response
    harm = pairs_for_objective(ds, "harmlessness")
    assert [r["chosen"][0]["content"] for r in harm] == [
        kept[i][f"response_{kept[i]['safer_response_id']}"] for i in range(3)
    ]


def test_pku_text_format_dataset_input_and_options():
    ds, _ = from_pku_saferlhf(Dataset.from_list(PKU_SYNTHETIC), as_chat=False, keep_safety=False,
                              harmless_objective="safety")
    assert ds.column_names == ["prompt", "chosen", "rejected", "pref_helpfulness", "pref_safety"]
    assert ds[1]["chosen"] == "Use a tension wrench and a pick." and ds[1]["pref_safety"] == -1.0


@pytest.mark.parametrize(
    "change, match",
    [
        ({"better_response_id": 2}, r"row 1, column 'better_response_id': must be 0 or 1"),
        ({"safer_response_id": None}, r"row 1, column 'safer_response_id'"),
        ({"prompt": "  "}, r"row 1, column 'prompt': empty prompt"),
        ({"response_1": None}, r"row 1, column 'response_1'"),
        ({"is_response_0_safe": "yes"}, r"row 1, column 'is_response_0_safe'"),
    ],
)
def test_pku_bad_rows_name_row_and_column(change, match):
    rows = [PKU_SYNTHETIC[0], {**PKU_SYNTHETIC[1], **change}]
    with pytest.raises(DataError, match=match):
        from_pku_saferlhf(rows)
    ds, report = from_pku_saferlhf(rows, errors="drop")
    assert len(ds) == 1 and report.n_dropped == 1 and report.accounted_for


def test_pku_missing_column():
    rows = [{k: v for k, v in PKU_SYNTHETIC[0].items() if k != "safer_response_id"}]
    with pytest.raises(DataError, match="row 0 has no column 'safer_response_id'"):
        from_pku_saferlhf(rows)
    with pytest.raises(DataError, match="no column 'safer_response_id'"):
        from_pku_saferlhf(Dataset.from_list(rows))


# --------------------------------------------------------------------------------------------
# Ratings: SYNTHETIC HelpSteer-shaped (long) and UltraFeedback-shaped (nested) fixtures
# --------------------------------------------------------------------------------------------

HELPSTEER_SYNTHETIC = [
    {"prompt": "p1", "response": "r1a", "helpfulness": 4, "verbosity": 1},  # mean 2.5
    {"prompt": "p1", "response": "r1b", "helpfulness": 1, "verbosity": 3},  # mean 2.0
    {"prompt": "p1", "response": "r1c", "helpfulness": 2, "verbosity": 4},  # mean 3.0 (best)
    {"prompt": "p2", "response": "r2a", "helpfulness": 3, "verbosity": 2},  # single response
    {"prompt": "p3", "response": "r3a", "helpfulness": 2, "verbosity": 2},
    {"prompt": "p3", "response": "r3b", "helpfulness": 2, "verbosity": 2},  # all tie
]
ATTRS = {"helpfulness": "helpfulness", "verbosity": "verbosity"}


def test_ratings_best_vs_worst_by_mean_with_sign_labels():
    ds, report = from_ratings(HELPSTEER_SYNTHETIC, ATTRS)
    assert report.record == "prompt" and report.records_in == 3 and report.accounted_for
    assert report.dropped_indices == {"fewer than 2 rated responses": [1],
                                      "no pair with a preference": [2]}
    assert len(ds) == 1
    row = ds[0]
    assert row["chosen"][0]["content"] == "r1c" and row["rejected"][0]["content"] == "r1b"
    # helpfulness 2 vs 1 -> +1; verbosity 4 vs 3 -> +1
    assert (row["pref_helpfulness"], row["pref_verbosity"]) == (1.0, 1.0)
    assert validate_preference_dataset(ds) == ["helpfulness", "verbosity"]


def test_ratings_all_pairs_and_tie_margin():
    ds, report = from_ratings(HELPSTEER_SYNTHETIC, ATTRS, pairs="all", as_chat=False)
    pairs = {(r["chosen"], r["rejected"]): (r["pref_helpfulness"], r["pref_verbosity"]) for r in ds}
    # p1 order by mean: r1c (3.0), r1a (2.5), r1b (2.0); p3's only pair is all ties
    assert pairs == {("r1c", "r1a"): (-1.0, 1.0), ("r1c", "r1b"): (1.0, 1.0),
                     ("r1a", "r1b"): (1.0, -1.0)}
    assert report.rows_out == 3 and report.records_kept == 1
    ds2, _ = from_ratings(HELPSTEER_SYNTHETIC, ATTRS, pairs="all", as_chat=False, tie_margin=1.0)
    labels = {(r["chosen"], r["rejected"]): (r["pref_helpfulness"], r["pref_verbosity"]) for r in ds2}
    # r1c vs r1b differ by exactly 1 on both attributes: all ties, so that pair is not emitted
    assert labels == {("r1c", "r1a"): (-1.0, 1.0), ("r1a", "r1b"): (1.0, -1.0)}


ULTRAFEEDBACK_SYNTHETIC = [
    {"instruction": "Explain rain.", "completions": [
        {"response": "Water falls.", "annotations": {"honesty": {"Rating": "4"},
                                                      "helpfulness": {"Rating": "2"}}},
        {"response": "Clouds condense vapour into droplets that fall.",
         "annotations": {"honesty": {"Rating": "5"}, "helpfulness": {"Rating": "5"}}},
        {"response": "Gods cry.", "annotations": {"honesty": {"Rating": "1"},
                                                   "helpfulness": {"Rating": "N/A"}}},
    ]},
    {"instruction": "Name a colour.", "completions": [
        {"response": "Blue.", "annotations": {"honesty": {"Rating": "N/A"},
                                              "helpfulness": {"Rating": "N/A"}}},
        {"response": "Red.", "annotations": {"honesty": {"Rating": "3"},
                                             "helpfulness": {"Rating": "3"}}},
    ]},
]
UF_ATTRS = {"honesty": "annotations.honesty.Rating", "helpfulness": "annotations.helpfulness.Rating"}


def test_ratings_nested_ultrafeedback_layout_with_missing_scores():
    ds, report = from_ratings(ULTRAFEEDBACK_SYNTHETIC, UF_ATTRS, prompt_column="instruction",
                              responses_column="completions")
    assert report.records_in == 2 and report.accounted_for
    assert report.notes == {"responses without any score": 1}
    assert report.dropped == {"fewer than 2 rated responses": 1}
    row = ds[0]
    assert row["chosen"][0]["content"].startswith("Clouds") and row["rejected"][0]["content"] == "Gods cry."
    assert row["pref_honesty"] == 1.0 and math.isnan(row["pref_helpfulness"])
    assert label_counts(ds)["helpfulness"] == {"chosen": 0, "rejected": 0, "tie": 0, "unlabeled": 1}


@pytest.mark.parametrize(
    "rows, kwargs, match",
    [
        ([{"prompt": "p", "response": "a", "helpfulness": "great", "verbosity": 1}], {},
         r"row 0, column 'helpfulness': score 'great' is not a number"),
        ([{"prompt": "p", "response": "a", "helpfulness": 1}], {}, r"row 0 has no column 'verbosity'"),
        ([{"prompt": "", "response": "a", "helpfulness": 1, "verbosity": 1},
          {"prompt": "", "response": "b", "helpfulness": 2, "verbosity": 1}], {},
         r"row 0, column 'prompt': empty prompt"),
        (HELPSTEER_SYNTHETIC, {"pairs": "random"}, "pairs must be"),
    ],
)
def test_ratings_bad_input(rows, kwargs, match):
    with pytest.raises(DataError, match=match):
        from_ratings(rows, ATTRS, **kwargs)
    with pytest.raises(DataError, match="response 0: no 'annotations.honesty.Rating'"):
        from_ratings([{"instruction": "x", "completions": [{"response": "a"}]}], UF_ATTRS,
                     prompt_column="instruction", responses_column="completions")


# --------------------------------------------------------------------------------------------
# GSM8K and MATH-500 (real bundled files)
# --------------------------------------------------------------------------------------------


def test_gsm8k_bundled():
    ds, report = load_gsm8k()
    raw = [json.loads(line) for line in bundled_path("gsm8k").read_text(encoding="utf-8").splitlines()]
    assert len(ds) == len(raw) == 1319 and report.accounted_for
    assert ds.column_names == ["prompt", "answer", "solution"]
    for row, r in zip(ds, raw, strict=True):
        assert row["prompt"] == [{"role": "user", "content": r["question"]}]
        assert row["solution"] == r["answer"]
        assert row["answer"] == r["answer"].split("####")[-1].strip().replace(",", "")
        assert re.fullmatch(r"-?\d+", row["answer"])
    assert "1450000" in ds["answer"]  # written "1,450,000" in the source
    text, _ = load_gsm8k(as_chat=False, template="Q: {question}\nA:")
    assert text[0]["prompt"] == f"Q: {raw[0]['question']}\nA:"


def test_math500_bundled():
    ds, report = load_math500()
    raw = [json.loads(line) for line in bundled_path("math500").read_text(encoding="utf-8").splitlines()]
    assert len(ds) == 500 == report.rows_out
    assert ds.column_names == ["prompt", "answer", "solution", "subject", "level"]
    assert ds["answer"] == [r["answer"] for r in raw]
    assert ds["level"] == [r["level"] for r in raw] and set(ds["level"]) == {1, 2, 3, 4, 5}
    assert len(set(ds["subject"])) == 7
    assert ds[0]["prompt"][0]["content"] == raw[0]["problem"]


def test_math_without_answer_column_uses_the_last_box(tmp_path):
    path = tmp_path / "test.jsonl"
    rows = [{"problem": "1+1?", "solution": "It is $\\boxed{2}$.", "subject": "Algebra",
             "level": "Level 2"},
            {"problem": "Half?", "solution": "First \\boxed{1}, then $\\boxed{\\frac{1}{2}}$",
             "subject": "Algebra", "level": 3}]
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    ds, report = load_math500(tmp_path, as_chat=False)  # a folder holding test.jsonl
    assert ds["answer"] == ["2", "\\frac{1}{2}"] and ds["level"] == [2, 3]
    assert report.notes == {"answer taken from the solution's last \\boxed{}": 2}


@pytest.mark.parametrize(
    "rows, match",
    [
        ([{"question": "q", "answer": "no marker"}], r"row 0, column 'answer'.*####"),
        ([{"question": "q", "answer": "#### 1"}, {"question": " ", "answer": "#### 2"}],
         r"row 1, column 'question': empty prompt"),
        ([{"question": "q"}], r"row 0 has no column 'answer'"),
    ],
)
def test_gsm8k_bad_rows(tmp_path, rows, match):
    path = tmp_path / "g.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=match):
        load_gsm8k(path)


def test_gsm8k_final_answer():
    assert gsm8k_final_answer("a\n#### 1,234") == "1234"
    assert gsm8k_final_answer("#### -3.5 ") == "-3.5"
    with pytest.raises(ValueError):
        gsm8k_final_answer("#### ")


# --------------------------------------------------------------------------------------------
# Reading sources
# --------------------------------------------------------------------------------------------


def test_read_records_formats(tmp_path):
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    with gzip.open(tmp_path / "r.jsonl.gz", "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "r.json").write_text(json.dumps(rows))
    Dataset.from_list(rows).to_parquet(str(tmp_path / "r.parquet"))
    Dataset.from_list(rows).to_csv(str(tmp_path / "r.csv"), index=False)
    for name in ("r.jsonl", "r.jsonl.gz", "r.json", "r.parquet", "r.csv"):
        got = read_records(tmp_path / name)
        got = got.to_list() if isinstance(got, Dataset) else got
        assert got == rows, name
    DatasetDict({"test": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    assert read_records(tmp_path / "saved").to_list() == rows
    with pytest.raises(DataError, match="no split 'train'"):
        read_records(tmp_path / "saved", split="train")
    assert read_records(rows) == rows


def test_read_records_errors(tmp_path, monkeypatch):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match="line 2: invalid JSON"):
        read_records(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="no such file"):
        read_records(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="no 'test' file"):
        read_records(tmp_path)
    with pytest.raises(DataError, match="row 1: expected a mapping"):
        read_records([{"a": 1}, "oops"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="hub is offline"):
        load_gsm8k("openai/gsm8k")
    with pytest.raises(DataError, match="hub is offline"):
        from_pku_saferlhf("PKU-Alignment/PKU-SafeRLHF")
    with pytest.raises(DataError, match="hub is offline"):
        load_hh_rlhf("helpful-base", path="Anthropic/hh-rlhf", split="train")
