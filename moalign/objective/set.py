"""An ordered set of K objectives scoring a batch into a ``[B, K]`` reward tensor."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from moalign.errors import ObjectiveError, UnknownObjectiveError
from moalign.objective.base import Objective, check_scores
from moalign.objective.registry import load_objective

__all__ = ["ObjectiveSet", "Rewards"]



@dataclass(frozen=True)
class Rewards:
    """Scores of a batch: ``values`` float ``[B, K]`` (NaN where unscored), ``mask`` bool
    ``[B, K]`` (True where scored). Columns follow the order of the :class:`ObjectiveSet`."""

    values: Any  # torch.Tensor
    mask: Any  # torch.Tensor
    names: tuple[str, ...]


class ObjectiveSet:
    """An ordered set of K objectives that scores a batch into a ``[B, K]`` tensor."""

    def __init__(self, objectives: Sequence[str | Mapping[str, Any] | Objective]):
        if isinstance(objectives, (str, Mapping, Objective)):
            objectives = [objectives]
        built = [load_objective(o) for o in objectives]
        if not built:
            raise ObjectiveError("an ObjectiveSet needs at least one objective")
        names = [o.__name__ for o in built]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ObjectiveError(
                f"objective names must be unique in a set; repeated: {', '.join(dupes)}",
                objective=dupes[0],
            )
        self.objectives: tuple[Objective, ...] = tuple(built)
        self.names: tuple[str, ...] = tuple(names)

    def __len__(self) -> int:
        return len(self.objectives)

    def __iter__(self) -> Iterator[Objective]:
        return iter(self.objectives)

    def __getitem__(self, key: int | str) -> Objective:
        if isinstance(key, str):
            try:
                return self.objectives[self.names.index(key)]
            except ValueError:
                raise UnknownObjectiveError(
                    f"objective '{key}' is not in this set ({', '.join(self.names)})",
                    objective=key,
                ) from None
        return self.objectives[key]

    def index(self, name: str) -> int:
        """Column of objective ``name`` in the rewards tensor."""
        self[name]
        return self.names.index(name)

    @property
    def required_columns(self) -> tuple[str, ...]:
        cols: list[str] = []
        for o in self.objectives:
            cols.extend(c for c in o.required_columns if c not in cols)
        return tuple(cols)

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> Rewards:
        """Score every completion with every objective -> :class:`Rewards` ``[B, K]``."""
        import torch

        n = len(completions)
        values = torch.full((n, len(self)), float("nan"), dtype=torch.float32)
        for k, objective in enumerate(self.objectives):
            scores = check_scores(objective.__name__, objective(prompts, completions, **columns), n)
            for i, s in enumerate(scores):
                if s is not None:
                    values[i, k] = s
        return Rewards(values=values, mask=~torch.isnan(values), names=self.names)

    __call__ = score

    def __repr__(self) -> str:
        return f"ObjectiveSet({list(self.names)})"
