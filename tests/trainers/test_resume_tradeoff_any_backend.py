"""The trade-off state of the DPO family comes back on resume whatever the backend.

Under DeepSpeed the ``Trainer`` loads the weights with ``deepspeed_load_checkpoint`` and never
calls ``_load_from_checkpoint``; it does call ``_load_optimizer_and_scheduler`` (and
``_load_rng_state``) in every mode. The tests resume with ``_load_from_checkpoint`` disabled, as
under DeepSpeed, and check that the schedule position and the rest of the trade-off's state
are those saved with the checkpoint when training continues.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from transformers import TrainerCallback  # noqa: E402

from moalign.trainers import (  # noqa: E402
    MODPOConfig,
    MODPOTrainer,
    MultiObjectiveDPOConfig,
    MultiObjectiveDPOTrainer,
)
from tests.support.dpo_testkit import conflicting_pairs, cpu_args, tiny_pair  # noqa: E402

ANNEAL = {"name": "anneal", "start": [1.0, 0.0], "end": [0.0, 1.0], "steps": 10}


def _mo_dpo(folder, **run):
    model, ref, tok = tiny_pair(0)
    args = MultiObjectiveDPOConfig(**cpu_args(folder, **run), objectives=["a", "b"],
                                   schedule=ANNEAL)
    return MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=conflicting_pairs(32),
                                    processing_class=tok)


def _modpo(folder, **run):
    model, ref, tok = tiny_pair(0)
    data = conflicting_pairs(32).add_column("margin_b", [0.5] * 32)
    args = MODPOConfig(**cpu_args(folder, **run), objectives=["a", "b"], weights=[0.6, 0.4])
    return MODPOTrainer(model, ref, args=args, train_dataset=data, processing_class=tok)


class _StateAtFirstStep(TrainerCallback):
    """The trade-off's state when the resumed run takes its first step."""

    def __init__(self, trainer):
        self.trainer, self.state = trainer, None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.state is None:
            self.state = json.loads(json.dumps(self.trainer.tradeoff.state_dict()))


def _as_deepspeed(trainer, calls: list) -> None:
    """Resume as under DeepSpeed: ``_load_from_checkpoint`` does nothing (DeepSpeed would load
    the weights itself); the checkpoints it is asked for are recorded."""
    def skipped(checkpoint, model=None):
        calls.append(checkpoint)

    trainer._load_from_checkpoint = skipped


@pytest.mark.parametrize("build", [_mo_dpo, _modpo], ids=["mo-dpo-schedule", "modpo"])
def test_the_tradeoff_state_is_restored_without_load_from_checkpoint(tmp_path, build):
    first = build(tmp_path, max_steps=3, save_strategy="steps", save_steps=3)
    first.train()
    state_file = tmp_path / "checkpoint-3" / "moalign_state.json"
    saved = json.loads(state_file.read_text())
    if build is _modpo:  # fixed weights do not move in training: give the checkpoint other ones
        saved["tradeoff"]["weights"] = [0.3, 0.7]
        state_file.write_text(json.dumps(saved))
    resumed = build(tmp_path, max_steps=4, save_strategy="no")
    calls: list = []
    _as_deepspeed(resumed, calls)
    probe = _StateAtFirstStep(resumed)
    resumed.add_callback(probe)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    # the stand-in ran instead of the method that used to restore the state, as under DeepSpeed
    assert calls == [str(tmp_path / "checkpoint-3")]
    assert probe.state == saved["tradeoff"]
    if build is _modpo:
        assert list(resumed.tradeoff.weights) == [0.3, 0.7]
    else:
        assert saved["tradeoff"]["schedule"]["t"] == 3
        assert resumed.tradeoff.schedule.t == 4  # continued from 3, not started over
        assert resumed._weights_step == 3
