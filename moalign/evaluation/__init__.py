"""Evaluation: generation, scoring with standard errors, and implicit-reward accuracy.

- :mod:`moalign.evaluation.generation`: :func:`generate_completions`, the one decode driver
  (batched longest prompts first, KV cache, out-of-memory split) with its :class:`NextToken`
  hook, and :func:`generation_problems`;
- :mod:`moalign.evaluation.prompts`: :func:`render_prompt` and the prompt ids, truncation and
  padding every generation and rollout uses;
- :mod:`moalign.evaluation.logprobs`: :func:`sequence_logprobs` and :func:`pair_logprobs`,
  tokenized as DPO training tokenizes;
- :mod:`moalign.evaluation.core`: :func:`evaluate_policy` (score generated replies with an
  :class:`~moalign.objective.ObjectiveSet`), :func:`implicit_reward_accuracy` (how often
  ``beta * (log pi - log pi_ref)`` ranks the labelled-better reply first),
  :func:`mean_and_stderr`;
- :mod:`moalign.evaluation.batching`: length-sorted batches under a token budget, and the
  throughput of a run (:func:`measure_throughput`);
- :mod:`moalign.evaluation.hf_evaluate`: objectives as offline ``evaluate`` metrics.
"""

from __future__ import annotations

from moalign._lazy import attach, exports_of

_EXPORTS = exports_of({
    "batching": ["DEFAULT_MAX_BATCH_TOKENS", "Throughput", "length_batches",
                 "measure_throughput"],
    "core": ["PolicyEvaluation", "evaluate_policy", "implicit_reward_accuracy",
             "implicit_reward_outcomes", "labelled_rows", "mean_and_stderr",
             "score_completions", "summarize"],
    "generation": ["NextToken", "generate_completions", "generation_problems"],
    "hf_evaluate": ["ObjectiveMetric", "objective_metric"],
    "logprobs": ["pair_logprobs", "sequence_logprobs"],
    "prompts": ["render_prompt"],
})
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = attach(__name__, _EXPORTS)
