"""Reward-model objectives on the run's device (issue 23, finding 12): a checkpoint goes to
the device of :func:`moalign.models.placement.run_device` (the GPU when there is one), in the
run's precision, loaded once per process and shared by every objective that reads it; pooling
keeps the hidden states where they are (finding 14)."""

from __future__ import annotations

import weakref

import pytest
import torch

from moalign.models import placement, tiny_reward_model
from moalign.models.precision import precision_scope
from moalign.rewards import model as reward_model
from moalign.rewards.model import RewardModelObjective


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(reward_model, "_SHARED_MODELS", weakref.WeakValueDictionary())


@pytest.fixture
def checkpoint(tmp_path):
    model, tok = tiny_reward_model(seed=0, num_labels=2)
    model.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    return tmp_path / "rm"


def test_objectives_of_one_checkpoint_share_one_copy(checkpoint):
    a = RewardModelObjective(str(checkpoint), head=0, name="a")
    b = RewardModelObjective(str(checkpoint), head=1, name="b")
    c = RewardModelObjective(str(checkpoint) + "/", head=0, name="c")  # the same folder
    assert a.load()[0] is b.load()[0] is c.load()[0]
    assert a(["p"], ["reply"])[0] == pytest.approx(
        float(a.logits(["p"], ["reply"])[0, 0]))
    with precision_scope("bfloat16"):  # another precision: its own copy, in that dtype
        d = RewardModelObjective(str(checkpoint), head=0, name="d")
        assert d.load()[0] is not a.load()[0]
        assert next(d.load()[0].parameters()).dtype == torch.bfloat16
    assert next(a.load()[0].parameters()).dtype == torch.float32


def test_reward_models_go_to_the_run_device(checkpoint, monkeypatch):
    calls = []

    def run_device(use_cpu=None):
        calls.append(use_cpu)
        return torch.device("cpu")

    monkeypatch.setattr(placement, "run_device", run_device)
    model = RewardModelObjective(str(checkpoint), name="a").load()[0]
    assert calls and next(model.parameters()).device == torch.device("cpu")


def test_placement_is_the_gpu_in_bfloat16_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(placement, "run_device", lambda use_cpu=None: torch.device("cuda", 0))
    opts = {"device": None, "dtype": None, "trust_remote_code": False}
    assert reward_model._placement(opts) == (torch.device("cuda", 0), "bfloat16")
    with precision_scope("float32"):  # the run's precision decides when it is set
        assert reward_model._placement(opts) == (torch.device("cuda", 0), "float32")
    assert reward_model._placement({**opts, "device": "cpu"}) == (torch.device("cpu"), "float32")


@pytest.mark.parametrize("pooling", ["last", "mean_completion"])
def test_pooling_copies_no_hidden_states_to_the_host(monkeypatch, pooling):
    from moalign.rewards.head import features

    model, _ = tiny_reward_model(seed=0)
    copied = []
    original = torch.Tensor.cpu

    def cpu(self, *a, **k):
        copied.append(tuple(self.shape))
        return original(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)
    out = features(model, [([1, 5, 6, 7, 2], 2), ([1, 8, 9], 1)], pooling, batch_size=2)
    assert out.shape == (2, model.config.hidden_size)
    assert not [s for s in copied if len(s) == 3], copied
