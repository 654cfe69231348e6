"""The policy of moalign's own trainer loop (MO-PPO): the policy and its tokenizer from a path
or an object, and its weights read back from a checkpoint.

A checkpoint folder holds what ``save_pretrained`` writes for the policy (the whole model, or
the adapter of a peft model) so it loads like any checkpoint, plus the trainer's own state
files (:mod:`moalign.trainers.checkpoint_state`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from moalign.errors import CheckpointError, ModelError

__all__ = ["is_peft_model", "load_policy_weights", "resolve_policy"]


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def resolve_policy(model: Any, tokenizer: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a model object or a path / hub id (loaded with
    :func:`moalign.models.load_policy`); the tokenizer is ``tokenizer``, the loaded one, or the
    one of the model's ``_name_or_path``. A tokenizer without a pad token pads with EOS."""
    if isinstance(model, (str, os.PathLike)):
        from moalign.models import load_policy

        model, loaded = load_policy(model)
        tokenizer = tokenizer or loaded
    if tokenizer is None:
        from transformers import AutoTokenizer

        source = getattr(model.config, "_name_or_path", "")
        if not source:
            raise ModelError("pass processing_class: the model was not loaded from a path")
        tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_policy_weights(model: Any, path: Path) -> None:
    """Load what ``model.save_pretrained(path)`` wrote back into ``model`` (in place); every
    file goes through :func:`moalign.storage.readers.load_safetensors` (a damaged one is a
    :class:`CheckpointError` naming it, before any tensor is used)."""
    from moalign.storage.readers import load_safetensors as load_file

    if is_peft_model(model):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors",
                                                   what="policy weights"))
        return
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise CheckpointError(f"no policy weights (model*.safetensors) in '{path}'")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(f, what="policy weights"))
    result = model.load_state_dict(state, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    missing = [k for k in result.missing_keys if k not in tied]
    if result.unexpected_keys or missing:
        raise CheckpointError(f"policy weights in '{path}' do not match the model: missing "
                              f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}")
    model.tie_weights()
