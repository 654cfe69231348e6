"""Dataset specs ``{source, adapter, ...}`` on files in each hub dataset's own column layout,
loaded through the same path a hub id takes; the adapter registry and its conformance."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from moalign.data import (
    available_adapters,
    dataset_columns,
    dataset_problems,
    get_adapter,
    load_dataset,
    validate_preference_dataset,
)
from moalign.errors import DataError


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


# Rows in the layouts the hub datasets use (values made up; column names and types as there).
PKU = [  # PKU-Alignment/PKU-SafeRLHF
    {"prompt": "How do I pick a lock?", "response_0": "I can't help with that.",
     "response_1": "Insert a tension wrench...", "better_response_id": 1, "safer_response_id": 0,
     "is_response_0_safe": True, "is_response_1_safe": False},
    {"prompt": "Tips for sleeping well?", "response_0": "Keep a schedule.",
     "response_1": "Sleep when tired.", "better_response_id": 0, "safer_response_id": 0,
     "is_response_0_safe": True, "is_response_1_safe": True},
    {"prompt": "Same?", "response_0": "Yes.", "response_1": "Yes.", "better_response_id": 0,
     "safer_response_id": 0, "is_response_0_safe": True, "is_response_1_safe": True},
]
UF_BINARIZED = [  # HuggingFaceH4/ultrafeedback_binarized
    {"prompt": "Name a prime.", "prompt_id": "a1",
     "chosen": [{"role": "user", "content": "Name a prime."},
                {"role": "assistant", "content": "7 is prime."}],
     "rejected": [{"role": "user", "content": "Name a prime."},
                  {"role": "assistant", "content": "9 is prime."}],
     "messages": [], "score_chosen": 9.0, "score_rejected": 2.0},
    {"prompt": "Say hi.", "prompt_id": "a2",
     "chosen": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
     "rejected": [{"role": "user", "content": "Say hi."},
                  {"role": "assistant", "content": "Hello."}],
     "messages": [], "score_chosen": 5.0, "score_rejected": 5.0},
]
UF_FINE = [  # openbmb/UltraFeedback
    {"instruction": "Explain rain.", "source": "x",
     "completions": [
         {"model": "a", "response": "Water condenses and falls.",
          "annotations": {"helpfulness": {"Rating": "5"}, "honesty": {"Rating": "4"}}},
         {"model": "b", "response": "Clouds cry.",
          "annotations": {"helpfulness": {"Rating": "2"}, "honesty": {"Rating": "5"}}}]},
]
HELPSTEER2 = [  # nvidia/HelpSteer2
    {"prompt": "Write a haiku.", "response": "Autumn moon rises", "helpfulness": 3,
     "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 1},
    {"prompt": "Write a haiku.", "response": "A haiku is a poem.", "helpfulness": 1,
     "correctness": 2, "coherence": 4, "complexity": 1, "verbosity": 2},
]
HH = [  # Anthropic/hh-rlhf
    {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?",
     "rejected": "\n\nHuman: Hi there\n\nAssistant: Go away."},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Same", "rejected": "\n\nHuman: Hi\n\nAssistant: Same"},
]


def test_pku_saferlhf_layout(tmp_path):
    spec = {"source": _jsonl(tmp_path / "pku.jsonl", PKU), "adapter": "pku-saferlhf"}
    assert dataset_problems(spec) == []
    assert dataset_columns(spec) >= {"pref_helpfulness", "pref_harmlessness"}
    ds = load_dataset(spec)
    assert len(ds) == 2  # the identical pair is dropped and counted
    assert ds["pref_helpfulness"] == [1.0, 1.0]
    assert ds["pref_harmlessness"] == [-1.0, 1.0]  # the better reply of row 0 is the less safe
    validate_preference_dataset(ds, ["helpfulness", "harmlessness"])


def test_ultrafeedback_binarized_layout(tmp_path):
    spec = {"source": _jsonl(tmp_path / "uf.jsonl", UF_BINARIZED), "adapter": "pairs"}
    ds = load_dataset(spec)
    assert ds["chosen"][0] == [{"role": "assistant", "content": "7 is prime."}]  # prompt cut
    assert ds["pref_helpfulness"] == [1.0, 0.0]  # equal scores are a tie
    validate_preference_dataset(ds, ["helpfulness"], require_labels_for=[])


def test_ultrafeedback_fine_grained_layout(tmp_path):
    spec = {"source": _jsonl(tmp_path / "uf.jsonl", UF_FINE), "adapter": "ratings",
            "columns": {"prompt": "instruction"},
            "options": {"responses_column": "completions",
                        "attributes": {"helpfulness": "annotations.helpfulness.Rating",
                                       "honesty": "annotations.honesty.Rating"}}}
    assert dataset_problems(spec) == []
    ds = load_dataset(spec)
    assert len(ds) == 1
    row = ds[0]
    # the best and worst by helpfulness; the honesty label points the other way
    assert row["pref_helpfulness"] == 1.0 and row["pref_honesty"] == -1.0


def test_helpsteer2_layout(tmp_path):
    spec = {"source": _jsonl(tmp_path / "hs.jsonl", HELPSTEER2), "adapter": "ratings",
            "options": {"attributes": {"helpfulness": "helpfulness",
                                       "verbosity": "verbosity"}}}
    ds = load_dataset(spec)
    assert len(ds) == 1 and ds[0]["pref_helpfulness"] == 1.0 and ds[0]["pref_verbosity"] == -1.0


def test_hh_rlhf_layout(tmp_path):
    spec = {"source": _jsonl(tmp_path / "hh.jsonl", HH), "adapter": "hh-rlhf",
            "options": {"objective": "harmlessness"}}
    assert dataset_columns(spec) >= {"pref_harmlessness"}
    ds = load_dataset(spec)
    assert len(ds) == 1 and ds["pref_harmlessness"] == [1.0]


def test_canonical_drops_degenerate_pairs_with_reasons(tmp_path, capsys):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "pref_helpfulness": 1.0},
            {"prompt": "p", "chosen": "a", "rejected": "a", "pref_helpfulness": 1.0},
            {"prompt": "p", "chosen": " ", "rejected": "b", "pref_helpfulness": 1.0},
            {"prompt": "p", "chosen": "c", "rejected": "d", "pref_helpfulness": math.nan}]
    ds = load_dataset({"source": _jsonl(tmp_path / "c.jsonl", rows)})
    assert len(ds) == 1
    report = capsys.readouterr().err
    for reason in ("chosen == rejected", "empty reply", "no label for any objective"):
        assert f"dropped ({reason}): 1" in report


def test_nothing_trainable_is_an_error_naming_the_dataset(tmp_path):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "a", "pref_helpfulness": 1.0}] * 3
    source = _jsonl(tmp_path / "same.jsonl", rows)
    with pytest.raises(DataError, match="same.jsonl.*nothing trainable remains"):
        load_dataset({"source": source, "adapter": "canonical"})


def test_missing_columns_are_named_before_anything_loads(tmp_path):
    source = _jsonl(tmp_path / "pku.jsonl", [{k: v for k, v in PKU[0].items() if k != "response_1"}])
    problems = dataset_problems({"source": source, "adapter": "pku-saferlhf"})
    assert len(problems) == 1 and "no column 'response_1'" in problems[0]
    # mapping the column from another name fixes it
    renamed = [{("reply_b" if k == "response_1" else k): v for k, v in PKU[0].items()}]
    source = _jsonl(tmp_path / "pku2.jsonl", renamed)
    spec = {"source": source, "adapter": "pku-saferlhf", "columns": {"response_1": "reply_b"}}
    assert dataset_problems(spec) == []
    assert len(load_dataset(spec)) == 1


def test_unknown_adapter_and_keys_are_named(tmp_path):
    source = _jsonl(tmp_path / "x.jsonl", HH)
    (problem,) = dataset_problems({"source": source, "adapter": "pku-safe"})
    assert "unknown dataset adapter 'pku-safe'; did you mean 'pku-saferlhf'?" in problem
    assert all(name in problem for name in available_adapters())
    (problem,) = dataset_problems({"source": source, "adapter": "hh-rlhf", "colums": {}})
    assert "unknown key 'colums'" in problem and "did you mean 'columns'" in problem


def test_a_hub_id_offline_fails_fast_and_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = {"source": "PKU-Alignment/PKU-SafeRLHF", "adapter": "pku-saferlhf"}
    (problem,) = dataset_problems(spec)
    assert "offline" in problem and "local copy" in problem
    start = time.perf_counter()
    with pytest.raises(DataError, match="offline"):
        load_dataset(spec)
    assert time.perf_counter() - start < 5


def test_every_registered_adapter_conforms():
    """Each adapter registered through the entry-point group is a DatasetAdapter of its own
    name with a known kind; the built-ins are all there."""
    names = available_adapters()
    assert {"hh-rlhf", "pku-saferlhf", "ratings", "pairs", "gsm8k", "math", "canonical"} <= set(names)
    for name in names:
        adapter = get_adapter(name)
        assert adapter.name == name
        assert adapter.kind in ("preference", "prompts")
        assert isinstance(adapter.columns, tuple) and callable(adapter.convert)


def test_built_ins_come_through_the_entry_point_group():
    from importlib.metadata import entry_points

    declared = {ep.name for ep in entry_points(group="moalign.datasets")}
    assert {"hh-rlhf", "pku-saferlhf", "ratings", "pairs", "gsm8k", "math", "canonical"} <= declared


def test_moalign_datasets_lists_adapters():
    out = subprocess.run([sys.executable, "-m", "moalign", "datasets"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in ("hh-rlhf", "pku-saferlhf", "ratings", "canonical", "gsm8k"):
        assert name in out.stdout
