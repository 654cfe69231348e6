"""The one checked reader of the files moalign reads back: every file is checked, cheaply, before
anything in it is used, and a damaged one is a :class:`~moalign.errors.CheckpointError` that
names the file and what is wrong with it (missing, empty, truncated, not JSON, wrong keys).

- JSON records (trainer states, run and point records, fronts, configurations):
  :func:`read_json` (a JSON object, with its required keys) and :func:`read_text`;
- JSON-lines files (per-example scores): :func:`read_jsonl`;
- weights: :func:`check_safetensors` reads the header alone (sizes and offsets), and
  :func:`load_safetensors` loads the tensors only once the header is whole;
- adapters: :func:`read_adapter_config` (``adapter_config.json`` with the keys peft needs) and
  :func:`check_adapter` (config and weights);
- optimizer, scheduler, scaler and RNG states (``torch.save`` files): :func:`check_torch_file`
  (not empty, a whole zip archive or a pickle stream) and :func:`torch_load` (checked, then
  loaded with ``weights_only=True``: a pickle never runs code); :func:`check_trainer_states`
  checks every such file of a trainer's ``checkpoint-<step>`` folder.

The JSON and safetensors checks are those of :mod:`moalign.storage.checkpoints`, re-exported
here so that a reader has one module to import.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moalign.errors import CheckpointError
from moalign.storage.checkpoints import check_adapter, check_safetensors, read_json, read_text

__all__ = [
    "TRAINER_STATE_FILES", "check_adapter", "check_safetensors", "check_torch_file",
    "check_trainer_states", "load_safetensors", "read_adapter_config", "read_json", "read_jsonl",
    "read_text", "torch_load",
]

#: ``torch.save`` files a trainer writes into a ``checkpoint-<step>`` folder and reads on resume
#: (``rng_state*.pth`` / ``rng_state_<rank>.pt`` too, matched by prefix).
TRAINER_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt")
#: keys peft needs in an ``adapter_config.json`` to build the adapter
ADAPTER_KEYS = ("peft_type",)
#: the first byte of a pickle stream of protocol 2 or later (``torch.save``'s legacy format)
_PICKLE = 0x80


def read_jsonl(path: str | os.PathLike, *, what: str = "JSON-lines file") -> list[dict[str, Any]]:
    """Every line of a JSON-lines file as an object (blank lines skipped); a line that is not
    a JSON object is a :class:`CheckpointError` naming the file and the line."""
    path = Path(path)
    rows = []
    for i, line in enumerate(read_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{what} '{path}', line {i}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise CheckpointError(f"{what} '{path}', line {i}: expected a JSON object, got "
                                  f"{type(row).__name__}")
        rows.append(row)
    return rows


def load_safetensors(path: str | os.PathLike, *, what: str = "weights file",
                     device: str = "cpu") -> dict[str, Any]:
    """The tensors of a safetensors file, loaded only after :func:`check_safetensors` found
    its header whole (a truncated or empty file never reaches the loader)."""
    path = Path(path)
    check_safetensors(path)
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # the library's own errors (a dtype it does not know, ...)
        raise CheckpointError(f"{what} '{path}' cannot be loaded: {exc}") from None


def read_adapter_config(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``adapter_config.json`` of a peft adapter folder: a JSON object with the keys peft
    needs (:data:`ADAPTER_KEYS`); :class:`CheckpointError` naming the file otherwise."""
    return read_json(Path(folder) / "adapter_config.json", required=ADAPTER_KEYS,
                     what="adapter config")


def check_torch_file(path: str | os.PathLike, *, what: str = "trainer state") -> None:
    """A ``torch.save`` file before it is loaded: it exists, is not empty, and is either a
    whole zip archive (the format since torch 1.6; a truncated one has lost its directory at
    the end) or a pickle stream (the legacy format)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise CheckpointError(f"{what} '{path}' is missing") from None
    except OSError as exc:
        raise CheckpointError(f"{what} '{path}' cannot be read ({exc})") from None
    if size == 0:
        raise CheckpointError(f"{what} '{path}' is empty (0 bytes)")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"{what} '{path}' is truncated or corrupt ({size} bytes: "
                                  f"{exc})") from None
        return
    if head[0] != _PICKLE:
        raise CheckpointError(f"{what} '{path}' is corrupt: not a file written by torch.save "
                              f"({size} bytes)")


def torch_load(path: str | os.PathLike, *, what: str = "trainer state",
               map_location: Any = "cpu") -> Any:
    """Load a ``torch.save`` file with ``weights_only=True`` after :func:`check_torch_file`; a
    file the loader still refuses is a :class:`CheckpointError` naming it."""
    path = Path(path)
    check_torch_file(path, what=what)
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # EOFError, UnpicklingError, RuntimeError from a damaged archive
        raise CheckpointError(f"{what} '{path}' cannot be loaded: {type(exc).__name__}: "
                              f"{exc}") from None


def check_trainer_states(folder: str | os.PathLike,
                         names: Sequence[str] = TRAINER_STATE_FILES) -> None:
    """Every optimizer / scheduler / scaler / RNG state of a ``checkpoint-<step>`` folder passes
    :func:`check_torch_file` (files that are absent are the trainer's business: it starts them
    fresh)."""
    folder = Path(folder)
    found = [folder / n for n in names if (folder / n).exists()]
    found += sorted(p for p in folder.glob("rng_state*.pt*") if p.is_file())
    for path in found:
        kind = "RNG state" if path.name.startswith("rng_state") else \
            f"{path.stem} state"
        check_torch_file(path, what=kind)
