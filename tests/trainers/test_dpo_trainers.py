"""MultiObjectiveDPOTrainer: oracle against trl.DPOTrainer, hand-computed losses, behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moalign.models import tiny_causal_lm
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



def mo_trainer(tmp_path, data, *, model_seed=0, ref_seed=None, **config):
    model, ref, tok = tiny_pair(model_seed)
    if ref_seed is not None:
        ref, _ = tiny_causal_lm(ref_seed)
    run = {k: config.pop(k) for k in list(config) if k in cpu_args(tmp_path)}
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path, **run), **config)
    return MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=data, processing_class=tok)


def dpo(z: float) -> float:
    return math.log1p(math.exp(-z))


# ----------------------------------------------------------------------------- oracles


def test_one_objective_equals_trl_dpo(tmp_path):
    """Same seed, data and batches: losses, metrics and trained weights match TRL's."""
    from trl import DPOConfig, DPOTrainer

    data = conflicting_pairs(32, seed=3).remove_columns("pref_b")
    data = data.map(lambda r: {"pref_a": 1.0})  # TRL trains on chosen > rejected
    model, ref, tok = tiny_pair(0)
    trl_run = DPOTrainer(model, ref, args=DPOConfig(**cpu_args(tmp_path / "trl", max_steps=3)),
                         train_dataset=data, processing_class=tok)
    trl_run.train()
    mo_run = mo_trainer(tmp_path / "mo", data, max_steps=3, objectives=["a"], weights=[1.0])
    mo_run.train()
    trl_logs = [h for h in trl_run.state.log_history if "loss" in h]
    mo_logs = [h for h in mo_run.state.log_history if "loss" in h]
    assert len(trl_logs) == len(mo_logs) == 3
    for t, m in zip(trl_logs, mo_logs, strict=True):
        for key in ("loss", "grad_norm", "rewards/margins", "rewards/accuracies", "logps/chosen",
                    "entropy", "logits/rejected", "mean_token_accuracy"):
            assert m[key] == pytest.approx(t[key], abs=1e-5), key
        assert m["objective/a/loss"] == pytest.approx(t["loss"], abs=1e-5)
        assert m["objective/a/accuracy"] == pytest.approx(t["rewards/accuracies"], abs=1e-6)
    for (name, p), q in zip(mo_run.model.named_parameters(), trl_run.model.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name


def test_one_objective_equals_trl_with_precomputed_reference(tmp_path):
    from trl import DPOConfig, DPOTrainer

    data = conflicting_pairs(16, seed=4).remove_columns("pref_b").map(lambda r: {"pref_a": 1.0})
    model, ref, tok = tiny_pair(0)
    other, _ = tiny_causal_lm(1)
    trl_run = DPOTrainer(model, other, args=DPOConfig(**cpu_args(
        tmp_path / "t", precompute_ref_log_probs=True)), train_dataset=data, processing_class=tok)
    mo_model, _, _ = tiny_pair(0)
    mo_ref, _ = tiny_causal_lm(1)
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path / "m", precompute_ref_log_probs=True),
                                   objectives=["a"])
    mo_run = MultiObjectiveDPOTrainer(mo_model, mo_ref, args=args, train_dataset=data,
                                      processing_class=tok)
    assert "ref_chosen_logps" in mo_run.train_dataset.column_names
    rows = rows_of(mo_run, range(8))
    mo_run.model.eval()
    trl_run.model.eval()
    with torch.no_grad():
        got = mo_run.compute_loss(mo_run.model, batch_of(mo_run, rows))
        want = trl_run.compute_loss(trl_run.model, batch_of(trl_run, rows_of(trl_run, range(8))))
    assert float(got) == pytest.approx(float(want), abs=1e-5)


