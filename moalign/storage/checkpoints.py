"""Telling finished checkpoints from partial and corrupt ones, before anything is loaded.

moalign writes every run, point and state file atomically (:mod:`moalign.storage.files`: a temporary
sibling, then a rename), so a process killed at any moment leaves either the finished thing or
nothing under its name, plus possibly a stale temporary (``.<name>.tmp-*`` folder,
``.<name>.*.tmp`` file, ``.<name>.old-<pid>`` folder) that readers ignore. What can still go
wrong is outside moalign's control: a disk that filled up, a file truncated by a copy, a
checkpoint folder that the Hugging Face ``Trainer`` was still writing when it died (it writes
in place, ``trainer_state.json`` last). The checks here find these cases cheaply (JSON parse,
safetensors header and size; no tensor is read) and raise :class:`~moalign.errors.CheckpointError`
naming the file, so a damaged checkpoint is reported instead of loaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moalign.errors import CheckpointError

__all__ = [
    "TraceStatus",
    "check_adapter",
    "check_model_folder",
    "check_safetensors",
    "check_sharded_states",
    "check_trainer_checkpoint",
    "is_temporary",
    "latest_checkpoint",
    "read_json",
    "read_text",
    "scan_trace",
    "stale_temporaries",
]

logger = logging.getLogger(__name__)

# names left behind by moalign.storage.files when a writer dies
_TEMPORARY = re.compile(r"^\..+(\.tmp-[^/]+|\.[^./]+\.tmp|\.old-\d+)$")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: JSON state files moalign's trainers add to a checkpoint folder
_STATE_FILES = ("moalign_state.json", "moalign_tradeoff.json")
#: largest safetensors header accepted (the format's own limit is 100 MB)
_MAX_HEADER = 100_000_000


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary left by an atomic writer (never a finished result)."""
    return bool(_TEMPORARY.match(Path(path).name))


def stale_temporaries(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Temporaries under ``folder`` (what a killed writer leaves); safe to delete when no
    moalign process is writing there."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found: list[Path] = []
    for entry in sorted(folder.iterdir()):
        if is_temporary(entry):
            found.append(entry)
        elif recursive and entry.is_dir() and not entry.is_symlink():
            found.extend(stale_temporaries(entry, recursive=True))
    return found


def read_json(path: str | os.PathLike, *, required: Sequence[str] = (),
              what: str = "checkpoint file", hint: str = "") -> dict[str, Any]:
    """Read a JSON object, or raise :class:`CheckpointError` naming ``path`` when it is missing,
    not UTF-8, not JSON (e.g. truncated), not an object, or lacks one of ``required``.
    ``hint`` (what the user can do) ends every message."""
    try:
        return _read_json(Path(path), required, what)
    except CheckpointError as exc:
        if not hint:
            raise
        raise CheckpointError(f"{exc}; {hint}") from None


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of a file a run wrote; :class:`CheckpointError` naming ``what`` and the
    file when it is missing or unreadable."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{what} '{path}' is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} '{path}' cannot be read ({exc})") from None


def _read_json(path: Path, required: Sequence[str], what: str) -> dict[str, Any]:
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{what} '{path}' is corrupt: not valid JSON ({exc}); "
                              "it was not loaded") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} '{path}' is corrupt: expected a JSON object, got "
                              f"{type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise CheckpointError(f"{what} '{path}' is incomplete: no key "
                              f"{', '.join(map(repr, missing))}")
    return data


def check_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """Validate a safetensors file from its header alone; return the header.

    Catches truncated files (data shorter than the header promises), garbage headers and
    offsets that overlap or run past the end, without reading any tensor.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"weights file '{path}' is truncated ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > min(_MAX_HEADER, size - 8):
                raise CheckpointError(f"weights file '{path}' is corrupt or truncated: its "
                                      f"header claims {n} bytes, the file has {size}")
            header = json.loads(fh.read(n).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"weights file '{path}' is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"weights file '{path}' is corrupt: unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"weights file '{path}' is corrupt: header is not an object")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"weights file '{path}' is corrupt: tensor '{name}' has no "
                                  "valid data_offsets") from None
        if not 0 <= begin <= stop:
            raise CheckpointError(f"weights file '{path}' is corrupt: tensor '{name}' has "
                                  f"offsets {begin}..{stop}")
        end = max(end, stop)
    if 8 + n + end != size:
        raise CheckpointError(f"weights file '{path}' is truncated or padded: the header "
                              f"describes {8 + n + end} bytes, the file has {size}")
    return header


def check_adapter(folder: str | os.PathLike) -> None:
    """A saved peft adapter: ``adapter_config.json`` parses and ``adapter_model.safetensors``
    is whole. A pickle-based ``adapter_model.bin`` is refused (it could run code when loaded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"adapter folder '{folder}' is missing")
    read_json(folder / "adapter_config.json", what="adapter config")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file() and (folder / "adapter_model.bin").is_file():
        raise CheckpointError(f"adapter '{folder}' is saved as a pickle (adapter_model.bin), "
                              "which moalign does not load; re-save it with safetensors")
    check_safetensors(weights)


