"""moalign: multi-objective preference optimization of language models.

Objectives are plugins (:func:`available_objectives`, :func:`load_objective`,
:func:`register_objective`); scalarizers (:mod:`moalign.tradeoff.scalarize`) and schedules
(:mod:`moalign.tradeoff.schedule`) say how to trade them off; trainers in :mod:`moalign.trainers`
fine-tune a policy; :mod:`moalign.pareto` and :class:`ParetoFront` measure the front reached.
:func:`train` and :func:`evaluate` are ``moalign train`` and ``moalign eval`` as Python calls;
:func:`trace_front` is ``moalign trace``.

Heavy parts (torch, transformers, trl) are imported on first use, so ``import moalign`` is fast.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of
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

# public name -> module that defines it, relative to moalign (imported lazily)
_EXPORTS = exports_of({
    "pareto": ["ParetoFront", "FrontPoint"],
    "trainers": ["MultiObjectiveDPOConfig", "MultiObjectiveDPOTrainer", "MODPOConfig",
                 "MODPOTrainer", "MultiObjectivePPOConfig", "MultiObjectivePPOTrainer",
                 "MultiObjectiveGRPOConfig", "MultiObjectiveGRPOTrainer"],
    "trainers.sft": ["train_sft"],
    "tradeoff": ["TradeOff"],
    "fronts": ["FrontConfig", "trace_front"],
    "rewards": ["RewardModelObjective", "train_reward_model"],
    "models": ["embedded_sft_checkpoint", "load_policy", "tiny_causal_lm", "tiny_reward_model"],
    "evaluation": ["evaluate_policy"],
    "workflows": ["train", "evaluate", "TrainRunConfig", "EvalConfig"],
})
#: subpackages (and the two public facade modules), plus the old flat names they replace
_SUBMODULES = {
    **{name: name for name in ("cli", "config", "data", "evaluation", "fronts", "models",
                               "objective", "pareto", "rewards", "scalarize", "schedule",
                               "storage", "tradeoff", "trainers", "verify", "workflows", "errors",
                               "weights")},
    # where the modules of the flat layout went
    "front": "fronts", "soup": "fronts.soup", "decoding": "fronts.decoding",
    "conditioning": "tradeoff.conditioning", "hf_evaluate": "evaluation.hf_evaluate",
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
    *sorted(_EXPORTS),
]


__getattr__, __dir__ = attach(__name__, _EXPORTS, _SUBMODULES)
