"""One LoRA builder: the same ``lora`` keys give the same adapter in ``moalign train``, in a
front trace's run, in ``moalign sft`` and in ``moalign reward`` (:mod:`moalign.models.lora`).

The end-to-end check trains one run each way on the tiny model, with the same data, trainer
settings and seed (``moalign train`` is given the trace's seed: its trainer's own default
differs), and compares the ``peft.LoraConfig`` each built and the losses of its first
steps. The adapters start random (``init_lora_weights: false``), so the first loss already
depends on where the adapters sit and on their dropout.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from moalign.errors import ModelError
from moalign.models.lora import lora_config

LORA = {"r": 4, "lora_alpha": 8, "init_lora_weights": False}
TRAIN = {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2,
         "max_length": 64, "logging_steps": 1}
OBJECTIVES = ["helpfulness", "harmlessness"]
WEIGHTS = [0.3, 0.7]
PAIRS, PROMPT_TOKENS = 8, 32


@pytest.fixture
def built(monkeypatch):
    """Every call of :func:`moalign.trainers.runs.train_and_save` (the function both commands
    train with): the ``peft_config`` it was given and the losses it logged."""
    import moalign.trainers.runs as runs

    calls: list[dict] = []
    original = runs.train_and_save

    def recording(*args, **kwargs):
        record = original(*args, **kwargs)
        calls.append({"peft_config": kwargs.get("peft_config"),
                      "losses": [e["loss"] for e in record["log"] if "loss" in e]})
        return record

    monkeypatch.setattr(runs, "train_and_save", recording)
    return calls


def _moalign_train(root) -> None:
    from moalign.cli import main

    config, out = root / "train.yaml", root / "train"
    config.write_text(json.dumps({  # JSON is YAML
        "trainer": "mo_dpo", "model": "tiny", "dataset": "hh-rlhf", "objectives": OBJECTIVES,
        "weights": WEIGHTS, "output_dir": str(out), "lora": LORA, "max_examples": PAIRS,
        # the trace's seed (its default, 0) for the split, the tiny model and the trainer
        "max_prompt_tokens": PROMPT_TOKENS, "precision": "float32", "seed": 0, **TRAIN}))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["train", "--config", str(config), "--quiet"])
    assert rc == 0, err.getvalue()


def _trace_run(root) -> None:
    from moalign.fronts.trace import trace_front

    trace_front({"method": "sweep", "trainer": "mo_dpo", "model": "tiny", "dataset": "hh-rlhf",
                 "objectives": OBJECTIVES, "weights": [WEIGHTS], "train_pairs": PAIRS,
                 "eval_pairs": 4, "include_baseline": False, "max_length": 64,
                 "train": {**TRAIN, "max_prompt_tokens": PROMPT_TOKENS}, "lora": LORA,
                 "precision": "float32", "output_dir": str(root / "front"), "progress": False})


@pytest.mark.slow
def test_a_trace_run_and_moalign_train_build_the_same_adapter_and_losses(built, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _moalign_train(tmp_path)
        _trace_run(tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert len(built) == 2, "one training run each"
    train, trace = built
    assert trace["peft_config"] == train["peft_config"]
    assert trace["peft_config"] == lora_config(**LORA)
    assert len(train["losses"]) == TRAIN["max_steps"]
    assert trace["losses"][0] == train["losses"][0]
    assert trace["losses"] == train["losses"]


def test_every_path_starts_from_the_same_defaults():
    from moalign.fronts.config import FrontConfig
    from moalign.models.lora import LORA_DEFAULTS, flat_lora_options
    from moalign.rewards.training import RewardTrainingConfig
    from moalign.trainers.sft import SFTTrainingConfig

    default = lora_config()
    assert (default.r, default.lora_alpha, default.lora_dropout) == (16, 32, 0.05)
    assert default.target_modules == set(LORA_DEFAULTS["target_modules"])
    front = FrontConfig(model="tiny")
    assert lora_config(**front.lora) == default
    sft = SFTTrainingConfig(model="smollm2", output_dir="unused-sft-output")
    assert lora_config(**flat_lora_options(sft)) == default
    reward = RewardTrainingConfig(model="smollm2", method="lora", output_dir="unused-rm-output")
    assert lora_config(task_type="SEQ_CLS", **flat_lora_options(reward)) == lora_config(
        task_type="SEQ_CLS")
    # the flat spellings mean the same options as the nested ones
    sft = SFTTrainingConfig(model="smollm2", output_dir="unused-sft-output", lora_r=4, lora_alpha=8,
                            lora_dropout=0.0, lora_target_modules=["q_proj", "v_proj"])
    assert lora_config(**flat_lora_options(sft)) == lora_config(
        r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])


def test_short_and_long_spellings_are_one_option():
    from moalign.models.lora import lora_problems

    assert lora_config(r=4, alpha=8, dropout=0.1) == lora_config(r=4, lora_alpha=8, lora_dropout=0.1)
    with pytest.raises(ModelError, match="given twice"):
        lora_config(alpha=8, lora_alpha=16)
    assert any("same option" in p for p in lora_problems({"dropout": 0.1, "lora_dropout": 0.1}))
    assert lora_problems({"r": 4, "alpha": 8, "dropout": 0.0, "use_rslora": True}) == []


def test_a_front_config_records_its_complete_lora_options():
    from moalign.fronts.config import FrontConfig
    from moalign.models.lora import LORA_DEFAULTS

    cfg = FrontConfig(model="tiny", lora={"r": 4, "alpha": 8})
    assert cfg.lora == {"r": 4, "lora_alpha": 8, "lora_dropout": 0.05,
                        "target_modules": list(LORA_DEFAULTS["target_modules"])}
    assert FrontConfig(model="tiny", lora=None).lora is None
