"""Decoding-time mixing of policies (MOD).

Shi et al., "Decoding-Time Language Model Alignment with Multiple Objectives" (2024): given
policies ``π_k`` each tuned for one objective, the next token is drawn from
``softmax(Σ_k w_k log π_k(· | x, y_<t))``, so any weight vector is served with no extra
training. :func:`generate_mixture` implements that loop with one key/value cache per policy.

A policy is a model, or a ``(peft_model, adapter_name)`` pair so that several LoRA adapters on
one base share its memory (the adapter is activated before each of its forward passes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from moalign.evaluation.generation import render_prompt
from moalign.fronts.context import Context, Policy
from moalign.weights import as_weights, format_weights

__all__ = ["generate_mixture", "policies"]


def _forward(policy: Any, **kwargs: Any):
    if isinstance(policy, tuple):
        model, adapter = policy
        model.set_adapter(adapter)
        return model(**kwargs)
    return policy(**kwargs)


def _model_of(policy: Any):
    return policy[0] if isinstance(policy, tuple) else policy


def _nucleus(probs: Any, top_p: float) -> Any:
    """Keep the smallest set of tokens whose probability reaches ``top_p`` (nucleus sampling)."""
    if top_p >= 1.0:
        return probs
    import torch

    sorted_p, order = probs.sort(dim=-1, descending=True)
    drop = sorted_p.cumsum(-1) - sorted_p >= top_p  # the top token is always kept
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_p)


def generate_mixture(
    policies: Sequence[Any],
    weights: Sequence[float],
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int = 48,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    seed: int = 0,
    max_prompt_length: int | None = None,
    progress: bool = False,
) -> list[str]:
    """Generate from the log-linear mixture ``Σ_k w_k log π_k`` (greedy or sampled).

    Policies with zero weight are skipped, so weight ``(1, 0, ...)`` reproduces greedy
    generation from the first policy. Sampling uses ``temperature`` and nucleus ``top_p`` on
    the mixed distribution.
    """
    import torch

    w = as_weights(weights, len(policies))
    active = [(float(wk), p) for wk, p in zip(w, policies) if wk > 0]
    texts = [render_prompt(tokenizer, p) for p in prompts]
    device = next(_model_of(active[0][1]).parameters()).device
    old = tokenizer.padding_side, getattr(tokenizer, "truncation_side", "right")
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    out: list[str] = []
    starts = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="mixture decoding", unit="batch")
    models = {id(_model_of(p)): _model_of(p) for _, p in active}
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        for b, start in enumerate(starts):
            enc = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=False, truncation=max_prompt_length is not None,
                            max_length=max_prompt_length).to(device)
            ids, attn = enc["input_ids"], enc["attention_mask"]
            n = ids.shape[0]
            caches: list[Any] = [None] * len(active)
            step_ids, generated = ids, []
            done = torch.zeros(n, dtype=torch.bool, device=device)
            gen = torch.Generator(device="cpu").manual_seed(seed + b)
            with torch.no_grad():
                for _ in range(max_new_tokens):
                    pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
                    mixed = None
                    for i, (wk, policy) in enumerate(active):
                        o = _forward(policy, input_ids=step_ids, attention_mask=attn,
                                     position_ids=pos, past_key_values=caches[i], use_cache=True)
                        caches[i] = o.past_key_values
                        logp = torch.log_softmax(o.logits[:, -1].float(), dim=-1)
                        mixed = wk * logp if mixed is None else mixed + wk * logp
                    if do_sample:
                        probs = _nucleus(torch.softmax(mixed / temperature, dim=-1), top_p).cpu()
                        nxt = torch.multinomial(probs, 1, generator=gen).squeeze(-1).to(device)
                    else:
                        nxt = mixed.argmax(-1)
                    nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
                    generated.append(nxt)
                    done |= nxt == eos
                    if bool(done.all()):
                        break
                    step_ids = nxt.unsqueeze(-1)
                    attn = torch.cat([attn, torch.ones_like(step_ids)], dim=-1)
            new = torch.stack(generated, dim=1)
            out.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old
        for k, m in models.items():
            m.train(modes[k])
    return out


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
