"""MGDA where its per-objective gradients cannot be had (issue 23, finding 6): parameters
partitioned by DeepSpeed ZeRO-3 or FSDP (a process holds nothing of a parameter, ``numel() ==
0``, so gradient rows have no common length) and reentrant gradient checkpointing (which refuses
``torch.autograd.grad(inputs=...)``) are refused before any model loads, naming what to use
instead; a model with empty trainable parameters is refused at the first MGDA step."""

from __future__ import annotations

import json

import pytest
import torch

from moalign.errors import ConfigError
from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from tests.support.dpo_testkit import batch_of, conflicting_pairs, cpu_args, rows_of, tiny_pair

MGDA = dict(objectives=["a", "b"], schedule="mgda")


@pytest.mark.parametrize("deepspeed", [
    {"zero_optimization": {"stage": 3}},
    "file",
])
def test_mgda_under_zero3_is_refused_naming_what_to_use(tmp_path, deepspeed):
    if deepspeed == "file":
        deepspeed = tmp_path / "ds.json"
        deepspeed.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
        deepspeed = str(deepspeed)
    from moalign.tradeoff.mgda import mgda_setup_problems

    class Args:  # the fields the check reads (building a DPOConfig with deepspeed needs it)
        gradient_checkpointing = False
        gradient_checkpointing_kwargs = None
        fsdp = None

    Args.deepspeed = deepspeed
    problems = mgda_setup_problems(Args())
    assert len(problems) == 1
    assert "DeepSpeed ZeRO-3" in problems[0] and "ZeRO-2" in problems[0]
    Args.deepspeed = {"zero_optimization": {"stage": 2}}
    assert mgda_setup_problems(Args()) == []


def test_mgda_under_a_zero3_launch_is_refused_by_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    args = MultiObjectiveDPOConfig.__new__(MultiObjectiveDPOConfig)  # no fields set
    from moalign.tradeoff.mgda import mgda_setup_problems

    assert mgda_setup_problems(args)  # the launch's environment says ZeRO-3
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert mgda_setup_problems(args) == []


def test_mgda_with_reentrant_checkpointing_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="reentrant gradient checkpointing.*use_reentrant: false"):
        MultiObjectiveDPOConfig(**cpu_args(tmp_path, gradient_checkpointing=True,
                                           gradient_checkpointing_kwargs={"use_reentrant": True}),
                                **MGDA)
    # non-reentrant (the trainers' default) is fine
    MultiObjectiveDPOConfig(**cpu_args(tmp_path, gradient_checkpointing=True), **MGDA)


def test_mgda_with_partitioned_parameters_is_refused_not_crashed(tmp_path):
    """Empty trainable parameters, as ZeRO-3 leaves them in a process: a ConfigError naming
    the alternatives, not a stack of rows of different lengths."""
    model, ref, tok = tiny_pair(0)
    model.register_parameter("partitioned", torch.nn.Parameter(torch.empty(0)))
    args = MultiObjectiveDPOConfig(**cpu_args(tmp_path), **MGDA)
    trainer = MultiObjectiveDPOTrainer(model, ref, args=args, train_dataset=conflicting_pairs(8),
                                       processing_class=tok)
    model = trainer.model.train()
    with pytest.raises(ConfigError, match="hold no elements in this process.*ZeRO-2"):
        trainer.compute_loss(model, batch_of(trainer, rows_of(trainer, range(8))))
