"""Damaged files that moalign reads back: adapters given to ``moalign eval``, trainer states,
weights loaded into a policy, JSON-lines records.

Every file goes through the one checked reader (:mod:`moalign.storage.readers`), which names the
file and what is wrong with it and raises :class:`~moalign.errors.CheckpointError` before any
tensor in it is used. The CLI cases point ``moalign eval`` at a damaged adapter with every model
loader forbidden: the damage must be found before the base model loads.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
from pathlib import Path

import pytest

from moalign.errors import CheckpointError, ModelError
from tests.support.corpus import run_cli_case

EVAL = ["eval", "--model", "tiny", "--dataset", "gsm8k", "--objectives", "length", "--quiet",
        "--output", "{tmp}/out/eval.json"]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A whole LoRA adapter of the tiny model (config + weights)."""
    from moalign.models import apply_lora, tiny_causal_lm

    folder = tmp_path_factory.mktemp("adapter") / "adapter"
    model, _ = tiny_causal_lm()
    apply_lora(model, {"r": 2, "lora_alpha": 4}).save_pretrained(folder)
    assert (folder / "adapter_model.safetensors").is_file()
    return folder


def _damaged(adapter: Path, where: Path, name: str, content: bytes | None) -> Path:
    """A copy of ``adapter`` at ``where`` with file ``name`` replaced by ``content`` (None:
    its first half)."""
    shutil.copytree(adapter, where)
    path = where / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if content is None else content)
    return path


ADAPTERS = {
    "zero-byte-weights": ("adapter_model.safetensors", b"",
                          "weights file '{file}' is truncated (0 bytes)"),
    "half-the-weights": ("adapter_model.safetensors", None,
                         "weights file '{file}' is truncated or padded"),
    "truncated-config": ("adapter_config.json", b'{"peft_type": "LORA", "r": 2, "lora_al',
                         "adapter config '{file}' is corrupt: not valid JSON"),
    "config-not-an-object": ("adapter_config.json", b'["LORA"]',
                             "adapter config '{file}' is corrupt: expected a JSON object, got list"),
    "config-without-peft-type": ("adapter_config.json", b'{"r": 2}',
                                 "adapter config '{file}' is incomplete: no key 'peft_type'"),
}


@pytest.mark.parametrize("damage", list(ADAPTERS))
def test_eval_of_a_damaged_adapter(damage, adapter, cli, tmp_path, no_model_load):
    name, content, expect = ADAPTERS[damage]
    path = _damaged(adapter, tmp_path / "adapter", name, content)
    start = time.perf_counter()
    run_cli_case({"argv": [*EVAL, "--adapter", "{tmp}/adapter"],
                  "expect": ["'adapter': ", expect.format(file=path)]}, cli, tmp_path)
    assert time.perf_counter() - start < 10


def test_eval_of_a_train_output_with_a_damaged_adapter(adapter, cli, tmp_path, no_model_load):
    """``moalign eval --model <moalign train output>``: the run's adapter is checked too."""
    path = _damaged(adapter, tmp_path / "run", "adapter_model.safetensors", b"")
    (tmp_path / "run" / "train.json").write_text(json.dumps({"trainer": "mo_dpo", "model": "tiny"}))
    run_cli_case({"argv": [*EVAL[:1], "--model", "{tmp}/run", *EVAL[3:]],
                  "expect": [f"'model': weights file '{path}' is truncated (0 bytes)"]},
                 cli, tmp_path)


def test_load_policy_of_a_damaged_adapter_raises_checkpoint_error(adapter, tmp_path):
    """What the README promises: a damaged file raises CheckpointError (still a ModelError for
    code that catches that), naming the file, before any model loads."""
    from moalign.models import load_policy

    path = _damaged(adapter, tmp_path / "adapter", "adapter_config.json", b'{"peft_ty')
    for kind in (CheckpointError, ModelError):
        with pytest.raises(kind, match="adapter config '.*adapter_config.json' is corrupt"):
            load_policy(tmp_path / "adapter")
    assert str(path) in str(pytest.raises(CheckpointError, load_policy, path.parent).value)


# ------------------------------------------------------------------------ trainer states


