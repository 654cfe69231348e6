"""The configuration of ``moalign train``, checked completely before any model or data loads.

The YAML file (plus ``--key value`` overrides) holds the keys of :class:`TrainRunConfig`
(``trainer``, ``model``, ``dataset``, ``objectives``, ``weights``, ``output_dir``, ``lora``, ...)
and the fields of the chosen trainer's config (``beta``, ``learning_rate``, ``max_steps``, ...);
:func:`resolve_train_config` reports every problem at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moalign.config.checking import (
    build_checked,
    check_fields,
    defaults_of,
    did_you_mean,
    raise_problems,
)
from moalign.data.catalog import dataset_columns, dataset_problems, describe_spec
from moalign.models.lora import lora_problems
from moalign.models.specs import model_problems
from moalign.objective.checks import objective_problems
from moalign.trainers.registry import TRAINERS, TrainerSpec

__all__ = ["TRAIN_RECORD", "ResolvedTrain", "TrainRunConfig", "resolve_train_config",
           "trainer_defaults"]

#: File that ``moalign train`` writes last into its output folder (what makes it "finished").
TRAIN_RECORD = "train.json"
#: Per kind of data: the dataset and objectives used when the config names none (bundled).
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "preference": {"dataset": "hh-rlhf", "objectives": ["helpfulness", "harmlessness"]},
    "prompts": {"dataset": "gsm8k", "objectives": ["reasoning_accuracy", "length"]},
}
#: Trainer-config defaults sized for a CPU, per kind of data; each applies only where the chosen
#: config has the field, and the YAML overrides it.
_PROMPT_DEFAULTS: dict[str, Any] = {
    "max_steps": 8, "batch_size": 4, "mini_batch_size": 4, "ppo_epochs": 2, "max_new_tokens": 48,
    "save_final": False, "logging_steps": 1, "per_device_train_batch_size": 4,
    "num_generations": 4, "max_completion_length": 48, "bf16": False,
    "gradient_checkpointing": False, "save_strategy": "no", "report_to": "none",
}


@dataclasses.dataclass
class TrainRunConfig:
    """The keys of a ``moalign train`` file besides the chosen trainer's own config fields."""

    #: The trainer, a name of :data:`TRAINERS`: mo_dpo, conditioned_dpo, modpo, ppo or grpo.
    trainer: str = "mo_dpo"
    #: Starting policy: ``smollm2`` (the embedded SFT checkpoint), ``tiny``, or a checkpoint
    #: folder / GGUF file / cached hub id.
    model: str = "smollm2"
    #: Data: ``hh-rlhf`` (+ ``/helpful-base``, ``/harmless-base``), ``gsm8k``, ``math500`` or a
    #: file; default ``hh-rlhf`` for the DPO family and ``gsm8k`` for ppo / grpo.
    dataset: str | dict[str, Any] | None = None
    #: Objectives, in order; default helpfulness + harmlessness (DPO family) or
    #: reasoning_accuracy + length (ppo / grpo).
    objectives: list[str] | None = None
    #: Fixed weights on the simplex, one per objective (default: uniform).
    weights: list[float] | None = None
    #: Folder of the trained adapter (or model), its tokenizer and ``train.json``.
    output_dir: str = "moalign-train"
    #: Replace an ``output_dir`` that an earlier ``moalign train`` wrote.
    overwrite: bool = False
    #: LoRA options (:func:`moalign.models.lora_config` arguments); null trains every weight.
    lora: dict | None = dataclasses.field(default_factory=dict)
    #: Training pairs per objective (DPO family) or prompts (ppo / grpo); null: all.
    max_examples: int | None = 256
    #: Held-out fraction left out of training (the split ``moalign eval --split test`` uses).
    test_size: float = 0.2
    #: Prompts longer than this many tokens keep their end.
    max_prompt_tokens: int = 96
    #: Show progress bars.
    progress: bool = True


@dataclasses.dataclass
class ResolvedTrain:
    """A validated ``moalign train`` configuration."""

    run: TrainRunConfig
    spec: TrainerSpec
    args: Any
    columns: frozenset[str] | None


def _output_problems(path: str, overwrite: bool) -> list[str]:
    p = Path(path).expanduser()
    if not p.exists():
        return []
    if not p.is_dir():
        return [f"'output_dir': '{path}' exists and is not a folder"]
    finished = (p / TRAIN_RECORD).is_file()
    if not any(p.iterdir()):
        return []
    if not overwrite:
        what = "the output of an earlier moalign train" if finished else "a non-empty folder"
        return [f"'output_dir': '{path}' is {what}; choose another folder"
                + (" or set overwrite: true" if finished else "")]
    if not finished:
        return [f"'output_dir': '{path}' is not empty and was not written by moalign train; "
                "refusing to replace it"]
    return []


def _run_problems(view: Mapping[str, Any]) -> list[str]:
    problems = []
    if not 0 < view["test_size"] < 1:
        problems.append(f"'test_size' must be in (0, 1), got {view['test_size']}")
    if view["max_examples"] is not None and view["max_examples"] < 1:
        problems.append(f"'max_examples' must be >= 1 (or null for all), got {view['max_examples']}")
    if view["max_prompt_tokens"] < 1:
        problems.append(f"'max_prompt_tokens' must be >= 1, got {view['max_prompt_tokens']}")
    return problems


def _train_objective_problems(trainer: str, kind: str, names: list[str],
                              columns: frozenset[str] | None, dataset: str) -> list[str]:
    if kind == "prompts":
        return objective_problems(names, labels="scorer", columns=columns, dataset=dataset)
    if trainer != "modpo" or not isinstance(names, list):
        return objective_problems(names, labels="column_or_scorer", columns=columns, dataset=dataset)
    problems = objective_problems(names[:1], labels="column_or_scorer", columns=columns,
                                  dataset=dataset)
    rest = [n for n in names[1:] if columns is None or f"margin_{n}" not in columns]
    if columns is not None:
        problems += objective_problems(rest, labels="scorer", columns=None, dataset=dataset)
    return problems


