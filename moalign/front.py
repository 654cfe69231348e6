"""Tracing a Pareto front: train a few policies, evaluate every weight vector, keep the front.

:func:`trace_front` is the one entry point. A :class:`FrontConfig` says which **method** makes the
policies of the front (each a small function in :data:`METHODS`):

- ``sweep``: one MO-DPO run per weight vector (the MORLHF / MODPO baseline);
- ``soup``: one run per objective, then LoRA interpolation for every weight vector
  (Rewarded Soups, Ramé et al. 2023; :mod:`moalign.soup`);
- ``conditioned``: one conditioned-DPO run, evaluated with every weight vector shown in the
  prompt (Rewards-in-Context, Yang et al. 2024; :mod:`moalign.conditioning`);
- ``decoding``: the per-objective runs of ``soup``, mixed token by token at generation time
  (MOD, Shi et al. 2024; :mod:`moalign.decoding`).

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moalign._io import atomic_directory, atomic_write_json
from moalign.checkpoint import check_adapter, read_json
from moalign.errors import CheckpointError, ConfigError
from moalign.weights import as_weights, format_weights

__all__ = ["METHODS", "FrontConfig", "trace_front"]


@dataclass
class FrontConfig:
    """Configuration of :func:`trace_front` (the keys of ``moalign trace`` YAML files)."""

    #: How the front's policies are made: ``sweep``, ``soup``, ``conditioned`` or ``decoding``.
    method: str = "soup"
    #: Objectives, in order. Training reads the ``pref_<name>`` columns of the dataset.
    objectives: list[str] = field(default_factory=lambda: ["helpfulness", "harmlessness"])
    #: Starting (SFT) checkpoint: a local folder, ``"smollm2"`` (the embedded one) or ``"tiny"``.
    model: str = "smollm2"
    #: Preference data: ``"hh-rlhf"`` (bundled helpful + harmless) or a path / hub id.
    dataset: str = "hh-rlhf"
    #: Where runs, points, ``front.json`` and ``front.png`` go.
    output_dir: str = "front"
    #: Weight vectors of the front; default: ``simplex_grid(K, grid)``.
    weights: list[list[float]] | None = None
    #: Resolution of the default simplex grid (K=2, grid=4 gives 5 points).
    grid: int = 4
    #: Training pairs per objective (taken from the training split); ``None`` uses all.
    train_pairs: int | None = 256
    #: Fraction of pairs held out for evaluation (split seeded by ``seed``).
    test_size: float = 0.2
    #: Fields of the DPO trainer config (``beta``, ``learning_rate``, ``max_steps``, ...).
    train: dict[str, Any] = field(default_factory=dict)
    #: LoRA settings (peft ``LoraConfig`` fields); the reference is the adapter-free base.
    lora: dict[str, Any] = field(default_factory=lambda: {"r": 16, "lora_alpha": 32})
    #: How each point is scored: ``"implicit"`` (held-out implicit-reward accuracy per
    #: objective, generation-free) or ``"generation"`` (generate and score with objectives).
    metric: str = "implicit"
    #: Held-out pairs per objective for the ``implicit`` metric.
    eval_pairs: int = 64
    #: Held-out prompts for the ``generation`` metric.
    eval_prompts: int = 16
    #: Scorers for the ``generation`` metric, objective name -> spec for ``load_objective``
    #: (default: the objective name itself).
    scorers: dict[str, Any] = field(default_factory=dict)
    #: Extra objectives reported alongside (not part of the front), name -> {"spec":
    #: load_objective spec, "dataset": prompt set such as "gsm8k", "n": prompts}.
    report: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Generation settings for evaluation (``max_new_tokens``, ``batch_size``, ``do_sample``).
    generation: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 48})
    #: Reference point of the hypervolume (default: the origin for ``implicit`` accuracies;
    #: for ``generation`` scores, just below the worst score reached, baseline included).
    reference_point: list[float] | None = None
    #: Also evaluate the starting policy (stored as ``metadata.baseline`` in front.json).
    include_baseline: bool = True
    #: Sequence-length cap for evaluation log-probs (tokens).
    max_length: int = 256
    #: Seed of splits, training and sampling.
    seed: int = 0
    #: Show progress bars.
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.method not in METHODS:
            problems.append(f"'method' must be one of {sorted(METHODS)}, got {self.method!r}")
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            problems.append(f"'objectives' must be distinct names, got {self.objectives!r}")
        if self.metric not in ("implicit", "generation"):
            problems.append(f"'metric' must be 'implicit' or 'generation', got {self.metric!r}")
        if self.metric == "implicit" and self.method == "decoding":
            problems.append("the 'decoding' method has no single policy to take log-probs of; "
                            "use metric: generation")
        if not 1 <= self.grid <= 100:  # points are named by weights with 2 decimals
            problems.append(f"'grid' must be between 1 and 100, got {self.grid}")
        if not 0 < self.test_size < 1:
            problems.append(f"'test_size' must be in (0, 1), got {self.test_size}")
        for i, w in enumerate(self.weights or []):
            try:
                as_weights(w, len(self.objectives), name=f"weights[{i}]")
            except ValueError as exc:
                problems.append(str(exc))
        if self.weights and not problems:
            ids = [format_weights(as_weights(w, len(self.objectives))) for w in self.weights]
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                problems.append(f"'weights' has vectors that agree to 2 decimals ({repeated}); "
                                "points are named by their weights, so make them distinct")
        if self.reference_point is not None and len(self.reference_point) != len(self.objectives):
            problems.append(f"'reference_point' has {len(self.reference_point)} entries for "
                            f"{len(self.objectives)} objectives")
        if problems:
            raise ConfigError(problems)

    def weight_vectors(self) -> np.ndarray:
        from moalign.pareto import simplex_grid

        if self.weights:
            return np.array([as_weights(w, len(self.objectives)) for w in self.weights])
        return simplex_grid(len(self.objectives), self.grid)


# --------------------------------------------------------------------------------------------
# Policies of a front: each method yields (point id, weights, policy handle)
# --------------------------------------------------------------------------------------------


@dataclass
class Policy:
    """How to query one point's policy: the model with its active adapter, an optional prompt
    rewrite (conditioning) and an optional replacement generation function (mixtures)."""

    model: Any
    adapter: str | None = None
    transform_prompt: Callable[[Any], Any] | None = None
    generate: Callable[..., list[str]] | None = None
    checkpoint: str | None = None

    def activate(self) -> None:
        if self.adapter is not None:
            self.model.set_adapter(self.adapter)


class _Context:
    """What a method needs: the base model, data splits, trained runs and their adapters."""

    def __init__(self, cfg: FrontConfig, out: Path):
        from moalign.pipeline import load_model_for_front, load_preference_splits

        self.cfg, self.out = cfg, out
        self.train_ds, self.test_ds = load_preference_splits(cfg)  # bad data: before the model
        self.base, self.tokenizer = load_model_for_front(cfg)
        self.peft: Any = None  # the base wrapped with every loaded adapter (after training)
        self.train_seconds, self.train_steps = 0.0, 0

    def run(self, run_id: str, **trainer_fields: Any) -> str:
        """Train (or find, when finished before) the LoRA run ``run_id``; return its id.

        Every run starts from a copy of the pristine base, so call all of them before
        :meth:`adapter` wraps the base.
        """
        from moalign.pipeline import train_lora_run

        folder = self.out / "runs" / run_id
        if not (folder / "run.json").is_file():
            if self.peft is not None:
                raise RuntimeError("train every run before loading adapters")
            with atomic_directory(folder, overwrite=True) as tmp:
                info = train_lora_run(self.cfg, self.base, self.tokenizer, self.train_ds, tmp,
                                      run_id=run_id, **trainer_fields)
                atomic_write_json(tmp / "run.json", info)
        info = read_json(folder / "run.json", required=("seconds", "steps"), what="run record",
                         hint=f"delete '{folder}' to retrain it")
        check_adapter(folder / "adapter")  # damaged weights are reported, never loaded
        self.train_seconds += float(info["seconds"])
        self.train_steps += int(info["steps"])
        return run_id

    def adapter(self, run_id: str) -> Any:
        """The peft model with run ``run_id``'s adapter loaded (under that name)."""
        path = str(self.out / "runs" / run_id / "adapter")
        if self.peft is None:
            from peft import PeftModel

            self.peft = PeftModel.from_pretrained(self.base, path, adapter_name=run_id)
        elif run_id not in self.peft.peft_config:
            self.peft.load_adapter(path, adapter_name=run_id)
        return self.peft


