"""The weights a model evaluates with: the run's precision, the active LoRA adapter merged.

:func:`inference_weights` is a context manager for evaluation (log-probs, generation, reward
scoring). Inside it:

- in ``bfloat16``, every floating parameter holds a bfloat16 copy of its weights (LoRA
  factors included, kept apart from the base weights: a LoRA update is often smaller than
  the rounding step of a bfloat16 weight, so merging it there would erase it);
- in ``float32``, the active LoRA adapter of a peft model is merged into a float32 copy of
  each base weight it modifies, and peft's LoRA layers run the base layer alone, so a point
  of a front costs what the plain model costs (no per-adapter Python work in every layer).

Nothing is changed in place: the original tensors are put back on exit, bit for bit, so the
float32 weights that training starts from are never rounded, and a model evaluated in
bfloat16 trains again in float32. Adapters that are more than ``scale * B @ A`` (DoRA, LoRA
biases, non-Linear layers) are never merged; they run as peft runs them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from moalign.models.precision import torch_dtype

__all__ = ["inference_weights", "mergeable_lora_layers"]


def _lora_layers(model: Any) -> list[Any]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def mergeable_lora_layers(model: Any) -> list[Any] | None:
    """The LoRA layers of ``model`` whose active adapters can be merged exactly into a copy of
    the base weight (plain ``Linear`` LoRA, no DoRA / LoRA bias, adapters enabled and not
    already merged); ``[]`` without LoRA layers, ``None`` when some layer cannot be merged."""
    from peft.tuners.lora import Linear

    layers = _lora_layers(model)
    for m in layers:
        if type(m) is not Linear or m.disable_adapters or m.merged:
            return None
        active = [a for a in m.active_adapters if a in m.lora_A]
        if any(a in getattr(m, "lora_variant", {}) or getattr(m, "lora_bias", {}).get(a)
               for a in active):
            return None
        if not getattr(m.get_base_layer().weight, "is_floating_point", lambda: False)():
            return None  # quantized base weights
    return layers


@contextlib.contextmanager
def inference_weights(model: Any, precision: str | None = "float32", *,
                      merge: bool = True) -> Iterator[Any]:
    """Evaluate ``model`` in ``precision`` (``float32``, ``bfloat16``, ``auto``; ``None``:
    as it is) with its active LoRA adapter merged (float32 only, when ``merge``); see the
    module docstring. Yields the model."""
    if precision is None:
        yield model
        return
    import torch

    dtype = torch_dtype(precision)
    saved: list[tuple[Any, Any]] = []  # (parameter, its own data)
    flagged: list[tuple[Any, list[str]]] = []  # (LoRA layer, merged_adapters before)
    try:
        with torch.no_grad():
            layers = mergeable_lora_layers(model) if merge and dtype == torch.float32 else None
            for m in layers or []:
                active = [a for a in m.active_adapters if a in m.lora_A]
                if not active:
                    continue
                weight = m.get_base_layer().weight
                merged = weight.detach().to(torch.float32).clone()
                for a in active:
                    merged += m.get_delta_weight(a).to(torch.float32)
                saved.append((weight, weight.data))
                weight.data = merged
                flagged.append((m, list(m.merged_adapters)))
                m.merged_adapters = list(active)  # peft then runs the base layer alone
            done = {id(p) for p, _ in saved}
            for p in model.parameters():
                if p.is_floating_point() and p.dtype != dtype and id(p) not in done:
                    saved.append((p, p.data))
                    p.data = p.data.to(dtype)
        yield model
    finally:
        for m, before in flagged:
            m.merged_adapters = before
        for p, data in reversed(saved):
            p.data = data