def check_model_folder(folder: str | os.PathLike) -> None:
    """A local model folder before it is loaded: an adapter passes :func:`check_adapter`, and
    every ``*.safetensors`` file of a full model is whole (:func:`check_safetensors`)."""
    folder = Path(folder)
    if (folder / "adapter_config.json").is_file():
        check_adapter(folder)
        return
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors(weights)


def _check_zip(path: Path) -> None:
    """A ``torch.save`` file (a zip archive) is whole: its central directory, written last, is
    there and readable. Nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"state file '{path}' is truncated or corrupt ({exc})") from None
    if not names:
        raise CheckpointError(f"state file '{path}' is empty")


def _zero_ranks(files: Iterable[Path], kind: str) -> set[int]:
    return {int(m.group(1)) for f in files
            if (m := re.search(rf"zero_pp_rank_(\d+)_mp_rank_\d+_{kind}_states\.pt$", f.name))}


def _check_deepspeed(folder: Path, steps: list[Path]) -> None:
    """A DeepSpeed checkpoint: ``latest`` names a ``global_step*`` folder of the checkpoint, which
    holds the model states (one file, or one per process under ZeRO-3), every ``*.pt`` whole,
    and, under ZeRO, one optimizer partition per process that has model states."""
    latest = folder / "latest"
    if not latest.is_file():
        raise CheckpointError(f"checkpoint '{folder}' is incomplete: DeepSpeed folders "
                              f"({steps[0].name}) but no 'latest' file naming one")
    tag = read_text(latest, "DeepSpeed tag file").strip()
    step = folder / tag
    if not tag or "/" in tag or not step.is_dir():
        raise CheckpointError(f"checkpoint '{folder}': 'latest' names '{tag}', which is not a "
                              "folder of the checkpoint")
    files = sorted(step.glob("*.pt"))
    if not any(f.name.endswith("model_states.pt") for f in files):
        raise CheckpointError(f"DeepSpeed checkpoint '{step}' holds no *model_states.pt file")
    for f in files:
        _check_zip(f)
    model, optim = _zero_ranks(files, "model"), _zero_ranks(files, "optim")
    if optim and model and optim != model:
        raise CheckpointError(f"DeepSpeed checkpoint '{step}' is incomplete: model states of "
                              f"processes {sorted(model)}, optimizer states of {sorted(optim)}")
    if optim and optim != set(range(len(optim))):
        raise CheckpointError(f"DeepSpeed checkpoint '{step}' is incomplete: optimizer states "
                              f"of processes {sorted(optim)} only")


def _check_distributed_checkpoint(path: Path) -> None:
    """An FSDP ``SHARDED_STATE_DICT`` folder (``torch.distributed.checkpoint``): data files and
    the ``.metadata`` file that is written once every process has written its data."""
    if not (path / ".metadata").is_file() or (path / ".metadata").stat().st_size == 0:
        raise CheckpointError(f"sharded checkpoint '{path}' is incomplete: no .metadata (it is "
                              "written last)")
    if not any(path.glob("*.distcp")):
        raise CheckpointError(f"sharded checkpoint '{path}' holds no *.distcp data file")


def check_sharded_states(folder: str | os.PathLike) -> bool:
    """Check the weights a DeepSpeed checkpoint (``global_step*`` folders, ``latest``) or an FSDP
    ``SHARDED_STATE_DICT`` checkpoint (``pytorch_model_fsdp_*`` and ``optimizer_*`` folders)
    keeps without a ``*.safetensors`` file (ZeRO-3 without 16-bit weights on save, FSDP's
    sharded state dict); returns whether there were any. Nothing is unpickled: zip archives are
    checked for their central directory, distributed checkpoints for their metadata file."""
    folder = Path(folder)
    found = False
    steps = sorted(p for p in folder.glob("global_step*") if p.is_dir())
    if steps:
        _check_deepspeed(folder, steps)
        found = True
    fsdp = sorted(p for p in folder.glob("pytorch_model_fsdp_*") if p.is_dir())
    for path in [*fsdp, *(p for p in folder.glob("optimizer_*") if p.is_dir())]:
        _check_distributed_checkpoint(path)
    return found or bool(fsdp)


def check_trainer_checkpoint(folder: str | os.PathLike,
                             required: Sequence[str] = ()) -> dict[str, Any]:
    """Validate a ``checkpoint-<step>`` folder of a Hugging Face / TRL trainer (or of
    :class:`~moalign.trainers.MultiObjectivePPOTrainer`); return its trainer state.

    The ``Trainer`` writes ``trainer_state.json`` last (moalign's trainers write their own
    state files before it), so its absence means the save was cut short. Every
    ``*.safetensors`` file must be whole; a checkpoint without one keeps its weights sharded
    (DeepSpeed ZeRO-3 without 16-bit weights, FSDP ``SHARDED_STATE_DICT``), and those are
    checked by :func:`check_sharded_states`. Every moalign state file must parse, and each file
    named in ``required`` (what the resuming trainer reads, e.g. ``moalign_state.json``) must be
    there.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint '{folder}' does not exist")
    for name in required:
        if not (folder / name).is_file():
            raise CheckpointError(f"checkpoint '{folder}' is incomplete: no {name}")
    state_file = folder / "trainer_state.json"
    if not state_file.is_file():
        raise CheckpointError(f"checkpoint '{folder}' is incomplete: no trainer_state.json (the "
                              "save was interrupted, or this is not a trainer checkpoint)")
    state = read_json(state_file, what="trainer state")
    if "global_step" not in state and "step" not in state:
        raise CheckpointError(f"trainer state '{state_file}' names no step")
    weights = sorted(folder.rglob("*.safetensors"))
    for f in weights:
        check_safetensors(f)
    sharded = check_sharded_states(folder)
    if not weights and not sharded:
        raise CheckpointError(f"checkpoint '{folder}' holds no weights: no *.safetensors file, "
                              "no DeepSpeed global_step* folder and no FSDP "
                              "pytorch_model_fsdp_* folder")
    for name in _STATE_FILES:
        if (folder / name).exists():
            read_json(folder / name, what="moalign state")
    return state


