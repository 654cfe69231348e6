"""The ``conditioned`` method: one run of a policy that reads its weight vector in the prompt,
evaluated with every weight vector of the front shown to it (Rewards-in-Context, Yang et al.
2024). The text is :func:`moalign.tradeoff.conditioning.apply_condition`, as in training.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from moalign.fronts.context import Context, Policy
from moalign.tradeoff.conditioning import apply_condition
from moalign.weights import format_weights

__all__ = ["policies"]


def policies(ctx: Context) -> Iterator[tuple[str, np.ndarray, Policy]]:
    """Train the conditioned run once; yield one point per weight vector shown in the prompt."""
    name = ctx.run("conditioned", conditioning="prompt")
    model = ctx.adapter(name)
    objectives = ctx.cfg.objectives
    style = ctx.cfg.train.get("condition_style", "system")  # as in training
    for w in ctx.cfg.weight_vectors():
        def transform(prompt: Any, w: np.ndarray = w) -> Any:
            return apply_condition(prompt, w, objectives, style=style)

        yield format_weights(w), w, Policy(model, adapter=name, transform_prompt=transform,
                                           checkpoint="runs/conditioned/adapter")
