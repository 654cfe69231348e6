"""MO-DPO with each of TRL's pairwise ``loss_type`` values, against ``trl.DPOTrainer`` itself.

Oracle: at K = 1 (every pair labelled +1) MO-DPO's loss and gradient equal TRL's on the same
batch, model and reference, for every supported loss type. Swap: at K = 2 with labels (+1, -1)
the loss is ``w_a * TRL(data) + w_b * TRL(data with chosen and rejected swapped)``, i.e. a -1
label is the swapped pair under each loss (log-ratios and completion lengths alike). Negative
controls: a wrong beta, or another loss type, does not match. Refused types name why.
"""

from __future__ import annotations

import pytest
import torch

from moalign.errors import ConfigError
from moalign.models import tiny_causal_lm
from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from moalign.trainers.dpo_losses import MARGIN_ONLY, PAIRWISE, REFUSED, PairLoss, pair_losses
from tests.support.dpo_testkit import batch_of, conflicting_pairs, cpu_args, rows_of, tiny_pair

N = 8
#: Parameters each loss type runs with (the same for TRL and MO-DPO).
PARAMS = {"robust": {"label_smoothing": 0.1}, "exo_pair": {"label_smoothing": 1e-3},
          "discopop": {"discopop_tau": 0.5}}


def data(swapped: bool = False, two: bool = False):
    """Pairs labelled +1 for ``a`` (and -1 for ``b`` with ``two``); ``swapped`` exchanges
    chosen and rejected, the orientation objective ``b`` asks for."""
    ds = conflicting_pairs(N, seed=3).remove_columns(["pref_a", "pref_b"])
    ds = ds.map(lambda r: {"pref_a": 1.0, **({"pref_b": -1.0} if two else {})})
    # completions of different lengths, longer chosen on some rows and longer rejected on
    # others, so that the length-normalized losses see their token counts swap too
    ds = ds.map(lambda r, i: {"chosen": r["chosen"] + " ab" * (i % 3),
                              "rejected": r["rejected"] + " ka" * (i % 2)}, with_indices=True)
    if swapped:
        ds = ds.map(lambda r: {"chosen": r["rejected"], "rejected": r["chosen"]})
    return ds


def models():
    """The policy (seed 0) and a different reference (seed 1): log-ratios far from 0."""
    model, _, tok = tiny_pair(0)
    ref, _ = tiny_causal_lm(1)
    return model, ref, tok


def loss_and_grad(trainer):
    """Loss of the trainer's first ``N`` rows and the gradient of the policy's parameters."""
    trainer.model.eval()
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, batch_of(trainer, rows_of(trainer, range(N))))
    loss.backward()
    grad = torch.cat([p.grad.reshape(-1) for p in trainer.model.parameters() if p.grad is not None])
    return float(loss.detach()), grad


def trl_loss(tmp_path, loss_type, swapped=False, **fields):
    from trl import DPOConfig, DPOTrainer

    model, ref, tok = models()
    args = DPOConfig(**cpu_args(tmp_path / "trl", loss_type=loss_type, **fields))
    return loss_and_grad(DPOTrainer(model, ref, args=args, train_dataset=data(swapped),
                                    processing_class=tok))


def mo_loss(tmp_path, loss_type, *, two=False, **fields):
    model, ref, tok = models()
    objectives = {"objectives": ["a", "b"], "weights": [0.25, 0.75]} if two else \
        {"objectives": ["a"]}
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path / "mo", loss_type=loss_type, **fields),
                                   **objectives)
    return loss_and_grad(MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=data(two=two),
                                                  processing_class=tok))


@pytest.fixture(scope="module")
def trl_losses(tmp_path_factory):
    """TRL's loss on the batch for every supported loss type (the negative controls' table)."""
    tmp = tmp_path_factory.mktemp("trl")
    return {t: trl_loss(tmp, t, **PARAMS.get(t, {}))[0] for t in PAIRWISE}


# ----------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("loss_type", list(PAIRWISE))
def test_one_objective_equals_trl(tmp_path, loss_type):
    want, want_grad = trl_loss(tmp_path, loss_type, **PARAMS.get(loss_type, {}))
    got, got_grad = mo_loss(tmp_path, loss_type, **PARAMS.get(loss_type, {}))
    assert got == pytest.approx(want, abs=1e-5)
    assert torch.allclose(got_grad, want_grad, atol=1e-5, rtol=1e-4)
    assert want_grad.abs().max() > 1e-4  # the gradient compared is not trivially zero


@pytest.mark.parametrize("loss_type", list(PAIRWISE))
def test_negative_label_is_the_swapped_pair(tmp_path, loss_type):
    params = PARAMS.get(loss_type, {})
    as_is, _ = trl_loss(tmp_path / "a", loss_type, **params)
    swapped, _ = trl_loss(tmp_path / "s", loss_type, swapped=True, **params)
    got, _ = mo_loss(tmp_path, loss_type, two=True, **params)
    assert got == pytest.approx(0.25 * as_is + 0.75 * swapped, abs=1e-5)
    assert abs(as_is - swapped) > 1e-3  # orientation matters for this batch


