"""The one way a trainer keeps its own state in a checkpoint folder.

Beside the weights, a trainer needs its own state to continue exactly where it stopped: the
objectives it trains and its trade-off's state (weights, schedule position, Lagrange
multipliers, normalizer statistics), and for MO-PPO, whose training loop is moalign's own, also
its step, prompt order, metrics log, optimizer and RNG. Every such file goes through two
functions:

- :func:`save_state` writes one named file atomically (:mod:`moalign.storage.files`: a
  temporary sibling renamed into place), JSON for a ``.json`` name and ``torch.save`` for any
  other;
- :func:`load_state` reads it back through the checked reader (:mod:`moalign.storage.readers`):
  a missing, empty, truncated or foreign file is a :class:`~moalign.errors.CheckpointError`
  naming it before anything in it is used, a JSON state must hold its ``required`` keys, and a
  state saved for other objectives is refused.

The TRL-based trainers (MO-DPO, MODPO, MO-GRPO) take both through the mixin
:class:`TrainerState`; MO-PPO calls them from its ``save_checkpoint`` / ``load_checkpoint``. The
files keep the names checkpoints have always had, so an earlier checkpoint still resumes:
``moalign_state.json`` (DPO family), ``moalign_tradeoff.json`` (MO-GRPO), and
``trainer_state.json``, ``optimizer.pt`` and ``rng_state_<process>.pt`` (MO-PPO).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from moalign.errors import CheckpointError
from moalign.storage import readers
from moalign.storage.files import atomic_write_bytes, atomic_write_json
from moalign.trainers.resume import ValidatedResume

__all__ = ["STATE_FILE", "TrainerState", "load_state", "restore_rng", "rng_state", "save_state"]

#: The state file of the DPO-family trainers (the default of :class:`TrainerState`).
STATE_FILE = "moalign_state.json"


def save_state(folder: str | os.PathLike, name: str, state: Any) -> Path:
    """Write ``state`` to ``folder/name`` atomically: JSON for a ``.json`` name (a JSON object
    of plain values), ``torch.save`` otherwise (tensors and RNG states too)."""
    path = Path(folder) / name
    if path.suffix == ".json":
        return atomic_write_json(path, state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_state(folder: str | os.PathLike, name: str, *, required: Sequence[str] = (),
               objectives: Sequence[str] | None = None, what: str = "moalign state") -> Any:
    """What :func:`save_state` wrote to ``folder/name``, read through the checked reader
    (``what`` names the file in its errors; a JSON state must hold the ``required`` keys). With
    ``objectives``, a state that names other ``objectives`` than these is a
    :class:`CheckpointError`."""
    path = Path(folder) / name
    if path.suffix == ".json":
        state = readers.read_json(path, required=required, what=what)
    else:  # loaded with weights_only=True: a pickle never runs code
        state = readers.torch_load(path, what=what)
    saved = state.get("objectives") if isinstance(state, Mapping) else None
    if objectives is not None and saved is not None and list(saved) != list(objectives):
        raise CheckpointError(f"checkpoint '{folder}' was trained on {list(saved)}, not "
                              f"{list(objectives)}")
    return state


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The global torch RNG (sampling: each process has its own stream, see
    :func:`moalign.trainers.ppo_distributed.seed_sampling`), ``generator`` (minibatch order)
    and CUDA RNG states, of this process."""
    return {"torch": torch.get_rng_state(), "generator": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(state: Mapping[str, Any], generator: torch.Generator) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainerState(ValidatedResume):
    """Mixin (before the ``transformers.Trainer`` subclass) that keeps the trainer's own state
    in each ``checkpoint-<step>`` folder, in the file ``state_file``.

    The state (:meth:`checkpoint_state`: the objectives and ``self.tradeoff``'s state by
    default) is written before the ``Trainer`` writes ``trainer_state.json``, its last file, and
    a folder without that is never resumed (:mod:`moalign.trainers.resume`): a kill at any moment
    leaves a whole checkpoint or one that is skipped. ``resume_required`` names the file, so a
    checkpoint without it is never resumed either. It is restored
    (:meth:`load_checkpoint_state`) after the weights, in ``_load_optimizer_and_scheduler``,
    which the ``Trainer`` calls on every resume whatever the backend (DeepSpeed loads the
    weights itself and never calls ``_load_from_checkpoint``), and in ``_load_from_checkpoint``
    (restoring it twice is harmless).
    """

    #: The file each checkpoint keeps the state in (a subclass setting it sets
    #: ``resume_required = (state_file,)`` too).
    state_file: ClassVar[str] = STATE_FILE
    resume_required: ClassVar[tuple[str, ...]] = (STATE_FILE,)

    def checkpoint_state(self) -> dict[str, Any]:
        """What each checkpoint keeps: the objectives and the trade-off's state."""
        return {"objectives": list(self.tradeoff.names), "tradeoff": self.tradeoff.state_dict()}

    def load_checkpoint_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`checkpoint_state` (a state saved before the trade-off had its own
        entry holds the same keys at the top level)."""
        self.tradeoff.load_state_dict(state.get("tradeoff", state))

    def _save_checkpoint(self, model, trial):
        state = self.checkpoint_state()
        if self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = os.path.join(self._get_output_dir(trial=trial),
                                  f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            save_state(folder, self.state_file, state)
        super()._save_checkpoint(model, trial)

    def _restore_state(self, checkpoint) -> None:
        self.load_checkpoint_state(load_state(checkpoint, self.state_file,
                                              objectives=list(self.tradeoff.names)))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._restore_state(resume_from_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            self._restore_state(checkpoint)
