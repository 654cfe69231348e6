"""MO-DPO's label normalization keeps the asked weights: counts over the whole optimizer step.

The effective weight of an objective is the coefficient the step's loss puts on that
objective's per-pair DPO losses, summed over its labelled pairs and averaged over batches (the
share of the gradient each objective gets). It is measured through the trainer's own training
step (``training_step``, which runs the backward pass, with the counts
``_get_num_items_in_batch`` makes for the step): the per-pair losses are captured and their
gradients read. With the policy equal to its reference every pair has the same loss and the
same margin gradient, so these coefficients are the whole story.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import moalign.trainers.dpo_losses as loss_module
from moalign.scalarize import get_scalarizer
from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from moalign.trainers.dpo_losses import pair_losses, per_objective_losses
from tests.support.dpo_testkit import conflicting_pairs, cpu_args, rows_of, tiny_pair

NAN = float("nan")


def make_trainer(tmp_path, weights, n=8, **config):
    model, ref, tok = tiny_pair(0)
    run = {"per_device_train_batch_size": 4, **config}
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path, **run), objectives=["a", "b"],
                                   weights=list(weights))
    return MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=conflicting_pairs(n),
                                    processing_class=tok)


class Capture:
    """Wraps ``pair_losses`` in the loss module: keeps each batch's losses and mask,
    with the losses' gradients retained."""

    def __init__(self):
        self.seen = []

    def __call__(self, *args, **kwargs):
        losses, mask = pair_losses(*args, **kwargs)
        losses.retain_grad()
        self.seen.append((losses, mask))
        return losses, mask


def step_coefficients(trainer, micro_batches, labels, monkeypatch) -> np.ndarray:
    """Run one optimizer step's forward and backward passes as ``Trainer`` does (counts for
    the step first, then ``training_step`` per micro-batch); return the per-pair coefficients
    ``d loss / d L[i, k]`` on labelled entries (0 elsewhere), ``[pairs, K]``."""
    capture = Capture()
    monkeypatch.setattr(loss_module, "pair_losses", capture)
    batches = []
    for rows, lab in zip(micro_batches, labels, strict=True):
        batch = trainer.data_collator(rows)
        batch["pref_a"] = torch.tensor(lab[:, 0], dtype=torch.float64)
        batch["pref_b"] = torch.tensor(lab[:, 1], dtype=torch.float64)
        batches.append(batch)
    trainer.current_gradient_accumulation_steps = len(batches)
    counts = trainer._get_num_items_in_batch(batches, trainer.args.device)
    for batch in batches:
        trainer.training_step(trainer.model, batch, counts)
    out = [torch.where(mask, losses.grad, 0.0) for losses, mask in capture.seen]
    monkeypatch.undo()
    return torch.cat(out).detach().numpy()


def disjoint_patterns(batch: int):
    """Every way a batch of ``batch`` pairs, each labelled for exactly one of the two
    objectives (half and half in the data), can fall: all equally likely."""
    for which in itertools.product((0, 1), repeat=batch):
        lab = np.full((batch, 2), NAN)
        lab[np.arange(batch), which] = 1.0
        yield lab


def effective(coefficients: list[np.ndarray]) -> np.ndarray:
    mean = np.mean([c.sum(axis=0) for c in coefficients], axis=0)
    return mean / mean.sum()


def within_one_percent(got, asked) -> bool:
    return bool(np.all(np.abs(np.asarray(got) / np.asarray(asked) - 1) <= 0.01))


def renormalizing_coefficients(lab: np.ndarray, weights) -> np.ndarray:
    """The former normalization: per-batch means, the NaN scalarizer convention leaving out an
    objective absent from the batch and renormalizing the weights of the others."""
    losses = torch.ones(lab.shape, dtype=torch.float64, requires_grad=True)
    mask = torch.isfinite(torch.as_tensor(lab))
    per_objective = per_objective_losses(torch.where(mask, losses, 0.0), mask, "objective")
    loss = -get_scalarizer("linear")(-per_objective.unsqueeze(0), list(weights))[0]
    loss.backward()
    return torch.where(mask, losses.grad, 0.0).numpy()


