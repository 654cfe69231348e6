"""Decoding-time mixing of policies (MOD).

Shi et al., "Decoding-Time Language Model Alignment with Multiple Objectives" (2024): given
policies ``π_k`` each tuned for one objective, the next token is drawn from
``softmax(Σ_k w_k log π_k(· | x, y_<t))``, so any weight vector is served with no extra
training. :class:`Mixture` is that rule as a hook of the one decode driver
(:func:`moalign.evaluation.generation.generate_completions`): the last policy of positive
weight runs the token loop, and at each step the others, each with a key/value cache of its own,
add their weighted log-probabilities to its own (summed in the order of the policies). Batching, padding, seeding, the
out-of-memory split and throughput are the driver's, as for any other generation.

A policy is a model, or a ``(peft_model, adapter_name)`` pair so that several LoRA adapters on
one base share its memory (the adapter is activated before each of its forward passes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from moalign.evaluation.generation import (
    NextToken,
    generate_completions,
    takes_generation_settings,
)
from moalign.fronts.context import Context, Policy
from moalign.weights import as_weights, format_weights

__all__ = ["Mixture", "generate_mixture", "policies"]


def _forward(policy: Any, **kwargs: Any):
    _activate(policy)
    return _model_of(policy)(**kwargs)


def _model_of(policy: Any):
    return policy[0] if isinstance(policy, tuple) else policy


def _activate(policy: Any) -> None:
    if isinstance(policy, tuple):
        policy[0].set_adapter(policy[1])


class Mixture(NextToken):
    """The next-token logits ``Σ_k w_k log π_k`` of weighted policies (zero weights skipped)."""

    def __init__(self, policies: Sequence[Any], weights: Sequence[float]):
        w = as_weights(weights, len(policies))
        self.active = [(float(wk), p) for wk, p in zip(w, policies) if wk > 0]
        super().__init__(_model_of(self.active[-1][1]))

    def models(self) -> list[Any]:
        return [_model_of(p) for _, p in self.active]

    def start(self, query_ids: Any, query_mask: Any) -> Any:
        _activate(self.active[-1][1])
        if len(self.active) == 1:
            return None
        return _MixtureStep(self.active, query_mask)


class _MixtureStep:
    """One batch of a :class:`Mixture`: called once per token with the ids so far and the
    logits of the policy that runs the loop (the last one), it runs the other policies on the
    new tokens (their caches) and returns the mixed log-probabilities."""

    def __init__(self, active: list[tuple[float, Any]], query_mask: Any):
        self.active, self.mask = active, query_mask
        self.caches: list[Any] = [None] * (len(active) - 1)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        first = self.caches[0] is None
        step = input_ids if first else input_ids[:, -1:]
        if not first:
            self.mask = torch.cat([self.mask, torch.ones_like(step)], dim=-1)
        pos = (self.mask.cumsum(-1) - 1).clamp(min=0)[:, -step.shape[1]:]
        mixed = None
        for i, (wk, policy) in enumerate(self.active[:-1]):
            o = _forward(policy, input_ids=step, attention_mask=self.mask, position_ids=pos,
                         past_key_values=self.caches[i], use_cache=True)
            self.caches[i] = o.past_key_values
            logp = wk * torch.log_softmax(o.logits[:, -1].float(), dim=-1)
            mixed = logp if mixed is None else mixed + logp
        wk, lead = self.active[-1]
        _activate(lead)  # its adapter runs the next step of the loop
        return mixed + wk * torch.log_softmax(scores.float(), dim=-1)


@takes_generation_settings
def generate_mixture(policies: Sequence[Any], weights: Sequence[float], tokenizer: Any,
                     prompts: Sequence[Any], **settings: Any) -> list[str]:
    """Generate from the log-linear mixture ``Σ_k w_k log π_k`` (greedy or sampled).

    Policies with zero weight are skipped, so weight ``(1, 0, ...)`` is greedy generation from
    the first policy. The settings are those of
    :func:`~moalign.evaluation.generation.generate_completions`, with the same meaning and
    defaults (sampling applies ``temperature`` and nucleus ``top_p`` to the mixed
    distribution): the mixture is that driver's :class:`Mixture` hook.
    """
    return generate_completions(Mixture(policies, weights), tokenizer, prompts, **settings)


def policies(ctx: Context) -> Iterator[tuple[str, np.ndarray, Policy]]:
    """The ``decoding`` method: the per-objective runs, mixed token by token at each weight
    vector (no policy of its own: evaluated with the ``generation`` metric). LoRA runs share
    one base (``(peft model, adapter)`` pairs); fully fine-tuned runs are K models."""
    runs = ctx.per_objective_runs()
    if ctx.cfg.lora is None:
        members: list[Any] = [ctx.full_model(r) for r in runs]
        model = members[0]
    else:
        model = [ctx.adapter(r) for r in runs][-1]
        members = [(model, r) for r in runs]
    for w in ctx.weight_vectors():
        def generate(model: Any, tokenizer: Any, prompts: Any, w: np.ndarray = w, **kw: Any):
            return generate_mixture(members, w, tokenizer, prompts, **kw)

        yield format_weights(w), w, Policy(model, adapter=None, generate=generate)
