"""Scoring one policy of a front on the held-out data (``FrontConfig.metric``).

``implicit``: held-out implicit-reward accuracy per objective (one reference pass shared by
every point); ``generation``: generate replies to held-out prompts and score them with the
objectives (the same prompts and generation seed for every point). Either way every policy,
the starting one included, gets per-example scores on the same examples, which the paired
bootstrap of the front resamples. Extra ``report`` objectives are scored alongside.
"""

from __future__ import annotations

from contextlib import nullcontext as _nullcontext
from typing import Any

import numpy as np

from moalign.data import catalog
from moalign.data.selection import distinct_prompt_rows, first_labelled, labelled_indices
from moalign.errors import DataError
from moalign.fronts.config import DEFAULT_MAX_PROMPT_TOKENS, DEFAULT_TRAIN

__all__ = ["evaluate_front_policy", "heldout_fingerprint"]


def _max_prompt_tokens(cfg: Any) -> int:
    return int({**DEFAULT_TRAIN, **cfg.train}.get("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS))


def _eval_pairs(cfg: Any, ctx: Any):
    """The first ``eval_pairs`` held-out pairs of each objective, prompts cut as in training
    (keeping their end), so a weight condition added in front always fits. Prepared once per
    trace (kept in ``ctx.heldout``)."""
    if "pairs" not in ctx.heldout:
        from moalign.data import truncate_prompts
        from moalign.evaluation.core import labelled_rows

        for name in cfg.objective_names:
            if labelled_indices(ctx.test_ds, name).size == 0:
                raise DataError(f"no held-out pair is labelled for objective '{name}'; "
                                "raise test_size or check the dataset's pref_ columns")
        keep = first_labelled(ctx.test_ds, list(cfg.objective_names), cfg.eval_pairs)
        rows, _ = truncate_prompts(ctx.test_ds.select(keep), ctx.tokenizer,
                                   _max_prompt_tokens(cfg))
        pairs = labelled_rows(rows, list(cfg.objective_names))
        _check_scorable(cfg, ctx.tokenizer, pairs)
        ctx.heldout["pairs"] = pairs
    return ctx.heldout["pairs"]


def _check_scorable(cfg: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> None:
    """Refuse an evaluation ``max_length`` that leaves nothing to score: when every held-out
    pair's prompt fills it, chosen and rejected are cut to the same tokens, every margin is 0
    and every accuracy a meaningless 0.5. Checked when the held-out pairs are first prepared
    (before the baseline is scored and before any run trains)."""
    from moalign.evaluation.logprobs import _completion_ids, _truncate

    prompts = []
    for row in rows:
        p, (c, j) = _completion_ids(tokenizer, row["prompt"], [row["chosen"], row["rejected"]])
        if _truncate(p, c, cfg.max_length)[1] != _truncate(p, j, cfg.max_length)[1]:
            return
        prompts.append(len(p))
    if rows:
        raise DataError(
            f"'max_length': {cfg.max_length} tokens leave nothing to score: the {len(rows)} "
            f"held-out pairs have prompts of {min(prompts)} to {max(prompts)} tokens, so each "
            "pair's chosen and rejected replies are cut to the same tokens; raise max_length "
            f"above {max(prompts)}")


def _precision(ctx: Any) -> str:
    """The resolved precision of the trace (``trace_front`` sets it; float32 otherwise)."""
    return getattr(ctx, "precision", None) or "float32"


def _on_device(ctx: Any, model: Any) -> None:
    """Move ``model`` to the front's device (``ctx.device``: the GPU when there is one) when it
    is elsewhere; the trained runs and the base are loaded there already."""
    device = getattr(ctx, "device", None)
    params = getattr(model, "parameters", None)
    if device is None or params is None:
        return
    first = next(iter(params()), None)
    if first is not None and first.device != device:
        from moalign.models.placement import place

        place(model, device)


def _reference_pass(cfg: Any, ctx: Any, model: Any, rows: list[dict[str, Any]],
                    transform_prompt: Any = None):
    """Log-probs of the held-out pairs under the starting policy: ``model`` with its adapters
    disabled (a peft model) or as it is, in the trace's precision."""
    from moalign.evaluation.logprobs import pair_logprobs
    from moalign.models.inference import inference_weights

    off = model.disable_adapter() if hasattr(model, "disable_adapter") else _nullcontext()
    with off, inference_weights(model, _precision(ctx)):
        return pair_logprobs(model, ctx.tokenizer, rows, max_length=cfg.max_length,
                             transform_prompt=transform_prompt)


def _reference_logprobs(cfg: Any, ctx: Any, rows: list[dict[str, Any]]):
    """Log-probs of the held-out pairs under the starting policy, computed once per trace."""
    if ctx.heldout.get("reference_logprobs") is None:
        model = ctx.peft if ctx.peft is not None else ctx.base
        ctx.heldout["reference_logprobs"] = _reference_pass(cfg, ctx, model, rows)
    return ctx.heldout["reference_logprobs"]


def _eval_prompts(cfg: Any, ctx: Any) -> list[Any]:
    """``eval_prompts`` distinct held-out prompts
    (:func:`moalign.data.selection.distinct_prompt_rows`: in turn from each objective's pairs),
    cut as in training. Their row indices are kept in ``ctx.heldout["prompt_rows"]`` (the
    columns the scorers read come from those rows)."""
    if "prompts" not in ctx.heldout:
        from moalign.data import truncate_prompt

        rows = distinct_prompt_rows(ctx.test_ds, list(cfg.objective_names), cfg.eval_prompts)
        ctx.heldout["prompt_rows"] = rows
        ctx.heldout["prompts"] = [truncate_prompt(p, ctx.tokenizer, _max_prompt_tokens(cfg))
                                  for p in ctx.test_ds.select(rows)["prompt"]]
    return ctx.heldout["prompts"]


def _generate(cfg: Any, ctx: Any, policy: Any, prompts: list[Any]) -> list[str]:
    from moalign.evaluation.generation import generate_completions

    if policy.transform_prompt is not None:
        prompts = [policy.transform_prompt(p) for p in prompts]
    fn = policy.generate or generate_completions
    settings = {"seed": cfg.seed, **cfg.generation}
    return fn(policy.model, ctx.tokenizer, prompts, **settings)


def _report(cfg: Any, ctx: Any, policy: Any) -> dict[str, Any]:
    from moalign.evaluation.core import mean_and_stderr
    from moalign.objective import load_objective

    out = {}
    for name, spec in cfg.report.items():
        ds = catalog.load_dataset(spec.get("dataset", "gsm8k")).select(range(int(spec.get("n", 8))))
        objective = load_objective(spec.get("spec", name))
        completions = _generate(cfg, ctx, policy, list(ds["prompt"]))
        cols = {c: list(ds[c]) for c in objective.required_columns}
        scores = objective(list(ds["prompt"]), completions, **cols)
        m, se, n = mean_and_stderr([np.nan if s is None else s for s in scores])
        out[name] = {"score": m, "stderr": se, "n": n}
    return out


def heldout_fingerprint(cfg: Any, ctx: Any) -> dict[str, Any]:
    """``{"examples": N, "sha256": ...}`` of the held-out examples every point is scored on
    (pairs for ``implicit``, prompts for ``generation``): two fronts with the same fingerprint
    were scored on the same examples, so their comparison can be paired."""
    import hashlib
    import json

    items = _eval_pairs(cfg, ctx) if cfg.metric == "implicit" else _eval_prompts(cfg, ctx)
    text = json.dumps(items, sort_keys=True, default=str, ensure_ascii=False)
    return {"examples": len(items), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def evaluate_front_policy(cfg: Any, ctx: Any, policy: Any) -> dict[str, Any]:
    """Scores of one policy: ``{"scores", "stderr", "per_example", "metadata"}`` (see
    ``FrontConfig.metric``); ``per_example`` is ``[N, K]`` (NaN: the example does not score
    that objective), the same N held-out examples, in the same order, for every policy.

    The starting policy (no adapter) goes through the same path as any point: for
    ``implicit`` its log-probs are computed like a point's and compared with the shared
    reference pass, so it scores 0.5 per pair only because the two passes agree (a broken
    reference path would show here), not because 0.5 is written down.
    """
    from moalign.evaluation.core import score_completions, summarize
    from moalign.models.inference import inference_weights

    _on_device(ctx, policy.model)

    def weights():  # a single policy with its adapter merged (float32), a mixture as it is
        return inference_weights(policy.model, _precision(ctx), merge=policy.generate is None)

    if cfg.metric == "implicit":
        from moalign.evaluation.core import implicit_reward_outcomes

        beta = float({**DEFAULT_TRAIN, **cfg.train}["beta"])
        rows = _eval_pairs(cfg, ctx)
        if policy.transform_prompt is None:  # one reference pass serves every point
            reference = _reference_logprobs(cfg, ctx, rows)
        else:  # the condition is part of the prompt: the reference sees it too
            start = policy.model if hasattr(policy.model, "disable_adapter") else ctx.base
            reference = _reference_pass(cfg, ctx, start, rows, policy.transform_prompt)
        with weights():  # the reference pass (adapters disabled) is done before merging
            per, _ = implicit_reward_outcomes(
                policy.model, ctx.tokenizer, rows, list(cfg.objective_names), beta=beta,
                max_length=cfg.max_length, transform_prompt=policy.transform_prompt,
                reference_logprobs=reference)
    else:
        scorers = ctx.scorer_set()  # loaded once per trace (for RL: the training objectives)
        prompts = _eval_prompts(cfg, ctx)
        with weights():
            completions = _generate(cfg, ctx, policy, prompts)
        rows = ctx.test_ds.select(ctx.heldout["prompt_rows"])
        per = score_completions(scorers, prompts, completions,
                                **{c: list(rows[c]) for c in scorers.required_columns})
    scores, stderr, _ = summarize(list(cfg.objective_names), per)
    unscored = [o for o in cfg.objective_names if not np.isfinite(scores[o])]
    if unscored:
        raise DataError(f"no held-out example could be scored for {', '.join(unscored)}: every "
                        "score was None (check the scorer and the evaluation data)")
    metadata = {}
    if cfg.report:
        with weights():
            metadata["report"] = _report(cfg, ctx, policy)
    return {"scores": scores, "stderr": {o: float(np.nan_to_num(v)) for o, v in stderr.items()},
            "per_example": per, "metadata": metadata}
