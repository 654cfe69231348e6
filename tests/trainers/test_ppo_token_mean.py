"""MO-PPO's losses are token means over the minibatch of every process, without launching any.

Processes are simulated by threads that share a summing all-reduce (what
``accelerator.reduce(..., "sum")`` does across real processes); DDP's gradient all-reduce is the
mean of the processes' gradients. With ragged responses (processes holding different numbers of
response tokens), the averaged gradient of the scaled per-process losses must be the gradient of
the token mean of the union batch, and the plain per-process means (the negative control) must
not give it. The same equality with real processes is ``mo-ppo-ragged`` in
``scripts/dist_check.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch

from moalign.trainers import ppo_core as core
from moalign.trainers.ppo_distributed import global_token_mean, token_mean_scale


class _Group:
    """State shared by the simulated processes: one slot each and a barrier."""

    def __init__(self, size: int):
        self.size = size
        self.slots: list[torch.Tensor | None] = [None] * size
        self.barrier = threading.Barrier(size)


class _ThreadAccelerator:
    """The part of ``accelerate.Accelerator`` the token means use, for one simulated process."""

    def __init__(self, group: _Group, rank: int):
        self.group, self.process_index = group, rank

    @property
    def num_processes(self) -> int:
        return self.group.size

    def reduce(self, tensor: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        g = self.group
        g.slots[self.process_index] = tensor.detach().clone()
        g.barrier.wait()
        total = sum(g.slots[1:], g.slots[0].clone())  # in process order, alike everywhere
        g.barrier.wait()
        return total / g.size if reduction == "mean" else total


def _on_processes(size: int, fn: Callable[[Any, int], Any]) -> list[Any]:
    """``fn(accelerator, rank)`` on ``size`` simulated processes; their results in rank order."""
    group, results, errors = _Group(size), [None] * size, []

    def run(rank: int) -> None:
        try:
            results[rank] = fn(_ThreadAccelerator(group, rank), rank)
        except BaseException as exc:  # re-raised below, after every thread ended
            errors.append(exc)
            group.barrier.abort()

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    if errors:
        raise errors[0]
    return results


def _ragged_mask(lengths: list[int], width: int) -> torch.Tensor:
    return (torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).long()


# two processes, 3 rows each, right-padded responses: 4 tokens on process 0, 12 on process 1
LENGTHS = ([1, 2, 1], [5, 3, 4])
WIDTH = 5


def _policy_data(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rows = sum(len(x) for x in LENGTHS)
    return {"feature": torch.randn(rows, WIDTH, generator=gen),
            "old_logp": -torch.rand(rows, WIDTH, generator=gen),
            "advantages": torch.randn(rows, WIDTH, generator=gen),
            "mask": _ragged_mask([n for x in LENGTHS for n in x], WIDTH)}


def _policy_loss(w: torch.Tensor, data: dict[str, torch.Tensor], rows: slice
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    logp = data["old_logp"][rows] + w * data["feature"][rows]  # ratios around 1, some clipped
    loss, stats = core.clipped_policy_loss(logp, data["old_logp"][rows], data["advantages"][rows],
                                           data["mask"][rows], clip=0.2)
    return loss, stats, data["mask"][rows]


def _split(rank: int) -> slice:
    start = sum(len(x) for x in LENGTHS[:rank])
    return slice(start, start + len(LENGTHS[rank]))


def _ddp_policy_gradient(data: dict[str, torch.Tensor], scaled: bool
                         ) -> tuple[torch.Tensor, list[float], list[dict[str, float]]]:
    """Each simulated process's gradient of its (scaled) policy loss, averaged as DDP does."""

    def process(acc: Any, rank: int) -> tuple[torch.Tensor, float, dict[str, float]]:
        w = torch.tensor(0.3, requires_grad=True)
        loss, stats, mask = _policy_loss(w, data, _split(rank))
        if scaled:
            scale = token_mean_scale(acc, mask)
            loss, stats = loss * scale, {k: v * scale for k, v in stats.items()}
        loss.backward()
        return w.grad.clone(), float(loss.detach()), {k: float(v) for k, v in stats.items()}

    results = _on_processes(len(LENGTHS), process)
    gradient = torch.stack([g for g, _, _ in results]).mean()
    return gradient, [x for _, x, _ in results], [s for _, _, s in results]


