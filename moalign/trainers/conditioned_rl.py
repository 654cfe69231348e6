"""Conditioned MO-GRPO and MO-PPO: the online form of Rewards-in-Context (Yang et al. 2024).

With ``conditioning="prompt"`` every training prompt gets its own weight vector, drawn once from
``Dirichlet(dirichlet_alpha)`` (seeded) and rounded with
:func:`~moalign.tradeoff.conditioning.quantize_weights`; the prompt shows it with
:func:`~moalign.tradeoff.conditioning.apply_condition` (the text front evaluation shows), and the
rewards of that prompt's completions are scalarized with those weights, so one run trains a
policy for every weight vector. The weights travel with each row in the column
:data:`~moalign.tradeoff.conditioning.WEIGHTS_COLUMN` (given in the data, they are used as they
are). The objectives score the conditioned prompt. Both trainers log ``weights/<k>`` as the mean
of the global batch's per-prompt weights (gathered from every process); conditioned MO-GRPO
also conditions its evaluation prompts, with their own draws. A condition is never truncated
(:func:`moalign.evaluation.generation.keep_prompt_ids`).

The trainers keep their own code; this module holds what they share: the config fields
(:class:`ConditioningFields`), their check, the conditioning of the prompt rows, and the
per-completion weights.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from moalign.config.fields import doc
from moalign.tradeoff.conditioning import (
    WEIGHTS_COLUMN,
    apply_condition,
    condition_field_problems,
    quantize_weights,
)

__all__ = ["ConditioningFields", "PerCompletionWeights", "condition_prompts",
           "conditioning_problems", "row_weights"]


@dataclass(kw_only=True)
class ConditioningFields:
    """The conditioning fields of the online trainers' configs (keyword-only, so a config's
    positional fields keep their order)."""

    conditioning: str | None = doc(
        None, "'prompt': each training prompt shows its own Dirichlet-drawn weight vector "
        "(moalign.tradeoff.conditioning.apply_condition) and its rewards are scalarized with "
        "those weights: one policy for every weight vector. None: no conditioning.")
    condition_style: str = doc(
        "system", "Where the condition goes in chat prompts: 'system' (a system message) or "
        "'prefix' (first line of the first user message); plain prompts: the first line.")
    condition_format: str = doc(
        "full", "How the condition lists the weights: 'full' (every objective) or 'nonzero' "
        "(the objectives weighted 0 left out, so the vertices name different objectives, which "
        "a small model tells apart far more easily; moalign.tradeoff.conditioning).")
    dirichlet_alpha: float = doc(
        1.0, "Concentration of the Dirichlet the per-prompt weights are drawn from (1: uniform "
        "on the simplex; < 1 favours the vertices).")


def conditioning_problems(args: Any) -> list[str]:
    """Problems of the conditioning fields (and of what conditioning excludes)."""
    problems = []
    if args.conditioning not in (None, "prompt"):
        problems.append(f"'conditioning' must be 'prompt' or null, got {args.conditioning!r}")
    problems += condition_field_problems(args.condition_style, args.condition_format,
                                         args.dirichlet_alpha)
    if args.conditioning is not None:
        taken = [f for f in ("weights", "schedule", "constraints") if getattr(args, f, None)]
        if taken:
            problems.append(f"conditioning draws a weight vector per prompt: leave "
                            f"{', '.join(repr(t) for t in taken)} unset")
        scalarizer = getattr(args, "scalarizer", "linear")
        if scalarizer not in ("linear", {"name": "linear"}):
            problems.append("conditioning scalarizes each prompt's rewards linearly with its own "
                            f"weights: set scalarizer: linear, got {scalarizer!r}")
    return problems


def _draws(n: int, k: int, args: Any, name: str) -> np.ndarray:
    from moalign.tradeoff.schedule import DirichletWeights

    seed = int(args.seed) + zlib.crc32(name.encode())
    raw = DirichletWeights(k, args.dirichlet_alpha, seed).ask_batch(n) if n else np.zeros((0, k))
    return np.stack([quantize_weights(w) for w in raw]) if n else raw


def condition_prompts(rows: Any, names: Sequence[str], args: Any, name: str = "train") -> Any:
    """``rows`` (a ``datasets.Dataset`` or a list of row dicts) with each prompt showing its
    weights and the weights in :data:`WEIGHTS_COLUMN`; weights already in that column are kept
    (rounded as the condition shows them)."""
    names, style, form = [str(n) for n in names], args.condition_style, args.condition_format
    is_dataset = hasattr(rows, "map") and hasattr(rows, "column_names")
    columns = rows.column_names if is_dataset else (list(rows[0]) if rows else [])
    if WEIGHTS_COLUMN in columns:
        given = rows[WEIGHTS_COLUMN] if is_dataset else [r[WEIGHTS_COLUMN] for r in rows]
        weights = np.stack([quantize_weights(np.asarray(w, dtype=np.float64)) for w in given])
    else:
        weights = _draws(len(rows), len(names), args, name)

    def add(row: dict, i: int) -> dict:
        return {**row, "prompt": apply_condition(row["prompt"], weights[i], names, style,
                                                 form=form),
                WEIGHTS_COLUMN: weights[i].tolist()}

    if is_dataset:
        return rows.map(lambda row, i: {k: v for k, v in add(row, i).items()
                                        if k in ("prompt", WEIGHTS_COLUMN)},
                        with_indices=True, desc=f"Conditioning {name} prompts")
    return [add(dict(r), i) for i, r in enumerate(rows)]


def row_weights(values: Sequence[Any]) -> np.ndarray:
    """``[B, K]`` weights of a batch, from each row's (or completion's) :data:`WEIGHTS_COLUMN`
    value."""
    return np.asarray([np.asarray(v, dtype=np.float64) for v in values], dtype=np.float64)


class PerCompletionWeights:
    """Weights ``[B, K]`` standing where TRL's GRPO reads its reward weights ``[K]``: TRL
    multiplies the rewards ``[B, K]`` by ``reward_weights.to(device).unsqueeze(0)``, which
    gives each completion its prompt's weights here (checked against TRL's logged reward in
    ``tests/trainers/test_conditioned_rl.py``)."""

    def __init__(self, weights: Any):
        self.weights = weights

    def to(self, *args: Any, **kwargs: Any) -> PerCompletionWeights:
        return PerCompletionWeights(self.weights.to(*args, **kwargs))

    def unsqueeze(self, dim: int) -> Any:
        if dim != 0:
            raise ValueError("per-completion weights are used as reward_weights.unsqueeze(0)")
        return self.weights

    def tolist(self) -> list:
        return self.weights.tolist()
