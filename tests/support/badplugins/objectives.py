"""One objective per way a plugin can break its contract (see ``moalign.objective``).

Each returns a valid score for the first completion and breaks on the second, so the error
can name the offending example (index 1).
"""

from __future__ import annotations

from moalign.objective import Objective


class Raises(Objective):
    """Raises on the second completion."""

    name = "raises"

    def score(self, prompts, completions, **columns):
        if len(completions) > 1 or completions[0] == "second":
            raise ZeroDivisionError("division by zero in the plugin")
        return [1.0]


class ReturnsNaN(Objective):
    name = "returns_nan"

    def score(self, prompts, completions, **columns):
        return [1.0] + [float("nan")] * (len(completions) - 1)


class ReturnsInf(Objective):
    name = "returns_inf"

    def score(self, prompts, completions, **columns):
        return [1.0] + [float("inf")] * (len(completions) - 1)


class ReturnsTooMany(Objective):
    name = "returns_too_many"

    def score(self, prompts, completions, **columns):
        return [1.0] * (len(completions) + 1)


class ReturnsString(Objective):
    """Returns one string for the whole batch (as long as the batch, to catch naive checks)."""

    name = "returns_string"

    def score(self, prompts, completions, **columns):
        return "0." + "5" * (len(completions) - 2)


class ReturnsScalar(Objective):
    name = "returns_scalar"

    def score(self, prompts, completions, **columns):
        return 0.5


class ReturnsDict(Objective):
    name = "returns_dict"

    def score(self, prompts, completions, **columns):
        return {i: 1.0 for i in range(len(completions))}


class ReturnsText(Objective):
    name = "returns_text"

    def score(self, prompts, completions, **columns):
        return [1.0] + ["high"] * (len(completions) - 1)


class NeedsAnswer(Objective):
    name = "needs_answer"
    required_columns = ("answer",)

    def score(self, prompts, completions, answer, **columns):
        return [float(c == a) for c, a in zip(completions, answer, strict=True)]


class BrokenInit(Objective):
    """Its constructor fails the way a plugin missing a resource does."""

    name = "broken_init"

    def __init__(self):
        raise RuntimeError("no GPU found for the judge model")

    def score(self, prompts, completions, **columns):  # pragma: no cover - never built
        return [0.0] * len(completions)


class NotAnObjective:
    """A class that does not derive from Objective."""
