"""The trainers of ``moalign train`` (and of front traces) by name: where each one's config and
trainer classes live, the config fields it fixes, and the data it trains on.

The classes are named as ``"module:Class"`` and imported only when chosen, so reading this
table imports no training library.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from moalign._plugins import IDENTIFIER, Registry

__all__ = ["TRAINERS", "TrainerSpec"]


@dataclasses.dataclass(frozen=True)
class TrainerSpec:
    """One trainer of ``moalign train``: where its config and trainer classes live
    (``"module:Class"``, imported only when chosen), the config fields it fixes, and the data it
    trains on: ``"preference"`` (prompt / chosen / rejected + labels) or ``"prompts"``
    (online: prompts plus the columns the objectives read); whether a front can be traced with it
    and whether it has a conditioned form. Every config names its trade-off
    fields alike (:data:`moalign.tradeoff.tradeoff.FIELDS`): the fixed weights are ``weights``."""

    config: str
    trainer: str
    fixed: Mapping[str, Any]
    data: str
    #: A front can be traced with it (``FrontConfig.trainer``; conditioned DPO is ``mo_dpo``
    #: with ``method: conditioned`` there).
    front: bool = True
    #: It has a conditioned form (a front's ``method: conditioned``).
    conditioned: bool = False

    def config_class(self) -> type:
        return _import(self.config)

    def trainer_class(self) -> type:
        return _import(self.trainer)


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


_DPO = "moalign.trainers.dpo:MultiObjectiveDPO"
#: ``trainer:`` name -> what it trains with (the order ``moalign train`` lists them in).
TRAINERS = Registry("trainer", name_pattern=IDENTIFIER)
TRAINERS.register("mo_dpo", TrainerSpec(f"{_DPO}Config", f"{_DPO}Trainer", {}, "preference",
                                        conditioned=True))
TRAINERS.register("conditioned_dpo", TrainerSpec(f"{_DPO}Config", f"{_DPO}Trainer",
                                                 {"conditioning": "prompt"}, "preference",
                                                 front=False))
TRAINERS.register("modpo", TrainerSpec("moalign.trainers.modpo:MODPOConfig",
                                       "moalign.trainers.modpo:MODPOTrainer", {}, "preference"))
TRAINERS.register("ppo", TrainerSpec("moalign.trainers.ppo:MultiObjectivePPOConfig",
                                     "moalign.trainers.ppo:MultiObjectivePPOTrainer", {},
                                     "prompts", conditioned=True))
TRAINERS.register("grpo", TrainerSpec("moalign.trainers.grpo:MultiObjectiveGRPOConfig",
                                      "moalign.trainers.grpo:MultiObjectiveGRPOTrainer", {},
                                      "prompts", conditioned=True))
