"""Rewarded soups: interpolate policies fine-tuned for different objectives.

Ramé et al., "Rewarded soups: towards Pareto-optimal alignment by interpolating weights
fine-tuned on diverse rewards" (NeurIPS 2023). With LoRA, every policy is the shared base plus
a low-rank update ``ΔW_k = s_k B_k A_k``; the soup for weights ``w`` is the base plus
``Σ_k w_k ΔW_k``, which is exactly the interpolation of the full weights.

peft's ``add_weighted_adapter(combination_type="linear")`` scales ``A`` and ``B`` separately,
which is *not* this interpolation; ``combination_type="cat"`` stacks the factors, ``w_k s_k A_k``
under ``B_k`` (rank ``Σ r_k``), and is exact if the stacked adapter's own scaling is 1. peft
gives it ``lora_alpha = r = Σ r_k`` but copies the first ingredient's ``use_rslora``, and
rsLoRA's scaling ``lora_alpha / sqrt(r)`` is then ``sqrt(Σ r_k)``, not 1: :func:`soup_adapter`
turns rsLoRA off on the soup (its ingredients' own scales are already folded into ``A``), so
the soup is exact for plain LoRA, rsLoRA and a mix of both. Options under which an adapter is
more than ``s B A`` (DoRA, trained biases, ...) are refused
(:func:`moalign.models.lora.soup_lora_problems`). peft also ignores a new adapter whose name
already exists, so an old soup of the same name is deleted first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from moalign.errors import ConfigError
from moalign.fronts.context import Context, Policy
from moalign.models.lora import soup_lora_problems
from moalign.weights import as_weights, format_weights

__all__ = ["policies", "soup_adapter", "soup_state_dicts"]


def soup_adapter(
    model: Any, adapters: Sequence[str], weights: Sequence[float], name: str | None = None
) -> str:
    """Add (and activate) the adapter ``Σ_k w_k ΔW_k`` to a peft model; return its name.

    A :class:`~moalign.errors.ConfigError` names every ingredient option the soup cannot
    interpolate (DoRA, ``bias`` other than ``"none"``, ...)."""
    adapters = list(adapters)
    missing = [a for a in adapters if a not in model.peft_config]
    if missing:
        raise ValueError(
            f"adapters {missing} are not loaded in the model (loaded: {sorted(model.peft_config)})"
        )
    problems = [p for a in adapters for p in soup_lora_problems(model.peft_config[a], key=a)]
    if problems:
        raise ConfigError(problems, source="the LoRA configs of the soup's adapters")
    w = as_weights(weights, len(adapters))
    name = name or re.sub(r"[^A-Za-z0-9_]", "_", "soup_" + format_weights(w, 4))
    if name in adapters:
        raise ValueError(f"the soup's name '{name}' is one of its ingredients")
    if name in model.peft_config:
        model.delete_adapter(name)
    model.add_weighted_adapter(adapters, [float(x) for x in w], name, combination_type="cat")
    _unit_scaling(model, name)
    model.set_adapter(name)
    return name


def _unit_scaling(model: Any, name: str) -> None:
    """Give the stacked adapter ``name`` the scaling 1 its factors assume, in memory and in the
    config it is saved with (``lora_alpha = r``, no rsLoRA)."""
    from peft.tuners.lora import LoraLayer

    config = model.peft_config[name]
    config.use_rslora = False
    if config.lora_alpha != config.r:
        raise RuntimeError(f"peft gave the soup lora_alpha={config.lora_alpha} for rank "
                           f"{config.r}; expected lora_alpha == r (scaling 1)")
    for module in model.modules():
        if isinstance(module, LoraLayer) and name in module.scaling:
            module.use_rslora[name] = False
            module.set_scale(name, 1.0)
            if module.scaling[name] != 1.0:
                raise RuntimeError(f"the soup's LoRA scaling is {module.scaling[name]}, not 1")


def soup_state_dicts(
    state_dicts: Sequence[Mapping[str, Any]], weights: Sequence[float]
) -> dict[str, Any]:
    """``Σ_k w_k θ_k`` for full fine-tunes of the same initialization (floating tensors only;
    other entries are taken from the first state dict)."""
    if not state_dicts:
        raise ValueError("soup_state_dicts needs at least one state dict")
    w = as_weights(weights, len(state_dicts))
    keys = set(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], start=1):
        if set(sd) != keys:
            diff = sorted(keys.symmetric_difference(sd))[:5]
            raise ValueError(f"state dict {i} does not match state dict 0 (keys differ: {diff})")
    out: dict[str, Any] = {}
    for key, first in state_dicts[0].items():
        if getattr(first, "is_floating_point", lambda: False)():
            acc = first.detach().double() * float(w[0])
            for wk, sd in zip(w[1:], state_dicts[1:]):
                acc = acc + sd[key].detach().double() * float(wk)
            out[key] = acc.to(first.dtype)
        else:
            out[key] = first
    return out


def policies(ctx: Context) -> Iterator[tuple[str, np.ndarray, Policy]]:
    """The ``soup`` method: one run per objective, then the exact soup at every weight vector:
    of the LoRA updates (:func:`soup_adapter`), or with ``lora: null`` of the fully fine-tuned
    weights (:func:`soup_state_dicts`, Rewarded Soups' original form; the policy at a vertex is
    that run's model exactly).

    Consumed lazily: a point's policy is valid until the next one replaces the soup.
    """
    runs = ctx.per_objective_runs()
    if ctx.cfg.lora is None:
        yield from _full_soups(ctx, runs)
        return
    model = [ctx.adapter(r) for r in runs][-1]
    for w in ctx.weight_vectors():
        pid = format_weights(w)
        name = soup_adapter(model, runs, w, name="soup")
        # peft saves a named adapter in a subfolder of that name
        yield pid, w, Policy(model, adapter=name, checkpoint=f"points/{pid}/adapter/{name}")


def _full_soups(ctx: Context, runs: list[str]) -> Iterator[tuple[str, np.ndarray, Policy]]:
    """Soups of fully fine-tuned runs: ``Σ_k w_k θ_k`` loaded into one copy of the base (not
    saved: a point is its runs and its weights)."""
    import copy

    states = [ctx.full_model(r).state_dict() for r in runs]
    model = copy.deepcopy(ctx.base).eval()
    for w in ctx.weight_vectors():
        model.load_state_dict(soup_state_dicts(states, w))
        yield format_weights(w), w, Policy(model, adapter=None)
