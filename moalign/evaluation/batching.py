"""Batches for evaluation: sorted by length, as large as fit, and what they cost.

- :func:`length_batches`: example indices grouped widest first, each batch as many rows as
  ``max_batch_tokens`` padded tokens allow (at most ``batch_size``), so little is padding and
  the matrix kernels get large operands;
- :func:`run_batched`: run a function batch by batch; a batch that runs out of memory is split
  in half and tried again, and the token budget is halved for the batches after it (the
  largest batch that fits, found rather than guessed);
- :func:`measure_throughput` / :func:`record`: tokens (or examples) per second of each kind of
  work (``logprob``, ``generation``, ``scoring``), for the timing summary of a run.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_MAX_BATCH_TOKENS", "Throughput", "device_of", "length_batches",
           "measure_throughput", "record", "run_batched"]

#: Padded tokens per forward pass by default (e.g. 32 sequences of 128 tokens). On a CPU the
#: throughput of a 135M model grows with the batch up to about this size; the logits of such a
#: batch take ~0.8 GB in float32 with a 49k vocabulary.
DEFAULT_MAX_BATCH_TOKENS = 4096


def device_of(model: Any):
    """The device of a model's first parameter (the CPU when it has none)."""
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def length_batches(lengths: Sequence[int], *, batch_size: int,
                   max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS) -> list[list[int]]:
    """Indices of ``lengths`` in batches, longest first (ties in input order).

    A batch padded to its first (widest) row holds at most ``max_batch_tokens`` tokens (at
    least one row, whatever its length; ``None``: no limit) and at most ``batch_size`` rows.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be positive, got {max_batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        width = max(1, lengths[order[start]])
        rows = batch_size if max_batch_tokens is None else max(1, max_batch_tokens // width)
        rows = min(rows, batch_size)
        batches.append(order[start : start + rows])
        start += rows
    return batches


def _out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError))


def run_batched(fn: Callable[[list[int]], None], batches: Sequence[list[int]]) -> None:
    """Call ``fn(indices)`` for every batch; a batch that runs out of memory is split in halves
    (down to single rows, which re-raise), and the later batches are capped at the size that
    worked."""
    cap: int | None = None
    queue = [list(b) for b in batches]
    while queue:
        batch = queue.pop(0)
        if cap is not None and len(batch) > cap:
            queue.insert(0, batch[cap:])
            batch = batch[:cap]
        try:
            fn(batch)
        except Exception as exc:
            if len(batch) == 1 or not _out_of_memory(exc):
                raise
            import gc

            gc.collect()
            half = len(batch) // 2
            cap = half
            queue[:0] = [batch[:half], batch[half:]]


@dataclass
class Throughput:
    """Units and seconds of each kind of evaluation work (see :func:`measure_throughput`)."""

    units: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, kind: str, units: float, seconds: float) -> None:
        self.units[kind] = self.units.get(kind, 0.0) + units
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds

    def rates(self) -> dict[str, dict[str, float]]:
        """``{kind: {"units", "seconds", "per_second"}}``."""
        return {k: {"units": self.units[k], "seconds": round(self.seconds[k], 3),
                    "per_second": round(self.units[k] / self.seconds[k], 2)
                    if self.seconds[k] > 0 else 0.0}
                for k in sorted(self.units)}


_METER: contextvars.ContextVar[Throughput | None] = contextvars.ContextVar(
    "moalign_throughput", default=None)


@contextlib.contextmanager
def measure_throughput() -> Iterator[Throughput]:
    """Inside the block, evaluation records what it computes into the yielded meter:
    ``logprob`` (tokens scored), ``generation`` (new tokens), ``scoring`` (examples)."""
    meter = Throughput()
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


@contextlib.contextmanager
def record(kind: str) -> Iterator[list[float]]:
    """Time the block; the units it appends to the yielded list count as ``kind`` work."""
    units: list[float] = []
    start = time.perf_counter()
    try:
        yield units
    finally:
        meter = _METER.get()
        if meter is not None:
            meter.add(kind, float(sum(units)), time.perf_counter() - start)