def test_two_objective_loss_by_hand(tmp_path):
    """Log-probs from plain forward passes, labels applied by hand, weights (0.3, 0.7)."""
    data = conflicting_pairs(8, seed=5)
    labels = {"pref_a": [1.0, -1.0, 0.0, math.nan, 1.0, -1.0, 1.0, 1.0],
              "pref_b": [-1.0, math.nan, 1.0, 1.0, 0.0, 1.0, math.nan, -1.0]}
    data = data.remove_columns(["pref_a", "pref_b"])
    for column, values in labels.items():
        data = data.add_column(column, values)
    trainer = mo_trainer(tmp_path, data, ref_seed=1, objectives=["a", "b"], weights=[0.3, 0.7])
    trainer.model.eval()
    rows = rows_of(trainer, range(8))
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch_of(trainer, rows)))
    delta = logratio_margins(trainer.model, trainer.ref_model, rows)
    per_objective = []
    for column in ("pref_a", "pref_b"):
        terms = [dpo(BETA * s * d) for s, d in zip(labels[column], delta, strict=True)
                 if s in (1.0, -1.0)]
        per_objective.append(sum(terms) / len(terms))
    assert loss == pytest.approx(0.3 * per_objective[0] + 0.7 * per_objective[1], abs=1e-5)
    logged = trainer._metrics["eval"]
    assert logged["objective/a/loss"][-1] == pytest.approx(per_objective[0], abs=1e-5)
    acc_b = np.mean([s * d > 0 for s, d in zip(labels["pref_b"], delta, strict=True)
                     if s in (1.0, -1.0)])
    assert logged["objective/b/accuracy"][-1] == pytest.approx(acc_b)
    assert logged["objective/b/labelled"][-1] == pytest.approx(5 / 8)
    assert logged["weights/b"][-1] == pytest.approx(0.7)


def test_tchebycheff_on_losses_by_hand(tmp_path):
    data = conflicting_pairs(8, seed=6)
    trainer = mo_trainer(tmp_path, data, ref_seed=1, objectives=["a", "b"], weights=[0.4, 0.6],
                         scalarizer="tchebycheff")
    trainer.model.eval()
    rows = rows_of(trainer, range(8))
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch_of(trainer, rows)))
    delta = logratio_margins(trainer.model, trainer.ref_model, rows)
    l_a = np.mean([dpo(BETA * r["pref_a"] * d) for r, d in zip(rows, delta, strict=True)])
    l_b = np.mean([dpo(BETA * r["pref_b"] * d) for r, d in zip(rows, delta, strict=True)])
    assert loss == pytest.approx(max(0.4 * l_a, 0.6 * l_b), abs=1e-5)


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("weights", [(0.9, 0.1), (0.1, 0.9)])
def test_weights_move_accuracy_toward_favoured_objective(tmp_path, weights):
    from moalign.evaluation import implicit_reward_accuracy

    train, held_out = conflicting_pairs(64, seed=0), conflicting_pairs(64, seed=1)
    trainer = mo_trainer(tmp_path, train, max_steps=10, logging_steps=5, objectives=["a", "b"],
                         weights=list(weights))
    before = implicit_reward_accuracy(trainer.model, trainer.processing_class, held_out,
                                      ["a", "b"], ref_model=trainer.ref_model, beta=BETA)
    trainer.train()
    after = implicit_reward_accuracy(trainer.model, trainer.processing_class, held_out,
                                     ["a", "b"], ref_model=trainer.ref_model, beta=BETA)
    favoured, other = ("a", "b") if weights[0] > weights[1] else ("b", "a")
    assert before[favoured]["margin"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert after[favoured]["accuracy"] >= 0.9
    assert after[other]["accuracy"] <= 0.1
    assert after[favoured]["margin"] > 0.5


def test_training_changes_parameters_and_logs_every_objective(tmp_path):
    trainer = mo_trainer(tmp_path, conflicting_pairs(16), objectives=["a", "b"], weights=[0.7, 0.3])
    before = [p.detach().clone() for p in trainer.model.parameters()]
    ref_before = [p.detach().clone() for p in trainer.ref_model.parameters()]
    trainer.train()
    assert all(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters(), strict=True))
    assert all(torch.equal(b, p) for b, p in zip(ref_before, trainer.ref_model.parameters(),
                                                  strict=True))
    log = trainer.state.log_history[0]
    for name in ("a", "b"):
        for what in ("loss", "accuracy", "margin", "labelled"):
            assert f"objective/{name}/{what}" in log
    assert (log["weights/a"], log["weights/b"]) == pytest.approx((0.7, 0.3))


def test_equal_weights_on_opposite_labels_cancel(tmp_path):
    """Every pair is labelled +1 for one objective and -1 for the other: with equal weights
    the two losses are L(z) + L(-z), whose gradient vanishes at z = 0 (policy == reference)."""
    trainer = mo_trainer(tmp_path, conflicting_pairs(16), objectives=["a", "b"], weights=[0.5, 0.5])
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert trainer.state.log_history[0]["grad_norm"] == 0.0
    assert all(torch.equal(b, p) for b, p in zip(before, trainer.model.parameters(), strict=True))


