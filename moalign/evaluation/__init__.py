"""Evaluation: generation, scoring with standard errors, and implicit-reward accuracy.

- :mod:`moalign.evaluation.core`: :func:`generate_completions`, :func:`evaluate_policy` (score
  generated replies with an :class:`~moalign.objective.ObjectiveSet`), :func:`pair_logprobs` and
  :func:`implicit_reward_accuracy` (how often ``beta * (log pi - log pi_ref)`` ranks the
  labelled-better reply first), :func:`mean_and_stderr`;
- :mod:`moalign.evaluation.hf_evaluate`: objectives as offline ``evaluate`` metrics.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "core": ["PolicyEvaluation", "evaluate_policy", "generate_completions", "generation_problems",
             "implicit_reward_accuracy", "implicit_reward_outcomes", "labelled_rows",
             "mean_and_stderr", "pair_logprobs", "render_prompt", "sequence_logprobs",
             "summarize"],
    "hf_evaluate": ["ObjectiveMetric", "objective_metric"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
