"""LoRA (Hu et al. 2021): the one place moalign turns LoRA options into a ``peft.LoraConfig``.

Every trainer, stage and front builds its adapter configuration with :func:`lora_config` and
checks a user's options with :func:`lora_problems` before any model loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from moalign.errors import ModelError, did_you_mean

__all__ = ["LORA_ALIASES", "LORA_DEFAULTS", "apply_lora", "as_lora_config", "flat_lora_options",
           "lora_config", "lora_options", "lora_problems", "soup_lora_problems",
           "target_module_problems"]

#: moalign's LoRA defaults, the one set every path starts from (``moalign train``, front traces,
#: ``moalign sft``, ``moalign reward`` with method ``lora``, :func:`~moalign.models.load_policy`):
#: rank 16, alpha 32, dropout 0.05 on the attention projections q/k/v/o of Llama-family models
#: such as SmolLM2. Keys are ``peft.LoraConfig`` field names.
LORA_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
    "target_modules": ("q_proj", "k_proj", "v_proj", "o_proj"),
})
#: Short spellings accepted for ``LoraConfig`` fields (``lora: {r: 8, alpha: 16}``).
LORA_ALIASES: Mapping[str, str] = MappingProxyType({"alpha": "lora_alpha", "dropout": "lora_dropout"})
#: The flat keys of the SFT and reward-model configs (``lora_r: 8``) -> ``LoraConfig`` fields.
FLAT_LORA_KEYS: Mapping[str, str] = MappingProxyType({
    "lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
    "lora_target_modules": "target_modules",
})


def _lora_fields() -> set[str]:
    from peft import LoraConfig

    return {f.name for f in dataclasses.fields(LoraConfig)}


def lora_options(lora: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The complete LoRA options of a config mapping: short spellings (:data:`LORA_ALIASES`)
    turned into ``LoraConfig`` field names, then :data:`LORA_DEFAULTS` for every option not
    given. Two spellings of one option, or an option ``LoraConfig`` does not have, are a
    :class:`ModelError` listing the valid names."""
    given = dict(lora or {})
    valid = _lora_fields()
    unknown = sorted(k for k in given if k not in valid and k not in LORA_ALIASES)
    if unknown:
        raise ModelError(
            f"unknown LoRA option(s) {', '.join(unknown)}; valid: "
            f"{', '.join(sorted(LORA_ALIASES))} or any LoraConfig field ({', '.join(sorted(valid))})"
        )
    options: dict[str, Any] = {}
    for name, value in given.items():
        field_name = LORA_ALIASES.get(name, name)
        if field_name in options:
            raise ModelError(f"LoRA option '{field_name}' is given twice ('{name}' and "
                             f"'{field_name}'); keep one")
        options[field_name] = value
    return {**LORA_DEFAULTS, **options}


def flat_lora_options(config: Any) -> dict[str, Any]:
    """The LoRA options of a config with flat keys (``lora_r``, ``lora_alpha``,
    ``lora_dropout``, ``lora_target_modules``: ``moalign sft`` and ``moalign reward``), as
    ``LoraConfig`` field names for :func:`lora_config`."""
    return {field_name: getattr(config, key) for key, field_name in FLAT_LORA_KEYS.items()
            if hasattr(config, key)}


