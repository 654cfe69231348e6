"""Loss arithmetic of the DPO-family trainers, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from moalign.scalarize import get_scalarizer
from moalign.trainers.dpo_losses import (
    combine,
    label_signs,
    objective_stats,
    pair_losses,
    per_objective_losses,
)
from moalign.trainers.modpo import modpo_pair_losses

NAN = float("nan")
BETA = 0.5


def dpo(z: float) -> float:
    """-log sigmoid(z), written out."""
    return math.log1p(math.exp(-z))


@pytest.fixture
def batch():
    delta = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    labels = torch.tensor([[1, -1], [1, NAN], [0, 1], [NAN, NAN]], dtype=torch.float64)
    return delta, labels


def test_label_signs_mask_ties_and_nan(batch):
    _, labels = batch
    sign, mask = label_signs(labels)
    assert mask.tolist() == [[True, True], [True, False], [False, True], [False, False]]
    assert sign.tolist() == [[1, -1], [1, 0], [0, 1], [0, 0]]


def test_pair_losses_swap_for_negative_labels(batch):
    delta, labels = batch
    losses, mask = pair_losses(delta, labels, BETA)
    expected = [[dpo(0.5), dpo(-0.5)], [dpo(-1.0), 0.0], [0.0, dpo(0.25)], [0.0, 0.0]]
    assert torch.allclose(losses, torch.tensor(expected, dtype=torch.float64))
    hinge, _ = pair_losses(delta, labels, BETA, "hinge")
    assert hinge[0].tolist() == pytest.approx([0.5, 1.5])


def test_normalizations_by_hand(batch):
    delta, labels = batch
    losses, mask = pair_losses(delta, labels, BETA)
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    lin = get_scalarizer("linear")
    l_a = (dpo(0.5) + dpo(-1.0)) / 2  # pairs 0 and 1 are labelled for a
    l_b = (dpo(-0.5) + dpo(0.25)) / 2  # pairs 0 and 2 for b
    got = combine(losses, mask, w, lin, "objective")
    assert float(got) == pytest.approx(0.25 * l_a + 0.75 * l_b)
    got = combine(losses, mask, w, lin, "batch")
    assert float(got) == pytest.approx(0.25 * l_a * 2 / 4 + 0.75 * l_b * 2 / 4)
    # pair: pair 0 has both labels, 1 only a, 2 only b, 3 none (dropped)
    pair0 = 0.25 * dpo(0.5) + 0.75 * dpo(-0.5)
    got = combine(losses, mask, w, lin, "pair")
    assert float(got) == pytest.approx((pair0 + dpo(-1.0) + dpo(0.25)) / 3)


def test_objective_absent_from_batch_keeps_its_weight(batch):
    """No pair labelled for b: b adds 0 and a keeps its weight 0.25 (it does not take b's)."""
    delta, labels = batch
    labels = labels.clone()
    labels[:, 1] = NAN
    losses, mask = pair_losses(delta, labels, BETA)
    got = combine(losses, mask, torch.tensor([0.25, 0.75], dtype=torch.float64),
                  get_scalarizer("linear"), "objective")
    assert float(got) == pytest.approx(0.25 * (dpo(0.5) + dpo(-1.0)) / 2)
    assert torch.isnan(per_objective_losses(losses, mask, "objective")[1])


def test_step_wide_counts_make_micro_batches_add_up_to_the_whole_step():
    """A step split into micro-batches (and processes) gives the loss of the whole step when
    every part divides by the step's labelled-pair counts; per-batch counts do not."""
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(12, generator=g, dtype=torch.float64)
    labels = torch.tensor([[1, NAN], [NAN, -1], [-1, NAN], [NAN, 1], [1, 1], [NAN, NAN],
                           [NAN, -1], [1, NAN], [NAN, 1], [-1, NAN], [NAN, NAN], [1, -1]],
                          dtype=torch.float64)
    losses, mask = pair_losses(delta, labels, BETA)
    counts = mask.sum(dim=0)
    lin = get_scalarizer("linear")
    w = torch.tensor([0.9, 0.1], dtype=torch.float64)
    whole = combine(losses, mask, w, lin, "objective")
    chunks = [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)]  # e.g. 2 processes x GA 2
    parts = sum(combine(losses[c], mask[c], w, lin, "objective", counts=counts, parts=4)
                for c in chunks)
    assert float(parts) == pytest.approx(float(whole), rel=1e-12)
    per_batch = sum(combine(losses[c], mask[c], w, lin, "objective") for c in chunks) / 4
    assert abs(float(per_batch) - float(whole)) > 1e-3  # the old per-micro-batch means differ
    # per-example weights (conditioned training) add up the same way
    W = torch.rand(12, 2, generator=g, dtype=torch.float64)
    W = W / W.sum(1, keepdim=True)
    whole = combine(losses, mask, W, lin, "objective")
    parts = sum(combine(losses[c], mask[c], W[c], lin, "objective", counts=counts, parts=4)
                for c in chunks)
    assert float(parts) == pytest.approx(float(whole), rel=1e-12)
    # a non-linear scalarizer sees parts x the share: with one part it is the batch's own loss
    tch = get_scalarizer({"name": "tchebycheff", "ideal": [0.0, 0.0]})
    assert float(combine(losses, mask, w, tch, "objective", counts=counts, parts=1)) == \
        pytest.approx(float(combine(losses, mask, w, tch, "objective")))