def latest_checkpoint(output_dir: str | os.PathLike, required: Sequence[str] = ()) -> Path | None:
    """The newest ``checkpoint-<step>`` under ``output_dir`` that passes
    :func:`check_trainer_checkpoint` (with ``required``); incomplete or corrupt ones are skipped
    with a warning.
    ``None`` when there is none (use it instead of ``transformers.trainer_utils.
    get_last_checkpoint``, which returns a half-written folder as readily as a whole one)."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in root.iterdir()
                    if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True)
    for _, path in found:
        try:
            check_trainer_checkpoint(path, required)
        except CheckpointError as exc:
            logger.warning("skipping checkpoint: %s", exc)
            continue
        return path
    return None


# --------------------------------------------------------------------------------------------
# Traces (moalign.fronts.trace)
# --------------------------------------------------------------------------------------------


@dataclass
class TraceStatus:
    """What a trace folder holds: finished runs and points, partial folders (recomputed on
    resume), stale temporaries (ignored), and problems (corrupt files that stop a resume)."""

    runs: list[str] = field(default_factory=list)
    points: list[str] = field(default_factory=list)
    partial: list[Path] = field(default_factory=list)
    temporaries: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _children(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_temporary(p)) \
        if folder.is_dir() else []


def _spec_name(spec: Any) -> str | None:
    """The objective name of a ``load_objective`` spec saved in a trace's config.json (None for
    an explicit ``package.module:Class``, whose name only its class knows)."""
    if isinstance(spec, dict):
        return spec.get("name")
    if not isinstance(spec, str) or "." in spec.partition(":")[0]:
        return None
    return spec.partition(":")[0].strip()


def scan_trace(output_dir: str | os.PathLike) -> TraceStatus:
    """Inspect a :func:`~moalign.fronts.trace.trace_front` folder without loading any model."""
    out = Path(output_dir)
    status = TraceStatus(temporaries=stale_temporaries(out))

    def check(fn, *args, **kwargs) -> bool:
        try:
            fn(*args, **kwargs)
        except CheckpointError as exc:
            status.problems.append(str(exc))
            return False
        return True

    objectives: list[str] = []
    if (out / "config.json").exists():
        try:
            objectives = [_spec_name(o) for o in
                          read_json(out / "config.json").get("objectives") or []]
            objectives = [o for o in objectives if o]
        except CheckpointError as exc:
            status.problems.append(str(exc))

    def check_point(path: Path) -> bool:
        point = read_json(path, required=("scores", "stderr", "eval_seconds"), what="front point")
        missing = [o for o in objectives if o not in (point["scores"] or {})]
        if missing:
            raise CheckpointError(f"front point '{path}' has no score for {', '.join(missing)}")
        return True

    for run in _children(out / "runs"):
        if not (run / "run.json").exists():
            status.partial.append(run)
        elif check(read_json, run / "run.json", required=("seconds", "steps")) and (
                check(check_model_folder, run / "model") if (run / "model").is_dir()
                else check(check_adapter, run / "adapter")):  # a full fine-tune, or LoRA
            status.runs.append(run.name)
    for point in [*_children(out / "points"), *([out / "baseline"] if (out / "baseline").is_dir() else [])]:
        if not (point / "point.json").exists():
            status.partial.append(point)
        elif check(check_point, point / "point.json"):
            if (point / "adapter").is_dir():
                for cfg in (point / "adapter").rglob("adapter_config.json"):
                    check(check_adapter, cfg.parent)
            if point.name != "baseline":
                status.points.append(point.name)
    if (out / "front.json").exists():
        check(read_json, out / "front.json", required=("objectives", "points"))
    return status
