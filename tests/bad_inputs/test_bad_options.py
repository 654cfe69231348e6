"""Options that used to pass through to a library unchecked and end in its traceback after the
model loaded: LoRA options (ranges, and target modules against the model's module names), the
options of a dataset adapter, a text value in a numeric score column, malformed SFT rows.

Each is refused with the key, column or row named, before any model loads (every loader is
forbidden: :func:`conftest.no_model_load`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.corpus import jsonl, pref_rows, run_cli_case

TRAIN = ["train", "--model", "tiny", "--dataset", "{tmp}/d.jsonl", "--output_dir", "{tmp}/out",
         "--max_steps", "1"]
TRACE = ["trace", "--model", "tiny", "--dataset", "{tmp}/d.jsonl", "--output_dir", "{tmp}/out",
         "--grid", "1"]
DATA = {"d.jsonl": jsonl(pref_rows())}
USER = {"role": "user", "content": "hi?"}
BOT = {"role": "assistant", "content": "hello"}


@pytest.fixture(scope="module", autouse=True)
def _imported() -> None:
    """The libraries a first case imports (transformers' model classes, read for the module
    names of a LoRA check) are imported once, so each case's time is its own work."""
    from moalign.models.specs import model_modules

    model_modules("tiny")

def _yaml(dataset: dict) -> str:
    return f"model: tiny\ndataset: {json.dumps(dataset)}\nobjectives: [helpfulness]\n" \
           "weights: [1]\nmax_steps: 1\n"


