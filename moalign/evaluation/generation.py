"""The one decode driver: every generated reply of moalign comes from :func:`generate_completions`.

The driver owns what every way of decoding shares: it renders and cuts the prompts
(:func:`moalign.evaluation.prompts.prompt_ids`), sorts them by token length so a batch pads
little, fills each batch up to a token budget (prompt width plus ``max_new_tokens`` per row),
left-pads it, seeds it, runs the token loop with its KV cache (``model.generate``), splits a
batch that runs out of memory, records the throughput and gives the replies back in the order of
the prompts. What differs between ways of decoding is a small hook, a :class:`NextToken`: which
model runs the loop and how that model's next-token logits become the ones decoded from. The
plain hook is a single policy and its own logits; MOD (:mod:`moalign.fronts.decoding`) mixes
the log-probabilities of several policies there, each with a KV cache of its own. Greedy
decoding takes the argmax of those logits; sampling applies ``temperature`` and nucleus
``top_p`` to them, whatever the hook.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from moalign.config.checking import Range
from moalign.evaluation.batching import (
    DEFAULT_MAX_BATCH_TOKENS,
    device_of,
    length_batches,
    record,
    run_batched,
)
from moalign.evaluation.prompts import keep_prompt_ids, pad_rows, prompt_ids, render_prompt

__all__ = ["GENERATION_RANGES", "NextToken", "generate_completions", "generation_problems",
           "keep_prompt_ids", "render_prompt", "takes_generation_settings"]

#: Allowed ranges of the numeric ``generation`` settings, wherever a config holds them (front
#: traces, ``moalign eval``): checked when the config is read.
GENERATION_RANGES = {"max_new_tokens": Range(low=1), "batch_size": Range(low=1),
                     "temperature": Range(low=0, low_open=True),
                     "top_p": Range(low=0, high=1, low_open=True),
                     "max_prompt_length": Range(low=1, none=True), "seed": Range(low=0),
                     "max_batch_tokens": Range(low=1, none=True)}


class NextToken:
    """The hook of the decode driver: the next-token logits of one policy, or of a mix.

    ``model`` runs the token loop (``model.generate``, with its KV cache). :meth:`start` is
    called before each batch with its left-padded prompts ``[B, P]`` and returns a logits
    processor (``(input_ids, scores) -> scores``, called once per generated token with the ids
    so far and ``model``'s next-token logits) or ``None`` for ``model``'s own logits, which is
    what this base class does. :meth:`models` are the models the hook runs, put in evaluation
    mode for the call.
    """

    def __init__(self, model: Any):
        self.model = model

    def models(self) -> list[Any]:
        return [self.model]

    def start(self, query_ids: Any, query_mask: Any) -> Callable[[Any, Any], Any] | None:
        return None


def generate_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int = 48,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
    seed: int = 0,
    max_prompt_length: int | None = None,
    logits_processor: Any = None,
    progress: bool = False,
) -> list[str]:
    """Generate one completion per prompt (left padding, batched, KV cache) and decode it.

    ``model`` is a model, or a :class:`NextToken` hook (e.g. MOD's mixture of policies).
    Prompts are batched longest first; a batch holds at most ``batch_size`` prompts and
    ``max_batch_tokens`` tokens counting ``max_new_tokens`` per row (``None``: no token limit).
    Sampling is seeded per batch (``seed + batch index``), so results do not depend on what ran
    before. ``max_prompt_length`` keeps the last tokens of long prompts, never cutting a weight
    condition (:func:`keep_prompt_ids`). ``logits_processor``: more processors of the logits
    (``transformers.LogitsProcessorList``), applied after the hook's.
    """
    import torch
    from transformers import LogitsProcessorList

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be positive")
    hook = model if isinstance(model, NextToken) else NextToken(model)
    device = device_of(hook.model)
    encoded = prompt_ids(tokenizer, prompts, max_prompt_length)
    batches = length_batches([len(ids) + max_new_tokens for ids in encoded],
                             batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: list[str | None] = [None] * len(encoded)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(encoded), desc="generating", unit="prompt")
    gen_kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, do_sample=do_sample,
                                      use_cache=True, pad_token_id=pad,
                                      eos_token_id=tokenizer.eos_token_id)
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    calls = [0]

    def one(batch: list[int]) -> None:
        ids, mask = pad_rows([encoded[i] for i in batch], pad)
        ids, mask = ids.to(device), mask.to(device)
        processors = [p for p in (hook.start(ids, mask),) if p is not None]
        processors += list(logits_processor or [])
        extra = {"logits_processor": LogitsProcessorList(processors)} if processors else {}
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed + calls[0])
            new = hook.model.generate(input_ids=ids, attention_mask=mask, **gen_kwargs,
                                      **extra)[:, ids.shape[1]:]
        calls[0] += 1
        units.append(float((new != pad).sum()))  # tokens generated, up to each row's end
        for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
            out[i] = text
        if bar is not None:
            bar.update(len(batch))

    models = list({id(m): m for m in hook.models()}.values())
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        with record("generation") as units:
            run_batched(one, batches)
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
        if bar is not None:
            bar.close()
    return [str(t) for t in out]


def takes_generation_settings(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``fn(..., **settings)``, a function that hands its settings to the driver, the
    signature of :func:`generate_completions`' settings in place of ``**settings``, so it shows
    (and is checked for) the same ones with the same defaults."""
    signature = inspect.signature(fn)
    own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    fn.__signature__ = signature.replace(parameters=own + _settings())  # type: ignore[attr-defined]
    return fn


def _settings() -> list[inspect.Parameter]:
    """The generation settings: :func:`generate_completions`' keyword parameters less the
    logits processors (a Python object, not a setting a config can hold)."""
    return [p for p in inspect.signature(generate_completions).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name != "logits_processor"]


def generation_problems(settings: Any, key: str = "generation") -> list[str]:
    """Unknown keys of a ``generation`` mapping (arguments of
    :func:`moalign.evaluation.generate_completions`)."""
    if not isinstance(settings, Mapping):
        return []
    from moalign.config.checking import did_you_mean

    allowed = [p.name for p in _settings()]
    return [f"'{key}': unknown generation setting '{name}'{did_you_mean(name, allowed)} "
            f"(settings: {', '.join(allowed)})" for name in settings if name not in allowed]
