"""Choosing rows: the pairs labelled for an objective, and the first ``n`` of them.

Every "first N labelled pairs per objective" in moalign (training pairs of a front or of
``moalign train``, held-out evaluation pairs) goes through :func:`first_labelled`, so the same
data and seed always select the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from moalign.data.schema import pref_column, prompt_key

__all__ = ["distinct_prompt_rows", "first_labelled", "labelled_indices"]


def labelled_indices(ds: Any, objective: str) -> np.ndarray:
    """Row indices of ``ds`` whose ``pref_<objective>`` label is a finite non-zero number
    (a tie or a missing label says nothing about the objective)."""
    values = np.asarray([np.nan if v is None else v for v in ds[pref_column(objective)]],
                        dtype=np.float64)
    return np.flatnonzero(np.isfinite(values) & (values != 0))


def first_labelled(ds: Any, objectives: Sequence[str], n: int | None) -> list[int]:
    """Sorted union, over ``objectives``, of the first ``n`` rows labelled for each (all the
    labelled rows when ``n`` is None). An objective without a label column contributes its
    first ``n`` rows (they are labelled later, e.g. by a scorer)."""
    keep: set[int] = set()
    for name in objectives:
        if pref_column(name) not in ds.column_names:
            keep.update(range(len(ds) if n is None else min(len(ds), n)))
            continue
        idx = labelled_indices(ds, name)
        keep.update((idx if n is None else idx[:n]).tolist())
    return sorted(keep)


def distinct_prompt_rows(ds: Any, objectives: Sequence[str], n: int) -> list[int]:
    """Row indices of ``n`` distinct prompts of ``ds`` (fewer when it has fewer), taken in turn
    from each objective's labelled pairs, so every objective's prompts are represented; when
    some objective has no ``pref_`` column (a prompt dataset), in dataset order. The held-out
    prompts of ``moalign eval`` (``generation``), of front traces and of the report."""
    if objectives and all(pref_column(name) in ds.column_names for name in objectives):
        queues = [[int(i) for i in labelled_indices(ds, name)] for name in objectives]
    else:
        queues = [list(range(len(ds)))]
    prompts = ds["prompt"]
    seen: set[str] = set()
    rows: list[int] = []
    heads = [0] * len(queues)
    while len(rows) < n and any(h < len(q) for h, q in zip(heads, queues)):
        for k, queue in enumerate(queues):
            while heads[k] < len(queue):
                row = queue[heads[k]]
                heads[k] += 1
                key = prompt_key(prompts[row])
                if key not in seen:
                    seen.add(key)
                    rows.append(row)
                    break
            if len(rows) >= n:
                break
    return rows
