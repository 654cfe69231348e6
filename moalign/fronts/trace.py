"""Tracing a Pareto front: train a few policies, evaluate every weight vector, keep the front.

:func:`trace_front` is the one entry point. A :class:`FrontConfig` says which **method** makes the
policies of the front (each a small module's ``policies``, named in :data:`METHODS`, the table
of :mod:`moalign.fronts.plan`):

- ``sweep``: one run per weight vector (the MORLHF / MODPO baseline);
- ``soup``: one run per objective, then exact interpolation (of the LoRA updates, or of the
  weights with ``lora: null``) for every weight vector (Rewarded Soups, Ramé et al. 2023;
  :mod:`moalign.fronts.soup`);
- ``conditioned``: one conditioned run, evaluated with every weight vector shown in the
  prompt (Rewards-in-Context, Yang et al. 2024; :mod:`moalign.tradeoff.conditioning`);
- ``decoding``: the per-objective runs of ``soup``, mixed token by token at generation time
  (MOD, Shi et al. 2024; :mod:`moalign.fronts.decoding`).

and ``trainer`` which trainer trains the runs (``mo_dpo``, ``modpo``, ``grpo``, ``ppo``; the
combinations and their costs: :mod:`moalign.fronts.plan`). With ``weights: adaptive`` each point
after a starting grid goes where the measured front's gap is largest
(:mod:`moalign.fronts.adaptive`).

Layout of ``output_dir``::

    config.json          the resolved configuration (a rerun must match it)
    runs/<run>/          trained runs: adapter/ (LoRA) or model/ (lora: null), run.json
                         (trainer, seconds, steps)
    points/<id>/         point.json (scores, stderr, cost), scores.jsonl (one line per
                         held-out example, one key per objective, null: not scored),
                         replies.jsonl (the point's replies to the first REPLY_PROMPTS
                         distinct held-out prompts, for ``moalign report``)
                         [+ the soup adapter]
    baseline/            point.json, scores.jsonl and replies.jsonl of the starting (SFT)
                         policy, measured the same way
    adaptive.json        (weights: adaptive) every weight vector chosen, with the gap it filled
    front.json           the ParetoFront (README schema, with the paired-bootstrap intervals
                         computed from the scores.jsonl files), front.png its plot

Every run and point folder is written atomically (temporary name, then rename), so a trace
killed at any moment resumes on rerun: finished runs and points are loaded, not recomputed.
The bootstrap settings and the reference point only change statistics computed from the
stored per-example scores, so a rerun that changes them recomputes front.json alone.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from moalign.errors import CheckpointError, ConfigError
from moalign.fronts.config import FrontConfig, resolve_front_config
from moalign.fronts.context import Context, Policy, run_placement
from moalign.fronts.evaluate import evaluate_front_policy, heldout_fingerprint
from moalign.fronts.export.traced import policy_replies
from moalign.fronts.plan import METHODS
from moalign.fronts.report.replies import (
    REPLIES_FILE,
    REPLY_PROMPTS,
    max_prompt_tokens,
    replies_jsonl,
    reply_prompts,
)
from moalign.pareto.bootstrap import per_example_text, read_per_example
from moalign.pareto.front import FrontPoint, ParetoFront
from moalign.storage.checkpoints import read_json
from moalign.storage.files import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    writable_problems,
)
from moalign.storage.lock import output_lock

__all__ = ["METHODS", "trace_front"]

#: per-example scores of a point, in its folder
SCORES_FILE = "scores.jsonl"
#: configuration keys that change only statistics, not runs or points (not part of the resume check)
_STATISTICS_KEYS = ("bootstrap", "reference_point")


# --------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------


def _check_resume(out: Path, cfg: FrontConfig, precision: str = "float32") -> dict[str, Any]:
    """A rerun must use the same configuration (except cosmetic fields) and the same resolved
    precision (``auto`` may resolve otherwise on another machine); returns the configuration
    to save in ``config.json``."""
    saved = out / "config.json"
    current = {k: v for k, v in asdict(cfg).items() if k not in ("progress", "output_dir")}
    current = json.loads(json.dumps(current, default=_jsonable))  # tuples, arrays -> lists
    current["precision"] = precision
    current["dtype"] = run_placement(cfg)[1]  # resolved, like precision
    if saved.is_file():
        before = read_json(saved, what="trace configuration")
        before.setdefault("precision", "float32")  # traced before precision existed
        before.setdefault("dtype", "float32")  # traced before the dtype key: float32 weights
        before.setdefault("trainer", "mo_dpo")  # traced before fronts had other trainers
        before.setdefault("points", None)
        changed = sorted(k for k in set(before) | set(current)
                         if k not in _STATISTICS_KEYS and before.get(k) != current.get(k))
        if changed:
            raise ConfigError(
                f"'{out}' holds a trace with a different configuration (changed: "
                f"{', '.join(changed)}); choose another output_dir or delete it"
            )
    return current


def _load_point(folder: Path, objectives: list[str]) -> dict[str, Any] | None:
    """A finished point's record; ``None`` when the folder has none (never finished) or has no
    per-example scores (written before they were stored): it is then recomputed. A damaged
    record raises :class:`CheckpointError` naming the file."""
    path = folder / "point.json"
    if not path.exists():
        return None
    hint = f"delete '{folder}' to recompute it"
    point = read_json(path, required=("scores", "stderr", "eval_seconds"), what="front point",
                      hint=hint)
    missing = [o for o in objectives if o not in point["scores"]]
    if missing:
        raise CheckpointError(f"front point '{path}' has no score for {', '.join(missing)}; "
                              "delete its folder to recompute it")
    if "per_example" not in point:
        return None
    try:
        read_per_example(folder / point["per_example"], objectives)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {hint}") from None
    return point


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in config.json")


def _reference(cfg: FrontConfig, baseline: dict[str, Any] | None) -> tuple[list[float], str]:
    """The hypervolume's reference point and what it is (``metadata.reference``)."""
    ref = cfg.reference()
    if ref == "baseline":
        assert baseline is not None  # FrontConfig refuses baseline without include_baseline
        return [float(baseline["scores"][o]) for o in cfg.objective_names], "baseline"
    if ref == "chance":
        return [0.5] * len(cfg.objectives), "chance"
    return [float(x) for x in ref], "explicit"


