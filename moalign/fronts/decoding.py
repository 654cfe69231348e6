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

from moalign.evaluation.batching import DEFAULT_MAX_BATCH_TOKENS, length_batches, run_batched
from moalign.evaluation.generation import keep_prompt_ids, left_pad, render_prompt
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
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
    seed: int = 0,
    max_prompt_length: int | None = None,
    progress: bool = False,
) -> list[str]:
    """Generate from the log-linear mixture ``Σ_k w_k log π_k`` (greedy or sampled).

    Policies with zero weight are skipped, so weight ``(1, 0, ...)`` reproduces greedy
    generation from the first policy. Sampling uses ``temperature`` and nucleus ``top_p`` on
    the mixed distribution. The other settings are those of
    :func:`~moalign.evaluation.generation.generate_completions`, with the same meaning: batches
    of at most ``batch_size`` prompts and ``max_batch_tokens`` tokens (prompt width plus
    ``max_new_tokens`` per row; ``None``: no token limit), longest prompts first, a batch that
    runs out of memory split in halves; sampling seeded per batch (``seed + batch index``);
    ``max_prompt_length`` cuts long prompts by the rule of
    :func:`~moalign.evaluation.generation.keep_prompt_ids`.
    """
    import torch

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be positive")
    w = as_weights(weights, len(policies))
    active = [(float(wk), p) for wk, p in zip(w, policies) if wk > 0]
    texts = [render_prompt(tokenizer, p) for p in prompts]
    device = next(_model_of(active[0][1]).parameters()).device
    encoded = keep_prompt_ids(tokenizer, texts, max_prompt_length)
    batches = length_batches([len(ids) + max_new_tokens for ids in encoded],
                             batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    out: list[str | None] = [None] * len(texts)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="mixture decoding", unit="prompt")
    calls = [0]

    def one(batch: list[int]) -> None:
        ids, attn = left_pad([encoded[i] for i in batch], pad)
        ids, attn = ids.to(device), attn.to(device)
        n = ids.shape[0]
        caches: list[Any] = [None] * len(active)
        step_ids, generated = ids, []
        done = torch.zeros(n, dtype=torch.bool, device=device)
        gen = torch.Generator(device="cpu").manual_seed(seed + calls[0])
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
        calls[0] += 1
        new = torch.stack(generated, dim=1)
        for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
            out[i] = text
        if bar is not None:
            bar.update(len(batch))

    models = {id(_model_of(p)): _model_of(p) for _, p in active}
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        run_batched(one, batches)
    finally:
        for k, m in models.items():
            m.train(modes[k])
        if bar is not None:
            bar.close()
    return [str(t) for t in out]


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
