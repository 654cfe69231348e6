"""Data, objectives and split-independent sampling of ``dist_check.py`` (the 1-vs-N-process
check): preference pairs on which two objectives disagree, two dense rule-based text objectives,
and responses sampled each from its own seeded generator, so that a response is the same
whichever process draws it."""

from __future__ import annotations

import zlib
from typing import Any

VOWELS, CONSONANTS = "aeiou", "bdfgk"

# --------------------------------------------------------------------------------------------
# Data and objectives
# --------------------------------------------------------------------------------------------


def preference_pairs(n: int = 32, seed: int = 0):
    """Pairs on which the two objectives disagree: ``a`` prefers vowels, ``b`` consonants.

    Every pair is labelled for both objectives, so per-process label means equal global ones.
    """
    import numpy as np
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    rows: dict[str, list[Any]] = {k: [] for k in
                                  ("prompt", "chosen", "rejected", "pref_a", "pref_b", "margin_b")}
    for i in range(n):
        v = " " + "".join(rng.choice(list(VOWELS), size=6))
        c = " " + "".join(rng.choice(list(CONSONANTS), size=6))
        vowel_first = bool(rng.integers(2))
        chosen, rejected = (v, c) if vowel_first else (c, v)
        rows["prompt"].append(f"Q{i % 7}:")
        rows["chosen"].append(chosen)
        rows["rejected"].append(rejected)
        rows["pref_a"].append(1.0 if vowel_first else -1.0)
        rows["pref_b"].append(-1.0 if vowel_first else 1.0)
        # MODPO margin of objective b: r_b(chosen) - r_b(rejected), r_b = consonant fraction
        rows["margin_b"].append(-1.0 if vowel_first else 1.0)
    return Dataset.from_dict(rows)


def text_objectives():
    """Two dense rule-based objectives of a completion's characters (every response of a random
    tiny model gets a distinct, non-zero score): ``ascii`` (fraction of ASCII characters) and
    ``high`` (mean of ``min(ord(c), 255) / 255``)."""
    from moalign.objective import Objective, as_text

    class CharStat(Objective):
        def __init__(self, name, fn):
            self.name, self.fn = name, fn

        def score(self, prompts, completions, **columns):
            return [self.fn(t) if t else 0.0 for t in (as_text(c) for c in completions)]

    return [CharStat("ascii", lambda t: sum(ord(c) < 128 for c in t) / len(t)),
            CharStat("high", lambda t: sum(min(ord(c), 255) for c in t) / (255 * len(t)))]


# --------------------------------------------------------------------------------------------
# Sampling that does not depend on how the batch is split
# --------------------------------------------------------------------------------------------


def _row_seed(prompt_ids: list[int], occurrence: int, step: int) -> int:
    return zlib.crc32(bytes(f"{prompt_ids}|{occurrence}|{step}", "utf-8"))


def seeded_sample(model, prompts: list[list[int]], seeds: list[int], max_new_tokens: int,
                  suppress: list[int]) -> list[list[int]]:
    """Sample each response on its own, from its own generator: ``max_new_tokens`` tokens."""
    import torch

    out = []
    with torch.no_grad():
        for ids, seed in zip(prompts, seeds):
            gen = torch.Generator().manual_seed(seed)
            seq = list(ids)
            for _ in range(max_new_tokens):
                logits = model(torch.tensor([seq])).logits[0, -1].float()
                logits[suppress] = float("-inf")
                seq.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)))
            out.append(seq[len(ids):])
    return out


def ragged_length(seed: int, max_new_tokens: int) -> int:
    """A response length from 1 to ``max_new_tokens`` drawn from the response's seed (a function
    of the seed alone, so a row gets the same length whichever process samples it)."""
    return 1 + (seed >> 8) % max_new_tokens


def pad_responses(responses: list[list[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Right-pad responses to the longest; return the ids and the masks (1 on response tokens)."""
    width = max(len(r) for r in responses)
    ids = [r + [pad_id] * (width - len(r)) for r in responses]
    masks = [[1] * len(r) + [0] * (width - len(r)) for r in responses]
    return ids, masks


def _occurrences(keys: list[Any]) -> list[int]:
    seen: dict[str, int] = {}
    result = []
    for k in keys:
        key = repr(k)
        result.append(seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    return result