#: Per kind of data: the columns every row needs.
ROW_COLUMNS: dict[str, tuple[str, ...]] = {"preference": ("prompt", "chosen", "rejected"),
                                           "prompts": ("prompt",)}


def _column_problems(kind: str, columns: frozenset[str] | None, dataset: str) -> list[str]:
    """Columns the data lacks, when its first record tells (see ``dataset_columns``)."""
    if columns is None:
        return []
    return [f"'dataset': '{dataset}' has no column '{c}' (columns: {', '.join(sorted(columns))})"
            for c in ROW_COLUMNS[kind] if c not in columns]


def _tradeoff_problems(args: Any, objectives: list) -> list[str]:
    """Every trainer combines its objectives (weights, schedule, scalarizer, constraints) in a
    :class:`~moalign.tradeoff.tradeoff.TradeOff`; the online ones build it when they start, after
    the policy has loaded, so build it now: e.g. a constraint on an objective that is not
    trained is reported up front. (The DPO-family configs check theirs when they are built.)"""
    if not hasattr(args, "constraints"):
        return []
    from moalign.errors import MoalignError
    from moalign.objective import ObjectiveSet
    from moalign.tradeoff.tradeoff import TradeOff

    try:
        TradeOff.from_config(ObjectiveSet(objectives).names, args)
    except MoalignError as exc:
        return [str(exc)]
    return []


def trainer_defaults(kind: str) -> dict[str, Any]:
    """The CPU-sized trainer defaults of a kind of data (see :data:`_PROMPT_DEFAULTS`)."""
    import torch

    if kind == "preference":
        from moalign.fronts.config import DEFAULT_TRAIN

        base = dict(DEFAULT_TRAIN)
    else:
        base = dict(_PROMPT_DEFAULTS)
    return {**base, "use_cpu": not torch.cuda.is_available()}


def resolve_train_config(data: Mapping[str, Any], *, source: str | None = None) -> ResolvedTrain:
    """Validate a ``moalign train`` mapping completely (see the module docstring)."""
    problems: list[str] = []
    trainer = data.get("trainer", TrainRunConfig.trainer)
    spec = TRAINERS.get(trainer) if isinstance(trainer, str) else None
    cfg_cls = None
    if spec is None:
        problems.append(f"'trainer' must be one of {', '.join(TRAINERS)}, got {trainer!r}"
                        f"{did_you_mean(trainer, TRAINERS)}")
    else:
        try:
            cfg_cls = spec.config_class()
        except ImportError as exc:
            problems.append(f"trainer '{trainer}' is not available in this installation ({exc})")
    run_fields = {f.name for f in dataclasses.fields(TrainRunConfig)}
    if cfg_cls is None:  # the trainer's own keys cannot be judged: check the common ones only
        data = {k: v for k, v in data.items() if k in run_fields}
    else:  # a former trade-off field name: say what it is called now
        from moalign.tradeoff.tradeoff import RENAMED_FIELDS, renamed_field_problems

        known = run_fields | {f.name for f in dataclasses.fields(cfg_cls)}
        old = [k for k in data if k in RENAMED_FIELDS and k not in known]
        problems += renamed_field_problems(old)
        data = {k: v for k, v in data.items() if k not in old}
    good, found = check_fields([TrainRunConfig, *([cfg_cls] if cfg_cls else [])], data)
    problems += found
    common = {k: v for k, v in good.items() if k in run_fields}
    view = {**defaults_of(TrainRunConfig), **common}
    kind = spec.data if spec else "preference"
    for key in ("dataset", "objectives"):
        if view[key] is None:
            view[key] = DATA_DEFAULTS[kind][key]
    run = TrainRunConfig(**view)
    problems += _run_problems(view)
    problems += model_problems(run.model)
    problems += dataset_problems(run.dataset)
    columns = dataset_columns(run.dataset)
    problems += _column_problems(kind, columns, describe_spec(run.dataset))
    problems += _train_objective_problems(trainer, kind, run.objectives, columns,
                                          describe_spec(run.dataset))
    bad_weights: list[str] = []
    if run.weights is not None:
        from moalign.weights import weight_problems

        bad_weights = weight_problems(run.weights, len(run.objectives))
        problems += bad_weights
    problems += lora_problems(run.lora, aliases=("alpha", "dropout"))
    problems += _output_problems(run.output_dir, run.overwrite)
    args = None
    if cfg_cls is not None:
        fields = {f.name for f in dataclasses.fields(cfg_cls) if f.init}
        values = {k: v for k, v in trainer_defaults(kind).items() if k in fields}
        values.update({k: v for k, v in good.items() if k not in run_fields})
        for key, value in spec.fixed.items():
            if key in values and key in data and values[key] != value:
                problems.append(f"'{key}' is fixed to {value!r} by trainer '{trainer}', got "
                                f"{values[key]!r}")
            values[key] = value
        shared = {"objectives": run.objectives, "output_dir": str(Path(run.output_dir) / "trainer")}
        if run.weights is not None and not bad_weights:
            shared["weights"] = run.weights
        values.update({k: v for k, v in shared.items() if k in fields})
        args, found = build_checked(cfg_cls, values)
        problems += found
        if args is not None and not problems:
            problems += _tradeoff_problems(args, run.objectives)
    raise_problems(problems, source)
    return ResolvedTrain(run, spec, args, columns)
