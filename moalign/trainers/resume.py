"""Resuming a TRL-based trainer only from a checkpoint that passes moalign's checks.

``transformers.Trainer.train(resume_from_checkpoint=True)`` takes the highest-numbered
``checkpoint-*`` folder, whole or half-written (``get_last_checkpoint`` looks at names only).
:class:`ValidatedResume`, mixed into moalign's TRL-based trainers, resolves the argument first
through the one :func:`~moalign.storage.checkpoints.latest_checkpoint`: ``True`` becomes the
newest *complete* checkpoint (damaged ones are skipped with a warning), and an explicit folder is
checked and refused with a :class:`~moalign.errors.CheckpointError` naming what is wrong.

The commands that train (``moalign train``, ``moalign sft``) take a ``resume`` key, planned by
:func:`plan_resume` when the config is read (before any model loads): the run's checkpoints live
in ``<output_dir>/trainer/checkpoint-<step>``, and ``resume`` says whether to continue from them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from moalign.errors import CheckpointError
from moalign.storage.checkpoints import check_trainer_checkpoint, is_temporary, latest_checkpoint
from moalign.storage.readers import check_trainer_states

__all__ = ["CHECKPOINT_DIR", "RESUME_VALUES", "ValidatedResume", "plan_resume", "resume_path"]

#: The folder of a command's ``output_dir`` that holds its trainer's ``checkpoint-<step>`` folders.
CHECKPOINT_DIR = "trainer"
#: What the ``resume`` key of ``moalign train`` / ``moalign sft`` accepts, in words.
RESUME_VALUES = "true, false, auto or a checkpoint folder"


def resume_path(resume_from_checkpoint: str | os.PathLike | bool | None, output_dir: str,
                required: Sequence[str] = ()) -> str | None:
    """The checkpoint folder to resume from (``None``: start fresh); see the module docstring."""
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        path = latest_checkpoint(output_dir, required)
        if path is None:
            raise CheckpointError(f"no complete checkpoint to resume in '{output_dir}'")
    else:
        check_trainer_checkpoint(resume_from_checkpoint, required)
        path = resume_from_checkpoint
    check_trainer_states(path)  # optimizer, scheduler, RNG: named if damaged, before loading
    return str(path)


class ValidatedResume:
    """Mixin (before the TRL trainer class) that routes ``train(resume_from_checkpoint=...)``
    through :func:`resume_path`; ``resume_required`` names the files the trainer's own
    ``_load_*`` hooks read, so a checkpoint without them is never resumed."""

    resume_required: tuple[str, ...] = ()

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        path = resume_path(resume_from_checkpoint, self.args.output_dir, self.resume_required)
        return super().train(path, *args, **kwargs)


# --------------------------------------------------------------------------------------------
# The resume key of the training commands
# --------------------------------------------------------------------------------------------


def _only_checkpoints(out: Path) -> bool:
    """Whether ``out`` holds nothing but an unfinished run's ``trainer`` folder (its
    checkpoints and what the trainer writes beside them, e.g. a README.md) and the temporaries
    a killed writer leaves."""
    entries = [p for p in out.iterdir() if not is_temporary(p)]
    return [p.name for p in entries] == [CHECKPOINT_DIR] and entries[0].is_dir()


def plan_resume(output_dir: str, resume: bool | str, overwrite: bool, *, finished: str,
                required: Sequence[str] = (), command: str = "moalign train",
                ) -> tuple[str | None, list[str]]:
    """Decide, before any model loads, how a training command treats its ``output_dir``.

    ``finished`` is the file a finished run writes last (``train.json``, ``metrics.json``);
    ``required`` the files the trainer's resume reads; ``command`` names the command in the
    messages. ``resume`` is ``false`` (start fresh),
    ``true`` (continue from the newest complete checkpoint in ``<output_dir>/trainer``; an error
    when there is none), ``auto`` (continue when there is one, else start fresh) or a checkpoint
    folder (checked). A finished ``output_dir`` is replaced only with ``overwrite: true`` and
    never resumed; an unfinished one is continued (``resume``) or started over
    (``overwrite: true``), never silently mixed with a new run.

    Returns ``(checkpoint to resume from or None, problems naming resume / output_dir)``.
    """
    out = Path(output_dir).expanduser()
    checkpoints = out / CHECKPOINT_DIR
    auto = isinstance(resume, str) and resume.strip().lower() == "auto"
    path = resume if isinstance(resume, str) and not auto else None
    if path is not None and not path.strip():
        return None, [f"'resume' must be {RESUME_VALUES}, got ''"]
    if (resume is True or path is not None) and overwrite:
        return None, ["'resume' continues an unfinished run and 'overwrite: true' starts it "
                      "over: set one of them"]
    if out.exists() and not out.is_dir():
        return None, [f"'output_dir': '{output_dir}' exists and is not a folder"]
    empty = not out.is_dir() or not any(out.iterdir())
    if not empty and (out / finished).is_file():
        if resume is True or path is not None:
            return None, [f"'resume': '{output_dir}' is a finished run (it has {finished}); "
                          "nothing to resume (set resume: false and overwrite: true to train "
                          "it again)"]
        if not overwrite:
            return None, [f"'output_dir': '{output_dir}' is the output of an earlier "
                          f"{command}; choose another folder or set overwrite: true"]
        return None, []
    if path is not None:
        try:
            check_trainer_checkpoint(Path(path).expanduser(), required)
        except CheckpointError as exc:
            return None, [f"'resume': {exc}"]
        inside = Path(path).expanduser().resolve().parent == checkpoints.resolve()
        if not empty and not inside:
            return None, [f"'resume': '{path}' is not a checkpoint of the unfinished run in "
                          f"'{output_dir}'; resume into an empty output_dir or from "
                          f"'{checkpoints}/checkpoint-<step>'"]
        return str(Path(path).expanduser()), []
    latest = latest_checkpoint(checkpoints, required)
    if latest is not None and (resume is True or auto):
        return str(latest), []
    if resume is True:
        return None, [f"'resume: true': no complete checkpoint in '{checkpoints}' (a run saves "
                      "checkpoints with save_strategy: steps and save_steps, or save_steps for "
                      "ppo); set resume: false to start fresh"]
    if empty:
        return None, []
    if not _only_checkpoints(out):
        return None, [f"'output_dir': '{output_dir}' is a non-empty folder that was not written "
                      f"by {command}; "
                      + ("refusing to replace it" if overwrite else "choose another folder")]
    if latest is not None and not overwrite:
        return None, [f"'output_dir': '{output_dir}' holds an unfinished run (newest complete "
                      f"checkpoint: {latest.name}); set resume: true to continue it or "
                      "overwrite: true to start over"]
    if not overwrite and not auto:
        return None, [f"'output_dir': '{output_dir}' holds an unfinished run with no complete "
                      "checkpoint; set overwrite: true to start over"]
    return None, []
