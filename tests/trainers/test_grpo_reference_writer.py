"""MO-GRPO's reference copy (``beta > 0``, no LoRA, a policy built in memory) is written once.

Every process builds the trainer, and TRL then loads the reference from the folder. Before, each
process saved the copy itself, so a process could load the folder while another was still
writing it. Now the main process writes it under a temporary name and renames it when whole,
inside ``TrainingArguments.main_process_first``: the other processes wait at the barrier and
write nothing. The non-main side is checked with a process whose ``should_save`` is false and
whose barrier is recorded.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

pytest.importorskip("trl")

from moalign.models import tiny_causal_lm  # noqa: E402
from moalign.trainers import grpo  # noqa: E402
from moalign.trainers.grpo import MultiObjectiveGRPOConfig  # noqa: E402


def _args(tmp_path):
    return MultiObjectiveGRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4,
        num_generations=4, max_completion_length=4, beta=0.1, use_cpu=True, bf16=False,
        report_to=[], save_strategy="no", seed=0, disable_tqdm=True)


def _spy_saves(model, events: list):
    save = model.save_pretrained

    def recording(path, *a, **k):
        events.append(("save", str(path)))
        return save(path, *a, **k)

    model.save_pretrained = recording


def test_the_main_process_writes_the_reference_whole_under_a_temporary_name(tmp_path):
    model, _ = tiny_causal_lm(0)
    model.config._name_or_path = ""
    events: list = []
    _spy_saves(model, events)
    args = _args(tmp_path)
    grpo._with_loadable_name(model, args, None)
    folder = tmp_path / "out" / "reference"
    assert model.config._name_or_path == str(folder)
    assert len(events) == 1 and events[0][1] != str(folder)  # written elsewhere, then renamed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["reference"]
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(str(folder))
    for p, q in zip(loaded.parameters(), model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_another_process_waits_for_the_main_one_and_writes_nothing(tmp_path, monkeypatch):
    model, _ = tiny_causal_lm(0)
    model.config._name_or_path = ""
    events: list = []
    _spy_saves(model, events)
    args = _args(tmp_path)

    @contextlib.contextmanager
    def barrier(self, local=True, desc="work"):
        events.append(("wait for the main process", desc))
        yield
        events.append(("released", desc))

    monkeypatch.setattr(type(args), "should_save", property(lambda self: False))
    monkeypatch.setattr(type(args), "main_process_first", barrier)
    grpo._with_loadable_name(model, args, None)
    assert [e[0] for e in events] == ["wait for the main process", "released"]
    assert not (tmp_path / "out" / "reference").exists()
    assert model.config._name_or_path == str(tmp_path / "out" / "reference")