def lora_config(task_type: str = "CAUSAL_LM", **options: Any):
    """The ``peft.LoraConfig`` of ``options``: the one builder of every adapter moalign trains.

    ``options`` are ``LoraConfig`` fields or their short spellings ``alpha`` / ``dropout``;
    the ones not given take :data:`LORA_DEFAULTS` (r=16, alpha=32, dropout 0.05, q/k/v/o).
    Extra ``LoraConfig`` fields pass through (e.g. ``modules_to_save=["score"]`` for a reward
    head); an unknown one is a :class:`ModelError` listing the valid names. ``task_type``:
    ``CAUSAL_LM`` (policies) or ``SEQ_CLS`` (reward models). LoRA: Hu et al. 2021."""
    from peft import LoraConfig

    resolved = lora_options(options)
    r, dropout = resolved["r"], resolved["lora_dropout"]
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise ModelError(f"LoRA rank r must be a positive integer, got {r!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ModelError(f"LoRA dropout must be in [0, 1), got {dropout!r}")
    targets = resolved["target_modules"]
    resolved["target_modules"] = targets if isinstance(targets, str) else list(targets)
    resolved["lora_dropout"] = float(dropout)
    return LoraConfig(task_type=task_type, **resolved)


def as_lora_config(lora: Any):
    """``None`` / ``False`` (no adapter), ``True`` (moalign's defaults), a mapping of
    :func:`lora_config` options or a ``peft.LoraConfig`` (used as is) -> ``LoraConfig`` or
    ``None``."""
    if lora is None or lora is False:
        return None
    if lora is True:
        return lora_config()
    if isinstance(lora, Mapping):
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
    """Unknown or badly typed LoRA options in a config mapping, found without loading peft
    models: every key must be a ``LoraConfig`` field or a short spelling of one
    (:data:`LORA_ALIASES`; ``aliases`` adds more accepted names), and given once."""
    if lora is None or lora is False or not isinstance(lora, Mapping):
        return []
    fields = _lora_fields() | set(LORA_ALIASES) | set(aliases)
    problems = []
    for name in lora:
        if name not in fields:
            problems.append(f"'{key}': unknown LoRA option '{name}'{did_you_mean(name, fields)}")
    for short, field_name in LORA_ALIASES.items():
        if short in lora and field_name in lora:
            problems.append(f"'{key}': '{short}' and '{field_name}' are the same option; keep one")
    r = lora.get("r", 1)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        problems.append(f"'{key}': 'r' must be a positive integer, got {r!r}")
    for name in ("lora_alpha", "alpha"):
        alpha = lora.get(name, 1)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            problems.append(f"'{key}': '{name}' must be a positive number, got {alpha!r}")
    for name in ("lora_dropout", "dropout"):
        dropout = lora.get(name, 0.0)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
                or not 0.0 <= dropout < 1.0:
            problems.append(f"'{key}': '{name}' must be a number in [0, 1), got {dropout!r}")
    targets = lora.get("target_modules", LORA_DEFAULTS["target_modules"])
    if not _targets_ok(targets):
        problems.append(f"'{key}': 'target_modules' must be a non-empty list of module names "
                        f"(or one regular expression, or 'all-linear'), got {targets!r}")
    return problems


def _targets_ok(targets: Any) -> bool:
    if isinstance(targets, str):
        return bool(targets.strip())
    return (isinstance(targets, Sequence) and len(targets) > 0
            and all(isinstance(t, str) and t.strip() for t in targets))


def target_module_problems(lora: Any, modules: Mapping[str, str], model: str,
                           key: str = "lora") -> list[str]:
    """LoRA ``target_modules`` that match no module of a model, found from its module names
    (``modules``: full name -> class name, e.g. from a model built on the meta device) before
    any weight loads. Matching follows peft: a list entry matches a module whose name is it or
    ends with ``.<entry>``; a single string is a regular expression the whole name must match;
    ``all-linear`` needs a linear layer. ``model`` names the model in the message."""
    import re

    if not isinstance(lora, Mapping):
        lora = {} if lora is True else None
    if lora is None:
        return []
    targets = lora.get("target_modules", LORA_DEFAULTS["target_modules"])
    if not _targets_ok(targets):
        return []  # lora_problems reports it
    linear = sorted({n.rsplit(".", 1)[-1] for n, cls in modules.items()
                     if cls in ("Linear", "Conv1D") and n})
    if isinstance(targets, str) and targets.strip().lower() == "all-linear":
        return [] if linear else [f"'{key}': 'target_modules: all-linear' but model '{model}' "
                                  "has no linear layer"]
    if isinstance(targets, str):
        try:
            pattern = re.compile(targets)
        except re.error as exc:
            return [f"'{key}': 'target_modules' {targets!r} is not a regular expression ({exc})"]
        missing = [] if any(pattern.fullmatch(n) for n in modules) else [targets]
    else:
        missing = [t for t in targets
                   if not any(n == t or n.endswith("." + t) for n in modules)]
    if not missing:
        return []
    verb = "matches" if len(missing) == 1 else "match"
    return [f"'{key}': 'target_modules' {', '.join(map(repr, missing))} {verb} no module of "
            f"model '{model}'{did_you_mean(missing[0], linear)} (its linear layers are: "
            f"{', '.join(linear) or 'none'})"]


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
