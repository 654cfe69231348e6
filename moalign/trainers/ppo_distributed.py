"""What MO-PPO's own loop does so that N processes train like one process on their union.

Two things depend on how a global batch is split over processes, and both are handled here:

- **Sampling streams.** ``set_seed(seed)`` gives every process the same global torch RNG, which
  the model initialization needs (every process must build the same policy, critic and LoRA
  adapter) but sampling must not have: two processes given the same prompt would draw the
  same responses. After the models are built, :func:`seed_sampling` moves process ``r > 0`` to
  its own stream, seeded with :func:`sampling_seed` ``(seed, r)``; process 0 continues the
  stream ``set_seed(seed)`` started, so a one-process run samples exactly as it always did.
  The stream lives in the global torch RNG (CPU and every GPU: ``transformers`` generation
  draws from it), which checkpoints save and restore per process.
- **Batch statistics of the scalarizer.** A normalizer in the scalarizer (``normalize
  'batch'``, ``'group'``, ``'running'``) or Tchebycheff's online ideal point computes
  statistics of the signals it combines. :func:`combine_globally` gathers every process's
  per-token signals (in process order, which is the order of the global batch), combines them
  all on every process, and keeps this process's rows: the statistics are those of the global
  batch, and the scalarizer's state stays the same on every process.

- **Token means of the losses.** The policy and value losses (and the statistics logged next
  to them) are means over the response tokens of a minibatch. Each process can only average
  over its own tokens, and DDP's all-reduce then averages the gradients of those per-process
  means: a weighting by process, not the token mean of the union, as soon as the processes
  hold different numbers of response tokens. :func:`token_mean_scale` is the factor that turns
  a process's own token mean into its share of the global token mean under that averaging;
  :func:`global_token_mean` is the global token mean of a quantity that is only logged.

(Advantage whitening sums :func:`~moalign.trainers.ppo_core.masked_moments` over processes, and
the Lagrange multipliers and the linearization of a non-linear scalarizer use the gathered
rewards; see :mod:`moalign.trainers.ppo`.)
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["combine_globally", "gather_rows", "global_token_mean", "sampling_seed", "seed_sampling",
           "token_mean_scale"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One output of the SplitMix64 generator (Steele, Lea & Flood 2014) from state ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sampling_seed(seed: int, process_index: int) -> int:
    """The seed of the sampling stream of process ``process_index`` in a run seeded ``seed``.

    Process 0 keeps ``seed`` itself (its stream is the one ``set_seed(seed)`` started). Process
    ``r > 0`` gets ``splitmix64(splitmix64(seed) ^ r)`` cut to 63 bits: a function of
    ``(seed, r)`` only (the same on every run with that seed, whatever the number of
    processes), different for every ``r``, and unrelated to ``seed + r`` (so process 1 of a
    run seeded 0 does not repeat process 0 of a run seeded 1, as ``seed + process_index``
    would).
    """
    if isinstance(process_index, bool) or not isinstance(process_index, int) or process_index < 0:
        raise ValueError(f"process_index must be an integer >= 0, got {process_index!r}")
    if process_index == 0:
        return int(seed)
    return _splitmix64(_splitmix64(int(seed) & _MASK64) ^ process_index) >> 1


def seed_sampling(seed: int, process_index: int) -> int:
    """Start this process's sampling stream; call it after every model is built.

    Process 0 leaves the global torch RNG as it is (it continues the stream of
    ``set_seed(seed)``); process ``r > 0`` reseeds it (CPU and every accelerator) with
    :func:`sampling_seed`. Returns the seed of the stream.
    """
    value = sampling_seed(seed, process_index)
    if process_index > 0:
        torch.manual_seed(value)
    return value


def gather_rows(accelerator: Any, rows: torch.Tensor) -> tuple[torch.Tensor, slice]:
    """Every process's ``rows`` ``[n_p, ...]`` (``n_p`` may differ) concatenated in process
    order, on every process, and the slice of this process's own rows in the result.

    With one process, ``rows`` itself and the whole slice (no communication).
    """
    if accelerator.num_processes == 1:
        return rows, slice(0, rows.shape[0])
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = accelerator.gather(count).tolist()
    padded = accelerator.gather(accelerator.pad_across_processes(rows, dim=0))
    width = max(counts)
    parts = [padded[p * width:p * width + n] for p, n in enumerate(counts)]
    start = sum(counts[:accelerator.process_index])
    return torch.cat(parts), slice(start, start + counts[accelerator.process_index])


def combine_globally(tradeoff: Any, accelerator: Any, signals: torch.Tensor,
                     groups: torch.Tensor) -> torch.Tensor:
    """``tradeoff.combine`` of the global batch's signals, this process's rows: ``[n]``.

    ``signals`` ``[n, K]`` are this process's rows (per-token advantages) and ``groups`` ``[n]``
    their group ids, which must already be global (distinct between processes). Every process
    combines the same gathered rows, so batch and group normalizers see the global batch, and
    stateful scalarizers (running normalizers, an online ideal point) update alike everywhere.
    """
    all_signals, mine = gather_rows(accelerator, signals)
    all_groups, _ = gather_rows(accelerator, groups)
    return tradeoff.combine(all_signals, groups=all_groups)[mine]


def _token_count(mask: torch.Tensor, dim: int | tuple[int, ...] | None) -> torch.Tensor:
    """The number of masked entries (``dim=None``: all of them), counted in float32 as
    :func:`~moalign.trainers.ppo_core.masked_mean` counts them."""
    m = mask.to(torch.float32)
    return m.sum() if dim is None else m.sum(dim)


def token_mean_scale(accelerator: Any, mask: torch.Tensor,
                     dim: int | tuple[int, ...] | None = None) -> torch.Tensor:
    """Factor turning this process's token mean into its share of the global token mean.

    A loss ``L_p = S_p / n_p`` averaged over this process's ``n_p`` masked tokens (``S_p``: its
    sum over them; :func:`~moalign.trainers.ppo_core.masked_mean` divides by ``max(n_p, 1)``)
    is multiplied by ``max(n_p, 1) * P / max(N, 1)``, where ``N = sum_p n_p`` is the count over
    the ``P`` processes (one all-reduce). The process then back-propagates
    ``P * S_p / N``; DDP averages the gradients over processes, so the update follows
    ``(1/P) sum_p P * S_p / N = sum_p S_p / N``: the gradient of the token mean of the union of
    the processes' minibatches, whatever their token counts. The plain per-process mean,
    ``(1/P) sum_p S_p / n_p``, equals it only when every ``n_p`` is the same. Metrics scaled by
    the same factor and then averaged over processes (``accelerator.reduce(..., "mean")``)
    are global token means too.

    ``dim`` counts per slice (``(0, 1)`` of a ``[B, T, C]`` value mask: one factor per value
    head). With one process the factor is exactly 1 (``n / n``), so one-process training is
    unchanged to the bit.
    """
    local = _token_count(mask, dim).clamp(min=1.0)
    if accelerator.num_processes == 1:
        return torch.ones_like(local)
    total = accelerator.reduce(_token_count(mask, dim), "sum").clamp(min=1.0)
    return local * accelerator.num_processes / total


def global_token_mean(accelerator: Any, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the masked entries of every process (a scalar, the same on every
    process); with one process, :func:`~moalign.trainers.ppo_core.masked_mean` to the bit."""
    m = mask.to(values.dtype).expand_as(values)
    sums = torch.stack([(values * m).sum(), m.sum()])
    if accelerator.num_processes > 1:
        sums = accelerator.reduce(sums, "sum")
    return sums[0] / sums[1].clamp(min=1.0)