def test_annealed_schedule_is_asked_once_per_step(tmp_path):
    from moalign.schedule import AnnealedWeights

    trainer = mo_trainer(
        tmp_path, conflicting_pairs(32), max_steps=4, objectives=["a", "b"],
        schedule={"name": "anneal", "start": [1.0, 0.0], "end": [0.0, 1.0], "steps": 4},
        gradient_accumulation_steps=2, per_device_train_batch_size=4,
    )
    trainer.train()
    expected = AnnealedWeights([1.0, 0.0], [0.0, 1.0], 4)
    logs = [h for h in trainer.state.log_history if "weights/a" in h]
    assert [h["weights/a"] for h in logs] == pytest.approx(
        [expected.weights_at(t)[0] for t in range(4)])


def test_mgda_weights_are_the_min_norm_of_the_objective_gradients(tmp_path):
    from moalign.tradeoff.mgda import min_norm_weights

    data = conflicting_pairs(8, seed=7)
    trainer = mo_trainer(tmp_path, data, ref_seed=1, objectives=["a", "b"], schedule="mgda")
    model = trainer.model
    rows = rows_of(trainer, range(8))
    model.train()
    trainer.compute_loss(model, batch_of(trainer, rows))
    got = trainer.current_weights()
    # independent: per-objective DPO losses from plain forward passes, their gradients, min-norm
    grads = []
    for column in ("pref_a", "pref_b"):
        model.zero_grad()
        total = 0.0
        for r in rows:
            ids = r["prompt_ids"]
            terms = []
            for side in ("chosen_ids", "rejected_ids"):
                seq = torch.tensor([ids + r[side]])
                logp = torch.log_softmax(model(input_ids=seq).logits[0, :-1], -1)
                pol = logp.gather(1, seq[0, 1:, None]).squeeze(1)[len(ids) - 1:].sum()
                with torch.no_grad():
                    rlogp = torch.log_softmax(trainer.ref_model(input_ids=seq).logits[0, :-1], -1)
                    ref = rlogp.gather(1, seq[0, 1:, None]).squeeze(1)[len(ids) - 1:].sum()
                terms.append(pol - ref)
            total = total - torch.nn.functional.logsigmoid(BETA * r[column] * (terms[0] - terms[1]))
        (total / len(rows)).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    want = min_norm_weights(torch.stack(grads)).numpy()
    assert got == pytest.approx(want, abs=1e-4)
    assert 0.0 < got[0] < 1.0


def test_schedule_state_is_saved_with_checkpoints_and_restored(tmp_path):
    import json

    spec = {"name": "anneal", "start": [1.0, 0.0], "end": [0.0, 1.0], "steps": 10}
    trainer = mo_trainer(tmp_path, conflicting_pairs(32), max_steps=3, save_strategy="steps",
                         save_steps=3, objectives=["a", "b"], schedule=spec)
    trainer.train()
    state = json.loads((tmp_path / "checkpoint-3" / "moalign_state.json").read_text())
    assert state["objectives"] == ["a", "b"]
    schedule = state["tradeoff"]["schedule"]
    assert schedule["kind"] == "anneal" and schedule["t"] == 3
    fresh = mo_trainer(tmp_path / "again", conflicting_pairs(32), objectives=["a", "b"],
                       schedule=spec)
    fresh._load_from_checkpoint(str(tmp_path / "checkpoint-3"))
    assert fresh.tradeoff.schedule.t == 3
    assert fresh.current_weights() == pytest.approx(trainer.current_weights())


def test_lora_run_saves_an_adapter_that_reloads(tmp_path):
    from peft import LoraConfig, PeftModel

    model, tok = tiny_causal_lm(0)
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path, max_steps=3, learning_rate=5e-2),
                                   objectives=["a", "b"], weights=[0.7, 0.3])
    trainer = MultiObjectiveDPOTrainer(
        model, args=args, train_dataset=conflicting_pairs(16), processing_class=tok,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    assert trainer.ref_model is None  # the reference is the adapter-disabled base
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    ids = torch.tensor([[5, 17, 33, 64, 99]])
    trained = trainer.model.eval()
    with torch.no_grad():
        want = trained(input_ids=ids).logits
        with trained.disable_adapter():
            base_logits = trained(input_ids=ids).logits
    fresh, _ = tiny_causal_lm(0)
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        got = reloaded(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, base_logits, atol=1e-4)  # the adapter learned something


def test_model_built_from_a_config_gets_a_frozen_copy_as_reference(tmp_path):
    model, tok = tiny_causal_lm(0)
    initial = [p.detach().clone() for p in model.parameters()]
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path), objectives=["a", "b"], weights=[0.8, 0.2])
    trainer = MultiObjectiveDPOTrainer(model, args=args, train_dataset=conflicting_pairs(16),
                                       processing_class=tok)
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
    trainer.train()
    assert all(torch.equal(a, b) for a, b in zip(initial, trainer.ref_model.parameters(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(initial, trainer.model.parameters(), strict=True))