def _torch_file(path: Path) -> Path:
    import torch

    torch.save({"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}, path)
    return path


STATES = {
    "zero-byte-optimizer": ("optimizer.pt", lambda p: p.write_bytes(b""),
                            "optimizer state '{file}' is empty (0 bytes)"),
    "truncated-optimizer": ("optimizer.pt",
                            lambda p: p.write_bytes(_torch_file(p).read_bytes()[:-40]),
                            "optimizer state '{file}' is truncated or corrupt"),
    "garbage-scheduler": ("scheduler.pt", lambda p: p.write_bytes(b"not a torch file"),
                          "scheduler state '{file}' is corrupt: not a file written by torch.save"),
    "zero-byte-rng-state": ("rng_state.pth", lambda p: p.write_bytes(b""),
                            "RNG state '{file}' is empty (0 bytes)"),
}


@pytest.mark.parametrize("damage", list(STATES))
def test_a_damaged_trainer_state_is_named_before_it_is_loaded(damage, tmp_path, monkeypatch):
    """The optimizer / scheduler / RNG states of a checkpoint (``torch.load`` raised EOFError
    on an empty optimizer.pt, deep in the trainer, after the model loaded)."""
    import torch

    from moalign.storage.readers import check_trainer_states, torch_load

    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    _torch_file(folder / "optimizer.pt")
    name, damage_it, expect = STATES[damage]
    path = folder / name
    damage_it(path)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load was reached with a damaged file")

    monkeypatch.setattr(torch, "load", forbidden)
    with pytest.raises(CheckpointError) as info:
        check_trainer_states(folder)
    assert expect.format(file=path) in str(info.value)
    with pytest.raises(CheckpointError, match="state '.*' is (empty|truncated|corrupt)"):
        torch_load(path, what=f"{path.stem} state")


def test_whole_trainer_states_load(tmp_path):
    from moalign.storage.readers import check_trainer_states, torch_load

    _torch_file(tmp_path / "optimizer.pt")
    check_trainer_states(tmp_path)
    assert torch_load(tmp_path / "optimizer.pt")["param_groups"][0]["lr"] == 0.1


def test_policy_weights_of_a_damaged_checkpoint_are_named(adapter, tmp_path):
    """MO-PPO's resume loads the policy's weights through the reader."""
    from moalign.models import apply_lora, tiny_causal_lm
    from moalign.trainers.checkpointing import load_policy_weights

    path = _damaged(adapter, tmp_path / "checkpoint-3", "adapter_model.safetensors", b"")
    model = apply_lora(tiny_causal_lm()[0], {"r": 2, "lora_alpha": 4})
    with pytest.raises(CheckpointError, match=f"weights file '{path}' is truncated"):
        load_policy_weights(model, path.parent)
    (tmp_path / "full").mkdir()
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (tmp_path / "full" / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CheckpointError, match="model.safetensors' is truncated or padded"):
        load_policy_weights(tiny_causal_lm()[0], tmp_path / "full")


@pytest.mark.parametrize("content, expect", [
    ("", None),
    ('{"a": 1}\n{"a": 2', "line 2: not valid JSON"),
    ('{"a": 1}\n[1, 2]\n', "line 2: expected a JSON object, got list"),
])
def test_json_lines_records(content, expect, tmp_path):
    from moalign.storage.readers import read_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    if expect is None:
        assert read_jsonl(path) == []
        return
    with pytest.raises(CheckpointError, match=f"rows.jsonl', {expect}"):
        read_jsonl(path, what="rows")


@pytest.mark.parametrize("damage", list(STATES))
def test_a_resume_names_a_damaged_trainer_state(damage, tmp_path, monkeypatch):
    """``resume`` (explicit folder or the newest checkpoint) checks the optimizer, scheduler
    and RNG states before the trainer reads them."""
    import moalign.trainers.resume as resume

    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    _torch_file(folder / "optimizer.pt")
    name, damage_it, expect = STATES[damage]
    damage_it(folder / name)
    monkeypatch.setattr(resume, "check_trainer_checkpoint", lambda *a, **k: {})
    monkeypatch.setattr(resume, "latest_checkpoint", lambda *a, **k: folder)
    for how in (str(folder), True):
        with pytest.raises(CheckpointError) as info:
            resume.resume_path(how, str(tmp_path))
        assert expect.format(file=folder / name) in str(info.value)
    (folder / name).unlink()
    _torch_file(folder / "optimizer.pt")
    assert resume.resume_path(True, str(tmp_path)) == str(folder)  # whole states pass
