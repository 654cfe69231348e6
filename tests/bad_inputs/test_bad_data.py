"""Bad datasets: empty, missing columns, malformed chat messages, bad labels, bad files.

The CLI cases run ``moalign train`` (and ``trace`` / ``eval``) on a small JSON-lines file with
every model loader forbidden: the data must be checked before any model loads. The API cases
check :func:`moalign.data.validate_preference_dataset` and the loaders directly.
"""

from __future__ import annotations

import gzip
import math

import pytest

from moalign.errors import DataError
from tests.support.corpus import DROP, ModelLoaded, chat_rows, jsonl, pref_rows, run_cli_case

TRAIN = ["train", "--model", "tiny", "--dataset", "{tmp}/d.jsonl", "--output_dir", "{tmp}/out"]
TRACE = ["trace", "--model", "tiny", "--dataset", "{tmp}/d.jsonl", "--output_dir", "{tmp}/out"]
NAN = float("nan")
USER = {"role": "user", "content": "hello?"}
BOT = {"role": "assistant", "content": "hi"}


def _case(id: str, data: str, expect: list[str], argv: list[str] = TRAIN, name: str = "d.jsonl"):
    return dict(id=id, argv=[a.replace("d.jsonl", name) for a in argv], files={name: data},
                expect=expect)


