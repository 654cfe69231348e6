"""Multi-objective trainers, one module per family.

- :mod:`moalign.trainers.dpo`: :class:`MultiObjectiveDPOTrainer` (weighted MO-DPO and
  conditioned DPO) and its config;
- :mod:`moalign.trainers.modpo`: :class:`MODPOTrainer` (Zhou et al. 2023);
- :mod:`moalign.trainers.ppo`: :class:`MultiObjectivePPOTrainer` with a vector critic;
- :mod:`moalign.trainers.grpo`: :class:`MultiObjectiveGRPOTrainer` on TRL's GRPO.

Imported lazily: importing this package does not import TRL.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "dpo": ["MultiObjectiveDPOConfig", "MultiObjectiveDPOTrainer"],
    "modpo": ["MODPOConfig", "MODPOTrainer"],
    "ppo": ["MultiObjectivePPOConfig", "MultiObjectivePPOTrainer"],
    "grpo": ["MultiObjectiveGRPOConfig", "MultiObjectiveGRPOTrainer"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
