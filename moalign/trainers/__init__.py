"""Multi-objective trainers, one module per family.

- :mod:`moalign.trainers.dpo`: :class:`MultiObjectiveDPOTrainer` (weighted MO-DPO and
  conditioned DPO) and its config;
- :mod:`moalign.trainers.modpo`: :class:`MODPOTrainer` (Zhou et al. 2023);
- :mod:`moalign.trainers.ppo`: :class:`MultiObjectivePPOTrainer` with a vector critic;
- :mod:`moalign.trainers.grpo`: :class:`MultiObjectiveGRPOTrainer` on TRL's GRPO.

Imported lazily: importing this package does not import TRL.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "MultiObjectiveDPOConfig": "dpo",
    "MultiObjectiveDPOTrainer": "dpo",
    "MODPOConfig": "modpo",
    "MODPOTrainer": "modpo",
    "MultiObjectivePPOConfig": "ppo",
    "MultiObjectivePPOTrainer": "ppo",
    "MultiObjectiveGRPOConfig": "grpo",
    "MultiObjectiveGRPOTrainer": "grpo",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"moalign.trainers.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'moalign.trainers' has no attribute '{name}'")