CASES = [
    # LoRA options against their ranges (lora_dropout 1.5 trained... until peft refused it)
    dict(id="lora-dropout-above-1", argv=[*TRAIN, "--lora.lora_dropout", "1.5"],
         expect=["'lora': 'lora_dropout' must be a number in [0, 1), got 1.5"]),
    dict(id="lora-dropout-alias-negative", argv=[*TRAIN, "--lora.dropout", "-0.1"],
         expect=["'lora': 'dropout' must be a number in [0, 1), got -0.1"]),
    dict(id="lora-alpha-zero", argv=[*TRAIN, "--lora.alpha", "0"],
         expect=["'lora': 'alpha' must be a positive number, got 0"]),
    dict(id="lora-rank-zero", argv=[*TRAIN, "--lora.r", "0"],
         expect=["'lora': 'r' must be a positive integer, got 0"]),
    dict(id="lora-no-target-modules", argv=[*TRAIN, "--lora.target_modules", "[]"],
         expect=["'lora': 'target_modules' must be a non-empty list of module names"]),
    dict(id="trace-lora-dropout", argv=[*TRACE, "--lora.lora_dropout", "1.5"],
         expect=["'lora': 'lora_dropout' must be a number in [0, 1), got 1.5"]),
    # target modules against the model's module names (peft's NoMatchingPeftModuleError)
    dict(id="trace-target-modules-not-in-the-model",
         argv=[*TRACE, "--lora.target_modules", "[q_proj, attn_out]"],
         expect=["'lora': 'target_modules' 'attn_out' matches no module of model 'tiny'",
                 "its linear layers are: down_proj, gate_proj, k_proj"]),
    dict(id="train-target-modules-misspelled", argv=[*TRAIN, "--lora.target_modules", "[q_porj]"],
         expect=["'q_porj' matches no module of model 'tiny'; did you mean 'q_proj'?"]),
    dict(id="trace-target-modules-misspelled", argv=[*TRACE, "--lora.target_modules", "[q_porj]"],
         expect=["'q_porj' matches no module of model 'tiny'; did you mean 'q_proj'?"]),
    dict(id="trace-target-modules-regex-matching-nothing",
         argv=[*TRACE, "--lora.target_modules", ".*\\.attention\\.query"],
         expect=["'lora': 'target_modules' '.*\\\\.attention\\\\.query' matches no module"]),
    # dataset adapter options against the adapter's signature (TypeError: _canonical() ...)
    dict(id="adapter-unknown-option",
         files={"c.yaml": _yaml({"source": "{tmp}/d.jsonl", "options": {"objective": "x"}})},
         argv=["train", "--config", "{tmp}/c.yaml", "--output_dir", "{tmp}/out"],
         expect=["'dataset.options': adapter 'canonical' has no option 'objective'",
                 "did you mean 'objectives'?", "(its options: objectives)"]),
    dict(id="adapter-option-of-the-function-it-calls",
         files={"c.yaml": _yaml({"source": "{tmp}/d.jsonl", "adapter": "pku-saferlhf",
                                 "options": {"as_chat": False, "errors": "raise"}})},
         argv=["train", "--config", "{tmp}/c.yaml", "--output_dir", "{tmp}/out"],
         expect=["adapter 'pku-saferlhf' has no option 'errors'", "helpful_objective"]),
    # a text value in a numeric score column (could not convert string to float)
    dict(id="text-in-a-score-column",
         files={"p.jsonl": jsonl({"prompt": f"q{i}?", "chosen": "yes", "rejected": "no",
                                  "score_chosen": "high" if i == 3 else 4, "score_rejected": 1}
                                 for i in range(8)),
                "c.yaml": _yaml({"source": "{tmp}/p.jsonl", "adapter": "pairs"})},
         argv=["train", "--config", "{tmp}/c.yaml", "--output_dir", "{tmp}/out"],
         expect=["adapter 'pairs': row 3, column 'score_chosen': a score must be a finite "
                 "number, got 'high'"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_option(case, cli, tmp_path, no_model_load):
    start = time.perf_counter()
    run_cli_case({**case, "files": {**DATA, **case.get("files", {})}}, cli, tmp_path)
    assert time.perf_counter() - start < 10


def test_target_modules_are_checked_from_the_config_alone(tmp_path):
    """A model folder's module names come from its config on the meta device: no weight file
    is read (here there is none)."""
    from moalign.models.specs import lora_target_problems, model_modules
    from moalign.models.tiny import _tiny_llama_config, tiny_tokenizer

    _tiny_llama_config(tiny_tokenizer()).save_pretrained(tmp_path / "m")
    assert "model.layers.0.self_attn.q_proj" in model_modules(str(tmp_path / "m"))
    assert lora_target_problems(str(tmp_path / "m"), {}) == []  # the defaults: q/k/v/o
    assert lora_target_problems(str(tmp_path / "m"), {"target_modules": "all-linear"}) == []
    assert "'c_attn' matches no module" in lora_target_problems(
        str(tmp_path / "m"), {"target_modules": ["c_attn"]})[0]
    assert lora_target_problems("some/hub-id", {"target_modules": ["c_attn"]}) == []  # unknown


# ------------------------------------------------------------------------------------ SFT rows


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from moalign.models import tiny_causal_lm

    path = tmp_path_factory.mktemp("tiny") / "model"
    model, tokenizer = tiny_causal_lm()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _sft(rows: list[dict]) -> dict:
    return {"s.jsonl": jsonl(rows * 4)}


SFT = {
    "completion-a-list-of-strings": (
        _sft([{"prompt": "q?", "completion": ["a", "b"]}]),
        "row 0, column 'completion': expected a string or a list of chat messages"),
    "messages-with-other-keys": (
        _sft([{"messages": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}]),
        "row 0, column 'messages': message 0 must have 'role' and 'content' keys, got the keys "
        "['from', 'value']"),
    "completion-messages-with-other-keys": (
        _sft([{"prompt": [USER], "completion": [{"speaker": "assistant", "text": "yo"}]}]),
        "row 0, column 'completion': message 0 must have 'role' and 'content' keys"),
    "chat-prompt-text-completion": (
        _sft([{"prompt": [USER], "completion": "hello"}]),
        "row 0: the prompt is a list of chat messages but the completion is a string"),
    "message-with-unknown-role": (
        _sft([{"messages": [USER, {"role": "bot", "content": "x"}]}]),
        "row 0, column 'messages': message 1 has role 'bot'"),
    "empty-text-in-a-later-row": (
        {"s.jsonl": jsonl([{"text": "fine"}] * 3 + [{"text": "  "}])},
        "row 3, column 'text': empty text"),
}


@pytest.mark.parametrize("case", list(SFT))
def test_bad_sft_rows(case, tiny_model, cli, tmp_path, no_model_load):
    files, expect = SFT[case]
    start = time.perf_counter()
    run_cli_case({"argv": ["sft", "--model", str(tiny_model), "--dataset", "{tmp}/s.jsonl",
                           "--output_dir", "{tmp}/out", "--max_steps", "1"],
                  "files": files, "expect": [f"SFT dataset '{{tmp}}/s.jsonl': {expect}"]},
                 cli, tmp_path)
    assert time.perf_counter() - start < 10


def test_good_sft_rows_pass():
    from datasets import Dataset

    from moalign.data.sft_rows import validate_sft_dataset

    with_extra_keys = [{**USER, "name": None}, {**BOT, "name": None}]
    assert validate_sft_dataset(Dataset.from_list([{"text": "a"}])) == "text"
    assert validate_sft_dataset(Dataset.from_list([{"messages": with_extra_keys}])) == "messages"
    assert validate_sft_dataset(Dataset.from_list(
        [{"prompt": [USER], "completion": [BOT]}])) == "prompt-completion"
    assert validate_sft_dataset(Dataset.from_list(
        [{"prompt": "q", "completion": "a"}])) == "prompt-completion"
