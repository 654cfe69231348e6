"""``harmlessness``: how safe a completion is, from a harm classifier or a reward/cost model.

Always reported as "higher is safer". What is read from the model (``transform``, ``label``)
depends on the kind of checkpoint:

- a **reward model** with one output trained on harmlessness preferences (what
  ``moalign reward`` trains): its raw score (``transform="identity"``, the default for one
  output);
- a **cost model** with one output, higher = more harmful (Safe-RLHF style): pass
  ``transform="negate"``;
- a **harm classifier** with two or more labels: ``1 - P(harmful)``
  (``transform="one_minus_softmax_label"``, the default for two or more outputs). The harmful
  label is ``label=`` (an index or a name from ``config.id2label``); by default the label named
  ``harmful``, ``unsafe``, ``toxic`` or ``harm`` (any case), else index 1 of a two-label model
  (the usual "positive class" convention). A single-logit harm classifier needs
  ``transform="one_minus_sigmoid"``.

Without ``model=``, the reward model that ``moalign reward`` trains for this objective is used
(``moalign.models.default_reward_model_path("harmlessness")``).
"""

from __future__ import annotations

from pathlib import Path

from moalign.models import default_reward_model_path
from moalign.rewards.model import RewardModelObjective

#: Label names read as "the harmful class" of a classifier (compared case-insensitively).
HARMFUL_LABELS = ("harmful", "unsafe", "toxic", "harm")


class Harmlessness(RewardModelObjective):
    """Harmlessness (higher is safer): a harmlessness reward, a negated cost, or 1 - P(harmful)."""

    name = "harmlessness"
    description = "harmlessness, higher is safer: a reward model's score, a negated cost or 1 - P(harmful)"

    def default_model(self) -> Path:
        path = default_reward_model_path(self.__name__)
        if path.is_dir():
            return path
        raise self._error(
            f"needs a harm classifier or reward model and none was given: pass model=PATH (a "
            f"sequence-classification checkpoint), or train one with `moalign reward` for the "
            f"'{self.__name__}' objective (it is then found at {path})"
        )

    def default_transform(self) -> str:
        return "identity" if self.num_labels == 1 else "one_minus_softmax_label"

    def default_head(self) -> int:
        if self.num_labels == 1:
            return 0
        id2label = getattr(self.config, "id2label", None) or {}
        for index, label in sorted(id2label.items()):
            if str(label).lower() in HARMFUL_LABELS:
                return int(index)
        if self.num_labels == 2:
            return 1
        raise self._error(
            f"cannot tell which of the {self.num_labels} labels "
            f"({', '.join(str(v) for _, v in sorted(id2label.items()))}) means harmful: "
            "pass label=NAME_OR_INDEX"
        )
