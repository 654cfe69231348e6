"""Evaluating a policy: generate on held-out prompts and score every objective.

- :func:`~moalign.evaluation.generation.generate_completions` (generation) and
  :func:`~moalign.evaluation.logprobs.pair_logprobs` (log-probabilities) are the building blocks;
- :func:`evaluate_policy`: generation + :class:`~moalign.objective.ObjectiveSet` scoring -> mean
  and standard error per objective (:class:`PolicyEvaluation`);
- :func:`pair_score_margins`: a scorer's ``r(chosen) - r(rejected)`` on preference pairs (the
  labels ``moalign train`` derives from a scorer, and MODPO's margins);
- :func:`implicit_reward_accuracy`: the generation-free metric
  for DPO-family policies (Rafailov et al. 2023): the implicit reward
  ``beta * (log pi(y|x) - log pi_ref(y|x))`` ranks the labelled-better reply first, measured per
  objective on held-out pairs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moalign.evaluation.batching import record
from moalign.evaluation.generation import generate_completions
from moalign.evaluation.logprobs import pair_logprobs
from moalign.objective import ObjectiveSet

__all__ = [
    "summarize",
    "PolicyEvaluation",
    "evaluate_policy",
    "implicit_reward_accuracy",
    "implicit_reward_outcomes",
    "labelled_rows",
    "mean_and_stderr",
    "pair_score_margins",
    "score_completions",
]


def mean_and_stderr(values: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error of the mean and count of the finite entries (NaN ignored).

    The standard error is ``std(ddof=1) / sqrt(n)``; 0.0 when fewer than two values.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return float("nan"), float("nan"), 0
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return float(x.mean()), se, n


@dataclass
class PolicyEvaluation:
    """Scores of one policy on a prompt set.

    ``scores`` / ``stderr`` / ``counts`` are per objective (mean, standard error, number of
    scored examples); ``per_example`` is ``[N, K]`` with NaN where unscored.
    """

    objectives: tuple[str, ...]
    scores: dict[str, float]
    stderr: dict[str, float]
    counts: dict[str, int]
    per_example: np.ndarray
    completions: list[str] = field(default_factory=list)
    seconds: float = 0.0


def summarize(names: Sequence[str], per_example: np.ndarray) -> tuple[dict, dict, dict]:
    """Per-objective (means, stderrs, counts) of a ``[N, K]`` score matrix."""
    scores, stderr, counts = {}, {}, {}
    for k, name in enumerate(names):
        m, se, n = mean_and_stderr(per_example[:, k])
        scores[name], stderr[name], counts[name] = m, se, n
    return scores, stderr, counts


def score_completions(objectives: ObjectiveSet, prompts: Sequence[Any],
                      completions: Sequence[Any], **columns: Any) -> np.ndarray:
    """``[N, K]`` scores (NaN: unscored) of completions by an objective set, timed as
    ``scoring`` work (examples per second) of :func:`~moalign.evaluation.batching.record`."""
    with record("scoring") as units:
        rewards = objectives.score(list(prompts), list(completions), **columns)
        units.append(len(completions))
    return rewards.values.double().numpy()


def pair_score_margins(dataset: Any, scorer: Callable[..., Sequence[Any]], *,
                       batch_size: int = 64) -> np.ndarray:
    """``score(prompt, chosen) - score(prompt, rejected)`` for each pair of a preference dataset.

    ``scorer`` has the objective signature ``(prompts, completions, **columns)`` (an
    :class:`~moalign.objective.Objective` or any such callable) and gets every column other than
    ``prompt`` / ``chosen`` / ``rejected`` as keyword arguments. A pair either side of which is
    unscored (``None``) gets NaN. Batches of ``batch_size`` pairs, in order.
    """
    from moalign.data.schema import CORE_COLUMNS

    margins = np.full(len(dataset), np.nan)
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start:start + batch_size]
        extra = {k: v for k, v in batch.items() if k not in CORE_COLUMNS}
        good = scorer(batch["prompt"], batch["chosen"], **extra)
        bad = scorer(batch["prompt"], batch["rejected"], **extra)
        for i, (a, b) in enumerate(zip(good, bad, strict=True)):
            if a is not None and b is not None:
                margins[start + i] = float(a) - float(b)
    return margins


def evaluate_policy(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    objectives: ObjectiveSet | Sequence[Any],
    *,
    columns: Mapping[str, Sequence[Any]] | None = None,
    generate: Callable[..., list[str]] | None = None,
    **generation: Any,
) -> PolicyEvaluation:
    """Generate a completion for every prompt and score it with every objective.

    ``columns`` are passed to the objectives (e.g. ``{"answer": [...]}`` for
    ``reasoning_accuracy``). ``generation`` holds :func:`generate_completions` settings
    (``max_new_tokens``, ``do_sample``, ``temperature``, ``batch_size``, ``seed``, ...);
    ``generate`` replaces the generation function (e.g. for decoding-time mixtures).
    """
    import time

    objective_set = objectives if isinstance(objectives, ObjectiveSet) else ObjectiveSet(objectives)
    if not prompts:
        raise ValueError("evaluate_policy needs at least one prompt")
    columns = dict(columns or {})
    for name, values in columns.items():
        if len(values) != len(prompts):
            raise ValueError(f"column '{name}' has {len(values)} values for {len(prompts)} prompts")
    start = time.perf_counter()
    completions = (generate or generate_completions)(model, tokenizer, prompts, **generation)
    per_example = score_completions(objective_set, list(prompts), completions, **columns)
    scores, stderr, counts = summarize(objective_set.names, per_example)
    return PolicyEvaluation(
        objectives=objective_set.names,
        scores=scores,
        stderr=stderr,
        counts=counts,
        per_example=per_example,
        completions=list(completions),
        seconds=time.perf_counter() - start,
    )


def _reference_context(model: Any, ref_model: Any):
    """The reference policy: ``ref_model`` if given, else the adapter-disabled base (peft)."""
    if ref_model is not None:
        return ref_model, contextlib.nullcontext()
    if hasattr(model, "disable_adapter"):
        return model, model.disable_adapter()
    raise ValueError(
        "implicit_reward_accuracy needs a reference: pass ref_model=, or a peft model whose "
        "disabled adapter is the reference"
    )


def implicit_reward_accuracy(
    model: Any, tokenizer: Any, dataset: Any, objectives: Sequence[str], **options: Any,
) -> dict[str, dict[str, float]]:
    """Held-out implicit-reward pairwise accuracy per objective (generation-free).

    For each pair labelled for objective ``k`` (``pref_<k>`` = +1 or -1; ties and NaN are
    skipped), the implicit reward ``beta * (log pi - log pi_ref)`` of the labelled-better reply
    must exceed that of the other; an exact tie counts one half (so the reference policy itself
    scores 0.5). Returns ``{objective: {"accuracy", "stderr", "margin", "n"}}``; ``margin`` is
    the mean implicit-reward difference (better minus worse). ``transform_prompt`` rewrites
    each prompt first (e.g. to add a weight condition). ``reference_logprobs`` (from
    :func:`pair_logprobs` of the reference on :func:`labelled_rows`, with the same
    ``transform_prompt``) skips the reference passes, e.g. when many policies share one
    reference. ``options`` are those of :func:`implicit_reward_outcomes` (``ref_model``,
    ``beta``, ``batch_size``, ``max_length``, ``transform_prompt``, ``reference_logprobs``),
    which gives the per-pair values.
    """
    outcomes, margins = implicit_reward_outcomes(model, tokenizer, dataset, objectives, **options)
    result: dict[str, dict[str, float]] = {}
    for j, k in enumerate(objectives):
        acc, se, n = mean_and_stderr(outcomes[:, j])
        signed = margins[np.isfinite(margins[:, j]), j]
        result[k] = {
            "accuracy": acc,
            "stderr": se,
            "margin": float(signed.mean()) if n else float("nan"),
            "n": n,
        }
    return result


def implicit_reward_outcomes(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    objectives: Sequence[str],
    *,
    ref_model: Any = None,
    beta: float = 0.1,
    batch_size: int = 64,
    max_length: int = 512,
    transform_prompt: Callable[[Any], Any] | None = None,
    reference_logprobs: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair implicit-reward outcomes and margins, ``[N, K]`` each, one row per pair of
    :func:`labelled_rows` (in order), one column per objective.

    An outcome is what :func:`implicit_reward_accuracy` averages: 1 when the labelled-better
    reply has the higher implicit reward ``beta * (log pi - log pi_ref)``, 0 when lower, 0.5 on
    an exact tie, NaN where the pair is not labelled (+1 / -1) for that objective. A margin is
    the implicit-reward difference, better minus worse (NaN where unlabelled). Arguments as
    for :func:`implicit_reward_accuracy`.
    """
    needed = labelled_rows(dataset, objectives)
    kw = dict(batch_size=batch_size, max_length=max_length, transform_prompt=transform_prompt)
    pol_c, pol_r = pair_logprobs(model, tokenizer, needed, **kw)
    if reference_logprobs is None:
        reference, ctx = _reference_context(model, ref_model)
        with ctx:
            reference_logprobs = pair_logprobs(reference, tokenizer, needed, **kw)
    ref_c, ref_r = reference_logprobs
    if len(ref_c) != len(needed):
        raise ValueError(f"reference_logprobs cover {len(ref_c)} pairs, expected {len(needed)}")
    diff = beta * ((pol_c - ref_c) - (pol_r - ref_r))
    outcomes = np.full((len(needed), len(objectives)), np.nan)
    margins = np.full_like(outcomes, np.nan)
    for j, k in enumerate(objectives):
        labels = np.array([r.get(_pref(k)) for r in needed], dtype=np.float64)
        use = np.isfinite(labels) & (labels != 0)
        signed = diff[use] * np.sign(labels[use])
        margins[use, j] = signed
        outcomes[use, j] = (signed > 0) + 0.5 * (signed == 0)
    return outcomes, margins


def _pref(name: str) -> str:
    from moalign.data.schema import pref_column

    return pref_column(name)


def labelled_rows(dataset: Any, objectives: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``dataset`` labelled (+1 / -1) for at least one of ``objectives``."""
    rows = dataset if isinstance(dataset, list) else dataset.to_list()
    return [r for r in rows if any(_labelled(r.get(_pref(k))) for k in objectives)]


def _labelled(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != 0
