"""``moalign sft`` and ``moalign reward`` under several processes: one process writes the output.

Under ``accelerate launch`` / ``torchrun`` every process runs the command; before, each built
the output folder under its own temporary name and renamed it to ``output_dir``, so the
processes replaced each other's result (or failed on the folder another one had just
finished). Now the main process writes and the others wait for it. A non-main process is
emulated: for SFT the ``Trainer``'s ``should_save`` is false (as on a process of index > 0),
for reward training (whose ``head_only`` method runs no ``Trainer``) the launch is a 2-process
one whose ``PartialState`` is not the main process. Both must write nothing and wait.
"""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("trl")

WORDS = "apple river stone cloud green table music light paper window garden quiet".split()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from moalign.models import tiny_causal_lm

    folder = tmp_path_factory.mktemp("tiny-lm")
    model, tok = tiny_causal_lm(seed=0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path / "cache"))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _pairs(n: int = 40) -> list[dict]:
    rnd = random.Random(0)
    rows = []
    for i in range(n):
        good = " ".join(rnd.choice(WORDS) for _ in range(4)) + " thanks"
        bad = " ".join(rnd.choice(WORDS) for _ in range(5))
        rows.append({"prompt": " ".join(rnd.choice(WORDS) for _ in range(6)),
                     "chosen": good if i % 3 else bad, "rejected": bad if i % 3 else good,
                     "pref_helpfulness": 1.0 if i % 3 else -1.0})
    return rows


def test_sft_on_a_non_main_process_writes_nothing(tiny_dir, tmp_path, monkeypatch):
    from transformers import TrainingArguments

    from moalign.trainers.sft import train_sft

    data = _jsonl(tmp_path / "sft.jsonl", [
        {"prompt": f"count to {i}", "completion": " " + " ".join(map(str, range(1, i + 2)))}
        for i in range(8)])
    waits: list[str] = []

    def barrier(self, local=True, desc="work"):
        import contextlib

        waits.append(desc)
        return contextlib.nullcontext()

    monkeypatch.setattr(TrainingArguments, "should_save", property(lambda self: False))
    monkeypatch.setattr(TrainingArguments, "main_process_first", barrier)
    out = tmp_path / "out"
    (out / "trainer" / "checkpoint-1").mkdir(parents=True)  # a run started over (overwrite)
    result = train_sft({"model": tiny_dir, "dataset": data, "output_dir": str(out),
                        "lora": False, "max_steps": 2, "batch_size": 4, "save_steps": 1,
                        "overwrite": True})
    assert result.steps == 2
    # the main process removes the old checkpoints and builds the result: this one touched neither
    assert sorted(p.name for p in out.iterdir()) == ["trainer"]
    assert (out / "trainer" / "checkpoint-1").is_dir() and waits


def test_reward_training_on_a_non_main_process_writes_nothing(tiny_dir, tmp_path, monkeypatch):
    import accelerate

    from moalign.rewards.training import train_reward_model

    events: list[str] = []

    class OtherProcess:
        """accelerate's PartialState as a process of index 1 of a 2-process launch sees it."""

        is_main_process = False

        def wait_for_everyone(self):
            events.append("wait")

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(accelerate, "PartialState", OtherProcess)
    out = tmp_path / "rm"
    result = train_reward_model({
        "model": tiny_dir, "dataset": _jsonl(tmp_path / "pairs.jsonl", _pairs()),
        "objective": "helpfulness", "output_dir": str(out), "method": "head_only",
        "max_prompt_tokens": None, "max_completion_tokens": None, "cache_features": False})
    assert result.n_train > 0
    assert not out.exists() and list(tmp_path.glob(".rm*")) == []
    assert events == ["wait"]
