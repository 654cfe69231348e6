"""Where models run and in which dtype their weights load: one rule for every model moalign
loads itself (policies, the base of a front, ``moalign eval``'s models, reward models).

- :func:`run_device`: ``cuda`` (this process's GPU: ``LOCAL_RANK`` under a launcher) when CUDA
  is available and the run does not ask for the CPU (``use_cpu``, or accelerate's
  ``ACCELERATE_USE_CPU``), else ``cpu``.
- :func:`resolve_dtype`: a ``dtype`` key (:data:`DTYPES`) for that device: ``auto`` is
  bfloat16 on a CUDA device that supports it, float32 everywhere else (a CPU keeps float32
  weights; a run's ``precision`` may still compute in bfloat16 there).
- :func:`place`: a model moved to the device (and optionally cast), returned.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["DTYPES", "dtype_problems", "place", "resolve_dtype", "run_device"]

#: What a ``dtype`` key may say.
DTYPES = ("auto", "float32", "bfloat16", "float16")
_TRUE = ("1", "true", "yes", "on")


def _env_cpu() -> bool:
    return os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in _TRUE


def run_device(use_cpu: bool | None = None) -> Any:
    """The ``torch.device`` a run's models go to: this process's CUDA device when CUDA is
    available and neither ``use_cpu`` nor ``ACCELERATE_USE_CPU`` asks for the CPU."""
    import torch

    if use_cpu or (use_cpu is None and _env_cpu()) or not torch.cuda.is_available():
        return torch.device("cpu")
    rank = os.environ.get("LOCAL_RANK", "").strip()
    index = int(rank) if rank.isdigit() else torch.cuda.current_device()
    return torch.device("cuda", index % max(torch.cuda.device_count(), 1))


def _device_type(device: Any) -> str:
    return str(getattr(device, "type", device or "cpu")).split(":")[0]


def resolve_dtype(dtype: Any = "auto", device: Any = None, precision: str | None = None) -> str:
    """``"float32"``, ``"bfloat16"`` or ``"float16"`` for a ``dtype`` key on ``device``
    (default: :func:`run_device`). ``auto``: bfloat16 on CUDA with bfloat16, else float32;
    a run whose resolved ``precision`` is ``float32`` keeps float32 weights under ``auto``."""
    import torch

    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    if dtype is None:
        dtype = "auto"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    if precision == "float32":
        return "float32"
    kind = _device_type(run_device() if device is None else device)
    if kind == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def dtype_problems(value: Any, key: str = "dtype") -> list[str]:
    """A ``dtype`` value that is not one of :data:`DTYPES`, as a config problem."""
    if isinstance(value, str) and value in DTYPES:
        return []
    return [f"'{key}' must be one of {', '.join(DTYPES)}, got {value!r}"]


def place(model: Any, device: Any = None, dtype: Any = None) -> Any:
    """``model`` on ``device`` (default :func:`run_device`), cast to ``dtype`` (a resolved
    name or torch dtype; ``None``: kept); returned (``nn.Module.to`` moves in place)."""
    import torch

    device = run_device() if device is None else torch.device(device)
    if dtype is not None:
        dtype = getattr(torch, resolve_dtype(dtype, device)) if not isinstance(
            dtype, torch.dtype) else dtype
        return model.to(device=device, dtype=dtype)
    return model.to(device)