def throughput_cost(meter: Any) -> dict[str, float]:
    """``cost`` keys of what evaluation computed for the front's points (stored with each
    point, so a resumed trace reports the same): ``<kind>_per_second`` and ``<kind>_seconds``
    for ``logprob`` (tokens scored), ``generation`` (tokens generated) and ``scoring``
    (replies scored)."""
    out = {}
    for kind, rate in meter.rates().items():
        out[f"{kind}_per_second"], out[f"{kind}_seconds"] = rate["per_second"], rate["seconds"]
    return out


def _run_config(cfg: FrontConfig, precision: str) -> FrontConfig:
    """The configuration the runs train with: in bfloat16, TRL's own ``bf16`` field (autocast
    over float32 weights, on the CPU too) where the trainer's config has one and ``train``
    does not set it; the trainers' defaults say float32."""
    if precision != "bfloat16" or "bf16" in cfg.train:
        return cfg
    from moalign.trainers.registry import TRAINERS

    fields = {f.name for f in dataclasses.fields(
        TRAINERS[getattr(cfg, "trainer", "mo_dpo")].config_class())}
    return dataclasses.replace(cfg, train={**cfg.train, "bf16": True}) if "bf16" in fields else cfg


def trace_front(config: FrontConfig | dict[str, Any]):
    """Train and evaluate the policies of a front; write and return the :class:`ParetoFront`.

    Resumable: rerunning with the same configuration and ``output_dir`` reuses every finished
    run and point and returns the same front.
    """
    if not isinstance(config, FrontConfig):
        config = resolve_front_config(config)  # every problem at once, before any work
    cfg = config
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"'output_dir': '{out}' exists and is not a folder")
    problems = writable_problems(out)  # found now, not when the first point is written
    for sub in ("runs", "points", "baseline"):
        if not problems and (out / sub).is_dir():
            problems = writable_problems(out / sub)
    if problems:
        raise ConfigError(problems)
    precision = cfg.resolved_precision()
    from moalign.models.precision import precision_scope

    # one writer per trace folder, from the resume check to front.png
    with output_lock(out):
        current = _check_resume(out, cfg, precision)
        with precision_scope(precision):  # reward models score in the trace's precision too
            return _trace(cfg, out, current, precision)


