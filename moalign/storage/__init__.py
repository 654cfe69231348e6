"""Storage: crash-safe files and folders, and the validation of what a run left on disk.

- :mod:`moalign.storage.files`: atomic writes (temporary sibling, then rename) of bytes, text,
  JSON and whole folders; :func:`jsonable`; :func:`output_dir_problems`; :func:`writable_problems`;
- :mod:`moalign.storage.checkpoints`: the checks of adapters, model folders, safetensors files
  and trainer checkpoints, and the one :func:`latest_checkpoint` every resume uses (it skips a
  half-written or corrupt checkpoint);
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
    "check_trainer_checkpoint",
    "is_temporary",
    "jsonable",
    "latest_checkpoint",
    "output_dir_problems",
    "output_lock",
    "read_json",
    "scan_trace",
    "stale_temporaries",
    "writable_problems",
]
