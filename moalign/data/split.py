"""Held-out splits of preference pairs, and prompt truncation that protects completions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from moalign.data.schema import PREF_PREFIX, column_values, prompt_key
from moalign.errors import DataError

__all__ = ["MAX_PROMPT_TOKENS", "TEST_SIZE", "heldout_split", "train_test_split_pairs",
           "truncate_prompt", "truncate_prompts"]

#: Held-out fraction that ``moalign train``, ``moalign trace``, ``moalign eval`` and
#: ``moalign reward`` leave out of training by default (one split: :func:`heldout_split`).
TEST_SIZE = 0.2
#: Default prompt length, in tokens, of training and evaluation (longer prompts keep their end).
MAX_PROMPT_TOKENS = 96

_HUMAN = "\n\nHuman: "
_FINAL = "\n\nAssistant:"


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def train_test_split_pairs(
    ds: Dataset,
    test_size: float | int = TEST_SIZE,
    seed: int = 0,
    *,
    group_by_prompt: bool = True,
    stratify: bool = True,
) -> DatasetDict:
    """Deterministic ``{"train", "test"}`` split of a preference dataset.

    ``test_size``: a fraction in (0, 1) or a number of rows. With ``group_by_prompt`` all pairs
    that share a prompt land on the same side (no prompt leaks from train into test); with
    ``stratify`` each pattern of labelled objectives (e.g. helpful-only rows vs harmless-only
    rows of a mixed dataset) is split in the same proportion. Whole prompt groups are moved, so
    the test size is met as closely as the groups allow. Rows keep their original order; the
    same ``seed`` gives the same split.
    """
    n = len(ds)
    if n < 2:
        raise DataError(f"cannot split {n} row(s) into train and test")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise DataError(f"test_size must be a fraction or a row count, got {test_size!r}")
    if isinstance(test_size, float):
        if not 0.0 < test_size < 1.0:
            raise DataError(f"test_size as a fraction must be in (0, 1), got {test_size}")
        fraction = test_size
    else:
        if not 0 < test_size < n:
            raise DataError(f"test_size as a row count must be in [1, {n - 1}], got {test_size}")
        fraction = test_size / n

    prompts = column_values(ds, "prompt") if group_by_prompt else None
    label_cols = [c for c in ds.column_names if c.startswith(PREF_PREFIX)] if stratify else []
    labelled = (
        np.stack([~np.isnan(np.asarray(column_values(ds, c), dtype=np.float64)) for c in label_cols], axis=1)
        if label_cols else np.zeros((n, 0), dtype=bool)
    )
    groups: dict[str, list[int]] = {}
    for i in range(n):
        key = prompt_key(prompts[i]) if group_by_prompt else str(i)
        groups.setdefault(key, []).append(i)
    strata: dict[tuple[bool, ...], list[list[int]]] = {}
    for members in groups.values():
        strata.setdefault(tuple(labelled[members[0]].tolist()), []).append(members)

    rng = np.random.default_rng(seed)
    test: list[int] = []
    for pattern in sorted(strata):
        members = strata[pattern]
        target = round(fraction * sum(len(m) for m in members))
        taken = 0
        for g in rng.permutation(len(members)):
            if taken >= target:
                break
            test.extend(members[g])
            taken += len(members[g])
    test_set = set(test)
    if not test_set or len(test_set) == n:
        raise DataError(f"test_size={test_size} leaves an empty train or test side for {n} rows")
    train_idx = [i for i in range(n) if i not in test_set]
    return DatasetDict({"train": ds.select(train_idx), "test": ds.select(sorted(test_set))})


def heldout_split(ds: Dataset, test_size: float | int = TEST_SIZE, seed: int = 0
                  ) -> tuple[Dataset, Dataset]:
    """``(train, test)``: the one held-out split of every command. ``test`` is the held-out side
    of :func:`train_test_split_pairs` in dataset order; ``train`` is the other side, shuffled
    with ``seed``. ``moalign train``, front traces, ``moalign eval`` (``split: test``) and the
    report all call it, so the same data, ``test_size`` and ``seed`` hold out the same rows."""
    split = train_test_split_pairs(ds, test_size=test_size, seed=seed)
    return split["train"].shuffle(seed=seed), split["test"]


# --------------------------------------------------------------------------------------------
# Truncation
# --------------------------------------------------------------------------------------------


def _counter(tokenizer, max_prompt_tokens: int):
    if isinstance(max_prompt_tokens, bool) or not isinstance(max_prompt_tokens, int) or max_prompt_tokens < 1:
        raise DataError(f"max_prompt_tokens must be a positive integer, got {max_prompt_tokens!r}")

    def count_text(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_chat(messages: list) -> int:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return count_text(text)

    return count_text, count_chat


def _longest_fitting_suffix(content: str, fits) -> str | None:
    """The longest suffix ``content[s:]`` with ``fits(suffix)`` (bisection on ``s``), left-stripped."""
    if not fits(""):
        return None
    lo, hi = 0, len(content)  # invariant: content[hi:] fits
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(content[mid:]):
            hi = mid
        else:
            lo = mid + 1
    return content[hi:].lstrip()  # a cut word's leading space is noise


def _truncate_chat(messages: list, limit: int, count) -> list:
    if count(messages) <= limit:
        return messages
    head = [m for m in list(messages)[:1] if m["role"] == "system"]
    turns = list(messages)[len(head):]
    for start in range(1, len(turns)):
        if turns[start]["role"] == "user" and count(head + turns[start:]) <= limit:
            return head + turns[start:]
    last = turns[-1]
    for system in (head, []):  # drop the system message only if it alone is too long

        def fits(suffix: str, system=system) -> bool:
            return count(system + [{**last, "content": suffix}]) <= limit

        content = _longest_fitting_suffix(last["content"], fits)
        if content is not None:
            return system + [{**last, "content": content}]
    raise DataError(f"max_prompt_tokens={limit} is too small for the chat template alone")


def _truncate_text(prompt: str, limit: int, count) -> str:
    if count(prompt) <= limit:
        return prompt
    if prompt.startswith(_HUMAN) and prompt.endswith(_FINAL):  # HH transcript: whole turns
        starts = []
        k = prompt.find(_HUMAN, 1)
        while k != -1:
            starts.append(k)
            k = prompt.find(_HUMAN, k + 1)
        for k in starts:
            if count(prompt[k:]) <= limit:
                return prompt[k:]
        last = prompt.rfind(_HUMAN)
        body = prompt[last + len(_HUMAN): len(prompt) - len(_FINAL)]
        content = _longest_fitting_suffix(body, lambda s: count(_HUMAN + s + _FINAL) <= limit)
        if content is not None:
            return _HUMAN + content + _FINAL
    content = _longest_fitting_suffix(prompt, lambda s: count(s) <= limit)
    return content if content is not None else ""


def truncate_prompt(prompt: Any, tokenizer, max_prompt_tokens: int) -> Any:
    """Shorten ``prompt`` to at most ``max_prompt_tokens`` tokens, keeping its END.

    Chat prompts are counted as rendered by the tokenizer's chat template with the generation
    prompt; earliest turns are dropped first (a leading system message is kept; the result
    starts with a user turn), then the last user turn is trimmed from the left. Text prompts in
    HH format drop whole early turns the same way; other text is trimmed from the left. A prompt
    that already fits is returned unchanged. Use this before DPO: TRL 1.16 truncates
    prompt+completion together from the right, which would cut the completions.
    """
    count_text, count_chat = _counter(tokenizer, max_prompt_tokens)
    if isinstance(prompt, str):
        return _truncate_text(prompt, max_prompt_tokens, count_text)
    if isinstance(prompt, list) and prompt and all(isinstance(m, Mapping) for m in prompt):
        return _truncate_chat(prompt, max_prompt_tokens, count_chat)
    raise DataError(f"a prompt is a string or a list of chat messages, got {type(prompt).__name__}")


def truncate_prompts(ds: Dataset, tokenizer, max_prompt_tokens: int) -> tuple[Dataset, int]:
    """Apply :func:`truncate_prompt` to every row's ``prompt``: ``(dataset, rows shortened)``."""
    if "prompt" not in ds.column_names:
        raise DataError(f"dataset has no column 'prompt' (columns: {', '.join(ds.column_names)})")
    _counter(tokenizer, max_prompt_tokens)
    # a shuffled, selected dataset reads through an index mapping; with columns selected on
    # top of it, datasets can gather the wrong rows: write the rows out first
    ds = ds.flatten_indices()
    prompts = column_values(ds, "prompt")
    new = [truncate_prompt(p, tokenizer, max_prompt_tokens) for p in prompts]
    changed = sum(a != b for a, b in zip(prompts, new, strict=True))
    if changed == 0:
        return ds, 0
    feature = ds.features["prompt"]
    if ds.column_names == ["prompt"]:  # removing the only column would leave no rows
        return Dataset.from_dict({"prompt": new}, features=ds.features), changed
    out = ds.remove_columns("prompt").add_column("prompt", new, feature=feature)
    return out.select_columns(ds.column_names), changed

