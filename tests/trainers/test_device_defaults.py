"""Defaults sized for the device (issue 23, finding 14): the CPU-sized lengths (``max_length:
192``, ``max_completion_length: 48``) and gradient checkpointing off apply on a CPU only; on a
GPU the lengths are those of real prompts and replies and checkpointing is on. And MOD
decoding keeps its full-vocabulary log-probabilities on the device (no host copy per token)."""

from __future__ import annotations

import torch

from moalign.trainers.registry import TRAINERS
from moalign.trainers.runs import GPU_DEFAULTS, TRAINER_DEFAULTS, build_args, trainer_defaults


def test_cpu_sized_defaults_apply_on_a_cpu_only():
    cpu = trainer_defaults("preference", "cpu")
    assert cpu["max_length"] == 192 and cpu["gradient_checkpointing"] is False and cpu["use_cpu"]
    gpu = trainer_defaults("preference", torch.device("cuda", 0))
    assert gpu["max_length"] == 1024 and gpu["gradient_checkpointing"] is True
    assert gpu["use_cpu"] is False
    rl = trainer_defaults("prompts", "cuda")
    assert rl["max_completion_length"] == rl["max_new_tokens"] == 256
    assert rl["gradient_checkpointing"] is True
    assert TRAINER_DEFAULTS["prompts"]["max_completion_length"] == 48  # the CPU's, unchanged
    for kind, over in GPU_DEFAULTS.items():
        assert set(over) <= set(TRAINER_DEFAULTS[kind])


def test_the_config_built_on_a_gpu_gets_the_gpu_defaults(tmp_path, monkeypatch):
    from moalign.models import placement

    monkeypatch.setattr(placement, "run_device", lambda use_cpu=None: torch.device("cuda", 0))
    spec = TRAINERS["grpo"]
    args, problems = build_args(spec, {"use_cpu": True}, {"output_dir": str(tmp_path),
                                                          "objectives": ["length", "brevity"]})
    assert not problems
    assert args.max_completion_length == 256 and args.gradient_checkpointing is True
    args, _ = build_args(spec, {"use_cpu": True, "max_completion_length": 32},
                         {"output_dir": str(tmp_path), "objectives": ["length", "brevity"]})
    assert args.max_completion_length == 32  # what the user gives decides


def test_mod_decoding_copies_no_vocabulary_sized_tensor_to_the_host(monkeypatch):
    from moalign.fronts.decoding import generate_mixture
    from moalign.models import tiny_causal_lm

    m0, tok = tiny_causal_lm(seed=0)
    m1, _ = tiny_causal_lm(seed=1)
    vocab = m0.config.vocab_size
    copied = []
    for name in ("cpu", "numpy", "tolist", "item"):
        original = getattr(torch.Tensor, name)

        def spy(self, *a, _original=original, **k):
            copied.append(tuple(self.shape))
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    out = generate_mixture([m0, m1], [0.5, 0.5], tok, ["Hi", "Once upon a time"],
                           max_new_tokens=6, do_sample=True, seed=0)
    assert len(out) == 2
    assert not [s for s in copied if s and s[-1] == vocab], copied
