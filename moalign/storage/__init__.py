"""Storage: crash-safe files and folders, and the validation of what a run left on disk.

- :mod:`moalign.storage.files`: atomic writes (temporary sibling, then rename) of bytes, text,
  JSON and whole folders; :func:`jsonable`; :func:`output_dir_problems`; :func:`writable_problems`;
- :mod:`moalign.storage.checkpoints`: the checks of adapters, model folders, safetensors files
  and trainer checkpoints, and the one :func:`latest_checkpoint` every resume uses (it skips a
  half-written or corrupt checkpoint);
- :mod:`moalign.storage.readers`: the one checked reader of every file moalign reads back
  (JSON records, JSON lines, safetensors weights, adapter configs, ``torch.save`` states): a
  damaged file is a :class:`~moalign.errors.CheckpointError` naming it, before anything in it
  is used;
- :mod:`moalign.storage.lock`: :func:`output_lock`, the one-writer-per-folder lock every command
  that writes an output folder holds.
"""

from __future__ import annotations

from moalign.storage.checkpoints import (
    TraceStatus,
    check_adapter,
    check_model_folder,
    check_safetensors,
    check_trainer_checkpoint,
    is_temporary,
    latest_checkpoint,
    read_json,
    scan_trace,
    stale_temporaries,
)
from moalign.storage.files import (
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    jsonable,
    output_dir_problems,
    writable_problems,
)
from moalign.storage.lock import FolderInUseError, output_lock
from moalign.storage.readers import (
    check_torch_file,
    check_trainer_states,
    load_safetensors,
    read_adapter_config,
    read_jsonl,
    torch_load,
)

__all__ = [
    "FolderInUseError",
    "TraceStatus",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_adapter",
    "check_model_folder",
    "check_safetensors",
    "check_torch_file",
    "check_trainer_checkpoint",
    "check_trainer_states",
    "is_temporary",
    "jsonable",
    "latest_checkpoint",
    "load_safetensors",
    "output_dir_problems",
    "output_lock",
    "read_adapter_config",
    "read_json",
    "read_jsonl",
    "scan_trace",
    "stale_temporaries",
    "torch_load",
    "writable_problems",
]
