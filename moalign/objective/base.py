"""The :class:`Objective` base class: what a policy is scored on.

An :class:`Objective` turns ``(prompts, completions, **columns)`` into one float per example,
or ``None`` where it cannot score that example. This is TRL's reward-function signature, so an
objective can be passed to ``trl.GRPOTrainer(reward_funcs=[...])`` unchanged. All objectives are
**maximized** (a cost is exposed negated).

The registry that finds objectives by name is :mod:`moalign.objective.registry`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from moalign.errors import ObjectiveError

__all__ = ["Objective", "as_text", "check_scores"]


def as_text(item: Any) -> str:
    """Return the text of a prompt or completion.

    Accepts a plain string or a conversational list of ``{"role", "content"}`` messages (as TRL
    passes them); for a list, the contents of the trailing assistant messages are joined, or
    the last message's content if none is from the assistant.
    """
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping) and "content" in item:
        return str(item["content"])
    if isinstance(item, Sequence) and item and all(isinstance(m, Mapping) for m in item):
        tail: list[str] = []
        for message in reversed(item):
            if message.get("role") != "assistant":
                break
            tail.append(str(message.get("content", "")))
        if tail:
            return "".join(reversed(tail))
        return str(item[-1].get("content", ""))
    if isinstance(item, Sequence) and not item:
        return ""
    raise TypeError(f"expected a string or a list of chat messages, got {type(item).__name__}")


class Objective:
    """Base class of every objective.

    Subclasses set :attr:`name` (or get it from their entry point), optionally
    :attr:`description` and :attr:`required_columns`, and implement :meth:`score`. Calling the
    objective validates the inputs and the scores, so every plugin gets the same checks.
    """

    #: Registry name: lowercase letters, digits and underscores.
    name: ClassVar[str] = ""
    #: One line shown by ``moalign objectives``.
    description: ClassVar[str] = ""
    #: Dataset columns that must be passed as keyword arguments (e.g. a reference answer).
    required_columns: ClassVar[tuple[str, ...]] = ()

    def score(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        """Return one score per completion (higher is better), ``None`` where unscorable."""
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    @property
    def __name__(self) -> str:  # TRL names reward functions by ``__name__``
        return self.name or type(self).__name__

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        n = len(completions)
        if prompts is not None and len(prompts) != n:
            raise ObjectiveError(
                f"objective '{self.__name__}': got {len(prompts)} prompts for {n} completions",
                objective=self.__name__,
            )
        for column in self.required_columns:
            if column not in columns or columns[column] is None:
                given = ", ".join(sorted(k for k in columns if not k.startswith("_"))) or "none"
                raise ObjectiveError(
                    f"objective '{self.__name__}' needs the column '{column}' "
                    f"(columns given: {given})",
                    objective=self.__name__,
                )
            if len(columns[column]) != n:
                raise ObjectiveError(
                    f"objective '{self.__name__}': column '{column}' has "
                    f"{len(columns[column])} values for {n} completions",
                    objective=self.__name__,
                )
        try:
            scores = self.score(prompts, completions, **columns)
        except ObjectiveError:
            raise
        except Exception as exc:
            index = self._failing_index(prompts, completions, columns)
            where = f" at index {index}" if index is not None else ""
            raise ObjectiveError(
                f"objective '{self.__name__}' raised {type(exc).__name__}{where}: {exc}",
                objective=self.__name__,
                index=index,
            ) from exc
        return check_scores(self.__name__, scores, n)

    def _failing_index(
        self, prompts: Sequence[Any] | None, completions: Sequence[Any], columns: dict[str, Any]
    ) -> int | None:
        """After a batch raised: the first example that raises when scored alone (small
        batches only), or ``None``."""
        n = len(completions)
        if n < 2 or n > 64:
            return None
        for i in range(n):
            one = {k: _row(v, i, n) for k, v in columns.items()}
            try:
                self.score(_row(prompts, i, n), completions[i : i + 1], **one)
            except Exception:
                return i
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r})"


def _row(column: Any, i: int, n: int) -> Any:
    """``column[i:i+1]`` for a per-example column of length ``n``; anything else unchanged."""
    per_example = (
        hasattr(column, "__len__")
        and hasattr(column, "__getitem__")
        and not isinstance(column, (str, bytes, Mapping))
        and len(column) == n
    )
    return column[i : i + 1] if per_example else column


def check_scores(name: str, scores: Any, n: int) -> list[float | None]:
    """Validate a plugin's output: ``n`` finite floats or ``None``; raise naming the objective."""
    try:  # a string or a mapping is iterable but is not a list of scores
        scores = list(None if isinstance(scores, (str, bytes, Mapping)) else scores)
    except TypeError:
        raise ObjectiveError(
            f"objective '{name}' returned {type(scores).__name__}, expected a list of {n} floats",
            objective=name,
        ) from None
    if len(scores) != n:
        raise ObjectiveError(
            f"objective '{name}' returned {len(scores)} scores for {n} completions",
            objective=name,
        )
    out: list[float | None] = []
    for i, s in enumerate(scores):
        if s is None:
            out.append(None)
            continue
        try:
            value = float(s)
        except (TypeError, ValueError):
            raise ObjectiveError(
                f"objective '{name}' returned a non-numeric score {s!r} at index {i}",
                objective=name,
                index=i,
            ) from None
        if not math.isfinite(value):
            raise ObjectiveError(
                f"objective '{name}' returned {value} at index {i}; "
                "return None for an example that cannot be scored",
                objective=name,
                index=i,
            )
        out.append(value)
    return out
