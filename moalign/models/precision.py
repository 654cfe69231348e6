"""Numeric precision by machine: ``precision: auto`` picks bfloat16 where the hardware runs it
fast, float32 elsewhere.

Detected, not guessed: on CUDA, ``torch.cuda.is_bf16_supported()``; on an x86 CPU, the
``amx_bf16`` or ``avx512_bf16`` instruction flags (Linux ``/proc/cpuinfo``), which the bfloat16
matrix kernels of PyTorch use (without them bfloat16 is emulated and slower than float32). A CPU
without those flags, or one whose flags cannot be read, gets float32.

The environment variable ``MOALIGN_CPU_BF16`` stands in for the flags: ``1`` treats the CPU as
having bfloat16 units, ``0`` as lacking them (bfloat16 still runs where they are missing, only
emulated and slower). The test suite sets ``0`` unless told otherwise, so that no result depends
on which CPU runs it, and is run once with ``1`` to cover the bfloat16 paths.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["CPU_BF16_ENV", "PRECISIONS", "bf16_problems", "cpu_bf16_flags", "current_precision", "describe_precision",
           "precision_problems", "precision_scope", "resolve_precision", "torch_dtype"]

#: What a config's ``precision`` may say.
PRECISIONS = ("auto", "float32", "bfloat16")
_FAST_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


#: The environment variable that stands in for the CPU's bfloat16 flags (``1`` or ``0``).
CPU_BF16_ENV = "MOALIGN_CPU_BF16"
#: What :func:`cpu_bf16_flags` reports when ``MOALIGN_CPU_BF16=1``.
_FORCED_FLAGS = (f"{CPU_BF16_ENV}=1",)


def _forced_cpu_bf16() -> bool | None:
    """``MOALIGN_CPU_BF16`` as a bool (``None`` when unset or empty)."""
    value = os.environ.get(CPU_BF16_ENV, "").strip()
    if not value:
        return None
    if value not in ("0", "1"):
        raise ValueError(f"{CPU_BF16_ENV} must be 0 or 1 (or unset), got {value!r}")
    return value == "1"


def cpu_bf16_flags(cpuinfo: str = "/proc/cpuinfo") -> tuple[str, ...]:
    """The bfloat16 instruction flags this CPU reports (empty when none, or unreadable), or
    what ``MOALIGN_CPU_BF16`` says in their place."""
    forced = _forced_cpu_bf16()
    if forced is not None:
        return _FORCED_FLAGS if forced else ()
    return _read_cpu_flags(cpuinfo)


@functools.lru_cache(maxsize=4)
def _read_cpu_flags(cpuinfo: str) -> tuple[str, ...]:
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[-1].split())
            return tuple(f for f in _FAST_BF16_FLAGS if f in flags)
    return ()


def resolve_precision(precision: str = "auto", *, device: str | None = None) -> str:
    """``"float32"`` or ``"bfloat16"`` for a config's ``precision`` on this machine.

    ``device`` is ``"cuda"`` or ``"cpu"`` (default: CUDA when available).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if cpu_bf16_flags() else "float32"


def torch_dtype(precision: str) -> Any:
    """The torch dtype of a resolved precision."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[resolve_precision(precision)]


def precision_problems(value: Any, key: str = "precision") -> list[str]:
    """A ``precision`` value that is not one of :data:`PRECISIONS`, as a config problem."""
    if value in PRECISIONS:
        return []
    return [f"'{key}' must be one of {', '.join(PRECISIONS)}, got {value!r}"]


def bf16_problems(precision: Any, bf16: Any, key: str = "bf16") -> list[str]:
    """A trainer's explicit ``bf16`` that contradicts an explicit ``precision``, as a config
    problem (``key``: where ``bf16`` was given); ``precision: auto`` lets ``bf16`` decide.
    ``moalign train`` and front traces both check through here."""
    if precision not in PRECISIONS or precision == "auto" or not isinstance(bf16, bool):
        return []
    if bf16 == (precision == "bfloat16"):
        return []
    return [f"'{key}: {str(bf16).lower()}' contradicts 'precision: {precision}'; drop {key} "
            "(precision sets it)"]


def describe_precision(requested: str, resolved: str | None = None, *,
                       device: str | None = None) -> str:
    """One line for a run's header: which precision runs and why, e.g. ``float32 (auto: this
    CPU has no amx_bf16 / avx512_bf16 units, so bfloat16 would be emulated and slower)``."""
    resolved = resolved or resolve_precision(requested, device=device)
    if requested != "auto":
        return f"{resolved} (forced by precision: {requested})"
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        why = "CUDA " + ("runs bfloat16" if resolved == "bfloat16" else "without bfloat16")
    elif _forced_cpu_bf16() is not None:
        why = f"{CPU_BF16_ENV}={int(resolved == 'bfloat16')} stands in for the CPU's units"
    elif resolved == "bfloat16":
        why = f"this CPU has {' / '.join(cpu_bf16_flags())}"
    else:
        why = (f"this CPU has no {' / '.join(_FAST_BF16_FLAGS)} units, so bfloat16 would be "
               "emulated and slower")
    return f"{resolved} (auto: {why})"


_SCOPE: contextvars.ContextVar[str | None] = contextvars.ContextVar("moalign_precision",
                                                                    default=None)


def current_precision() -> str | None:
    """The resolved precision of the run in progress (:func:`precision_scope`), else ``None``:
    code that computes without being told a precision (reward-model scoring) follows it."""
    return _SCOPE.get()


@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[str]:
    """Inside the block, :func:`current_precision` is ``precision`` resolved on this machine."""
    token = _SCOPE.set(resolve_precision(precision))
    try:
        yield _SCOPE.get()
    finally:
        _SCOPE.reset(token)
