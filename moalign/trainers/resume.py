"""Resuming a TRL-based trainer only from a checkpoint that passes moalign's checks.

``transformers.Trainer.train(resume_from_checkpoint=True)`` takes the highest-numbered
``checkpoint-*`` folder, whole or half-written (``get_last_checkpoint`` looks at names only).
:class:`ValidatedResume`, mixed into moalign's TRL-based trainers, resolves the argument first
through the one :func:`~moalign.storage.checkpoints.latest_checkpoint`: ``True`` becomes the
newest *complete* checkpoint (damaged ones are skipped with a warning), and an explicit folder is
checked and refused with a :class:`~moalign.errors.CheckpointError` naming what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from moalign.errors import CheckpointError
from moalign.storage.checkpoints import check_trainer_checkpoint, latest_checkpoint

__all__ = ["ValidatedResume", "resume_path"]


def resume_path(resume_from_checkpoint: str | os.PathLike | bool | None, output_dir: str,
                required: Sequence[str] = ()) -> str | None:
    """The checkpoint folder to resume from (``None``: start fresh); see the module docstring."""
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        path = latest_checkpoint(output_dir, required)
        if path is None:
            raise CheckpointError(f"no complete checkpoint to resume in '{output_dir}'")
        return str(path)
    check_trainer_checkpoint(resume_from_checkpoint, required)
    return str(resume_from_checkpoint)


class ValidatedResume:
    """Mixin (before the TRL trainer class) that routes ``train(resume_from_checkpoint=...)``
    through :func:`resume_path`; ``resume_required`` names the files the trainer's own
    ``_load_*`` hooks read, so a checkpoint without them is never resumed."""

    resume_required: tuple[str, ...] = ()

    def train(self, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        path = resume_path(resume_from_checkpoint, self.args.output_dir, self.resume_required)
        return super().train(path, *args, **kwargs)
