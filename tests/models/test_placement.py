"""Where models run (issue 23, findings 11-13): one helper picks the run's device (the GPU when
there is one, unless the run asks for the CPU) and the dtype its weights load in; fronts,
``moalign eval``, ``moalign train`` and reward-model objectives follow it. Without a GPU here,
the choice of ``cuda`` is checked with ``torch.cuda`` faked, and the models are checked to land
on the device the helper returns (the CPU)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from moalign.errors import ConfigError
from moalign.models import placement
from moalign.models import precision as p


@pytest.fixture
def fake_cuda(monkeypatch):
    """``torch.cuda`` says a bfloat16 GPU is there (nothing is moved to it in these tests)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv(p.CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(p, "cpu_bf16_flags", lambda: ())
    return monkeypatch


def test_run_device_is_the_gpu_unless_the_run_asks_for_the_cpu(fake_cuda):
    assert placement.run_device() == torch.device("cuda", 0)
    fake_cuda.setenv("LOCAL_RANK", "1")  # one GPU per process under a launcher
    assert placement.run_device() == torch.device("cuda", 1)
    assert placement.run_device(use_cpu=True) == torch.device("cpu")
    fake_cuda.setenv("ACCELERATE_USE_CPU", "true")
    assert placement.run_device() == torch.device("cpu")
    fake_cuda.setattr(torch.cuda, "is_available", lambda: False)
    fake_cuda.delenv("ACCELERATE_USE_CPU")
    assert placement.run_device() == torch.device("cpu")


def test_auto_dtype_is_bfloat16_on_a_bf16_gpu_only(fake_cuda):
    assert placement.resolve_dtype("auto") == "bfloat16"
    assert placement.resolve_dtype("auto", "cpu") == "float32"  # CPU weights stay float32
    assert placement.resolve_dtype("auto", precision="float32") == "float32"
    assert placement.resolve_dtype("float16", "cpu") == "float16"
    fake_cuda.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert placement.resolve_dtype("auto") == "float32"
    with pytest.raises(ValueError, match="fp8"):
        placement.resolve_dtype("fp8")
    assert placement.dtype_problems("fp8") == [
        "'dtype' must be one of auto, float32, bfloat16, float16, got 'fp8'"]


def test_precision_auto_is_resolved_for_the_device_the_models_run_on(fake_cuda):
    """A GPU that the run does not use must not make ``auto`` pick bfloat16 for CPU weights."""
    from moalign.fronts.config import FrontConfig
    from moalign.workflows.scoring import EvalConfig, precision_of

    assert FrontConfig().resolved_precision() == "bfloat16"
    fake_cuda.setenv("ACCELERATE_USE_CPU", "1")
    assert FrontConfig().resolved_precision() == "float32"
    assert precision_of(EvalConfig(model="tiny")) == "float32"


TRACE = dict(method="soup", model="tiny", train_pairs=8, eval_pairs=4, grid=2,
             train={"max_steps": 1, "per_device_train_batch_size": 2, "max_length": 64},
             lora={"r": 4, "lora_alpha": 8}, max_length=64, progress=False)


@pytest.fixture
def spied_device(monkeypatch):
    """``run_device`` recorded at each call; it returns the CPU (the device of this machine)."""
    calls = []

    def run_device(use_cpu=None):
        calls.append(use_cpu)
        return torch.device("cpu")

    monkeypatch.setattr(placement, "run_device", run_device)
    return calls


@pytest.mark.slow
def test_a_front_trains_and_evaluates_its_models_on_the_run_device_in_its_dtype(
        tmp_path, spied_device, monkeypatch):
    """The model the trainer trains on and every evaluated policy (baseline and points) are on
    the device the helper chose, in the configured dtype; front.json records the dtype."""
    import moalign.trainers.runs as trainer_runs
    from moalign.fronts import trace

    trained, evaluated = [], []

    original_train, original_eval = trainer_runs.train_and_save, trace.evaluate_front_policy

    def spy_train(spec, args, model, *a, **k):
        param = next(model.parameters())
        trained.append((param.device, param.dtype))
        return original_train(spec, args, model, *a, **k)

    def spy_eval(cfg, ctx, policy):
        param = next(policy.model.parameters())
        evaluated.append((param.device, param.dtype, ctx.device, ctx.dtype))
        return original_eval(cfg, ctx, policy)

    monkeypatch.setattr(trainer_runs, "train_and_save", spy_train)
    monkeypatch.setattr(trace, "evaluate_front_policy", spy_eval)
    front = trace.trace_front({**TRACE, "dtype": "bfloat16", "precision": "float32",
                               "output_dir": str(tmp_path / "f")})
    assert spied_device, "the run's device was never asked for"
    cpu = torch.device("cpu")
    assert trained and all(t == (cpu, torch.bfloat16) for t in trained)
    assert len(evaluated) == 1 + 3  # baseline and the grid's three points
    assert all(e == (cpu, torch.bfloat16, cpu, "bfloat16") for e in evaluated)
    assert front.metadata["dtype"] == "bfloat16"
    assert json.loads((tmp_path / "f" / "config.json").read_text())["dtype"] == "bfloat16"


def test_a_front_refuses_a_bad_dtype_naming_it():
    from moalign.fronts.config import resolve_front_config

    with pytest.raises(ConfigError, match="'dtype' must be one of auto, float32, bfloat16, "
                                          "float16, got 'half'"):
        resolve_front_config({**TRACE, "dtype": "half"})


def test_moalign_eval_loads_its_models_on_the_run_device(spied_device, monkeypatch):
    from moalign.models import specs
    from moalign.workflows import scoring

    seen = []
    original = specs.load_model_spec

    def spy(spec, **kw):
        seen.append(kw.get("device"))
        return original(spec, **kw)

    monkeypatch.setattr(specs, "load_model_spec", spy)
    model, _ = scoring.load_evaluated_policy(scoring.EvalConfig(model="tiny"))
    assert seen == [torch.device("cpu")] and spied_device
    assert next(model.parameters()).device == torch.device("cpu")


# ------------------------------------------------------------------ moalign train's dtype key

TRAIN = dict(trainer="mo_dpo", model="tiny", objectives=["helpfulness", "harmlessness"],
             lora={"r": 4, "alpha": 8}, max_examples=4, max_prompt_tokens=32, max_length=64,
             per_device_train_batch_size=2, max_steps=1, progress=False, precision="float32")


def test_train_dtype_is_checked_resolved_passed_to_loading_and_recorded(tmp_path, monkeypatch):
    from moalign.models import specs
    from moalign.workflows.train_config import resolve_train_config
    from moalign.workflows.training import train_resolved

    with pytest.raises(ConfigError, match="'dtype' must be one of .* got 'fp8'"):
        resolve_train_config({**TRAIN, "dtype": "fp8", "output_dir": str(tmp_path / "x")})
    resolved = resolve_train_config({**TRAIN, "output_dir": str(tmp_path / "a")})
    assert resolved.run.dtype == "float32"  # auto on this CPU
    resolved = resolve_train_config({**TRAIN, "dtype": "bfloat16",
                                     "output_dir": str(tmp_path / "b")})
    assert resolved.run.dtype == "bfloat16"
    seen = []
    original = specs.load_model_spec

    def spy(spec, **kw):
        seen.append(kw.get("dtype"))
        return original(spec, **kw)

    monkeypatch.setattr(specs, "load_model_spec", spy)
    with contextlib.redirect_stdout(io.StringIO()):
        record = train_resolved(resolved)
    assert seen == ["bfloat16"]
    saved = json.loads((tmp_path / "b" / "train.json").read_text())
    assert record["dtype"] == saved["dtype"] == saved["run"]["dtype"] == "bfloat16"


def test_load_model_spec_follows_dtype_and_device():
    from moalign.models.specs import load_model_spec

    model, _ = load_model_spec("tiny", dtype="bfloat16", device="cpu")
    assert next(model.parameters()).dtype == torch.bfloat16
    model, _ = load_model_spec("tiny")
    assert next(model.parameters()).dtype == torch.float32
