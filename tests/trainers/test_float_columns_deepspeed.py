"""The float columns of a DPO-family batch keep their precision under DeepSpeed.

``transformers.Trainer._prepare_input`` casts every floating-point tensor of a batch to the
DeepSpeed engine's dtype (bf16 with ``mixed_precision: bf16``). Conditioned DPO's
``condition_weights`` then leave the simplex (0.3 + 0.7 is not 1 in bf16) and MODPO's margins
keep ~3 significant digits. The tests switch the trainer to that code path, with the engine's
dtype bf16, and check that the columns reach the loss unchanged: the loss is the one computed
without the cast.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl")

from moalign.trainers import (  # noqa: E402
    MODPOConfig,
    MODPOTrainer,
    MultiObjectiveDPOConfig,
    MultiObjectiveDPOTrainer,
)
from tests.support.dpo_testkit import conflicting_pairs, cpu_args, rows_of, tiny_pair  # noqa: E402


@contextlib.contextmanager
def deepspeed_bf16_inputs(trainer, monkeypatch):
    """``Trainer._prepare_input`` as under DeepSpeed with a bf16 engine."""
    from accelerate.state import AcceleratorState

    plugin = SimpleNamespace(hf_ds_config=SimpleNamespace(dtype=lambda: torch.bfloat16))
    with monkeypatch.context() as m:
        m.setattr(AcceleratorState, "deepspeed_plugin", property(lambda self: plugin))
        m.setattr(trainer, "is_deepspeed_enabled", True)
        yield


def _prepared(trainer, rows, monkeypatch):
    """The batch of ``rows`` placed as usual, and placed as under DeepSpeed bf16."""
    batch = trainer.data_collator(rows)
    plain = trainer._prepare_inputs(dict(batch))
    with deepspeed_bf16_inputs(trainer, monkeypatch):
        cast = trainer._prepare_inputs(dict(batch))
    return batch, plain, cast


def _loss(trainer, batch) -> float:
    trainer.model.eval()
    with torch.no_grad():
        return float(trainer.compute_loss(trainer.model, batch))


@pytest.mark.parametrize("normalization", ["objective", "pair"])
def test_condition_weights_stay_on_the_simplex(tmp_path, monkeypatch, normalization):
    model, ref, tok = tiny_pair(0)
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path), objectives=["a", "b"],
                                   conditioning="prompt", label_normalization=normalization)
    trainer = MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=conflicting_pairs(16),
                                       processing_class=tok)
    batch, plain, cast = _prepared(trainer, rows_of(trainer, range(8)), monkeypatch)
    weights = cast["condition_weights"]
    assert weights.dtype == batch["condition_weights"].dtype != torch.bfloat16
    assert torch.equal(weights, batch["condition_weights"])
    assert torch.allclose(weights.sum(dim=1), torch.ones(8, dtype=weights.dtype), atol=1e-6)
    assert torch.equal(cast["input_ids"], plain["input_ids"])
    assert _loss(trainer, cast) == _loss(trainer, plain)


def test_modpo_margins_keep_their_digits(tmp_path, monkeypatch):
    model, ref, tok = tiny_pair(0)
    margins = [0.123456789 * (i + 1) for i in range(8)]
    data = conflicting_pairs(8).add_column("margin_b", margins)
    args = MODPOConfig(**cpu_args(tmp_path), objectives=["a", "b"], weights=[0.6, 0.4])
    trainer = MODPOTrainer(model, ref, args=args, train_dataset=data, processing_class=tok)
    batch, plain, cast = _prepared(trainer, rows_of(trainer, range(8)), monkeypatch)
    assert cast["margin_b"].dtype != torch.bfloat16
    assert torch.equal(cast["margin_b"], batch["margin_b"])
    assert cast["margin_b"].tolist() == pytest.approx(margins, rel=1e-12)
    assert _loss(trainer, cast) == _loss(trainer, plain)


def test_the_emulated_cast_is_the_trainers_own():
    """Without the moalign columns, the batch is cast as DeepSpeed casts it (the emulation
    reaches ``Trainer._prepare_input``)."""
    from transformers import Trainer

    trainer = SimpleNamespace(args=SimpleNamespace(device=torch.device("cpu")),
                              is_deepspeed_enabled=True,
                              accelerator=SimpleNamespace(state=SimpleNamespace(
                                  deepspeed_plugin=SimpleNamespace(hf_ds_config=SimpleNamespace(
                                      dtype=lambda: torch.bfloat16)))))
    trainer._prepare_input = lambda data: Trainer._prepare_input(trainer, data)
    out = trainer._prepare_input({"w": torch.tensor([0.3, 0.7], dtype=torch.float64)})
    assert out["w"].dtype == torch.bfloat16