def _sweep(ctx: _Context) -> Iterator[tuple[str, np.ndarray, Policy]]:
    grid = ctx.cfg.weight_vectors()
    names = [ctx.run(format_weights(w).replace(".", "_"), weights=w.tolist()) for w in grid]
    for w, name in zip(grid, names):
        yield format_weights(w), w, Policy(ctx.adapter(name), adapter=name,
                                           checkpoint=f"runs/{name}/adapter")


def _per_objective_runs(ctx: _Context) -> list[str]:
    k = len(ctx.cfg.objectives)
    return [ctx.run(f"only_{name}", weights=np.eye(k)[i].tolist())
            for i, name in enumerate(ctx.cfg.objectives)]


def _soup(ctx: _Context) -> Iterator[tuple[str, np.ndarray, Policy]]:
    from moalign.soup import soup_adapter

    runs = _per_objective_runs(ctx)
    model = [ctx.adapter(r) for r in runs][-1]
    for w in ctx.cfg.weight_vectors():
        pid = format_weights(w)
        name = soup_adapter(model, runs, w, name="soup")
        # peft saves a named adapter in a subfolder of that name
        yield pid, w, Policy(model, adapter=name, checkpoint=f"points/{pid}/adapter/{name}")


def _conditioned(ctx: _Context) -> Iterator[tuple[str, np.ndarray, Policy]]:
    from moalign.conditioning import apply_condition

    name = ctx.run("conditioned", conditioning="prompt")
    model = ctx.adapter(name)
    objectives = ctx.cfg.objectives
    style = ctx.cfg.train.get("condition_style", "system")  # as in training
    for w in ctx.cfg.weight_vectors():
        def transform(prompt: Any, w: np.ndarray = w) -> Any:
            return apply_condition(prompt, w, objectives, style=style)

        yield format_weights(w), w, Policy(model, adapter=name, transform_prompt=transform,
                                           checkpoint="runs/conditioned/adapter")


