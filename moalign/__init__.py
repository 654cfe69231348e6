"""moalign: multi-objective preference optimization of language models.

Objectives are plugins (:func:`available_objectives`, :func:`load_objective`,
:func:`register_objective`); scalarizers (:mod:`moalign.tradeoff.scalarize`) and schedules
(:mod:`moalign.tradeoff.schedule`) say how to trade them off; trainers in :mod:`moalign.trainers`
fine-tune a policy; :mod:`moalign.pareto` and :class:`ParetoFront` measure the front reached.

Heavy parts (torch, transformers, trl) are imported on first use, so ``import moalign`` is fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from moalign.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MoalignError,
    ModelError,
    ObjectiveError,
    UnknownObjectiveError,
    WeightsError,
)
from moalign.objective import (
    Objective,
    ObjectiveSet,
    Rewards,
    available_objectives,
    load_objective,
    register_objective,
)

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily)
_LAZY: dict[str, str] = {
    "ParetoFront": "moalign.pareto",
    "FrontPoint": "moalign.pareto",
    "MultiObjectiveDPOConfig": "moalign.trainers",
    "MultiObjectiveDPOTrainer": "moalign.trainers",
    "MODPOTrainer": "moalign.trainers",
    "MultiObjectivePPOConfig": "moalign.trainers",
    "MultiObjectivePPOTrainer": "moalign.trainers",
    "MultiObjectiveGRPOTrainer": "moalign.trainers",
    "MODPOConfig": "moalign.trainers",
    "MultiObjectiveGRPOConfig": "moalign.trainers",
    "TradeOff": "moalign.tradeoff",
    "FrontConfig": "moalign.fronts",
    "trace_front": "moalign.fronts",
    "RewardModelObjective": "moalign.rewards",
    "embedded_sft_checkpoint": "moalign.models",
    "train_reward_model": "moalign.rewards",
    "train_sft": "moalign.trainers.sft",
    "evaluate_policy": "moalign.evaluation",
    "load_policy": "moalign.models",
    "tiny_causal_lm": "moalign.models",
    "tiny_reward_model": "moalign.models",
}
#: subpackages (and the two public facade modules), plus the old flat names they replace
_SUBMODULES = {
    "cli": "moalign.cli", "config": "moalign.config", "data": "moalign.data",
    "evaluation": "moalign.evaluation", "fronts": "moalign.fronts", "models": "moalign.models",
    "objective": "moalign.objective", "pareto": "moalign.pareto", "rewards": "moalign.rewards",
    "scalarize": "moalign.scalarize", "schedule": "moalign.schedule", "storage": "moalign.storage",
    "tradeoff": "moalign.tradeoff", "trainers": "moalign.trainers", "verify": "moalign.verify",
    "errors": "moalign.errors", "weights": "moalign.weights",
    # where the modules of the flat layout went
    "front": "moalign.fronts", "soup": "moalign.fronts.soup", "decoding": "moalign.fronts.decoding",
    "conditioning": "moalign.tradeoff.conditioning", "hf_evaluate": "moalign.evaluation.hf_evaluate",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MoalignError",
    "ModelError",
    "Objective",
    "ObjectiveError",
    "ObjectiveSet",
    "Rewards",
    "UnknownObjectiveError",
    "WeightsError",
    "available_objectives",
    "load_objective",
    "register_objective",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(_SUBMODULES[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'moalign' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
