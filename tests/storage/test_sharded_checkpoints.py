"""Resume finds checkpoints whose weights are sharded, and never a half-written one.

DeepSpeed ZeRO-3 without ``stage3_gather_16bit_weights_on_model_save`` writes no
``*.safetensors`` file into a ``checkpoint-<step>`` folder: its weights are in
``global_step<N>/`` (one ``*_model_states.pt`` and one ``*_optim_states.pt`` per process, named
by ``latest``). FSDP with ``SHARDED_STATE_DICT`` writes ``pytorch_model_fsdp_0/`` and
``optimizer_0/`` (``torch.distributed.checkpoint``: ``*.distcp`` data, ``.metadata`` last). The
layouts below are those files, written with ``torch.save`` as DeepSpeed writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moalign.errors import CheckpointError
from moalign.storage.checkpoints import check_trainer_checkpoint, latest_checkpoint

MARKER = "moalign_state.json"


def _common(folder: Path, step: int, *, state: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(json.dumps({"objectives": ["a", "b"], "tradeoff": {}}))
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def zero3_checkpoint(root: Path, step: int, processes: int = 2, **kwargs) -> Path:
    folder = _common(root / f"checkpoint-{step}", step, **kwargs)
    tag = folder / f"global_step{step}"
    tag.mkdir()
    for r in range(processes):
        torch.save({"module": None, "rank": r}, tag / f"zero_pp_rank_{r}_mp_rank_00_model_states.pt")
        torch.save({"state": torch.zeros(3)}, tag / f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt")
    (folder / "latest").write_text(f"global_step{step}")
    return folder


def fsdp_sharded_checkpoint(root: Path, step: int) -> Path:
    folder = _common(root / f"checkpoint-{step}", step)
    for name in ("pytorch_model_fsdp_0", "optimizer_0"):
        (folder / name).mkdir()
        for r in range(2):
            (folder / name / f"__{r}_0.distcp").write_bytes(b"\0" * 64)
        (folder / name / ".metadata").write_bytes(b"metadata")
    return folder


def test_a_zero3_checkpoint_without_safetensors_is_resumed(tmp_path):
    zero3_checkpoint(tmp_path, 2)
    assert check_trainer_checkpoint(tmp_path / "checkpoint-2", (MARKER,))["global_step"] == 2
    assert latest_checkpoint(tmp_path, (MARKER,)) == tmp_path / "checkpoint-2"


def test_an_fsdp_sharded_checkpoint_is_resumed(tmp_path):
    fsdp_sharded_checkpoint(tmp_path, 4)
    assert latest_checkpoint(tmp_path, (MARKER,)) == tmp_path / "checkpoint-4"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage, message", [
    (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),
    (lambda c: _truncate(c / "global_step4" / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt"),
     "truncated or corrupt"),
    (lambda c: (c / "global_step4" / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink(),
     "model states of processes \\[0, 1\\], optimizer states of \\[0\\]"),
    (lambda c: (c / "latest").unlink(), "no 'latest' file"),
    (lambda c: (c / "latest").write_text("global_step9"), "not a folder of the checkpoint"),
    (lambda c: [f.unlink() for f in (c / "global_step4").glob("*model_states.pt")],
     "no \\*model_states.pt"),
])
def test_a_half_written_zero3_checkpoint_is_skipped(tmp_path, damage, message):
    zero3_checkpoint(tmp_path, 2)
    newest = zero3_checkpoint(tmp_path, 4)
    damage(newest)
    with pytest.raises(CheckpointError, match=message):
        check_trainer_checkpoint(newest, (MARKER,))
    assert latest_checkpoint(tmp_path, (MARKER,)) == tmp_path / "checkpoint-2"


@pytest.mark.parametrize("damage, message", [
    (lambda c: (c / "pytorch_model_fsdp_0" / ".metadata").unlink(), "no .metadata"),
    (lambda c: (c / "optimizer_0" / ".metadata").unlink(), "no .metadata"),
    (lambda c: [f.unlink() for f in (c / "pytorch_model_fsdp_0").glob("*.distcp")],
     "no \\*.distcp"),
])
def test_a_half_written_fsdp_checkpoint_is_skipped(tmp_path, damage, message):
    fsdp_sharded_checkpoint(tmp_path, 2)
    newest = fsdp_sharded_checkpoint(tmp_path, 4)
    damage(newest)
    with pytest.raises(CheckpointError, match=message):
        check_trainer_checkpoint(newest, (MARKER,))
    assert latest_checkpoint(tmp_path, (MARKER,)) == tmp_path / "checkpoint-2"


def test_a_checkpoint_with_no_weights_at_all_is_still_refused(tmp_path):
    folder = _common(tmp_path / "checkpoint-1", 1)
    with pytest.raises(CheckpointError, match="holds no weights"):
        check_trainer_checkpoint(folder)
    assert latest_checkpoint(tmp_path) is None
