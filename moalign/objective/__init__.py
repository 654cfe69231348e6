"""Objectives: the :class:`Objective` base, the entry-point registry, and :class:`ObjectiveSet`.

- :mod:`moalign.objective.base`: :class:`Objective` (TRL's reward-function signature, checks
  done once in ``__call__``) and :func:`as_text`;
- :mod:`moalign.objective.registry`: the ``moalign.objectives`` entry-point group,
  :func:`register_objective`, :func:`load_objective`, :func:`available_objectives`;
- :mod:`moalign.objective.set`: :class:`ObjectiveSet` -> :class:`Rewards` ``[B, K]`` + mask;
- :mod:`moalign.objective.checks`: :func:`objective_problems`, the up-front config check.
"""

from __future__ import annotations

from moalign.objective.base import Objective, as_text, check_scores
from moalign.objective.checks import objective_problems
from moalign.objective.registry import (
    ENTRY_POINT_GROUP,
    available_objectives,
    describe_objectives,
    get_objective_class,
    load_objective,
    objective_name,
    refresh_entry_points,
    register_objective,
)
from moalign.objective.set import ObjectiveSet, Rewards

__all__ = [
    "ENTRY_POINT_GROUP",
    "Objective",
    "ObjectiveSet",
    "Rewards",
    "as_text",
    "available_objectives",
    "check_scores",
    "describe_objectives",
    "get_objective_class",
    "load_objective",
    "objective_name",
    "objective_problems",
    "refresh_entry_points",
    "register_objective",
]
