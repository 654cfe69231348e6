"""MO-PPO on accelerate's distributed engines: what its own loop needs that a ``Trainer`` gets
from ``TrainingArguments``.

- **The process group.** :func:`process_group_kwargs` passes the config's ``ddp_backend`` to
  ``Accelerator`` (TRL's trainers pass theirs through ``TrainingArguments``): several CPU
  processes under DeepSpeed need ``gloo``, which accelerate does not choose by itself there.
- **DeepSpeed's ``auto`` values.** accelerate fills ``train_micro_batch_size_per_gpu`` from a
  prepared dataloader, and MO-PPO prepares none: :func:`fill_deepspeed_autos` sets it to the
  rows of one forward and backward (``mini_batch_size``) and ``gradient_clipping`` to
  ``max_grad_norm``, so the accelerate configs of ``examples/accelerate/`` work unchanged.
- **Whole weights from partitions.** Under ZeRO-3 every process holds a slice of each
  parameter (empty tensors outside a forward). :func:`gathered_state` gathers the prepared
  module's state (collective; the main process gets it); :func:`part_state` cuts out the
  policy's or the critic's part, which their ``save_pretrained`` / ``save`` then write.
- **Optimizer state.** A ZeRO optimizer's state is partitioned too; the engine writes and
  reads it itself, each process its own files, into a ``global_step<N>`` folder of the
  checkpoint (:func:`save_engine_state` / :func:`load_engine_state`), the layout the Hugging
  Face ``Trainer`` writes and :mod:`moalign.storage.checkpoints` recognizes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["fill_deepspeed_autos", "gathered_state", "is_deepspeed", "load_engine_state",
           "part_state", "process_group_kwargs", "save_engine_state"]


def process_group_kwargs(backend: str | None) -> list[Any]:
    """``Accelerator(kwargs_handlers=...)`` that start the process group with ``backend``
    (none: accelerate's choice). A single process started without a launcher has no process
    group, and the backend is then not used (accelerate would try to start a group)."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1 or (
        torch.distributed.is_available() and torch.distributed.is_initialized())
    if not backend or not launched:
        return []
    from accelerate.utils import InitProcessGroupKwargs

    return [InitProcessGroupKwargs(backend=backend)]


def is_deepspeed(accelerator: Any) -> bool:
    return str(accelerator.distributed_type).endswith("DEEPSPEED")


def fill_deepspeed_autos(accelerator: Any, micro_batch_size: int,
                         max_grad_norm: float | None) -> None:
    """Set the DeepSpeed config's ``auto`` micro-batch size and gradient clipping (before
    ``prepare``): without a dataloader accelerate cannot fill the first and fills the second
    with 1.0."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None) if is_deepspeed(accelerator) \
        else None
    if plugin is None:
        return
    config = plugin.deepspeed_config
    if plugin.is_auto("train_micro_batch_size_per_gpu"):
        config["train_micro_batch_size_per_gpu"] = int(micro_batch_size)
    if plugin.is_auto("gradient_clipping"):
        config["gradient_clipping"] = float(max_grad_norm or 0.0)


def _zero3(model: Any) -> bool:
    check = getattr(model, "zero_optimization_partition_weights", None)
    return bool(check()) if callable(check) else False


def gathered_state(accelerator: Any, model: Any, trainable_only: bool = False
                   ) -> dict[str, torch.Tensor] | None:
    """The whole state dict of the prepared ``model`` (an engine or a wrapper), gathered from
    every process's partitions where the weights are sharded (ZeRO-3, FSDP), on the CPU.
    Collective: call it on every process. Returns the state on the main process and ``None``
    on the others; ``None`` everywhere where nothing is sharded (the module's own
    ``state_dict()`` is then whole on every process). ``trainable_only`` leaves the frozen
    parameters out (a LoRA policy's base), where the engine can."""
    if is_deepspeed(accelerator) and _zero3(model):
        state = model._zero3_consolidated_16bit_state_dict(exclude_frozen_parameters=trainable_only)
        return state if accelerator.is_main_process else None
    if str(accelerator.distributed_type).endswith("FSDP"):
        state = accelerator.get_state_dict(model)
        return state if accelerator.is_main_process else None
    return None


def part_state(state: Mapping[str, torch.Tensor] | None, part: str
               ) -> dict[str, torch.Tensor] | None:
    """The entries of ``part`` (``"policy"`` or ``"critic"``, the submodules of
    :class:`~moalign.trainers.ppo_models.PolicyAndCritic`) in a :func:`gathered_state`, without
    the prefix; ``None`` for ``None``."""
    if state is None:
        return None
    prefix = f"{part}."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def save_engine_state(model: Any, folder: str | Path, step: int) -> str:
    """The DeepSpeed engine's checkpoint (every process writes its partition of the optimizer
    state) into ``folder/global_step<step>`` and ``folder/latest``; frozen parameters are left
    out (the weights are saved whole beside it). Collective. Returns the tag."""
    tag = f"global_step{step}"
    model.save_checkpoint(str(folder), tag=tag, exclude_frozen_parameters=True)
    return tag


def load_engine_state(model: Any, folder: str | Path, tag: str) -> None:
    """Restore what :func:`save_engine_state` wrote (trainable weights and optimizer state;
    the engine has no LR schedule of its own). Collective."""
    from moalign.errors import CheckpointError

    loaded, _ = model.load_checkpoint(str(folder), tag=tag, load_module_strict=False,
                                      load_optimizer_states=True, load_lr_scheduler_states=False)
    if loaded is None:
        raise CheckpointError(f"the DeepSpeed engine found no state '{tag}' in '{folder}'")
