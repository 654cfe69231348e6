"""Exceptions raised by moalign.

Every error a user can cause derives from :class:`MoalignError`, so the CLI can print it
without a traceback. Each subclass also derives from the built-in exception a Python user
would expect (``ValueError`` for bad values, ``LookupError`` for unknown names), so
``except ValueError`` keeps working.

:func:`did_you_mean` is the one hint an unknown name gets, whoever reports it (a registry, the
config field checker, the YAML loader, the LoRA target check): it lives here, below every layer
that reports unknown names.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


def did_you_mean(name: Any, choices: Iterable[Any]) -> str:
    """``"; did you mean '<closest>'?"`` when one of ``choices`` is close to ``name``, else
    ``""``: the one suggestion every unknown name gets."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class MoalignError(Exception):
    """Base class of every error moalign raises on purpose."""


class ConfigError(MoalignError, ValueError):
    """A configuration (YAML file, ``--key value`` override or config object) is invalid.

    ``problems`` lists every problem found, so a user fixes them all at once.
    """

    def __init__(self, problems: list[str] | str, *, source: str | None = None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        head = f"invalid configuration{f' in {source}' if source else ''}"
        if len(self.problems) == 1:
            msg = f"{head}: {self.problems[0]}"
        else:
            msg = f"{head} ({len(self.problems)} problems):\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(msg)


class ObjectiveError(MoalignError, ValueError):
    """An objective is misconfigured or produced unusable scores.

    ``objective`` names the objective; ``index`` is the offending example, when known.
    """

    def __init__(self, message: str, *, objective: str | None = None, index: int | None = None):
        self.objective = objective
        self.index = index
        super().__init__(message)


class UnknownObjectiveError(ObjectiveError, LookupError):
    """No objective is registered under the requested name."""


class WeightsError(MoalignError, ValueError):
    """A weight vector is not on the probability simplex or has the wrong length."""


class DataError(MoalignError, ValueError):
    """A dataset is missing a column, has a malformed row, or is empty."""


class ModelError(MoalignError, ValueError):
    """A model path or checkpoint cannot be used."""


class CheckpointError(MoalignError, RuntimeError):
    """A checkpoint or front point is incomplete or corrupt and was not loaded."""
