"""LoRA (Hu et al. 2021): the one place moalign turns LoRA options into a ``peft.LoraConfig``.

Every trainer, stage and front builds its adapter configuration with :func:`lora_config` and
checks a user's options with :func:`lora_problems` before any model loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from moalign.errors import ModelError

__all__ = ["apply_lora", "as_lora_config", "lora_config", "lora_problems", "soup_lora_problems"]

def lora_config(
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: list[str] | tuple[str, ...] | str = ("q_proj", "k_proj", "v_proj", "o_proj"),
    task_type: str = "CAUSAL_LM",
    **kwargs: Any,
):
    """A ``peft.LoraConfig`` with moalign's defaults (r=16, alpha=32, dropout 0.05, on the
    attention projections q/k/v/o of Llama-family models such as SmolLM2). Extra keyword
    arguments go to ``LoraConfig`` (e.g. ``modules_to_save=["score"]`` for a reward head);
    an unknown one is a :class:`ModelError` listing the valid names. LoRA: Hu et al. 2021."""
    from peft import LoraConfig

    valid = {f.name for f in dataclasses.fields(LoraConfig)}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ModelError(
            f"unknown LoRA option(s) {', '.join(unknown)}; valid: r, alpha, dropout, "
            f"target_modules, task_type, or any LoraConfig field ({', '.join(sorted(valid))})"
        )
    alpha = kwargs.pop("lora_alpha", alpha)
    dropout = kwargs.pop("lora_dropout", dropout)
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise ModelError(f"LoRA rank r must be a positive integer, got {r!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ModelError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    targets = target_modules if isinstance(target_modules, str) else list(target_modules)
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=float(dropout),
                      target_modules=targets, task_type=task_type, **kwargs)


def as_lora_config(lora: Any):
    if lora is None or lora is False:
        return None
    if lora is True:
        return lora_config()
    if isinstance(lora, dict):
        return lora_config(**lora)
    from peft import LoraConfig

    if isinstance(lora, LoraConfig):
        return lora
    raise ModelError(f"lora must be None, True, a dict or a peft.LoraConfig; got {lora!r}")


def apply_lora(model, lora: Any):
    """Wrap ``model`` with a fresh trainable LoRA adapter (``peft.get_peft_model``); only the
    adapter's parameters stay trainable. Target modules missing from the model are a
    :class:`ModelError` listing the linear layers it does have."""
    from peft import get_peft_model

    config = as_lora_config(lora)
    if config is None:
        return model
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        import torch

        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear)})
        raise ModelError(
            f"cannot add LoRA on {config.target_modules}: {str(exc).rstrip('. ')}. The model's linear layers "
            f"are: {', '.join(linear)}"
        ) from exc


def lora_problems(lora: Any, key: str = "lora", *, aliases: Sequence[str] = ()) -> list[str]:
    """Unknown or badly typed LoRA options in a config mapping (``aliases`` of
    :func:`lora_config`'s own names are accepted too), found without loading peft models."""
    if lora is None or lora is False or not isinstance(lora, Mapping):
        return []
    from peft import LoraConfig

    from moalign.config.checking import did_you_mean

    fields = {f.name for f in dataclasses.fields(LoraConfig)} | set(aliases)
    problems = []
    for name in lora:
        if name not in fields:
            problems.append(f"'{key}': unknown LoRA option '{name}'{did_you_mean(name, fields)}")
    r = lora.get("r", 1)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        problems.append(f"'{key}': 'r' must be a positive integer, got {r!r}")
    return problems


#: LoRA options under which an adapter is not the plain update ``ΔW = s B A`` of a base layer,
#: so a Rewarded Soup (the stacked factors of every ingredient) cannot reproduce the
#: interpolation ``Σ_k w_k ΔW_k``. ``(option, value that is fine, why)``.
_SOUP_REFUSED: tuple[tuple[str, Any, str], ...] = (
    ("use_dora", False, "DoRA rescales each output by a learned magnitude vector, which does "
                        "not interpolate linearly"),
    ("bias", "none", "the base layers' biases are trained and saved by each run but shared by "
                     "every adapter of one model, so they cannot be interpolated"),
    ("lora_bias", False, "the bias of lora_B is not stacked by the soup"),
    ("use_qalora", False, "QALoRA pools the input before lora_A"),
    ("alora_invocation_tokens", None, "activated LoRA applies the update only after its "
                                      "invocation tokens"),
)


def soup_lora_problems(lora: Any, key: str = "lora") -> list[str]:
    """Why adapters trained with these LoRA options cannot be souped (method ``soup``), one
    line per option; ``[]`` when they can (plain LoRA and rsLoRA).

    ``lora`` is a config mapping (the options :func:`lora_config` takes) or a
    ``peft.LoraConfig``; ``None`` / ``True`` / ``False`` mean moalign's default, which is fine.
    Meant for a front config's check before training; :func:`moalign.fronts.soup.soup_adapter`
    applies it to the loaded adapters too.
    """
    if dataclasses.is_dataclass(lora) and not isinstance(lora, type):
        lora = {f.name: getattr(lora, f.name) for f in dataclasses.fields(lora)}
    if not isinstance(lora, Mapping):
        return []
    problems = []
    for name, fine, why in _SOUP_REFUSED:
        value = lora.get(name, fine)
        if value is None or value == fine:
            continue
        problems.append(f"'{key}': '{name}: {_shown(value)}' cannot be used with method soup ({why}); "
                        f"train the per-objective runs with '{name}: {_shown(fine)}'")
    return problems


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)
