"""Generating replies to prompts: batched, longest prompts first, with the KV cache.

:func:`generate_completions` renders each prompt (the chat template for conversational ones),
sorts the prompts by token length so a batch pads little, fills each batch up to a token budget
(prompt width plus ``max_new_tokens`` per row; a batch that runs out of memory is split), and
decodes greedily or with seeded sampling through ``model.generate`` with its KV cache; the
replies come back in the order of the prompts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from moalign.config.checking import Range
from moalign.evaluation.batching import (
    DEFAULT_MAX_BATCH_TOKENS,
    device_of,
    length_batches,
    record,
    run_batched,
)

__all__ = ["GENERATION_RANGES", "generate_completions", "generation_problems", "keep_prompt_ids",
           "left_pad", "render_prompt"]

#: Allowed ranges of the numeric ``generation`` settings, wherever a config holds them (front
#: traces, ``moalign eval``): checked when the config is read.
GENERATION_RANGES = {"max_new_tokens": Range(low=1), "batch_size": Range(low=1),
                     "temperature": Range(low=0, low_open=True),
                     "top_p": Range(low=0, high=1, low_open=True),
                     "max_prompt_length": Range(low=1, none=True), "seed": Range(low=0),
                     "max_batch_tokens": Range(low=1, none=True)}


def render_prompt(tokenizer: Any, prompt: Any) -> str:
    """Text fed to the model for ``prompt``.

    Chat-message prompts go through the tokenizer's chat template with the generation prompt
    appended; plain strings are used as they are.
    """
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['role']}: {m['content']}\n" for m in prompt) + "assistant: "


def _condition_end(text: str) -> int:
    """Characters at the start of a rendered prompt that hold its weight condition: everything
    up to the end of the condition line (0 when the prompt shows none)."""
    from moalign.tradeoff.conditioning import CONDITION_HEADER

    start = text.find(CONDITION_HEADER)
    if start < 0:
        return 0
    end = text.find("\n", start)
    return len(text) if end < 0 else end + 1


def keep_prompt_ids(tokenizer: Any, texts: Sequence[str], max_length: int | None
                    ) -> list[list[int]]:
    """Token ids of rendered prompts, each at most ``max_length`` long (``None``: uncut).

    The one truncation rule of training rollouts and evaluation: a long prompt keeps its last
    tokens, except that a weight condition (:func:`moalign.tradeoff.conditioning.apply_condition`)
    is never cut: the tokens up to the end of the condition line are kept as they are and the
    text after them loses its first tokens instead. A prompt whose condition leaves no room
    (its head alone takes ``max_length`` tokens or more) is refused: a
    :class:`~moalign.errors.DataError` counting such prompts.
    """
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=fast)
    out: list[list[int]] = []
    refused: list[int] = []
    for i, (text, ids) in enumerate(zip(texts, enc["input_ids"])):
        ids = list(ids)
        if max_length is None or len(ids) <= max_length:
            out.append(ids)
            continue
        end = _condition_end(text)
        if not end:
            head = 0
        elif fast:  # every token that starts inside the condition's head
            head = sum(1 for start, _ in enc["offset_mapping"][i] if start < end)
        else:
            head = len(tokenizer(text[:end], add_special_tokens=False)["input_ids"])
        if head >= max_length:
            refused.append(head)
            continue
        out.append(ids[:head] + ids[len(ids) - (max_length - head):])
    if refused:
        from moalign.errors import DataError

        raise DataError(f"{len(refused)} of {len(texts)} prompts refused: their weight condition "
                        f"(with what precedes it) takes {max(refused)} tokens, which leaves no "
                        f"room for the prompt within max_prompt_length={max_length}; raise "
                        f"max_prompt_length (a condition is never truncated)")
    return out


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Left-padded ``input_ids`` and ``attention_mask`` tensors ``[B, width]`` of token rows."""
    import torch

    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row):] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row):] = 1
    return ids, mask


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

    Prompts are batched longest first; a batch holds at most ``batch_size`` prompts and
    ``max_batch_tokens`` tokens counting ``max_new_tokens`` per row (``None``: no token limit).
    Sampling is seeded per batch (``seed + batch index``), so results do not depend on what ran
    before. ``max_prompt_length`` keeps the last tokens of long prompts, never cutting a weight
    condition (:func:`keep_prompt_ids`).
    """
    import torch

    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size and max_new_tokens must be positive")
    texts = [render_prompt(tokenizer, p) for p in prompts]
    device = device_of(model)
    encoded = keep_prompt_ids(tokenizer, texts, max_prompt_length)
    lengths = [len(ids) for ids in encoded]
    batches = length_batches([n + max_new_tokens for n in lengths], batch_size=batch_size,
                             max_batch_tokens=max_batch_tokens)
    old_side, old_trunc = tokenizer.padding_side, getattr(tokenizer, "truncation_side", "right")
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    out: list[str | None] = [None] * len(texts)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="generating", unit="prompt")
    gen_kwargs: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        use_cache=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    if logits_processor is not None:
        gen_kwargs["logits_processor"] = logits_processor
    calls = [0]

    def one(batch: list[int]) -> None:
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        input_ids, attention_mask = left_pad([encoded[i] for i in batch], pad)
        enc = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed + calls[0])
            ids = model.generate(**enc, **gen_kwargs)
        calls[0] += 1
        new = ids[:, enc["input_ids"].shape[1] :]
        if tokenizer.pad_token_id is not None:  # tokens generated, up to each row's end
            units.append(float((new != tokenizer.pad_token_id).sum()))
        else:  # pragma: no cover - prepare_tokenizer always sets a pad token
            units.append(float(new.numel()))
        for i, text in zip(batch, tokenizer.batch_decode(new, skip_special_tokens=True)):
            out[i] = text
        if bar is not None:
            bar.update(len(batch))

    was_training = model.training
    model.eval()
    try:
        with record("generation") as units:
            run_batched(one, batches)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_side, old_trunc
        model.train(was_training)
        if bar is not None:
            bar.close()
    return [str(t) for t in out]


def generation_problems(settings: Any, key: str = "generation") -> list[str]:
    """Unknown keys of a ``generation`` mapping (arguments of
    :func:`moalign.evaluation.generate_completions`)."""
    if not isinstance(settings, Mapping):
        return []
    import inspect

    from moalign.config.checking import did_you_mean

    allowed = [p for p in inspect.signature(generate_completions).parameters
               if p not in ("model", "tokenizer", "prompts", "logits_processor")]
    return [f"'{key}': unknown generation setting '{name}'{did_you_mean(name, allowed)} "
            f"(settings: {', '.join(allowed)})" for name in settings if name not in allowed]
