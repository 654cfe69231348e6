"""The ``conditioned`` method: one run of a policy that reads its weight vector in the prompt,
evaluated with every weight vector of the front shown to it (Rewards-in-Context, Yang et al.
2024; with ``grpo`` / ``ppo``, its online form: each training prompt shows a Dirichlet-drawn
weight vector and its reward is scalarized with those weights). The text is
:func:`moalign.tradeoff.conditioning.apply_condition`, as in training.
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
    """Train the conditioned run once (conditioned DPO, GRPO or PPO: each training example
    shows its own Dirichlet-drawn weights); yield one point per weight vector shown in the
    prompt."""
    name = ctx.run("conditioned", conditioning="prompt")
    run = ctx.policy(name)
    objectives = ctx.names
    style = ctx.cfg.train.get("condition_style", "system")  # as in training
    form = ctx.cfg.train.get("condition_format", "full")
    for w in ctx.weight_vectors():
        def transform(prompt: Any, w: np.ndarray = w) -> Any:
            return apply_condition(prompt, w, objectives, style=style, form=form)

        yield format_weights(w), w, Policy(run.model, adapter=run.adapter,
                                           transform_prompt=transform, checkpoint=run.checkpoint)