def _trace(cfg: FrontConfig, out: Path, current: dict[str, Any], precision: str) -> ParetoFront:
    from moalign.evaluation.batching import Throughput, measure_throughput

    ctx = Context(_run_config(cfg, precision), out)  # loads and checks the data, then the model
    ctx.precision = precision  # evaluation computes in it (moalign.fronts.evaluate)
    meter = Throughput()  # what the points' evaluations computed, from their point.json
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").is_file():
        atomic_write_json(out / "config.json", current)
    eval_seconds = 0.0
    names = list(cfg.objective_names)
    reply_to: list[Any] = []  # the held-out prompts of the recorded replies, chosen once

    def record_replies(policy: Policy) -> str:
        """The policy's replies to the first held-out prompts, for ``report``
        (:mod:`moalign.fronts.report.replies`): the trace's generation settings and seed."""
        if not reply_to:
            reply_to.extend(reply_prompts(ctx.test_ds, names, ctx.tokenizer, REPLY_PROMPTS,
                                          max_prompt_tokens(cfg.train)))
        replies = policy_replies(policy, ctx.tokenizer, reply_to, precision=precision,
                                 **{"seed": cfg.seed, **cfg.generation})
        return replies_jsonl(reply_to, replies)

    def evaluate(folder: Path, policy: Policy, save_adapter: bool) -> dict[str, Any]:
        nonlocal eval_seconds
        done = _load_point(folder, names)
        if done is None:
            policy.activate()
            start = time.perf_counter()
            with measure_throughput() as work:
                result = evaluate_front_policy(cfg, ctx, policy)
            per_example = result.pop("per_example")
            result["eval_seconds"] = time.perf_counter() - start
            result["throughput"] = work.rates()
            result["per_example"] = SCORES_FILE
            replies = record_replies(policy)  # not part of the evaluation's time or work
            with atomic_directory(folder, overwrite=True) as tmp:
                if save_adapter and policy.adapter is not None:
                    policy.model.save_pretrained(str(tmp / "adapter"),
                                                 selected_adapters=[policy.adapter])
                atomic_write_text(tmp / SCORES_FILE,
                                  per_example_text(per_example, names))
                atomic_write_text(tmp / REPLIES_FILE, replies)
                atomic_write_json(tmp / "point.json", result)
            done = result
        eval_seconds += float(done["eval_seconds"])
        for kind, rate in (done.get("throughput") or {}).items():
            meter.add(kind, float(rate["units"]), float(rate["seconds"]))
        return done

    baseline = None
    if cfg.include_baseline:  # before any adapter is loaded: the base is the SFT policy
        baseline = evaluate(out / "baseline", Policy(ctx.base, adapter=None), False)
    ref, kind = _reference(cfg, baseline)
    ctx.reference_point = ref  # an adaptive front measures its gaps against it
    points = []
    # consumed lazily: a soup policy is only valid until the next one replaces its adapter
    iterator: Any = METHODS[cfg.method](ctx)
    if cfg.progress:
        from tqdm.auto import tqdm

        total = cfg.points if cfg.weights == "adaptive" else len(cfg.weight_vectors())
        iterator = tqdm(iterator, total=total, desc=f"front ({cfg.trainer} {cfg.method})",
                        unit="point")
    for pid, w, policy in iterator:
        res = evaluate(out / "points" / pid, policy, save_adapter=cfg.method == "soup")
        ctx.measured.append((np.asarray(w, dtype=np.float64), res["scores"]))
        points.append(FrontPoint(id=pid, weights=[float(x) for x in w], scores=res["scores"],
                                 stderr=res["stderr"], checkpoint=policy.checkpoint,
                                 per_example=f"points/{pid}/{res['per_example']}",
                                 metadata=res.get("metadata", {})))
    metadata: dict[str, Any] = {"model": cfg.model, "dataset": cfg.dataset, "metric": cfg.metric,
                                "trainer": cfg.trainer,
                                "fine_tuning": "full" if cfg.lora is None else "lora",
                                "seed": cfg.seed, "reference": kind, "precision": precision,
                                "dtype": ctx.dtype,
                                "heldout": heldout_fingerprint(cfg, ctx)}
    if baseline is not None:
        metadata["baseline"] = {"scores": baseline["scores"], "stderr": baseline["stderr"],
                                "per_example": f"baseline/{baseline['per_example']}",
                                **({"report": baseline["metadata"]["report"]}
                                   if baseline.get("metadata", {}).get("report") else {})}
    front = ParetoFront(
        objectives=names, points=points, method=cfg.method, reference_point=ref,
        cost={"train_seconds": round(ctx.train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
              "train_steps": ctx.train_steps, **throughput_cost(meter)},
        metadata=metadata,
    )
    front.attach_intervals(out, cfg.bootstrap)
    front.save(out / "front.json")
    front.plot(out / "front.png")
    return front
