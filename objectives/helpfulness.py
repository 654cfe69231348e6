"""``helpfulness``: a reward model's score of how helpful a completion is.

Any Hugging Face sequence-classification checkpoint works (``model=PATH``, or a hub id when
online); see :class:`moalign.rewards.model.RewardModelObjective` for how inputs are formatted,
truncated and batched. Without ``model=``, the reward model that ``moalign reward`` trains for
this objective is used, from ``moalign.models.default_reward_model_path("helpfulness")``
(``~/.cache/moalign/reward-models/helpfulness`` unless ``$MOALIGN_CACHE`` says otherwise).
"""

from __future__ import annotations

from pathlib import Path

from moalign.models import default_reward_model_path
from moalign.rewards.model import RewardModelObjective


class Helpfulness(RewardModelObjective):
    """Helpfulness: the score of a reward model trained on helpfulness preferences."""

    name = "helpfulness"
    description = "helpfulness: the score of a reward model (model=PATH, or the one `moalign reward` trained)"

    def default_model(self) -> Path:
        path = default_reward_model_path(self.__name__)
        if path.is_dir():
            return path
        raise self._error(
            f"needs a reward model and none was given: pass model=PATH (any Hugging Face "
            f"sequence-classification checkpoint), or train one with `moalign reward` for the "
            f"'{self.__name__}' objective (it is then found at {path})"
        )