@pytest.mark.parametrize("weights", [(0.9, 0.1), (0.97, 0.03)])
def test_effective_weights_on_disjoint_labels_at_batch_4_are_the_asked_ones(
        tmp_path, monkeypatch, weights):
    trainer = make_trainer(tmp_path, weights)
    rows = rows_of(trainer, range(4))
    patterns = list(disjoint_patterns(4))
    got = [step_coefficients(trainer, [rows], [lab], monkeypatch) for lab in patterns]
    assert within_one_percent(effective(got), weights), effective(got)
    # each step: w_k / N_k per pair labelled for k, i.e. w_k in all for a present objective
    for lab, c in zip(patterns, got, strict=True):
        present = np.isfinite(lab).any(axis=0)
        assert c.sum(axis=0) == pytest.approx(np.where(present, weights, 0.0), abs=1e-6)
    # negative control: renormalizing the weights of a batch that lacks an objective fails the
    # same check, e.g. (0.9, 0.1) -> (0.85, 0.15) and (0.97, 0.03) -> (0.91, 0.09)
    old = effective([renormalizing_coefficients(lab, weights) for lab in patterns])
    assert not within_one_percent(old, weights), old
    assert old[1] == pytest.approx(weights[1] * 14 / 16 + 1 / 16)


def test_gradient_accumulation_gives_the_step_of_the_whole_batch(tmp_path, monkeypatch):
    """One step of 8 half-labelled pairs, as 1 x 8, 2 x 4 or 4 x 2 micro-batches: the same
    per-pair coefficients w_k / N_k and the same accumulated parameter gradient."""
    # as 2 x 4 the second half has no pair labelled for b; as 4 x 2 two micro-batches have none
    lab = np.array([[1, NAN], [NAN, -1], [-1, NAN], [NAN, 1],
                    [1, NAN], [-1, NAN], [1, NAN], [1, NAN]])
    weights = (0.7, 0.3)
    results = {}
    for size in (8, 4, 2):
        trainer = make_trainer(tmp_path / str(size), weights, per_device_train_batch_size=size,
                               gradient_accumulation_steps=8 // size)
        rows = rows_of(trainer, range(8))
        trainer.model.zero_grad()
        chunks = range(0, 8, size)
        coef = step_coefficients(trainer, [rows[i:i + size] for i in chunks],
                                 [lab[i:i + size] for i in chunks], monkeypatch)
        grad = torch.cat([p.grad.reshape(-1) for p in trainer.model.parameters()
                          if p.grad is not None])
        results[size] = (coef, grad)
    expected = np.where(np.isfinite(lab), np.array(weights) / np.isfinite(lab).sum(axis=0), 0.0)
    scale = float(results[8][1].abs().max())
    assert scale > 1e-2  # the step does move the parameters
    for size, (coef, grad) in results.items():
        assert coef == pytest.approx(expected, abs=1e-7), size
        # float32 sums in another order (and other padding): equal up to rounding
        assert float((grad - results[8][1]).abs().max()) <= 1e-5 * scale, size


def test_evaluation_and_direct_calls_normalize_by_the_batch_without_renormalizing(tmp_path):
    trainer = make_trainer(tmp_path, (0.8, 0.2))
    rows = rows_of(trainer, range(4))
    batch = trainer._prepare_inputs(trainer.data_collator(rows))
    batch["pref_b"] = torch.full((4,), NAN, dtype=torch.float64)
    trainer.model.eval()
    with torch.no_grad():
        loss = float(trainer.compute_loss(trainer.model, batch))
    # policy == reference: every DPO loss is log 2; b is absent and keeps its weight 0.2
    assert loss == pytest.approx(0.8 * math.log(2), abs=1e-6)