def _decoding(ctx: _Context) -> Iterator[tuple[str, np.ndarray, Policy]]:
    from moalign.decoding import generate_mixture

    runs = _per_objective_runs(ctx)
    model = [ctx.adapter(r) for r in runs][-1]
    for w in ctx.cfg.weight_vectors():
        def generate(model: Any, tokenizer: Any, prompts: Any, w: np.ndarray = w, **kw: Any):
            return generate_mixture([(model, r) for r in runs], w, tokenizer, prompts, **kw)

        yield format_weights(w), w, Policy(model, adapter=None, generate=generate)


#: method name -> function yielding the front's policies
METHODS: dict[str, Callable[[_Context], Iterator[tuple[str, np.ndarray, Policy]]]] = {
    "sweep": _sweep,
    "soup": _soup,
    "conditioned": _conditioned,
    "decoding": _decoding,
}


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
    from moalign.pareto import FrontPoint, ParetoFront
    from moalign.pipeline import evaluate_front_policy

    if not isinstance(config, FrontConfig):
        from moalign.runconfig import resolve_front_config

        config = resolve_front_config(config)  # every problem at once, before any work
    cfg = config
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"'output_dir': '{out}' exists and is not a folder")
    current = _check_resume(out, cfg)
    ctx = _Context(cfg, out)  # loads and checks the data, then the model
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
