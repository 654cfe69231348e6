"""``length``: brevity as a rule-based objective (a small example of a plugin)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moalign.objective import Objective, as_text


class Length(Objective):
    """Brevity: 1.0 at or under ``target`` words, falling linearly to 0 at ``2 * target``.

    With ``unit="chars"`` lengths are counted in characters. ``mode="negative"`` instead
    returns ``-length / target`` (unbounded, for reward shaping).
    """

    name = "length"
    description = "brevity: 1 at or under a target length, falling linearly to 0 at twice it"

    def __init__(self, target: int = 100, unit: str = "words", mode: str = "ramp"):
        if not isinstance(target, int) or isinstance(target, bool) or target <= 0:
            raise ValueError(f"length: 'target' must be a positive integer, got {target!r}")
        if unit not in ("words", "chars"):
            raise ValueError(f"length: 'unit' must be 'words' or 'chars', got {unit!r}")
        if mode not in ("ramp", "negative"):
            raise ValueError(f"length: 'mode' must be 'ramp' or 'negative', got {mode!r}")
        self.target, self.unit, self.mode = target, unit, mode

    def measure(self, text: str) -> int:
        return len(text.split()) if self.unit == "words" else len(text)

    def score(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any):
        out = []
        for completion in completions:
            n = self.measure(as_text(completion))
            if self.mode == "negative":
                out.append(-n / self.target)
            else:
                out.append(max(0.0, min(1.0, 2.0 - n / self.target)))
        return out