def test_scaled_policy_losses_average_to_the_gradient_of_the_union_token_mean():
    data = _policy_data()
    w = torch.tensor(0.3, requires_grad=True)
    union_loss, union_stats, _ = _policy_loss(w, data, slice(None))
    union_loss.backward()

    gradient, losses, stats = _ddp_policy_gradient(data, scaled=True)
    assert float(gradient) == pytest.approx(float(w.grad), rel=1e-6, abs=1e-9)
    # what the trainer logs, the process mean of the scaled values, is the global token mean
    assert sum(losses) / len(losses) == pytest.approx(float(union_loss.detach()), rel=1e-6)
    for key in ("clipfrac", "approx_kl"):
        assert sum(s[key] for s in stats) / len(stats) == pytest.approx(
            float(union_stats[key]), rel=1e-5, abs=1e-9)

    # negative control: the per-process means weight process 0's 4 tokens like process 1's 12
    plain, _, _ = _ddp_policy_gradient(data, scaled=False)
    assert abs(float(plain) - float(w.grad)) > 0.05 * abs(float(w.grad))


def test_scaled_value_losses_average_to_the_per_head_union_token_mean():
    gen = torch.Generator().manual_seed(1)
    rows, heads = sum(len(x) for x in LENGTHS), 3
    old = torch.randn(rows, WIDTH, heads, generator=gen)
    returns = torch.randn(rows, WIDTH, heads, generator=gen)
    feature = torch.randn(rows, WIDTH, heads, generator=gen)
    mask = _ragged_mask([n for x in LENGTHS for n in x], WIDTH).bool().unsqueeze(-1).repeat(1, 1, heads)
    mask[:2, :, 1] = False  # head 1 did not score two rows of process 0
    mask[:, :, 2] = False  # head 2 scored one row of process 1 only: none on process 0
    mask[4, :, 2] = True

    def loss(w: torch.Tensor, on: slice) -> tuple[torch.Tensor, torch.Tensor]:
        return core.clipped_value_loss(old[on] + w * feature[on], old[on], returns[on], mask[on],
                                       clip=0.2)

    w = torch.tensor(0.1, requires_grad=True)
    union_loss, union_heads = loss(w, slice(None))
    union_loss.backward()

    def process(acc: Any, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.tensor(0.1, requires_grad=True)
        _, per_head = loss(v, _split(rank))
        per_head = per_head * token_mean_scale(acc, mask[_split(rank)], (0, 1))
        per_head.mean().backward()
        return v.grad.clone(), per_head.detach()

    results = _on_processes(len(LENGTHS), process)
    gradient = torch.stack([g for g, _ in results]).mean()
    assert float(gradient) == pytest.approx(float(w.grad), rel=1e-6)
    logged = torch.stack([h for _, h in results]).mean(0)
    assert torch.allclose(logged, union_heads.detach(), rtol=1e-6, atol=1e-9)
    assert torch.isfinite(logged).all()


def test_one_process_is_unchanged_to_the_bit():
    data = _policy_data(2)
    group = _Group(1)
    acc = _ThreadAccelerator(group, 0)
    mask = data["mask"]
    scale = token_mean_scale(acc, mask)
    assert torch.equal(scale, torch.tensor(1.0))
    heads = token_mean_scale(acc, mask.unsqueeze(-1).expand(-1, -1, 3), (0, 1))
    assert torch.equal(heads, torch.ones(3))
    w = torch.tensor(0.3)
    loss, _, _ = _policy_loss(w, data, slice(None))
    assert torch.equal(loss * scale, loss)
    values = data["feature"]
    assert torch.equal(global_token_mean(acc, values, mask), core.masked_mean(values, mask))


def test_global_token_mean_is_the_mean_over_every_process_tokens():
    data = _policy_data(3)
    values, mask = data["feature"], data["mask"]
    means = _on_processes(2, lambda acc, rank: global_token_mean(
        acc, values[_split(rank)], mask[_split(rank)]))
    expected = core.masked_mean(values, mask)
    assert all(float(m) == pytest.approx(float(expected), rel=1e-6) for m in means)
    # not the mean of the per-process means, which the ragged split makes different
    local = [core.masked_mean(values[_split(r)], mask[_split(r)]) for r in range(2)]
    assert abs(float(sum(local)) / 2 - float(expected)) > 1e-3


def test_a_process_without_response_tokens_contributes_nothing():
    empty = torch.zeros(2, WIDTH, dtype=torch.long)
    full = _ragged_mask([3, 4], WIDTH)
    scales = _on_processes(2, lambda acc, rank: token_mean_scale(acc, (empty, full)[rank]))
    # process 0: its mean is 0 / 1 = 0 whatever the factor; process 1 holds every token
    assert float(scales[0]) == pytest.approx(2 / 7)
    assert float(scales[1]) == pytest.approx(2.0)
    nothing = _on_processes(2, lambda acc, rank: token_mean_scale(acc, empty))
    assert all(torch.isfinite(s) for s in nothing)
