"""A front's precision: chosen by the machine under ``auto``, forced otherwise, reaching training
(TRL's bf16 autocast) and evaluation, stored in front.json, bit-identical when repeated, and a
resume in another precision refused."""

from __future__ import annotations

import json

import pytest

from moalign.errors import ConfigError
from moalign.fronts.config import FrontConfig, resolve_front_config
from moalign.models import precision as p

TRACE = dict(method="soup", model="tiny", train_pairs=16, eval_pairs=8, grid=2,
             train={"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 64},
             lora={"r": 4, "lora_alpha": 8}, max_length=64, progress=False)


@pytest.fixture
def cpu_only(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(p.CPU_BF16_ENV, raising=False)  # the flags below decide
    return monkeypatch


def test_auto_follows_the_cpu_and_train_bf16_decides_under_auto(cpu_only):
    cpu_only.setattr(p, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert FrontConfig().resolved_precision() == "bfloat16"
    cpu_only.setattr(p, "cpu_bf16_flags", lambda: ())
    assert FrontConfig().resolved_precision() == "float32"
    assert FrontConfig(precision="bfloat16").resolved_precision() == "bfloat16"
    assert FrontConfig(train={"bf16": True}).resolved_precision() == "bfloat16"
    assert FrontConfig(train={"bf16": False}, precision="float32").resolved_precision() == "float32"


def test_bad_and_contradicting_precisions_are_refused_up_front():
    with pytest.raises(ConfigError, match="'precision' must be one of auto, float32, bfloat16"):
        resolve_front_config({**TRACE, "precision": "fp16"})
    with pytest.raises(ConfigError, match="'train.bf16: false' contradicts 'precision: bfloat16'"):
        resolve_front_config({**TRACE, "precision": "bfloat16",
                              "train": {**TRACE["train"], "bf16": False}})


def test_bfloat16_reaches_the_trainer_config():
    from moalign.fronts.trace import _run_config

    cfg = resolve_front_config(TRACE)
    assert _run_config(cfg, "bfloat16").train["bf16"] is True
    assert "bf16" not in _run_config(cfg, "float32").train  # the defaults say float32
    assert "bf16" not in cfg.train  # the user's config is left as it was


def _adapters(out):
    from safetensors.torch import load_file

    return {str(q.relative_to(out)): load_file(str(q))
            for q in sorted(out.glob("runs/*/adapter/adapter_model.safetensors"))}


@pytest.mark.slow
def test_bfloat16_fronts_repeat_bit_for_bit_and_differ_from_float32(tmp_path):
    import torch

    from moalign.fronts.trace import trace_front

    outs = {}
    for name, precision in (("a", "bfloat16"), ("b", "bfloat16"), ("f", "float32")):
        outs[name] = tmp_path / name
        front = trace_front({**TRACE, "precision": precision, "output_dir": str(outs[name])})
        assert front.metadata["precision"] == precision
        assert json.loads((outs[name] / "config.json").read_text())["precision"] == precision
        assert front.cost["logprob_per_second"] > 0 and "generation_per_second" not in front.cost
    a, b, f = (json.loads((outs[n] / "front.json").read_text()) for n in "abf")
    for d in (a, b, f):
        d.pop("cost")
    assert a == b
    ta, tb, tf = (_adapters(outs[n]) for n in "abf")
    assert ta.keys() == tb.keys() == tf.keys() and len(ta) == 2
    for run in ta:
        assert all(torch.equal(ta[run][k], tb[run][k]) for k in ta[run])
    # trained under bfloat16 autocast: other weights than in float32
    assert any(not torch.equal(ta[r][k], tf[r][k]) for r in ta for k in ta[r])
    with pytest.raises(ConfigError, match=r"changed: precision"):
        trace_front({**TRACE, "precision": "float32", "output_dir": str(outs["a"])})
