"""Tracing a Pareto front: train a few policies, evaluate every weight vector, keep the front.

:func:`trace_front` is the one entry point. A :class:`FrontConfig` says which **method** makes the
policies of the front (each a small function in :data:`METHODS`):

- ``sweep``: one MO-DPO run per weight vector (the MORLHF / MODPO baseline);
- ``soup``: one run per objective, then LoRA interpolation for every weight vector
  (Rewarded Soups, Ramé et al. 2023; :mod:`moalign.fronts.soup`);
- ``conditioned``: one conditioned-DPO run, evaluated with every weight vector shown in the
  prompt (Rewards-in-Context, Yang et al. 2024; :mod:`moalign.tradeoff.conditioning`);
- ``decoding``: the per-objective runs of ``soup``, mixed token by token at generation time
  (MOD, Shi et al. 2024; :mod:`moalign.fronts.decoding`).

Layout of ``output_dir``::

    config.json          the resolved configuration (a rerun must match it)
    runs/<run>/          trained LoRA adapters, each with run.json (seconds, steps)
    points/<id>/         point.json (scores, stderr, cost) [+ the soup adapter]
    baseline/point.json  the starting (SFT) policy, evaluated the same way
    front.json           the ParetoFront (DESIGN.md schema), front.png its plot

Every run and point folder is written atomically (temporary name, then rename), so a trace
killed at any moment resumes on rerun: finished runs and points are loaded, not recomputed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from moalign.errors import CheckpointError, ConfigError
from moalign.fronts import conditioned, decoding, soup, sweep
from moalign.fronts.config import METHOD_NAMES, FrontConfig, resolve_front_config
from moalign.fronts.context import Context, Policy
from moalign.fronts.evaluate import evaluate_front_policy
from moalign.pareto.front import FrontPoint, ParetoFront
from moalign.storage.checkpoints import read_json
from moalign.storage.files import atomic_directory, atomic_write_json

__all__ = ["METHODS", "trace_front"]

#: method name -> function yielding the front's policies ``(point id, weights, Policy)``
METHODS: dict[str, Callable[[Context], Iterator[tuple[str, np.ndarray, Policy]]]] = {
    "sweep": sweep.policies,
    "soup": soup.policies,
    "conditioned": conditioned.policies,
    "decoding": decoding.policies,
}
assert tuple(METHODS) == METHOD_NAMES


# --------------------------------------------------------------------------------------------
# Tracing
# --------------------------------------------------------------------------------------------


def _check_resume(out: Path, cfg: FrontConfig) -> dict[str, Any]:
    """A rerun must use the same configuration (except cosmetic fields); returns the
    configuration to save in ``config.json``."""
    saved = out / "config.json"
    current = {k: v for k, v in asdict(cfg).items() if k not in ("progress", "output_dir")}
    current = json.loads(json.dumps(current, default=_jsonable))  # tuples, arrays -> lists
    if saved.is_file():
        before = read_json(saved, what="trace configuration")
        changed = sorted(k for k in set(before) | set(current) if before.get(k) != current.get(k))
        if changed:
            raise ConfigError(
                f"'{out}' holds a trace with a different configuration (changed: "
                f"{', '.join(changed)}); choose another output_dir or delete it"
            )
    return current


def _load_point(folder: Path, objectives: list[str]) -> dict[str, Any] | None:
    """A finished point's record; ``None`` when the folder has none (never finished: it is
    recomputed). A damaged record raises :class:`CheckpointError` naming the file."""
    path = folder / "point.json"
    if not path.exists():
        return None
    point = read_json(path, required=("scores", "stderr", "eval_seconds"), what="front point",
                      hint=f"delete '{folder}' to recompute it")
    missing = [o for o in objectives if o not in point["scores"]]
    if missing:
        raise CheckpointError(f"front point '{path}' has no score for {', '.join(missing)}; "
                              "delete its folder to recompute it")
    return point


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in config.json")


def _default_reference(cfg: FrontConfig, points: list[Any], baseline: Any) -> list[float]:
    """Accuracies (``implicit``) live in [0, 1]: the reference is the origin. Scores of the
    ``generation`` metric have no natural floor: the worst score reached (baseline included)
    minus a tenth of the score range (at least 0.01)."""
    if cfg.metric == "implicit":
        return [0.0] * len(cfg.objectives)
    rows = [[p.scores[o] for o in cfg.objectives] for p in points]
    if baseline is not None:
        rows.append([baseline["scores"][o] for o in cfg.objectives])
    anchor = np.asarray(rows, dtype=np.float64)
    margin = np.maximum(0.1 * (anchor.max(axis=0) - anchor.min(axis=0)), 0.01)
    return (anchor.min(axis=0) - margin).tolist()


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
    current = _check_resume(out, cfg)
    ctx = Context(cfg, out)  # loads and checks the data, then the model
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "config.json").is_file():
        atomic_write_json(out / "config.json", current)
    eval_seconds = 0.0

    def evaluate(folder: Path, policy: Policy, save_adapter: bool) -> dict[str, Any]:
        nonlocal eval_seconds
        done = _load_point(folder, list(cfg.objectives))
        if done is None:
            policy.activate()
            start = time.perf_counter()
            result = evaluate_front_policy(cfg, ctx, policy)
            result["eval_seconds"] = time.perf_counter() - start
            with atomic_directory(folder, overwrite=True) as tmp:
                if save_adapter and policy.adapter is not None:
                    policy.model.save_pretrained(str(tmp / "adapter"),
                                                 selected_adapters=[policy.adapter])
                atomic_write_json(tmp / "point.json", result)
            done = result
        eval_seconds += float(done["eval_seconds"])
        return done

    baseline = None
    if cfg.include_baseline:  # before any adapter is loaded: the base is the SFT policy
        baseline = evaluate(out / "baseline", Policy(ctx.base, adapter=None), False)
    points = []
    # consumed lazily: a soup policy is only valid until the next one replaces its adapter
    iterator: Any = METHODS[cfg.method](ctx)
    if cfg.progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(cfg.weight_vectors()), desc=f"front ({cfg.method})",
                        unit="point")
    for pid, w, policy in iterator:
        res = evaluate(out / "points" / pid, policy, save_adapter=cfg.method == "soup")
        points.append(FrontPoint(id=pid, weights=[float(x) for x in w], scores=res["scores"],
                                 stderr=res["stderr"], checkpoint=policy.checkpoint,
                                 metadata=res.get("metadata", {})))
    ref = cfg.reference_point
    if ref is None:
        ref = _default_reference(cfg, points, baseline)
    metadata: dict[str, Any] = {"model": cfg.model, "dataset": cfg.dataset, "metric": cfg.metric,
                                "seed": cfg.seed}
    if baseline is not None:
        metadata["baseline"] = {"scores": baseline["scores"], "stderr": baseline["stderr"],
                                **({"report": baseline["metadata"]["report"]}
                                   if baseline.get("metadata", {}).get("report") else {})}
    front = ParetoFront(
        objectives=list(cfg.objectives), points=points, method=cfg.method,
        reference_point=[float(x) for x in ref],
        cost={"train_seconds": round(ctx.train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
              "train_steps": ctx.train_steps},
        metadata=metadata,
    )
    front.save(out / "front.json")
    front.plot(out / "front.png")
    return front