def test_no_labelled_pair_gives_zero_with_gradient():
    delta = torch.tensor([1.0, 2.0], requires_grad=True)
    labels = torch.full((2, 2), NAN)
    losses, mask = pair_losses(delta, labels, BETA)
    out = combine(losses, mask, torch.tensor([0.5, 0.5]), get_scalarizer("linear"), "objective")
    assert float(out.detach()) == 0.0
    out.backward()
    assert delta.grad is not None and torch.all(delta.grad == 0)


def test_tchebycheff_on_losses_is_max_of_weighted_losses(batch):
    delta, labels = batch
    losses, mask = pair_losses(delta, labels, BETA)
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    l_a = (dpo(0.5) + dpo(-1.0)) / 2
    l_b = (dpo(-0.5) + dpo(0.25)) / 2
    tch = get_scalarizer({"name": "tchebycheff", "ideal": [0.0, 0.0]})
    got = combine(losses, mask, w, tch, "objective")
    assert float(got) == pytest.approx(max(0.25 * l_a, 0.75 * l_b))


def test_per_example_weights_linear(batch):
    delta, labels = batch
    losses, mask = pair_losses(delta, labels, BETA)
    W = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [1.0, 0.0]], dtype=torch.float64)
    got = combine(losses, mask, W, get_scalarizer("linear"), "objective")
    expected = (0.5 * dpo(0.5) + 0.9 * dpo(-1.0)) / 2 + (0.5 * dpo(-0.5) + 0.8 * dpo(0.25)) / 2
    assert float(got) == pytest.approx(expected)


def test_objective_stats(batch):
    delta, labels = batch
    losses, _ = pair_losses(delta, labels, BETA)
    stats = objective_stats(delta, labels, losses, BETA)
    assert stats[0].tolist() == [2, 2]  # labelled counts
    assert stats[2].tolist() == [1, 1]  # a: pair 0 right, pair 1 wrong; b: pair 0 wrong, 2 right
    assert stats[3].tolist() == pytest.approx([BETA * (1.0 - 2.0), BETA * (-1.0 + 0.5)])


def test_modpo_formula_by_hand():
    delta = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    labels = torch.tensor([1.0, -1.0, NAN], dtype=torch.float64)
    margins = torch.tensor([[0.4, -1.0], [2.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    losses, mask = modpo_pair_losses(delta, labels, margins, w, BETA)
    z0 = (BETA * 1.0 - (0.3 * 0.4 + 0.2 * -1.0)) / 0.5
    z1 = -(BETA * -0.5 - (0.3 * 2.0)) / 0.5  # label -1: everything flips
    assert mask.tolist() == [True, True, False]
    assert losses.tolist() == pytest.approx([dpo(z0), dpo(z1), 0.0])


def test_modpo_with_w0_one_and_no_margin_is_dpo():
    delta = torch.tensor([1.0, -0.5], dtype=torch.float64)
    labels = torch.tensor([1.0, -1.0], dtype=torch.float64)
    losses, _ = modpo_pair_losses(delta, labels, torch.zeros(2, 1, dtype=torch.float64),
                                  torch.tensor([1.0, 0.0], dtype=torch.float64), BETA)
    dpo_losses, _ = pair_losses(delta, labels.unsqueeze(1), BETA)
    assert torch.allclose(losses, dpo_losses[:, 0])