def test_weighted_list_of_losses_equals_trl(tmp_path):
    fields = {"loss_weights": [0.7, 0.3], "label_smoothing": 0.1}
    want, want_grad = trl_loss(tmp_path, ["robust", "sppo_hard"], **fields)
    got, got_grad = mo_loss(tmp_path, ["robust", "sppo_hard"], **fields)
    assert got == pytest.approx(want, abs=1e-5)
    assert torch.allclose(got_grad, want_grad, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- negative controls


@pytest.mark.slow
def test_loss_types_differ_on_the_batch(trl_losses):
    """Each oracle tells its loss apart: no two loss types agree on this batch."""
    values = sorted(trl_losses.items(), key=lambda kv: kv[1])
    for (t1, v1), (t2, v2) in zip(values, values[1:]):
        assert abs(v1 - v2) > 1e-3, (t1, t2)


@pytest.mark.slow
@pytest.mark.parametrize("loss_type", list(PAIRWISE))
def test_wrong_beta_does_not_match(tmp_path, trl_losses, loss_type):
    got, _ = mo_loss(tmp_path, loss_type, beta=0.4, **PARAMS.get(loss_type, {}))
    assert abs(got - trl_losses[loss_type]) > 1e-4  # cpu_args' beta is 0.5


@pytest.mark.slow
def test_wrong_label_smoothing_does_not_match(tmp_path, trl_losses):
    got, _ = mo_loss(tmp_path, "robust", label_smoothing=0.2)
    assert abs(got - trl_losses["robust"]) > 1e-4


# ----------------------------------------------------------------------------- loss math


@pytest.mark.parametrize("loss_type", list(PAIRWISE))
def test_labels_orient_each_objective_and_skip_ties(loss_type):
    """Columns of ``pair_losses``: +1 is the pair, -1 the swapped pair, 0 / NaN nothing."""
    torch.manual_seed(0)
    chosen, rejected = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    lengths = (torch.tensor([3, 5, 2, 7]), torch.tensor([6, 1, 4, 2]))
    loss = PairLoss((loss_type,), label_smoothing=PARAMS.get(loss_type, {}).get("label_smoothing", 0),
                    discopop_tau=0.5)
    labels = torch.tensor([[1, -1, 0, float("nan")]] * 4, dtype=torch.float64)
    got, mask = pair_losses(chosen - rejected, labels, 0.5, loss, logratios=(chosen, rejected),
                            lengths=lengths)
    plus, _ = pair_losses(chosen - rejected, labels[:, :1], 0.5, loss,
                          logratios=(chosen, rejected), lengths=lengths)
    minus, _ = pair_losses(rejected - chosen, labels[:, :1], 0.5, loss,
                           logratios=(rejected, chosen), lengths=lengths[::-1])
    assert torch.equal(got[:, 0], plus[:, 0]) and torch.equal(got[:, 1], minus[:, 0])
    assert not torch.allclose(plus, minus)
    assert got[:, 2:].abs().sum() == 0 and mask[:, 2:].sum() == 0 and mask[:, :2].all()
    if loss_type in MARGIN_ONLY:  # the margin-only call (MODPO's) gives the same numbers
        margin, _ = pair_losses(chosen - rejected, labels, 0.5, loss)
        assert torch.allclose(margin, got, atol=1e-12)


def test_losses_that_need_log_ratios_refuse_a_margin():
    with pytest.raises(ValueError, match="needs logratios"):
        pair_losses(torch.zeros(2), torch.ones(2, 1), 0.5, "nca_pair")
    with pytest.raises(ValueError, match="needs lengths"):
        pair_losses(torch.zeros(2), torch.ones(2, 1), 0.5, "ipo",
                    logratios=(torch.zeros(2), torch.zeros(2)))


# ----------------------------------------------------------------------------- refused


@pytest.mark.parametrize(("loss_type", "why"), [
    ("aot", "sorts the margins across the batch"),
    ("aot_unpaired", "sorts the chosen and the rejected log-ratios across the batch"),
    ("sft", "token-mean likelihood of the chosen completions"),
    (["sigmoid", "sft"], "'sft' is not supported by MO-DPO"),
])
def test_refused_loss_types_say_why(tmp_path, loss_type, why):
    with pytest.raises(ConfigError, match=why):
        MultiObjectiveDPOConfig(**cpu_args(tmp_path, loss_type=loss_type), objectives=["a"])
    assert set(REFUSED) == {"aot", "aot_unpaired", "sft"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"loss_type": "sigmoid", "label_smoothing": 0.1}, "would be ignored"),
    ({"loss_type": "robust", "label_smoothing": 0.5}, "must lie in \\[0, 0.5\\)"),
    ({"loss_type": "exo_pair"}, "'exo_pair' needs 0 < 'label_smoothing' < 1"),
    ({"loss_type": ["sigmoid", "ipo"], "loss_weights": [1.0]}, "'loss_weights' must be 2"),
    ({"loss_type": "discopop", "discopop_tau": 0.0}, "'discopop_tau' must be a number > 0"),
    ({"loss_type": "robust", "label_smoothing": 0.1, "scalarizer": "tchebycheff"},
     "unbounded below"),
])
def test_bad_loss_parameters(tmp_path, fields, message):
    with pytest.raises(ConfigError, match=message):
        MultiObjectiveDPOConfig(**cpu_args(tmp_path, **fields), objectives=["a"])
