"""Log-probabilities of completions, tokenized as the DPO trainers tokenize them.

- :func:`sequence_logprobs`: ``sum log p(completion | prompt)`` per pair;
- :func:`pair_logprobs`: the same for the chosen and rejected replies of preference rows.

Pairs are batched widest first, each batch as large as the token budget allows
(:func:`moalign.evaluation.batching.length_batches`; a batch that runs out of memory is split),
and only the positions that predict completion tokens go through the output layer (the
model's ``logits_to_keep``), so the prompt's share of a 49k-word output layer is not computed.
The log-probability of a token is its logit minus the ``logsumexp`` of its row, in float32
whatever the model's precision.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from moalign.evaluation.batching import (
    DEFAULT_MAX_BATCH_TOKENS,
    device_of,
    length_batches,
    record,
    run_batched,
)
from moalign.evaluation.prompts import render_prompt
from moalign.objective import as_text

__all__ = ["pair_logprobs", "sequence_logprobs"]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _completion_ids(tokenizer: Any, prompt: Any, completions: Sequence[Any]):
    """Untruncated ``(prompt ids, [ids of each completion])``, as the DPO trainers see them.

    Plain text (prompt and completions strings) follows TRL's DPO tokenization: EOS appended to
    a completion that does not end with it, prompt + completion tokenized as one text with the
    tokenizer's special tokens (a BOS, if it adds one), and every completion starting where the
    first of them parts from the prompt tokenized alone (tokens can merge across the boundary).
    Otherwise (unchanged) prompt and completion are tokenized apart, without special tokens: a
    conversational prompt through the chat template, and a conversational completion as the
    text the template appends for its assistant turn.
    """
    if isinstance(prompt, str) and all(isinstance(c, str) for c in completions):
        eos = tokenizer.eos_token
        p = tokenizer(prompt)["input_ids"]
        full = [tokenizer(prompt + (c if not eos or c.endswith(eos) else c + eos))["input_ids"]
                for c in completions]
        n = min([len(p)] + [_common_prefix(p, f) for f in full])
        return p[:n], [f[n:] for f in full]
    prompt_text = render_prompt(tokenizer, prompt)
    p = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    out = []
    for completion in completions:
        completion_text = as_text(completion)
        if (not isinstance(completion, str) and not isinstance(prompt, str)
                and getattr(tokenizer, "chat_template", None)):
            full = tokenizer.apply_chat_template(
                list(prompt) + [{"role": "assistant", "content": completion_text}], tokenize=False
            )
            if full.startswith(prompt_text):
                completion_text = full[len(prompt_text) :]
        out.append(tokenizer(completion_text, add_special_tokens=False)["input_ids"])
    return p, out


def _truncate(p: list[int], c: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """At most ``max_length`` ids together: the completion is cut from the right (as TRL's
    trainers do), so the start of the prompt, where a weight condition lives, is kept; only a
    prompt longer than ``max_length - 1`` ids on its own is cut, from the left, to leave room
    for one completion token."""
    if len(p) > max_length - 1:
        p = p[len(p) - (max_length - 1) :]
    return p, c[: max_length - len(p)]


def _tokenize_pair(tokenizer: Any, prompt: Any, completion: Any, max_length: int):
    """Token ids of prompt and completion (see :func:`_completion_ids`), at most
    ``max_length`` together (see :func:`_truncate`)."""
    p, (c,) = _completion_ids(tokenizer, prompt, [completion])
    return _truncate(p, c, max_length)


def _takes_logits_to_keep(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        return False


def _contiguous_input(module: Any, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


@contextlib.contextmanager
def contiguous_output_layer(model: Any) -> Iterator[None]:
    """Hand the output layer a contiguous input inside the block. With ``logits_to_keep`` the
    model slices its last hidden states along the sequence; where that slice is not contiguous
    (a peft model on the CPU), torch runs the output layer as a batched matmul that copies the
    whole vocabulary-sized weight once per row: 3.5x slower for SmolLM2 in bfloat16
    (``benchmarks/cpu_speed.py``). A copy of the kept hidden states costs almost nothing."""
    get = getattr(model, "get_output_embeddings", None)
    layer = get() if callable(get) else None
    handle = layer.register_forward_pre_hook(_contiguous_input) if layer is not None else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def _logprobs_of_ids(model: Any, pairs: Sequence[tuple[list[int], list[int]]], pad: int,
                     batch_size: int, max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS
                     ) -> np.ndarray:
    """``sum log p(c | p)`` for each ``(p, c)`` of token ids: right-padded batches, widest
    first, as large as ``max_batch_tokens`` allows (at most ``batch_size`` rows)."""
    import torch

    device = device_of(model)
    out = np.zeros(len(pairs), dtype=np.float64)
    lengths = [len(p) + len(c) for p, c in pairs]
    trim = _takes_logits_to_keep(model)

    def one(batch: list[int]) -> None:
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        comp = torch.zeros_like(ids, dtype=torch.bool)
        for r, i in enumerate(batch):
            p, c = pairs[i]
            ids[r, : lengths[i]] = torch.tensor(list(p) + list(c), dtype=torch.long)
            attn[r, : lengths[i]] = 1
            comp[r, len(p) : lengths[i]] = True
        # the logits at position t predict token t + 1: keep those of the earliest completion on
        first = max(min(len(pairs[i][0]) for i in batch) - 1, 0)
        kwargs = {"logits_to_keep": width - first} if trim else {}
        ids, attn, comp = ids.to(device), attn.to(device), comp.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=attn, **kwargs).logits
            offset = width - logits.shape[1]
            logits = logits[:, :-1].float()
            targets = ids[:, offset + 1 :]
            tok = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
            summed = (tok * comp[:, offset + 1 :]).sum(-1)
        out[batch] = summed.double().cpu().numpy()

    was_training = model.training
    model.eval()
    try:
        with record("logprob") as units, contiguous_output_layer(model):
            run_batched(one, length_batches(lengths, batch_size=batch_size,
                                            max_batch_tokens=max_batch_tokens))
            units.append(sum(lengths))
    finally:
        model.train(was_training)
    return out


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def sequence_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    *,
    batch_size: int = 64,
    max_length: int = 512,
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
) -> np.ndarray:
    """Sum of ``log p(completion tokens | prompt)`` for each pair, shape ``[N]`` (float64).

    Tokenized as the DPO trainers tokenize (TRL): plain-text completions end with EOS (appended
    when missing) and are tokenized together with their prompt; conversational prompts use the
    chat template, and a conversational completion is the text the template appends for an
    assistant turn. Long completions are cut from the right; a prompt too long on its own from
    the left. Batches: at most ``batch_size`` sequences and ``max_batch_tokens`` padded tokens
    (``None``: no token limit).
    """
    pairs = [_tokenize_pair(tokenizer, p, c, max_length) for p, c in zip(prompts, completions)]
    return _logprobs_of_ids(model, pairs, _pad_id(tokenizer), batch_size, max_batch_tokens)


def pair_logprobs(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 64,
    max_length: int = 512,
    transform_prompt: Callable[[Any], Any] | None = None,
    max_batch_tokens: int | None = DEFAULT_MAX_BATCH_TOKENS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(log p(chosen | prompt), log p(rejected | prompt))`` for preference rows, ``[N]`` each.

    Tokenized as the DPO trainers tokenize a pair (see :func:`sequence_logprobs`); for plain
    text, chosen and rejected start where the first of them parts from the prompt, as in TRL.
    Chosen and rejected sequences are batched together (widest first).
    """
    seqs = []
    for r in rows:
        prompt = transform_prompt(r["prompt"]) if transform_prompt else r["prompt"]
        p, (c, j) = _completion_ids(tokenizer, prompt, [r["chosen"], r["rejected"]])
        seqs += [_truncate(p, c, max_length), _truncate(p, j, max_length)]
    both = _logprobs_of_ids(model, seqs, _pad_id(tokenizer), batch_size, max_batch_tokens)
    return both[0::2].copy(), both[1::2].copy()
