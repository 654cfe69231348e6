"""Conditioned DPO: per-pair Dirichlet weights shown in the prompt and used in the loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moalign.models import tiny_causal_lm
from moalign.tradeoff.conditioning import apply_condition, format_condition
from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from tests.support.dpo_testkit import (
    batch_of,
    conflicting_pairs,
    cpu_args,
    logratio_margins,
    rows_of,
    tiny_pair,
)

BETA = 0.5
NAMES = ["a", "b"]



def conditioned(tmp_path, data, *, eval_dataset=None, model=None, ref=None, tok=None, **run):
    if model is None:
        model, ref, tok = tiny_pair(0)
    fields = {k: run.pop(k) for k in ("dirichlet_alpha", "condition_style") if k in run}
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path, **run), objectives=NAMES,
                                   conditioning="prompt", **fields)
    return MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=data,
                                    eval_dataset=eval_dataset, processing_class=tok)


def test_each_prompt_shows_the_weights_its_loss_uses(tmp_path):
    data = conflicting_pairs(32, seed=2)
    trainer = conditioned(tmp_path, data)
    tok = trainer.processing_class
    weights = np.asarray(trainer.train_dataset["condition_weights"])
    assert weights.shape == (32, 2)
    assert np.allclose(weights.sum(1), 1.0)
    assert np.allclose(weights * 100, np.round(weights * 100))  # shown exactly with 2 decimals
    assert len({tuple(w) for w in weights.tolist()}) > 20  # drawn per pair
    for row, original in zip(trainer.train_dataset, data, strict=True):
        text = tok.decode(row["prompt_ids"])
        assert text == f"{format_condition(row['condition_weights'], NAMES)}\n{original['prompt']}"
    again = conditioned(tmp_path, data)
    assert again.train_dataset["condition_weights"] == trainer.train_dataset["condition_weights"]
    other = conditioned(tmp_path, data, seed=1)
    assert other.train_dataset["condition_weights"] != trainer.train_dataset["condition_weights"]


def test_chat_prompts_get_a_system_message(tmp_path):
    trainer = conditioned(tmp_path, conflicting_pairs(4, chat=True), max_length=160)
    row = trainer.train_dataset[0]
    text = trainer.processing_class.decode(row["prompt_ids"])
    line = format_condition(row["condition_weights"], NAMES)
    assert text.startswith(f"<|im_start|>system\n{line}<|im_end|>\n<|im_start|>user\nQ")
    prefix = conditioned(tmp_path, conflicting_pairs(4, chat=True), max_length=160,
                         condition_style="prefix")
    text = prefix.processing_class.decode(prefix.train_dataset[0]["prompt_ids"])
    assert text.startswith("<|im_start|>user\nObjective weights: a=")


def test_loss_weights_each_pair_by_its_own_vector(tmp_path):
    data = conflicting_pairs(8, seed=3)
    labels_b = [1.0, math.nan, -1.0, 1.0, math.nan, -1.0, 1.0, 1.0]
    data = data.remove_columns("pref_b").add_column("pref_b", labels_b)
    model, _, tok = tiny_pair(0)
    ref, _ = tiny_causal_lm(1)
    trainer = conditioned(tmp_path, data, model=model, ref=ref, tok=tok)
    trainer.model.eval()
    rows = rows_of(trainer, range(8))
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch_of(trainer, rows)))
    delta = logratio_margins(trainer.model, trainer.ref_model, rows)
    expected = 0.0
    for k, column in enumerate(("pref_a", "pref_b")):
        labelled = [(r["condition_weights"][k], r[column], d) for r, d in zip(rows, delta, strict=True)
                    if r[column] in (1.0, -1.0)]
        expected += sum(w * math.log1p(math.exp(-BETA * s * d)) for w, s, d in labelled) / len(labelled)
    assert loss == pytest.approx(expected, abs=1e-5)


@pytest.mark.slow
def test_one_run_serves_every_weight_vector(tmp_path):
    """Trained once on conflicting objectives, the policy follows whichever weights it is shown."""
    from moalign.evaluation import implicit_reward_accuracy

    model, tok = tiny_causal_lm(0, hidden_size=64)
    ref, _ = tiny_causal_lm(0, hidden_size=64)
    trainer = conditioned(tmp_path, conflicting_pairs(512, seed=0), model=model, ref=ref, tok=tok,
                          max_steps=80, learning_rate=1e-2, per_device_train_batch_size=16,
                          dirichlet_alpha=0.2, logging_steps=100)
    trainer.train()
    held_out = conflicting_pairs(64, seed=1)

    def accuracy(weights):
        return implicit_reward_accuracy(
            model, tok, held_out, NAMES, ref_model=ref, beta=BETA,
            transform_prompt=lambda p: apply_condition(p, weights, NAMES))

    favour_a, favour_b = accuracy([0.9, 0.1]), accuracy([0.1, 0.9])
    assert favour_a["a"]["accuracy"] - favour_b["a"]["accuracy"] >= 0.5
    assert favour_b["b"]["accuracy"] - favour_a["b"]["accuracy"] >= 0.5
    assert favour_a["a"]["margin"] > 0 > favour_b["a"]["margin"]

    # the trainer's own evaluation at chosen weights (a condition_weights column) agrees
    at = {w: trainer.evaluate(held_out.add_column("condition_weights", [list(w)] * 64))
          for w in ((0.9, 0.1), (0.1, 0.9))}
    assert at[(0.9, 0.1)]["eval_weights/a"] == pytest.approx(0.9)
    assert at[(0.9, 0.1)]["eval_objective/a/accuracy"] == pytest.approx(favour_a["a"]["accuracy"],
                                                                        abs=0.1)
    assert at[(0.1, 0.9)]["eval_objective/b/accuracy"] == pytest.approx(favour_b["b"]["accuracy"],
                                                                        abs=0.1)
