"""Configuration of a front trace: :class:`FrontConfig` and its complete up-front check.

:func:`resolve_front_config` checks a mapping (a ``moalign trace`` YAML file, a ``dict`` given
to :func:`~moalign.fronts.trace_front`) completely, before any model or data loads, and raises
one :class:`~moalign.errors.ConfigError` naming every problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moalign.config.checking import (
    Range,
    build_checked,
    check_fields,
    defaults_of,
    did_you_mean,
    raise_problems,
    range_problems,
)
from moalign.data.catalog import dataset_columns, dataset_problems, describe_spec
from moalign.data.split import TEST_SIZE
from moalign.errors import ConfigError
from moalign.evaluation.generation import GENERATION_RANGES, generation_problems
from moalign.fronts.plan import (
    DEFAULT_MAX_PROMPT_TOKENS,
    METHODS,
    combination_problems,
    default_metric,
    is_online,
)
from moalign.models.lora import lora_options, lora_problems
from moalign.models.placement import dtype_problems
from moalign.models.precision import bf16_problems, precision_problems
from moalign.models.specs import lora_target_problems, model_problems
from moalign.objective.checks import objective_problems
from moalign.objective.registry import objective_name
from moalign.pareto.bootstrap import DEFAULT_BOOTSTRAP, bootstrap_problems
from moalign.trainers.runs import TRAINER_DEFAULTS
from moalign.weights import as_weights, format_weights

__all__ = ["DEFAULT_MAX_PROMPT_TOKENS", "DEFAULT_TRAIN", "METHOD_NAMES", "REFERENCE_NAMES",
           "FrontConfig", "resolve_front_config"]

#: The methods that make a front's policies (the names of :data:`moalign.fronts.plan.METHODS`).
METHOD_NAMES = tuple(METHODS)
#: Trainer settings every DPO-family front run starts from (``FrontConfig.train`` overrides them;
#: the RL trainers start from ``TRAINER_DEFAULTS["prompts"]``), as in ``moalign train``.
DEFAULT_TRAIN: dict[str, Any] = TRAINER_DEFAULTS["preference"]
#: Named reference points of the hypervolume (``FrontConfig.reference_point``).
REFERENCE_NAMES = ("baseline", "chance")
#: Allowed ranges of FrontConfig's numbers and of ``report.<name>.n`` (its ``generation``
#: settings: :data:`moalign.evaluation.generation.GENERATION_RANGES`).
RANGES = {"train_pairs": Range(low=1, none=True), "eval_pairs": Range(low=1),
          "eval_prompts": Range(low=1), "max_length": Range(low=1), "seed": Range(low=0)}


@dataclass
class FrontConfig:
    """Configuration of :func:`trace_front` (the keys of ``moalign trace`` YAML files)."""

    #: How the front's policies are made: ``sweep``, ``soup``, ``conditioned`` or ``decoding``.
    method: str = "soup"
    #: The trainer of the front's runs: ``mo_dpo`` (conditioned DPO with ``conditioned``),
    #: ``modpo`` (sweep only), ``grpo`` or ``ppo`` (online: trained on the dataset's prompts,
    #: rewarded by the objectives). ``moalign trace --help`` says what each method trains.
    trainer: str = "mo_dpo"
    #: Objectives, in order: names or ``load_objective`` specs (``"name:key=value"``, a dict
    #: with ``name``, ``"package.module:Class"``). The DPO family reads each one's
    #: ``pref_<name>`` label column; the RL trainers are rewarded by them, and they score the
    #: ``generation`` metric (one loaded copy serves both).
    objectives: list[str | dict[str, Any]] = field(
        default_factory=lambda: ["helpfulness", "harmlessness"])
    #: Starting (SFT) checkpoint: a local folder, ``"smollm2"`` (the embedded one) or ``"tiny"``.
    model: str = "smollm2"
    #: Data: ``"hh-rlhf"`` (bundled helpful + harmless), another bundled name, a file in the
    #: canonical schema, or ``{source: <hub id or path>, adapter: <name>, split, config,
    #: columns, options}`` (``moalign datasets`` lists the adapters).
    dataset: str | dict[str, Any] = "hh-rlhf"
    #: Where runs, points, ``front.json`` and ``front.png`` go.
    output_dir: str = "front"
    #: Weight vectors of the front; default: ``simplex_grid(K, grid)``. ``adaptive``: start with
    #: that grid, then place each next point (up to ``points``) where the measured front has
    #: its largest hypervolume gap (resumable: the choices are kept in ``adaptive.json``).
    weights: list[list[float]] | str | None = None
    #: Resolution of the default simplex grid (K=2, grid=4 gives 5 points).
    grid: int = 4
    #: With ``weights: adaptive``: the number of points of the front (starting grid included).
    points: int | None = None
    #: Training pairs per objective (DPO family) or training prompts (RL trainers), taken from
    #: the training split; ``None`` uses all.
    train_pairs: int | None = 256
    #: Fraction of pairs held out for evaluation (split seeded by ``seed``; the one split of
    #: :func:`moalign.data.heldout_split`, as ``moalign train`` and ``moalign eval`` take it).
    test_size: float = TEST_SIZE
    #: Fields of the trainer's config (``learning_rate``, ``max_steps``, ``beta``, ...; checked
    #: against that config class), plus ``max_prompt_tokens``.
    train: dict[str, Any] = field(default_factory=dict)
    #: LoRA options, as in ``moalign train`` (``peft.LoraConfig`` fields, or ``alpha`` /
    #: ``dropout``; the ones not given take :data:`moalign.models.lora.LORA_DEFAULTS`: r 16,
    #: alpha 32, dropout 0.05 on q/k/v/o); the reference is the adapter-free base. Stored
    #: complete, so a rerun under other defaults is refused. ``null``: full fine-tuning (a soup
    #: then interpolates the runs' weights).
    lora: dict[str, Any] | None = field(default_factory=dict)
    #: How each point is scored: ``"implicit"`` (held-out implicit-reward accuracy per
    #: objective, generation-free) or ``"generation"`` (generate and score with objectives).
    #: Default: ``implicit`` for the DPO family, ``generation`` for ``grpo`` / ``ppo``.
    metric: str | None = None
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
    #: Reference point of the hypervolume, stored with the front: ``baseline`` (the starting
    #: policy's measured scores: the hypervolume is then the front's gain over the start, 0
    #: unless some point beats the start on every objective), ``chance`` (0.5 per objective;
    #: ``implicit`` accuracies only) or explicit numbers, one per objective. Default (null):
    #: ``baseline``, or ``chance`` for ``implicit`` with ``include_baseline: false``. Why: a
    #: reference must not move when a point is added (the old data-dependent one, "just below
    #: the worst score", did, so adding a bad point raised every hypervolume), and the origin
    #: made any chance-level point cover most of the hypervolume. The start is what a front is
    #: compared with, and it is measured on the same examples, so the hypervolume's interval
    #: is paired with the points'. With ``baseline`` the reference is resampled with them.
    reference_point: list[float] | str | None = None
    #: Also evaluate the starting policy (stored as ``metadata.baseline`` in front.json, with
    #: its per-example scores, measured like any point); needed by ``reference_point: baseline``.
    include_baseline: bool = True
    #: Paired bootstrap over the held-out examples: ``resamples`` (>= 100), ``level`` of the
    #: percentile intervals and ``seed``; missing keys take the defaults. Only the statistics
    #: depend on it: a rerun with other settings recomputes them, not the points.
    bootstrap: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_BOOTSTRAP))
    #: Sequence-length cap for evaluation log-probs (tokens).
    max_length: int = 256
    #: Seed of splits, training and sampling.
    seed: int = 0
    #: Numeric precision of training (TRL's ``bf16`` autocast) and evaluation (log-probs,
    #: generation, reward scoring): ``auto`` (bfloat16 where the machine runs it fast: CUDA
    #: with bf16, a CPU with AMX-BF16 / AVX512-BF16; else float32), ``float32``, ``bfloat16``.
    #: Under ``auto`` an explicit ``train.bf16`` decides. Stored as ``metadata.precision``.
    precision: str = "auto"
    #: The dtype the policy's weights load in: ``auto`` (bfloat16 on a CUDA device with
    #: bfloat16, float32 elsewhere), ``float32``, ``bfloat16`` or ``float16``. Stored as
    #: ``metadata.dtype``, resolved.
    dtype: str = "auto"
    #: Show progress bars.
    progress: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.metric is None:
            self.metric = default_metric(self.trainer)
        names = [objective_name(o) for o in self.objectives or []]
        #: the objectives' names (front.json, label columns, conditioning text), in order
        self.objective_names = [n if n is not None else str(o)
                                for n, o in zip(names, self.objectives or [])]
        if self.method not in METHOD_NAMES:
            problems.append(f"'method' must be one of {sorted(METHOD_NAMES)}, got {self.method!r}")
        if not self.objectives or len(set(self.objective_names)) != len(self.objectives):
            problems.append(f"'objectives' must be distinct names, got {self.objectives!r}")
        elif len(self.objectives) < 2:
            problems.append(f"'objectives': a front needs at least 2 objectives (front.png plots "
                            f"them against each other, the hypervolume measures their trade-off),"
                            f" got {self.objective_names}; train one objective with moalign train")
        if self.metric not in ("implicit", "generation"):
            problems.append(f"'metric' must be 'implicit' or 'generation', got {self.metric!r}")
        if self.metric == "implicit" and self.method == "decoding":
            problems.append("the 'decoding' method has no single policy to take log-probs of; "
                            "use metric: generation")
        if not 1 <= self.grid <= 100:  # points are named by weights with 2 decimals
            problems.append(f"'grid' must be between 1 and 100, got {self.grid}")
        if not 0 < self.test_size < 1:
            problems.append(f"'test_size' must be in (0, 1), got {self.test_size}")
        for i, w in enumerate(self.weights if isinstance(self.weights, list) else []):
            try:
                as_weights(w, len(self.objectives), name=f"weights[{i}]")
            except ValueError as exc:
                problems.append(str(exc))
        if isinstance(self.weights, list) and self.weights and not problems:
            ids = [format_weights(as_weights(w, len(self.objectives))) for w in self.weights]
            repeated = sorted({i for i in ids if ids.count(i) > 1})
            if repeated:
                problems.append(f"'weights' has vectors that agree to 2 decimals ({repeated}); "
                                "points are named by their weights, so make them distinct")
        problems += range_problems(self, RANGES)
        if isinstance(self.generation, Mapping):
            problems += range_problems(self.generation, GENERATION_RANGES, prefix="generation: ")
        if not problems:
            problems += combination_problems(self)
        problems += self._reference_problems()
        problems += bootstrap_problems(self.bootstrap)
        problems += self._precision_problems()
        problems += dtype_problems(self.dtype)
        if problems:
            raise ConfigError(problems)
        if isinstance(self.lora, Mapping) and not lora_problems(self.lora):
            self.lora = _complete_lora(self.lora)
        self.bootstrap = {**DEFAULT_BOOTSTRAP, **self.bootstrap}

    def _reference_problems(self) -> list[str]:
        ref = self.reference_point
        if isinstance(ref, str) and ref.strip() not in REFERENCE_NAMES:
            try:  # --reference_point 0.5,0.5 on the command line
                ref = [float(v) for v in ref.strip().strip("[]").split(",")]
            except ValueError:
                return [f"'reference_point' must be 'baseline', 'chance' or one number per "
                        f"objective, got {self.reference_point!r}"]
        if isinstance(ref, str):
            ref = ref.strip()
            if ref == "baseline" and not self.include_baseline:
                return ["'reference_point: baseline' needs the starting policy's scores: set "
                        "include_baseline: true, or use 'chance' or explicit numbers"]
            if ref == "chance" and self.metric != "implicit":
                return ["'reference_point: chance' (0.5 per objective) is defined for the "
                        "implicit metric only; use 'baseline' or explicit numbers"]
        elif ref is not None:
            if len(ref) != len(self.objectives):
                return [f"'reference_point' has {len(ref)} entries for "
                        f"{len(self.objectives)} objectives"]
            if not all(np.isfinite(ref)):
                return [f"'reference_point' must be finite numbers, got {ref!r}"]
            ref = [float(v) for v in ref]
        elif not self.include_baseline and self.metric != "implicit":
            return ["the generation metric without a baseline (include_baseline: false) has no "
                    "default reference point: give reference_point as numbers"]
        self.reference_point = ref
        return []

    def _precision_problems(self) -> list[str]:
        bf16 = self.train.get("bf16") if isinstance(self.train, Mapping) else None
        return precision_problems(self.precision) + bf16_problems(self.precision, bf16,
                                                                   key="train.bf16")

    def resolved_precision(self) -> str:
        """``float32`` or ``bfloat16`` on this machine (see ``precision``)."""
        from moalign.models.precision import resolve_precision

        bf16 = self.train.get("bf16")
        if self.precision == "auto" and isinstance(bf16, bool):
            return "bfloat16" if bf16 else "float32"
        from moalign.models.placement import run_device

        return resolve_precision(self.precision, device=run_device().type)

    def reference(self) -> str | list[float]:
        """The reference point to use: ``"baseline"``, ``"chance"`` or numbers."""
        if self.reference_point is None:
            return "baseline" if self.include_baseline else "chance"
        return self.reference_point

    def weight_vectors(self) -> np.ndarray:
        """The given weight vectors, else the simplex grid (for ``weights: adaptive``: the
        starting grid; the trace chooses the rest)."""
        from moalign.pareto.indicators import simplex_grid

        if isinstance(self.weights, list) and self.weights:
            return np.array([as_weights(w, len(self.objectives)) for w in self.weights])
        return simplex_grid(len(self.objectives), self.grid)


def _complete_lora(lora: Mapping[str, Any]) -> dict[str, Any]:
    """Every LoRA option of a run, defaults included (:func:`moalign.models.lora.lora_options`),
    as plain JSON values: what ``config.json`` records and the resume check compares."""
    options = lora_options(lora)
    targets = options["target_modules"]
    options["target_modules"] = targets if isinstance(targets, str) else list(targets)
    return options


def _report_problems(report: Any) -> list[str]:
    if not isinstance(report, Mapping):
        return []
    problems = []
    for name, entry in report.items():
        where = f"report.{name}"
        if not isinstance(entry, Mapping):
            problems.append(f"'{where}' must be a mapping with 'spec', 'dataset' and 'n'")
            continue
        unknown = sorted(set(entry) - {"spec", "dataset", "n"})
        for u in unknown:
            problems.append(f"'{where}': unknown key '{u}'{did_you_mean(u, ['spec', 'dataset', 'n'])}")
        problems += range_problems(entry, {"n": Range(low=1)}, prefix=f"{where}: ")
        dataset = entry.get("dataset", "gsm8k")
        problems += dataset_problems(dataset, f"{where}.dataset")
        problems += objective_problems([entry.get("spec", name)], labels="scorer", columns=None,
                                       key=where)
    return problems


def _trace_train_ranges(trainer: str) -> dict[str, Range]:
    from moalign.trainers import ranges

    table = {"grpo": ranges.GRPO_RANGES, "ppo": ranges.PPO_RANGES}.get(trainer, ranges.DPO_RANGES)
    # a front's runs are compared at a fixed number of steps: no "-1: use epochs" here
    return {**table, "max_steps": Range(low=1), "max_prompt_tokens": Range(low=1)}


def resolve_front_config(data: Mapping[str, Any], *, source: str | None = None):
    """Validate a ``FrontConfig`` mapping completely and return the config object."""
    good, problems = check_fields([FrontConfig], data)
    cfg, built = build_checked(FrontConfig, good)
    problems += built
    view = {**defaults_of(FrontConfig), **good}
    problems += model_problems(view["model"])
    problems += dataset_problems(view["dataset"])
    columns = (dataset_columns(view["dataset"])
               if isinstance(view["dataset"], (str, Mapping)) else None)
    online = is_online(view["trainer"])
    problems += objective_problems(view["objectives"], labels="scorer" if online else "column",
                                   columns=columns, dataset=describe_spec(view["dataset"]))
    metric = view.get("metric") or default_metric(view["trainer"])
    if metric == "generation" and isinstance(view["objectives"], list):
        scorers = view.get("scorers") or {}
        given = [(scorers.get(objective_name(o) or "", o), o) for o in view["objectives"]]
        # an RL front's objectives were checked as scorers above: only replacements remain
        replaced = [s for s, o in given if not online or s is not o]
        if replaced:
            problems += objective_problems(replaced, labels="scorer", columns=None,
                                           key="scorers")
    if isinstance(view.get("train"), Mapping):
        from moalign.fronts.runs import train_problems

        # every train: key against the trainer's config class; with the rest of the file
        # sound, a trial config of the first run too
        problems += train_problems(view, trial=cfg if cfg is not None and not problems else None)
        train_good = {k: v for k, v in view["train"].items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
        problems += range_problems(train_good, _trace_train_ranges(view["trainer"]),
                                   prefix="train: ")
    lora_found = lora_problems(view.get("lora"))
    problems += lora_found
    if not lora_found:  # against the model's module names, from its config alone
        problems += lora_target_problems(view["model"], view.get("lora"))
    problems += generation_problems(view.get("generation"))
    problems += _report_problems(view.get("report"))
    raise_problems(problems, source)
    return cfg
