"""Train one policy with one multi-objective trainer: :func:`train`, which ``moalign train`` runs.

The configuration (:mod:`moalign.workflows.train_config`) is checked before any model or data
loads; the run then trains, saves the adapter (or the whole model with ``lora: null``), the
tokenizer and ``train.json`` into ``output_dir`` (atomically: the folder appears only when
finished). A run that saves checkpoints (``save_strategy: steps`` and ``save_steps``; ppo:
``save_steps``) writes them to ``<output_dir>/trainer`` as it goes, so a stopped run can continue
with ``resume: true`` (or ``auto``); ``train.json``, written last, is what marks the folder
finished. ``overwrite: true`` over a finished run never destroys it before its replacement
exists: the old folder waits beside it (``.<name>.replaced-<pid>.tmp``) until the new run is
complete, and is put back if the new run fails. The output folder (and its parent) must accept a
new file before anything loads.

    >>> import moalign
    >>> record = moalign.train({"trainer": "mo_dpo", "model": "tiny", "max_steps": 2,
    ...                         "output_dir": "out"})            # doctest: +SKIP
    >>> record["metrics"]["helpfulness"]["loss"]                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from moalign.config.checking import raise_problems
from moalign.storage.files import jsonable, writable_problems
from moalign.storage.lock import output_lock
from moalign.trainers.resume import CHECKPOINT_DIR
from moalign.workflows.train_config import (
    RUN_IDENTITY,
    TRAIN_RECORD,
    ResolvedTrain,
    TrainRunConfig,
    resolve_train_config,
    run_identity,
)
from moalign.workflows.train_data import preference_data, prompt_data, training_split

__all__ = ["objective_metrics", "train", "train_resolved"]


def train(config: Mapping[str, Any] | None = None, /, *, source: str | None = None,
          on_start: Callable[[ResolvedTrain], None] | None = None,
          **keys: Any) -> dict[str, Any]:
    """Train one policy exactly as ``moalign train`` does; returns its ``train.json`` record.

    ``config``: the keys of a ``moalign train`` file (:class:`TrainRunConfig`'s, plus the
    chosen trainer's config fields such as ``beta`` or ``max_steps``); ``keys`` override it.
    Every problem is reported at once, as a :class:`~moalign.errors.ConfigError`, before any
    model or data loads (``source`` names the file in that message). One writer at a time per
    ``output_dir``: the folder's state (resume, overwrite) is planned again under its lock.
    ``on_start(resolved)`` is called under the lock, before anything loads (``moalign train``
    prints the precision line there).
    """
    data = {**(config or {}), **keys}
    resolved = resolve_train_config(data, source=source)
    with output_lock(resolved.run.output_dir):
        # a run that finished meanwhile is no longer resumed or replaced unasked
        resolved = resolve_train_config(data, source=source)
        if on_start is not None:
            on_start(resolved)
        return train_resolved(resolved)


def _lora(run: TrainRunConfig) -> Any:
    from moalign.models import lora_config

    return None if run.lora is None else lora_config(**run.lora)


def _fit(resolved: ResolvedTrain, model: Any, tokenizer: Any, ds: Any,
         out: Path) -> tuple[list[dict], int]:
    """Any trainer (:func:`moalign.trainers.runs.train_and_save`, as front traces train),
    continued from ``resolved.resume_from`` when set; saves its policy (the adapter, or the
    whole model with ``lora: null``) into ``out``."""
    from moalign.trainers.runs import train_and_save

    record = train_and_save(resolved.spec, resolved.args, model, tokenizer, ds, out,
                            objectives=resolved.run.objectives, peft_config=_lora(resolved.run),
                            print_metrics=resolved.run.progress,
                            resume_from=resolved.resume_from)
    return record["log"], record["steps"]


#: kind of data -> (data preparation, training function)
RUNNERS = {
    "preference": (preference_data, _fit),
    "prompts": (prompt_data, _fit),
}


def objective_metrics(log: list[Mapping[str, Any]], names: list[str]) -> dict[str, dict[str, float]]:
    """Last logged value of every per-objective metric, by objective: the key without the
    objective's name (and without ``objective/``). The keys every trainer logs give
    ``weights/<k>`` -> ``weights``, ``rewards/<k>/mean`` -> ``rewards/mean`` (online trainers),
    ``lagrange/<k>`` -> ``lagrange`` and ``constraint/<k>/slack`` -> ``constraint/slack``
    (constrained objectives); the DPO family's ``objective/<k>/loss`` -> ``loss``, ..."""
    table: dict[str, dict[str, float]] = {n: {} for n in names}
    for entry in log:
        for key, value in entry.items():
            parts = key.split("/")
            hits = [i for i, p in enumerate(parts) if p in table]
            if not hits or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            i = hits[0]
            metric = "/".join(p for p in parts[:i] + parts[i + 1:] if p != "objective") or "value"
            table[parts[i]][metric] = float(value)
    return table


def _is_main_process() -> bool:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    from accelerate import PartialState

    return PartialState().is_main_process


def train_resolved(resolved: ResolvedTrain) -> dict[str, Any]:
    """Load, train, save a checked configuration; returns the record written to
    ``train.json`` (empty on the other processes of a multi-process run). The caller holds
    the output folder's lock (:func:`train` takes it)."""
    import shutil

    from moalign.models.specs import load_model_spec
    from moalign.storage.files import atomic_write_json

    run, args = resolved.run, resolved.args
    out = Path(run.output_dir).expanduser()
    if _is_main_process():  # a folder that cannot be written is found now, not after training
        problems = writable_problems(out)
        if not problems and (out / CHECKPOINT_DIR).is_dir():
            problems = writable_problems(out / CHECKPOINT_DIR)
        raise_problems(problems, None)
    seed = int(getattr(args, "seed", 0))
    if hasattr(args, "disable_tqdm"):
        args.disable_tqdm = not run.progress
    start = time.perf_counter()
    train_rows = training_split(resolved, seed)  # bad data fails here, before the model loads
    model, tokenizer = load_model_spec(run.model, seed=seed, dtype=run.dtype)  # resolved
    prepare, fit = RUNNERS[resolved.spec.data]
    ds = prepare(resolved, train_rows, tokenizer)
    # checkpoints are written in place, in <output_dir>/trainer, so that a stopped run can be
    # resumed from them; without them the whole output folder is built under a temporary name
    from moalign.trainers.runs import saves_checkpoints

    checkpoints = out / CHECKPOINT_DIR
    in_place = saves_checkpoints(args) or resolved.resume_from is not None
    if not _is_main_process():  # under accelerate / torchrun only the main process writes
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            args.output_dir = str(checkpoints if in_place else Path(scratch) / "trainer")
            fit(resolved, model, tokenizer, ds, Path(scratch))
        return {}
    aside = None
    if in_place:
        if resolved.resume_from is None:  # a fresh start (overwrite: true)
            if (out / TRAIN_RECORD).is_file():
                # a finished result moves aside whole, so that the folder stops looking
                # finished before the new run's checkpoints arrive; it is removed once the new
                # result is complete, and put back if the new run fails
                aside = _move_aside(out)
            elif checkpoints.exists():  # an unfinished run started over: no old checkpoint
                shutil.rmtree(checkpoints)  # is mixed in
        # what a resume must match, beside the checkpoints (and in the finished folder)
        atomic_write_json(checkpoints / RUN_IDENTITY, run_identity(run, args))
        args.output_dir = str(checkpoints)
    try:
        record = _fit_and_save(resolved, model, tokenizer, ds, out, in_place, start)
    except BaseException:
        if aside is not None:
            _put_back(out, aside)
        elif in_place and not any(checkpoints.glob("checkpoint-*")):
            _forget_identity(out)  # nothing to resume: leave the folder as it was found
        raise
    _remove_replaced(out)  # this run's, and one left by a run killed while it replaced them
    return record


#: Name, beside ``output_dir``, of a finished result that a fresh run is replacing (``{pid}``:
#: the replacing process); named as a temporary, so that no reader takes it for a result.
REPLACED = ".{name}.replaced-{pid}.tmp"


def _move_aside(out: Path) -> Path:
    import os
    import shutil

    aside = out.with_name(REPLACED.format(name=out.name, pid=os.getpid()))
    if aside.exists():
        shutil.rmtree(aside)
    os.replace(out, aside)
    return aside


def _put_back(out: Path, aside: Path) -> None:
    """Restore the finished result ``aside`` as ``out`` (what the failed run wrote goes)."""
    import os
    import shutil

    if out.exists():
        shutil.rmtree(out)
    os.replace(aside, out)


def _remove_replaced(out: Path) -> None:
    import glob
    import shutil

    for old in out.parent.glob(REPLACED.format(name=glob.escape(out.name), pid="*")):
        shutil.rmtree(old, ignore_errors=True)


def _forget_identity(out: Path) -> None:
    """Remove the identity record of a run that failed before its first checkpoint, and the
    folders that then hold nothing."""
    import contextlib

    (out / CHECKPOINT_DIR / RUN_IDENTITY).unlink(missing_ok=True)
    for folder in (out / CHECKPOINT_DIR, out):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _fit_and_save(resolved: ResolvedTrain, model: Any, tokenizer: Any, ds: Any, out: Path,
                  in_place: bool, start: float) -> dict[str, Any]:
    """Train and save into ``out`` (built under a temporary name, renamed when complete)."""
    import os
    import shutil

    from moalign.storage.files import atomic_directory, atomic_write_json

    run, args = resolved.run, resolved.args
    checkpoints = out / CHECKPOINT_DIR
    with atomic_directory(out, overwrite=out.exists()) as tmp:
        if not in_place:
            args.output_dir = str(tmp / CHECKPOINT_DIR)
        log, steps = RUNNERS[resolved.spec.data][1](resolved, model, tokenizer, ds, tmp)
        tokenizer.save_pretrained(str(tmp))
        to_dict = getattr(args, "to_dict", None)
        record = jsonable({
            "trainer": run.trainer, "model": run.model, "dataset": run.dataset,
            "precision": "bfloat16" if getattr(args, "bf16", False) else "float32",
            "dtype": run.dtype,  # the policy's weights, resolved
            "objectives": run.objectives, "weights": run.weights, "lora": run.lora,
            "examples": len(ds), "steps": steps, "resumed_from": resolved.resume_from,
            "seconds": round(time.perf_counter() - start, 3),
            "metrics": objective_metrics(log, run.objectives), "run": dataclasses.asdict(run),
            "args": to_dict() if callable(to_dict) else dataclasses.asdict(args),
            "log_history": log,
        })
        atomic_write_json(tmp / TRAIN_RECORD, record)
        if in_place and checkpoints.is_dir():  # last: the checkpoints move into the result
            os.replace(checkpoints, tmp / CHECKPOINT_DIR)
        elif (tmp / CHECKPOINT_DIR).is_dir() and not any((tmp / CHECKPOINT_DIR).iterdir()):
            shutil.rmtree(tmp / CHECKPOINT_DIR)
    return record
