"""``precision`` in ``moalign train`` and ``moalign eval``: TRL's bf16 set from it, checked up
front, and the machine's choice under ``auto`` (the CPU flags are stood in for)."""

from __future__ import annotations

import pytest

from moalign.errors import ConfigError
from moalign.models import precision as p

BASE = {"trainer": "mo_dpo", "model": "tiny", "max_steps": 1}


@pytest.fixture
def cpu_only(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(p.CPU_BF16_ENV, raising=False)  # the flags below decide
    return monkeypatch


def _resolve(tmp_path, **extra):
    from moalign.workflows.train_config import resolve_train_config

    return resolve_train_config({**BASE, "output_dir": str(tmp_path / "out"), **extra})


def test_train_precision_sets_trl_bf16(tmp_path, cpu_only):
    cpu_only.setattr(p, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    resolved = _resolve(tmp_path)
    assert resolved.args.bf16 is True and resolved.args.use_cpu is True
    cpu_only.setattr(p, "cpu_bf16_flags", lambda: ())
    assert _resolve(tmp_path).args.bf16 is False
    assert _resolve(tmp_path, precision="bfloat16").args.bf16 is True
    assert _resolve(tmp_path, bf16=True).args.bf16 is True  # explicit bf16 decides under auto


@pytest.mark.parametrize("trainer", ["ppo", "grpo"])
def test_every_trainer_takes_precision(tmp_path, cpu_only, trainer):
    extra = {"trainer": trainer, "dataset": "gsm8k", "objectives": ["reasoning_accuracy"]}

    cpu_only.setattr(p, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    assert _resolve(tmp_path, **extra).args.bf16 is True
    assert _resolve(tmp_path, **extra, precision="float32").args.bf16 is False
    cpu_only.setattr(p, "cpu_bf16_flags", lambda: ())
    assert _resolve(tmp_path, **extra).args.bf16 is False
    assert _resolve(tmp_path, **extra, precision="bfloat16").args.bf16 is True


def test_train_precision_problems_are_reported_up_front(tmp_path):
    with pytest.raises(ConfigError, match="'precision' must be one of"):
        _resolve(tmp_path, precision="half")
    with pytest.raises(ConfigError, match="'bf16: true' contradicts 'precision: float32'"):
        _resolve(tmp_path, precision="float32", bf16=True)


def test_train_header_says_why(tmp_path, cpu_only):
    from moalign.cli.train import precision_line

    cpu_only.setattr(p, "cpu_bf16_flags", lambda: ())
    line = precision_line(_resolve(tmp_path))
    assert line.startswith("float32 (auto: this CPU has no amx_bf16 / avx512_bf16 units")
    cpu_only.setattr(p, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert precision_line(_resolve(tmp_path)) == "bfloat16 (auto: this CPU has amx_bf16)"
    assert precision_line(_resolve(tmp_path, precision="float32")) == \
        "float32 (forced by precision: float32)"


def test_eval_checks_precision():
    from moalign.workflows.scoring import resolve_eval_config

    with pytest.raises(ConfigError, match="'precision' must be one of"):
        resolve_eval_config({"model": "tiny", "precision": "fp8"})
    good = resolve_eval_config({"model": "tiny", "objectives": ["length"], "precision": "bfloat16"})
    assert good.precision == "bfloat16"


@pytest.mark.slow
def test_eval_in_bfloat16_reports_its_precision_and_throughput():
    from moalign.cli.eval import summary
    from moalign.workflows import evaluate

    result = evaluate({"model": "tiny", "objectives": ["length"], "n": 3,
                       "precision": "bfloat16", "progress": False,
                       "generation": {"max_new_tokens": 4}})
    assert result["precision"] == "bfloat16"
    assert set(result["throughput"]) == {"generation", "scoring"}
    text = summary(result)
    assert "bfloat16" in text.splitlines()[0] and "tokens generated/s" in text
