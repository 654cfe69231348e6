"""Rollouts for online training: prompt batches, tokenization, sampling, scoring inputs.

A :class:`PromptSampler` walks a prompt dataset in seeded, reshuffled epochs and can be saved
and restored exactly (resuming a run replays the same prompts). :func:`encode_prompts` and
:func:`sample_responses` turn prompts into left-padded queries and right-padded responses cut
after the first end-of-sequence token. Prompts are rendered, cut and padded by the helpers
evaluation generation uses (:mod:`moalign.evaluation.prompts`): a string is used as it is, a
list of chat messages goes through the tokenizer's chat template (TRL's convention; the
completion is then handed to the objectives as one assistant message).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from moalign.errors import DataError
from moalign.evaluation.prompts import is_conversational, pad_rows, prompt_ids

__all__ = [
    "PromptSampler", "Rollout", "as_prompt_rows", "cut_after_eos", "encode_prompts",
    "is_conversational", "sample_responses",
]


def as_prompt_rows(dataset: Any, required_columns: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Validate a prompt dataset and return it as a list of row dicts.

    Accepts a ``datasets.Dataset`` (or anything with ``column_names`` and row iteration), a
    list of dicts, or a list of prompts. Every row needs ``prompt`` and the ``required_columns``
    of the objectives; a problem raises :class:`DataError` naming the column or row.
    """
    if dataset is None:
        raise DataError("a train_dataset of prompts is required")
    if hasattr(dataset, "column_names"):
        columns = list(dataset.column_names)
        missing = [c for c in ("prompt", *required_columns) if c not in columns]
        if missing:
            raise DataError(
                f"the prompt dataset has no column '{missing[0]}' (columns: {', '.join(columns)})"
            )
        rows = [dict(r) for r in dataset]
    else:
        rows = [dict(r) if isinstance(r, Mapping) else {"prompt": r} for r in dataset]
    if not rows:
        raise DataError("the prompt dataset is empty")
    for i, row in enumerate(rows):
        for column in ("prompt", *required_columns):
            if column not in row:
                raise DataError(f"row {i} of the prompt dataset has no '{column}'")
        prompt = row["prompt"]
        if not (isinstance(prompt, str) or is_conversational(prompt)):
            raise DataError(
                f"row {i}: 'prompt' must be a string or a list of chat messages, got "
                f"{type(prompt).__name__}"
            )
    return rows


class PromptSampler:
    """Seeded epochs over ``n`` prompts: ``next_indices(k)`` returns the next ``k`` indices.

    Each epoch is a fresh permutation from ``seed + epoch``; the state is two integers.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.position = 0, 0

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def next_indices(self, k: int) -> list[int]:
        out: list[int] = []
        order = self._order()
        while len(out) < k:
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                order = self._order()
            take = min(k - len(out), self.n - self.position)
            out.extend(order[self.position:self.position + take])
            self.position += take
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


@dataclass
class Rollout:
    """One batch of sampled responses, before scoring.

    ``query_ids``/``query_mask`` ``[B, P]`` are left-padded prompts; ``response_ids``/
    ``response_mask`` ``[B, T]`` are right-padded responses (mask 1 up to and including the
    first end-of-sequence token). ``groups`` ``[B]`` numbers the prompt each response answers.
    """

    prompts: list[Any]
    completions: list[Any]
    columns: dict[str, list[Any]]
    groups: torch.Tensor
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor

    def select(self, index: torch.Tensor) -> Rollout:
        """The token tensors of the rows in ``index`` (texts and columns are not kept)."""
        on = index.to(self.query_ids.device)
        return Rollout([], [], {}, self.groups[index.cpu()], self.query_ids[on],
                       self.query_mask[on], self.response_ids[on], self.response_mask[on])

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask], dim=1)


def encode_prompts(tokenizer, prompts: Sequence[Any], max_length: int | None, device=None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize prompts, keep at most ``max_length`` tokens of each, and left-pad them.

    A long prompt keeps its last tokens, but a weight condition is never cut: the tokens up to
    the end of the condition line stay and the user text after them is cut from its start; a
    prompt whose condition leaves no room is refused with a counted
    :class:`~moalign.errors.DataError` (the rule of
    :func:`moalign.evaluation.prompts.keep_prompt_ids`, which evaluation follows too). Prompts
    are rendered by :func:`moalign.evaluation.prompts.render_prompt`, as evaluation renders them.
    """
    ids, mask = pad_rows(prompt_ids(tokenizer, prompts, max_length), tokenizer.pad_token_id)
    return ids.to(device), mask.to(device)


def _eos_ids(model, tokenizer) -> list[int]:
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.insert(0, tokenizer.eos_token_id)
    return eos


@torch.no_grad()
def sample_responses(model, tokenizer, query_ids: torch.Tensor, query_mask: torch.Tensor,
                     generation_kwargs: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one response per query; return right-padded ids and their mask ``[B, T]``.

    Tokens after the first end-of-sequence token are replaced by padding and masked out.
    """
    from transformers import GenerationConfig

    eos = _eos_ids(model, tokenizer)
    config = GenerationConfig(
        do_sample=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
        disable_compile=True, **dict(generation_kwargs),
    )
    was_training = model.training
    model.eval()
    try:
        out = model.generate(input_ids=query_ids, attention_mask=query_mask,
                             generation_config=config)
    finally:
        model.train(was_training)
    return cut_after_eos(out[:, query_ids.shape[1]:], eos, tokenizer.pad_token_id)


def cut_after_eos(response: torch.Tensor, eos_ids: Sequence[int], pad_id: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep each row up to and including its first end-of-sequence token; pad and mask the rest."""
    is_eos = torch.isin(response, torch.tensor(list(eos_ids), device=response.device))
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return response.masked_fill(after_eos, pad_id), (~after_eos).long()
