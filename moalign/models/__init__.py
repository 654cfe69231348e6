"""Models: loading SFT policies (folder, hub id, GGUF, adapter, the embedded SmolLM2), the one
LoRA options builder, model specs, and tiny random models.

- :mod:`moalign.models.loading`: :func:`load_policy`, :func:`embedded_sft_checkpoint`, cache
  locations (``$MOALIGN_CACHE``, default ``~/.cache/moalign``);
- :mod:`moalign.models.lora`: :func:`lora_config` (every ``peft.LoraConfig`` moalign builds, from
  the one set of defaults :data:`LORA_DEFAULTS`), :func:`apply_lora`, :func:`lora_problems`;
- :mod:`moalign.models.placement`: :func:`run_device` (the GPU when there is one, unless the run
  asks for the CPU), :func:`resolve_dtype` (the ``dtype`` key), :func:`place`;
- :mod:`moalign.models.specs`: the model names a config may use (``tiny``, ``smollm2``, a path)
  and their up-front checks;
- :mod:`moalign.models.tiny`: :func:`tiny_tokenizer`, :func:`tiny_causal_lm`,
  :func:`tiny_reward_model`, offline, for tests and plugin authors.

Nothing heavy is imported until a name is used.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "loading": ["DamagedCheckpointError", "EMBEDDED_NAMES", "INSTALL_SMOLLM2", "ParameterCount",
                "cache_root", "count_parameters", "default_reward_model_path",
                "embedded_sft_checkpoint", "load_policy", "prepare_tokenizer", "quiet_transformers",
                "resolve_model_source"],
    "lora": ["LORA_ALIASES", "LORA_DEFAULTS", "apply_lora", "as_lora_config", "flat_lora_options",
             "lora_config", "lora_options", "lora_problems", "soup_lora_problems"],
    "placement": ["DTYPES", "dtype_problems", "place", "resolve_dtype", "run_device"],
    "precision": ["PRECISIONS", "precision_problems", "resolve_precision", "torch_dtype"],
    "specs": ["is_embedded", "load_model_spec", "model_problems", "resolve_model"],
    "tiny": ["CHATML_TEMPLATE", "tiny_causal_lm", "tiny_reward_model", "tiny_tokenizer"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
