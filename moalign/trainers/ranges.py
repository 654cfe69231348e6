"""The allowed numeric ranges of the trainers' config fields, checked when a config is read.

One table per family, applied by each config's ``__post_init__`` (so the Python API refuses a
bad value when the config is built) and by the file checks of ``moalign train`` and
``moalign trace`` (so a YAML file is refused before any model or data loads). The checker is
:func:`moalign.config.checking.range_problems`; the messages name the key and the range.
"""

from __future__ import annotations

from typing import Any

from moalign.config.checking import Range, range_problems

__all__ = ["DPO_RANGES", "GRPO_RANGES", "PPO_RANGES", "TRAINING_RANGES", "trainer_range_problems"]

_POSITIVE_INT = Range(low=1)
_NON_NEGATIVE = Range(low=0)
_POSITIVE = Range(low=0, low_open=True)

#: Fields of ``transformers.TrainingArguments`` that every TRL-based trainer shares.
TRAINING_RANGES: dict[str, Range] = {
    # TRL / transformers read any max_steps <= 0 as "train num_train_epochs": only -1, the
    # documented "not set" value, means that here
    "max_steps": Range(low=1, also=(-1,), note="train num_train_epochs"),
    "num_train_epochs": _POSITIVE,
    "per_device_train_batch_size": _POSITIVE_INT,
    "per_device_eval_batch_size": _POSITIVE_INT,
    "gradient_accumulation_steps": _POSITIVE_INT,
    "learning_rate": _NON_NEGATIVE,  # 0 is the no-learning control of the tests
    "weight_decay": _NON_NEGATIVE,
    "warmup_ratio": Range(low=0, high=1),
    "warmup_steps": _NON_NEGATIVE,
    "max_grad_norm": Range(low=0, none=True),
    "logging_steps": _POSITIVE,
    "save_steps": _POSITIVE,
    "eval_steps": Range(low=0, low_open=True, none=True),
    "save_total_limit": Range(low=1, none=True),
    "seed": _NON_NEGATIVE,
    "max_length": Range(low=1, none=True),
}
#: The DPO family (MO-DPO, conditioned DPO, MODPO).
DPO_RANGES: dict[str, Range] = {
    **TRAINING_RANGES,
    "beta": _POSITIVE,
    "label_smoothing": Range(low=0, high=0.5, high_open=True),
    "max_prompt_length": Range(low=1, none=True),
    "max_completion_length": Range(low=1, none=True),
}
#: MO-GRPO (``beta: 0`` is TRL's "no KL term").
GRPO_RANGES: dict[str, Range] = {
    **TRAINING_RANGES,
    "beta": _NON_NEGATIVE,
    "num_generations": Range(low=2, none=True),
    "max_completion_length": Range(low=1, none=True),
    "max_prompt_length": Range(low=1, none=True),
    "temperature": _POSITIVE,
    "top_p": Range(low=0, high=1, low_open=True),
    "epsilon": _NON_NEGATIVE,
    "num_iterations": _POSITIVE_INT,
}
#: MO-PPO (moalign's own loop).
PPO_RANGES: dict[str, Range] = {
    "max_steps": _POSITIVE_INT, "batch_size": _POSITIVE_INT,
    "num_samples_per_prompt": _POSITIVE_INT, "max_new_tokens": _POSITIVE_INT,
    "ppo_epochs": _POSITIVE_INT, "mini_batch_size": _POSITIVE_INT,
    "micro_batch_size": Range(low=1, none=True), "logging_steps": _POSITIVE_INT,
    "save_steps": _NON_NEGATIVE, "seed": _NON_NEGATIVE, "max_prompt_length": Range(low=1, none=True),
    "temperature": _POSITIVE, "top_k": _NON_NEGATIVE, "top_p": Range(low=0, high=1, low_open=True),
    "learning_rate": _NON_NEGATIVE, "critic_learning_rate": Range(low=0, none=True),
    "weight_decay": _NON_NEGATIVE, "warmup_steps": _NON_NEGATIVE,
    "max_grad_norm": Range(low=0, none=True), "gamma": Range(low=0, high=1),
    "lam": Range(low=0, high=1), "cliprange": _POSITIVE, "cliprange_value": Range(
        low=0, low_open=True, none=True), "kl_coef": _NON_NEGATIVE, "lagrangian_lr": _NON_NEGATIVE,
    "lagrangian_max": Range(low=0, none=True),
}


def trainer_range_problems(config: Any, ranges: dict[str, Range], prefix: str = "") -> list[str]:
    """The range problems of a config object or mapping against one of the tables above."""
    return range_problems(config, ranges, prefix=prefix)
