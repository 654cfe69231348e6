"""MODPO: oracle against trl.DPOTrainer, the loss by hand, margins computed once."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moalign.errors import DataError
from moalign.models import tiny_causal_lm
from moalign.objective import Objective, as_text
from moalign.trainers import MODPOConfig, MODPOTrainer
from moalign.trainers.modpo import ImplicitReward, add_margin_columns
from tests.support.dpo_testkit import (
    VOWELS,
    batch_of,
    completion_logprob,
    conflicting_pairs,
    cpu_args,
    logratio_margins,
    rows_of,
    tiny_pair,
)

BETA = 0.5



class VowelCount(Objective):
    """A rule: the number of vowels in the reply (counts its calls)."""

    name = "vowels"

    def __init__(self):
        self.calls = 0

    def score(self, prompts, completions, **columns):
        self.calls += 1
        return [float(sum(ch in VOWELS for ch in as_text(c))) for c in completions]


def test_w0_one_and_zero_margins_equal_trl_dpo(tmp_path):
    from trl import DPOConfig, DPOTrainer

    data = conflicting_pairs(24, seed=8).map(lambda r: {"pref_a": 1.0, "margin_b": 0.0})
    model, ref, tok = tiny_pair(0)
    trl_run = DPOTrainer(model, ref, args=DPOConfig(**cpu_args(tmp_path / "t", max_steps=3)),
                         train_dataset=data.remove_columns(["pref_a", "pref_b", "margin_b"]),
                         processing_class=tok)
    trl_run.train()
    model, ref, tok = tiny_pair(0)
    args = MODPOConfig(**cpu_args(tmp_path / "m", max_steps=3), objectives=["a", "b"],
                       weights=[1.0, 0.0])
    modpo = MODPOTrainer(model, ref, args=args, train_dataset=data, processing_class=tok)
    modpo.train()
    want = [h["loss"] for h in trl_run.state.log_history if "loss" in h]
    got = [h["loss"] for h in modpo.state.log_history if "loss" in h]
    assert got == pytest.approx(want, abs=1e-5) and len(got) == 3
    for p, q in zip(modpo.model.parameters(), trl_run.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)


def test_loss_by_hand_with_margins_and_swapped_labels(tmp_path):
    data = conflicting_pairs(8, seed=9)
    labels = [1.0, -1.0, math.nan, -1.0, 1.0, 0.0, 1.0, -1.0]
    margins = [0.5, -1.0, 2.0, 3.0, -0.25, 1.0, 0.0, 1.5]
    data = data.remove_columns("pref_a").add_column("pref_a", labels).add_column("margin_b", margins)
    model, _, tok = tiny_pair(0)
    ref, _ = tiny_causal_lm(1)
    args = MODPOConfig(**cpu_args(tmp_path), objectives=["a", "b"], weights=[0.6, 0.4])
    trainer = MODPOTrainer(model, ref, args=args, train_dataset=data, processing_class=tok)
    trainer.model.eval()
    rows = rows_of(trainer, range(8))
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch_of(trainer, rows)))
    delta = logratio_margins(trainer.model, trainer.ref_model, rows)
    terms = [math.log1p(math.exp(-s * (BETA * d - 0.4 * m) / 0.6))
             for s, d, m in zip(labels, delta, margins, strict=True) if s in (1.0, -1.0)]
    assert loss == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    logged = trainer._metrics["eval"]
    assert set(logged) >= {"objective/a/accuracy", "objective/b/accuracy", "weights/b"}
    assert logged["objective/a/labelled"][-1] == pytest.approx(6 / 8)


def test_margins_are_computed_once_before_training(tmp_path):
    data = conflicting_pairs(20, seed=10)
    rule = VowelCount()
    model, ref, tok = tiny_pair(0)
    args = MODPOConfig(**cpu_args(tmp_path, max_steps=3), objectives=["a", "b"], weights=[0.5, 0.5])
    trainer = MODPOTrainer(model, ref, args=args, train_dataset=data, processing_class=tok,
                           margin_rewards={"b": rule})
    assert rule.calls == 2  # chosen and rejected, one batch of 20 pairs
    expected = [sum(ch in VOWELS for ch in c) - sum(ch in VOWELS for ch in r)
                for c, r in zip(data["chosen"], data["rejected"], strict=True)]
    assert trainer.train_dataset["margin_b"] == pytest.approx(expected)
    trainer.train()
    assert rule.calls == 2
    assert "margin_b" not in data.column_names  # the caller's dataset is not modified


def test_implicit_reward_of_another_adapter_as_a_margin():
    from peft import LoraConfig, get_peft_model

    base, tok = tiny_causal_lm(0)
    other = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    reward = ImplicitReward(other, tok, beta=0.2, name="b")
    data = conflicting_pairs(6, seed=11)
    with_margin = add_margin_columns(data, {"b": reward}, batch_size=4)

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    for row, margin in zip(data, with_margin["margin_b"], strict=True):
        p = ids(row["prompt"])
        scores = []
        for side in ("chosen", "rejected"):
            c = ids(row[side] + tok.eos_token)
            policy = completion_logprob(other, p, c)
            with other.disable_adapter():
                base_lp = completion_logprob(other, p, c)
            scores.append(0.2 * (policy - base_lp))
        assert margin == pytest.approx(scores[0] - scores[1], abs=1e-5)
    assert np.std(with_margin["margin_b"]) > 0


class NoModel:
    def __getattr__(self, name):
        raise AssertionError(f"the model was used ({name}) before the inputs were checked")


def test_missing_margin_column_without_a_scorer(tmp_path):
    args = MODPOConfig(**cpu_args(tmp_path), objectives=["a", "zz_unregistered"])
    with pytest.raises(DataError, match="no column 'margin_zz_unregistered'.*margin_rewards"):
        MODPOTrainer(NoModel(), args=args, train_dataset=conflicting_pairs(4))


def test_nan_margin_on_a_labelled_pair(tmp_path):
    data = conflicting_pairs(4).add_column("margin_b", [0.0, 1.0, math.nan, 2.0])
    args = MODPOConfig(**cpu_args(tmp_path), objectives=["a", "b"])
    with pytest.raises(DataError, match="row 2, column 'margin_b'"):
        MODPOTrainer(NoModel(), args=args, train_dataset=data)
    # unlabelled for the trained objective: its margin is never used, so NaN is fine there
    data = data.remove_columns("pref_a").add_column("pref_a", [1.0, -1.0, math.nan, 1.0])
    with pytest.raises(AssertionError, match="the model was used"):
        MODPOTrainer(NoModel(), args=args, train_dataset=data)


def test_trained_objective_needs_labels(tmp_path):
    data = conflicting_pairs(4).map(lambda r: {"pref_a": math.nan, "margin_b": 0.0})
    args = MODPOConfig(**cpu_args(tmp_path), objectives=["a", "b"])
    with pytest.raises(DataError, match="'pref_a'.*none of the 4 pairs"):
        MODPOTrainer(NoModel(), args=args, train_dataset=data)