CASES = [
    dict(id="missing-dataset-file", argv=[*TRAIN[:3], "--dataset", "{tmp}/nope.jsonl", *TRAIN[5:]],
         expect=["'dataset': dataset '{tmp}/nope.jsonl' is neither a bundled dataset"]),
    dict(id="misspelled-bundled-dataset", argv=[*TRAIN[:3], "--dataset", "hh-rlhf/helpful",
                                                *TRAIN[5:]],
         expect=["dataset 'hh-rlhf/helpful' is neither", "did you mean 'hh-rlhf/helpful-base'?"]),
    _case("empty-file", "", ["dataset '{tmp}/d.jsonl' is empty: it has no rows"]),
    _case("blank-lines-only", "\n\n  \n", ["dataset '{tmp}/d.jsonl' is empty"]),
    _case("missing-prompt", jsonl(pref_rows(prompt=DROP)), ["has no column 'prompt'"]),
    _case("missing-chosen", jsonl(pref_rows(chosen=DROP)), ["has no column 'chosen'"]),
    _case("missing-rejected-in-a-later-row",
          jsonl(pref_rows(rejected=lambda i: None if i == 5 else "no.")),
          ["row 5, column 'rejected': expected a string (as in row 0), got NoneType"]),
    _case("chat-message-without-role", jsonl(chat_rows(prompt=[{"content": "hi"}])),
          ["column 'prompt': message 0 must be a mapping with 'role' and 'content' keys"]),
    _case("chat-message-without-content", jsonl(chat_rows(chosen=[{"role": "assistant"}])),
          ["column 'chosen': message 0 must be a mapping with 'role' and 'content' keys"]),
    _case("chat-unknown-role", jsonl(chat_rows(prompt=[{"role": "robot", "content": "hi"}])),
          ["column 'prompt': message 0 has role 'robot'",
           "expected one of ['assistant', 'system', 'tool', 'user']"]),
    _case("chat-prompt-ends-with-assistant", jsonl(chat_rows(prompt=[USER, BOT])),
          ["row 0, column 'prompt': the prompt must end with a 'user' message, not 'assistant'"]),
    _case("chat-completion-from-user", jsonl(chat_rows(rejected=[USER])),
          ["row 0, column 'rejected': message 0 has role 'user'; expected one of ['assistant']"]),
    _case("chat-content-not-text", jsonl(chat_rows(prompt=[{"role": "user", "content": 7}])),
          ["column 'prompt': message 0 content must be a string, got int"]),
    _case("text-and-chat-mixed", jsonl(pref_rows(2) + chat_rows(2)),
          ["column 'prompt' holds a str in row 0 but a list in row 2"]),
    _case("label-outside-the-set", jsonl(pref_rows(pref_helpfulness=lambda i: 2.0 if i == 3 else 1.0)),
          ["row 3, column 'pref_helpfulness': label 2.0 is not +1, -1, 0 or NaN"]),
    _case("label-fraction", jsonl(pref_rows(pref_harmlessness=0.5)),
          ["row 0, column 'pref_harmlessness': label 0.5 is not +1, -1, 0 or NaN"]),
    _case("label-text", jsonl(pref_rows(pref_helpfulness="yes")),
          ["row 0, column 'pref_helpfulness': label must be a number, got 'yes'"]),
    _case("label-number-then-text", jsonl(pref_rows(pref_helpfulness=lambda i: "no" if i == 4 else 1)),
          ["column 'pref_helpfulness' holds a number in row 0 but a str in row 4 ('no')"]),
    _case("positive-weight-objective-all-unlabelled", jsonl(pref_rows(pref_helpfulness=None)),
          ["column 'pref_helpfulness': objective 'helpfulness' has no labelled row"]),
    _case("invalid-json-line", jsonl(pref_rows(3)) + "{not json}\n",
          ["d.jsonl, line 4: invalid JSON"]),
    _case("row-not-an-object", jsonl(pref_rows(2)) + "[1, 2]\n",
          ["d.jsonl: row 2 is a list, not a JSON object"]),
    _case("json-array-truncated", '[{"prompt": "a"', ["d.json: invalid JSON"], name="d.json"),
    _case("unsupported-file-type", "prompt,chosen\n", ["d.txt: unsupported file type"],
          name="d.txt"),
    _case("empty-csv", "", ["d.csv: cannot read it as a .csv file"], name="d.csv"),
    _case("csv-without-the-columns", "question,answer\nq,a\n",
          ["has no column 'prompt'", "has no column 'chosen'"], name="d.csv"),
    _case("corrupt-parquet", "PAR1 not really", ["d.parquet: cannot read it as a .parquet file"],
          name="d.parquet"),
    _case("ppo-data-without-the-answer-column", jsonl({"prompt": f"q{i}"} for i in range(8)),
          ["has no column 'answer' (needed by objective 'reasoning_accuracy'"],
          argv=[*TRAIN, "--trainer", "ppo"]),
    _case("trace-objective-without-label-column", jsonl(pref_rows(pref_harmlessness=DROP)),
          ["no label column 'pref_harmlessness' for objective 'harmlessness'"], argv=TRACE),
    _case("trace-bad-chat-row", jsonl(chat_rows(prompt=[BOT])),
          ["the prompt must end with a 'user' message"], argv=TRACE),
    _case("trace-empty-dataset", "", ["is empty: it has no rows"], argv=TRACE),
    _case("eval-implicit-bad-label", jsonl(pref_rows(pref_helpfulness=3.0)),
          ["column 'pref_helpfulness': label 3.0 is not +1, -1, 0 or NaN"],
          argv=["eval", "--model", "tiny", "--reference", "tiny", "--metric", "implicit",
                "--dataset", "{tmp}/d.jsonl", "-o", "{tmp}/out/e.json"]),
    _case("eval-generation-without-prompt", jsonl({"question": "q", "answer": "1"} for _ in range(4)),
          ["has no column 'prompt' (needed by the generation metric"],
          argv=["eval", "--model", "tiny", "--dataset", "{tmp}/d.jsonl", "--objectives", "length",
                "-o", "{tmp}/out/e.json"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_dataset_file(case, cli, tmp_path, no_model_load):
    run_cli_case(case, cli, tmp_path)


def test_an_unlabelled_objective_of_zero_weight_is_not_an_error(cli, tmp_path, no_model_load):
    """Only objectives of positive weight need labels: the data passes, and the run goes on to
    load the model (which the test forbids, so that is how far it gets)."""
    (tmp_path / "d.jsonl").write_text(jsonl(pref_rows(pref_helpfulness=None)))
    with pytest.raises(ModelLoaded):
        cli("train", "--model", "tiny", "--dataset", tmp_path / "d.jsonl", "--weights", "[0, 1]",
            "--output_dir", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ API


def _validate(rows, **kwargs):
    from datasets import Dataset

    from moalign.data import validate_preference_dataset

    return validate_preference_dataset(Dataset.from_list(rows), **kwargs)


def _empty(_):
    from datasets import Dataset

    from moalign.data import validate_preference_dataset

    return validate_preference_dataset(Dataset.from_dict(
        {"prompt": [], "chosen": [], "rejected": [], "pref_a": []}))


def _spec(tmp, text, name="d.jsonl"):
    from moalign.data.catalog import load_dataset

    (tmp / name).write_text(text)
    return load_dataset(str(tmp / name))


def _pairs(_):
    from datasets import Dataset

    from moalign.data import pairs_for_objective

    return pairs_for_objective(Dataset.from_list(pref_rows(4, pref_helpfulness=NAN)), "helpfulness")


API = [
    ("empty", _empty, "preference dataset is empty"),
    ("no-prompt", lambda t: _validate(pref_rows(2, prompt=DROP)), "no column 'prompt'"),
    ("no-pref-column", lambda t: _validate(pref_rows(2), objectives=["honesty"]),
     "no column 'pref_honesty' for objective 'honesty'"),
    ("no-label-column-at-all", lambda t: _validate(
        pref_rows(2, pref_helpfulness=DROP, pref_harmlessness=DROP)), "no 'pref_<objective>'"),
    ("role-missing", lambda t: _validate(chat_rows(2, prompt=[{"content": "x"}])),
     "row 0, column 'prompt': message 0 must be a mapping"),
    ("unknown-role", lambda t: _validate(chat_rows(2, prompt=[{"role": "human", "content": "x"}])),
     "message 0 has role 'human'"),
    ("prompt-ends-with-system", lambda t: _validate(
        chat_rows(2, prompt=[USER, {"role": "system", "content": "be nice"}])),
     "must end with a 'user' message, not 'system'"),
    ("empty-prompt", lambda t: _validate(pref_rows(2, prompt="   ")), "row 0, column 'prompt': empty prompt"),
    ("label-minus-two", lambda t: _validate(pref_rows(3, pref_helpfulness=lambda i: -2.0 * (i == 2) or 1.0)),
     "row 2, column 'pref_helpfulness': label -2.0 is not"),
    ("all-unlabelled", lambda t: _validate(pref_rows(3, pref_harmlessness=NAN)),
     "objective 'harmlessness' has no labelled row \\(all 3 labels are NaN\\)"),
    ("nothing-to-orient", _pairs, "no row is labelled for 'helpfulness'"),
    ("loader-empty-file", lambda t: _spec(t, ""), "is empty: it has no rows"),
    ("loader-missing-file", lambda t: _spec_missing(t), "is neither a bundled dataset"),
    ("loader-mixed-types", lambda t: _spec(t, jsonl(pref_rows(2) + chat_rows(1))),
     "column 'prompt' holds a str in row 0 but a list in row 2"),
    ("loader-gzip-truncated", lambda t: _gz(t), "d.jsonl.gz: cannot read it: EOFError"),
    ("loader-not-utf8", lambda t: _latin1(t), "d.jsonl: cannot read it: UnicodeDecodeError"),
    ("split-one-row", lambda t: _split(), "cannot split 1 row\\(s\\) into train and test"),
]


def _spec_missing(tmp):
    from moalign.data.catalog import load_dataset

    return load_dataset(str(tmp / "missing.jsonl"))


def _gz(tmp):
    from moalign.data import read_records

    (tmp / "d.jsonl.gz").write_bytes(gzip.compress(b'{"prompt": "a"}\n')[:-9])  # truncated
    return read_records(str(tmp / "d.jsonl.gz"))


def _latin1(tmp):
    from moalign.data import read_records

    (tmp / "d.jsonl").write_bytes('{"prompt": "café"}\n'.encode("latin-1"))
    return read_records(str(tmp / "d.jsonl"))


def _split():
    from datasets import Dataset

    from moalign.data import train_test_split_pairs

    return train_test_split_pairs(Dataset.from_list(pref_rows(1)))


@pytest.mark.parametrize("call, match", [a[1:] for a in API], ids=[a[0] for a in API])
def test_bad_dataset_api(call, match, tmp_path):
    with pytest.raises(DataError, match=match):
        call(tmp_path)


def test_dpo_trainer_rejects_an_unlabelled_objective_before_loading_the_model(tmp_path):
    """The model argument is a path that does not exist: the data error must come first."""
    from datasets import Dataset

    from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    args = MultiObjectiveDPOConfig(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True,
                                   bf16=False, objectives=["helpfulness", "harmlessness"],
                                   weights=[0.5, 0.5])
    ds = Dataset.from_list(pref_rows(6, pref_harmlessness=math.nan))
    with pytest.raises(DataError, match="'pref_harmlessness': objective 'harmlessness' has "
                                        "positive weight but none of the 6 pairs is labelled"):
        MultiObjectiveDPOTrainer(str(tmp_path / "no-such-model"), args=args, train_dataset=ds)
    assert not (tmp_path / "o").exists()
