"""A task the tiny random model learns in a few RL steps, for the RL front tests.

The tiny model's tokenizer is byte-level, so a reply of random bytes is about half ASCII
characters (bytes < 128) and half others (the rest decode to replacement or multi-byte
characters). Two objectives that conflict exactly, the share of ASCII characters in the reply
and the share of the others, move within 20 MO-GRPO steps of full fine-tuning: from ~0.5 to
~0.6 at weights (0.9, 0.1) and to ~0.4 at (0.1, 0.9).

Registered in-process by :func:`register` (not among the built-ins); a child process of a
test calls it too.
"""

from __future__ import annotations

from moalign.objective import Objective, as_text, register_objective
from moalign.objective.registry import _registered

__all__ = ["GRPO_TRAIN", "PPO_TRAIN", "AsciiShare", "OtherShare", "ascii_share", "front_config",
           "register"]


def ascii_share(text: str) -> float:
    """Share of ASCII characters in ``text`` (0.5 for an empty reply: no information)."""
    return sum(ch < "\x80" for ch in text) / len(text) if text else 0.5


class AsciiShare(Objective):
    """Share of ASCII characters in the reply."""

    name = "ascii_share"
    description = "share of ASCII characters in the reply (test task)"

    def score(self, prompts, completions, **columns):
        return [ascii_share(as_text(c)) for c in completions]


class OtherShare(Objective):
    """Share of non-ASCII characters in the reply."""

    name = "other_share"
    description = "share of non-ASCII characters in the reply (test task)"

    def score(self, prompts, completions, **columns):
        return [1.0 - ascii_share(as_text(c)) for c in completions]


def register() -> None:
    """Register both objectives in-process (again, if a test reset the registrations)."""
    for cls in (AsciiShare, OtherShare):
        if _registered.get(cls.name) is None:
            register_objective(cls.name)(cls)


#: MO-GRPO settings that move the tiny model on this task in a second or two per run.
GRPO_TRAIN = {"max_steps": 20, "learning_rate": 1e-2, "per_device_train_batch_size": 8,
              "num_generations": 4, "max_completion_length": 16, "beta": 0.0,
              "max_prompt_tokens": 40}
#: MO-PPO settings of the same size.
PPO_TRAIN = {"max_steps": 6, "learning_rate": 3e-3, "batch_size": 8, "num_samples_per_prompt": 2,
             "max_new_tokens": 16, "mini_batch_size": 16, "ppo_epochs": 1, "kl_coef": 0.0,
             "max_prompt_tokens": 40}


def front_config(out, trainer: str = "grpo", method: str = "sweep", **changes) -> dict:
    """An RL front on this task: GSM8K prompts (cut to their last 40 tokens), full fine-tuning
    of the tiny model, 32 held-out prompts scored on 16 sampled tokens."""
    cfg = dict(method=method, trainer=trainer, model="tiny", dataset="gsm8k",
               objectives=["ascii_share", "other_share"], output_dir=str(out), grid=2,
               train_pairs=64, eval_prompts=32, lora=None, progress=False,
               generation={"max_new_tokens": 16, "do_sample": True, "batch_size": 16},
               train=dict(GRPO_TRAIN if trainer == "grpo" else PPO_TRAIN))
    cfg.update(changes)
    return cfg
