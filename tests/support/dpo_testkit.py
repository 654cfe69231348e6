"""Small synthetic preference data and tiny-model helpers for the DPO-family trainer tests."""

from __future__ import annotations

import copy
import os

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOWELS = "aeiou"
CONSONANTS = "bdfgk"


def reply(rng: np.random.Generator, alphabet: str, n: int = 6) -> str:
    return " " + "".join(rng.choice(list(alphabet), size=n))


def conflicting_pairs(n: int, seed: int = 0, chat: bool = False):
    """Pairs whose two objectives disagree on every row.

    Objective ``a`` prefers replies made of vowels, ``b`` replies made of consonants. Rows are
    oriented at random, so ``chosen`` is the vowel reply in about half of them
    (``pref_a = +1, pref_b = -1``) and the consonant reply in the others.
    """
    from datasets import Dataset

    rng = np.random.default_rng(seed)
    rows = {"prompt": [], "chosen": [], "rejected": [], "pref_a": [], "pref_b": []}
    for i in range(n):
        prompt = f"Q{i % 7}:"
        v, c = reply(rng, VOWELS), reply(rng, CONSONANTS)
        vowel_first = bool(rng.integers(2))
        chosen, rejected = (v, c) if vowel_first else (c, v)
        if chat:
            prompt = [{"role": "user", "content": prompt}]
            chosen = [{"role": "assistant", "content": chosen}]
            rejected = [{"role": "assistant", "content": rejected}]
        rows["prompt"].append(prompt)
        rows["chosen"].append(chosen)
        rows["rejected"].append(rejected)
        rows["pref_a"].append(1.0 if vowel_first else -1.0)
        rows["pref_b"].append(-1.0 if vowel_first else 1.0)
    return Dataset.from_dict(rows)


def cpu_args(output_dir, **overrides):
    """Keyword arguments for a fast, deterministic CPU run of a TRL-based config."""
    kwargs = dict(
        output_dir=str(output_dir), use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to="none", per_device_train_batch_size=8, per_device_eval_batch_size=16,
        learning_rate=5e-3, max_steps=2, logging_steps=1, save_strategy="no", seed=0,
        disable_tqdm=True, dataloader_num_workers=0, beta=0.5, max_length=64,
    )
    kwargs.update(overrides)
    return kwargs


def tiny_pair(seed: int = 0, **config):
    """``(model, ref_model, tokenizer)``: a tiny random Llama and an identical frozen copy."""
    from moalign.models import tiny_causal_lm

    model, tok = tiny_causal_lm(seed, **config)
    return model, copy.deepcopy(model), tok


def rows_of(trainer, indices):
    """Prepared (tokenized) rows of a trainer's training set."""
    return [trainer.train_dataset[int(i)] for i in indices]


def batch_of(trainer, rows):
    """The collated, device-placed batch the trainer would see for ``rows``."""
    return trainer._prepare_inputs(trainer.data_collator(rows))


def completion_logprob(model, prompt_ids, completion_ids) -> float:
    """``sum log p(completion | prompt)`` from a plain forward pass and a log-softmax."""
    import torch

    ids = torch.tensor([list(prompt_ids) + list(completion_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(1, ids[0, 1:].unsqueeze(1)).squeeze(1)
    return float(logp[len(prompt_ids) - 1:].sum())


def logratio_margins(model, ref, rows) -> list[float]:
    """``(log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)`` per prepared row."""
    out = []
    for r in rows:
        c = completion_logprob(model, r["prompt_ids"], r["chosen_ids"]) - \
            completion_logprob(ref, r["prompt_ids"], r["chosen_ids"])
        j = completion_logprob(model, r["prompt_ids"], r["rejected_ids"]) - \
            completion_logprob(ref, r["prompt_ids"], r["rejected_ids"])
        out.append(c - j)
    return out
