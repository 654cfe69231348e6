"""Reward models as objectives: input encoding, heads, and training them (``moalign reward``).

- :mod:`moalign.rewards.model`: :class:`RewardModelObjective`, any sequence-classification
  checkpoint as an objective (batched, left-truncated prompts, multi-head);
- :mod:`moalign.rewards.head`: the prompt / reply encoding shared by training and scoring, and a
  Bradley-Terry head fitted on frozen features;
- :mod:`moalign.rewards.training`: :func:`train_reward_model` (head-only, or TRL's
  ``RewardTrainer`` full / LoRA) and its held-out pairwise accuracy.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "model": ["TRANSFORMS", "RewardModelObjective"],
    "head": ["RewardInputSpec", "encode_reward_input", "fit_bradley_terry", "pairwise_accuracy"],
    "training": ["RewardTrainingConfig", "RewardTrainingResult", "default_reward_model_dir",
                 "load_preference_pairs", "train_reward_model"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
