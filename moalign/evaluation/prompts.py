"""Prompts as a model reads them: rendered, tokenized, cut and padded, one way everywhere.

Evaluation generation, MOD decoding, log-probs and training rollouts all go through these:

- :func:`render_prompt`: a string is used as it is; a list of chat messages goes through the
  tokenizer's chat template with the generation prompt appended (TRL's convention);
- :func:`keep_prompt_ids` / :func:`prompt_ids`: token ids of rendered prompts, long ones cut by
  the one truncation rule (the last tokens are kept, a weight condition never cut);
- :func:`pad_rows`: token rows as padded ``input_ids`` / ``attention_mask`` tensors (left
  padding for generation, right padding for scoring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["is_conversational", "keep_prompt_ids", "pad_rows", "prompt_ids", "render_prompt"]


def is_conversational(prompt: Any) -> bool:
    """Whether ``prompt`` is a non-empty list of chat messages (mappings with a ``role``)."""
    return isinstance(prompt, Sequence) and not isinstance(prompt, str) and bool(prompt) and all(
        isinstance(m, Mapping) and "role" in m for m in prompt
    )


def render_prompt(tokenizer: Any, prompt: Any) -> str:
    """Text fed to the model for ``prompt``.

    Chat-message prompts go through the tokenizer's chat template with the generation prompt
    appended (``role: content`` lines and ``assistant: `` for a tokenizer without a template);
    plain strings are used as they are.
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


def prompt_ids(tokenizer: Any, prompts: Sequence[Any], max_length: int | None
               ) -> list[list[int]]:
    """:func:`render_prompt` then :func:`keep_prompt_ids`: what every generation feeds a model."""
    return keep_prompt_ids(tokenizer, [render_prompt(tokenizer, p) for p in prompts], max_length)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, *, side: str = "left",
             multiple: int = 1) -> tuple[Any, Any]:
    """Padded ``input_ids`` and ``attention_mask`` tensors ``[B, width]`` of token rows.

    ``side`` is where the padding goes (``"left"`` for generation, ``"right"`` for scoring);
    the width is the longest row rounded up to a multiple of ``multiple`` (at least one token
    when ``multiple`` > 1: fewer distinct shapes, and the pads are masked).
    """
    import torch

    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    width = max((len(r) for r in rows), default=0)
    if multiple > 1:
        width = -(-max(width, 1) // multiple) * multiple
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            ids[i, span] = torch.tensor(list(row), dtype=torch.long)
            mask[i, span] = 1
    return ids, mask
