"""``moalign train``: fine-tune a policy with one multi-objective trainer.

The YAML file (plus ``--key value`` overrides) holds the keys of :class:`TrainRunConfig`
(``trainer``, ``model``, ``dataset``, ``objectives``, ``weights``, ``output_dir``, ``lora``, ...)
and the fields of the chosen trainer's config (``beta``, ``learning_rate``, ``max_steps``, ...).
Every key is checked before any model or data loads (:func:`resolve_train_config`); the run
then trains, saves the adapter (or the whole model with ``lora: null``), the tokenizer and
``train.json`` into ``output_dir`` (atomically: the folder appears only when finished), and
prints the last logged per-objective metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moalign.commands._data import (
    _label_with_scorers,  # noqa: F401  (this command's helper)
    preference_data,
    prompt_data,
    training_split,
)
from moalign.runconfig import (
    build_checked,
    check_fields,
    dataset_columns,
    dataset_problems,
    defaults_of,
    did_you_mean,
    format_table,
    jsonable,
    keys_epilog,
    lora_problems,
    model_problems,
    objective_problems,
    quiet_library_output,
    raise_problems,
    read_config,
)

HELP = "fine-tune a policy with a multi-objective trainer (mo_dpo, modpo, conditioned_dpo, ppo, grpo)"
#: File that ``moalign train`` writes last into its output folder (what makes it "finished").
TRAIN_RECORD = "train.json"


@dataclasses.dataclass(frozen=True)
class TrainerSpec:
    """One trainer of ``moalign train``: where its config and trainer classes live
    (``"module:Class"``, imported only when chosen), the config fields it fixes, and the data it
    trains on: ``"preference"`` (prompt / chosen / rejected + labels) or ``"prompts"``
    (online: prompts plus the columns the objectives read)."""

    config: str
    trainer: str
    fixed: Mapping[str, Any]
    data: str
    #: the config field that holds the fixed objective weights
    weights_field: str = "weights"

    def config_class(self) -> type:
        return _import(self.config)

    def trainer_class(self) -> type:
        return _import(self.trainer)


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


_DPO = "moalign.trainers.dpo:MultiObjectiveDPO"
#: ``trainer:`` name -> what it trains with.
TRAINERS: dict[str, TrainerSpec] = {
    "mo_dpo": TrainerSpec(f"{_DPO}Config", f"{_DPO}Trainer", {}, "preference"),
    "conditioned_dpo": TrainerSpec(f"{_DPO}Config", f"{_DPO}Trainer", {"conditioning": "prompt"},
                                   "preference"),
    "modpo": TrainerSpec("moalign.trainers.modpo:MODPOConfig",
                         "moalign.trainers.modpo:MODPOTrainer", {}, "preference"),
    "ppo": TrainerSpec("moalign.trainers.ppo:MultiObjectivePPOConfig",
                       "moalign.trainers.ppo:MultiObjectivePPOTrainer", {}, "prompts"),
    "grpo": TrainerSpec("moalign.trainers.grpo:MultiObjectiveGRPOConfig",
                        "moalign.trainers.grpo:MultiObjectiveGRPOTrainer", {}, "prompts",
                        weights_field="reward_weights"),
}
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
    dataset: str | None = None
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


def _tradeoff_problems(spec: TrainerSpec, args: Any, objectives: list) -> list[str]:
    """The online trainers combine their objectives (weights, schedule, scalarizer,
    constraints) in a :class:`~moalign.trainers.tradeoff.TradeOff` built when they start, after
    the policy has loaded; build it now so that, e.g., a constraint on an objective that is not
    trained is reported up front."""
    if not hasattr(args, "constraints"):
        return []
    from moalign.errors import MoalignError
    from moalign.objective import ObjectiveSet
    from moalign.trainers.tradeoff import TradeOff

    try:
        TradeOff(ObjectiveSet(objectives).names, weights=getattr(args, spec.weights_field),
                 schedule=args.schedule, scalarizer=getattr(args, "scalarizer", "linear"),
                 constraints=args.constraints, lagrangian_lr=args.lagrangian_lr,
                 lagrangian_init=args.lagrangian_init, lagrangian_max=args.lagrangian_max)
    except MoalignError as exc:
        return [str(exc)]
    return []


def trainer_defaults(kind: str) -> dict[str, Any]:
    """The CPU-sized trainer defaults of a kind of data (see :data:`_PROMPT_DEFAULTS`)."""
    import torch

    if kind == "preference":
        from moalign.pipeline import DEFAULT_TRAIN

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
    problems += _column_problems(kind, columns, run.dataset)
    problems += _train_objective_problems(trainer, kind, run.objectives, columns, run.dataset)
    weight_problems = []
    if run.weights is not None:
        from moalign.config import check_simplex

        weight_problems = check_simplex(run.weights, len(run.objectives))
        problems += weight_problems
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
        if run.weights is not None and not weight_problems:
            shared[spec.weights_field] = run.weights
        values.update({k: v for k, v in shared.items() if k in fields})
        args, found = build_checked(cfg_cls, values)
        problems += found
        if args is not None and not problems:
            problems += _tradeoff_problems(spec, args, run.objectives)
    raise_problems(problems, source)
    return ResolvedTrain(run, spec, args, columns)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _lora(run: TrainRunConfig) -> Any:
    from moalign.models import lora_config

    return None if run.lora is None else lora_config(**run.lora)


def _train_offline(resolved: ResolvedTrain, model: Any, tokenizer: Any, ds: Any,
                   out: Path) -> tuple[list[dict], int]:
    """DPO family: a TRL-based trainer; saves its (peft) model."""
    trainer = resolved.spec.trainer_class()(
        model=model, args=resolved.args, train_dataset=ds, processing_class=tokenizer,
        peft_config=_lora(resolved.run))
    if not resolved.run.progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.model.save_pretrained(str(out))
    return list(trainer.state.log_history), int(trainer.state.global_step)


def _train_online(resolved: ResolvedTrain, model: Any, tokenizer: Any, ds: Any,
                  out: Path) -> tuple[list[dict], int]:
    """PPO / GRPO: objectives given as the trainer's objectives (or TRL ``reward_funcs``)."""
    from moalign.objective import ObjectiveSet

    cls = resolved.spec.trainer_class()
    objectives = ObjectiveSet(resolved.run.objectives)
    params = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {"args": resolved.args, "train_dataset": ds,
                              "processing_class": tokenizer, "peft_config": _lora(resolved.run)}
    if "reward_funcs" in params:
        kwargs["reward_funcs"] = list(objectives)
    else:
        kwargs["objectives"] = objectives
    trainer = cls(model=model, **kwargs)
    result = trainer.train()
    state = getattr(trainer, "state", None)
    log = list(getattr(state, "log_history", None) or (result if isinstance(result, list) else []))
    steps = int(getattr(state, "global_step", None) or getattr(trainer, "step", 0))
    policy = (trainer.accelerator.unwrap_model(trainer.policy) if hasattr(trainer, "policy")
              else trainer.model)
    policy.save_pretrained(str(out))
    return log, steps


#: kind of data -> (data preparation, training function)
RUNNERS = {
    "preference": (preference_data, _train_offline),
    "prompts": (prompt_data, _train_online),
}


def objective_metrics(log: list[Mapping[str, Any]], names: list[str]) -> dict[str, dict[str, float]]:
    """Last logged value of every per-objective metric: ``objective/<k>/loss`` -> ``loss``,
    ``weights/<k>`` -> ``weights``, ``reward/<k>/mean`` -> ``reward/mean``, ..."""
    table: dict[str, dict[str, float]] = {n: {} for n in names}
    for entry in log:
        for key, value in entry.items():
            parts = key.split("/")
            hits = [i for i, p in enumerate(parts) if p in table]
            if not hits or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            i = hits[0]
            metric = "/".join(p for p in parts[:i] + parts[i + 1:] if p != "objective") or "value"
            table[parts[i]][metric] = float(value)
    return table


def _is_main_process() -> bool:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    from accelerate import PartialState

    return PartialState().is_main_process


def train(resolved: ResolvedTrain) -> dict[str, Any]:
    """Load, train, save; returns the record written to ``train.json``."""
    import shutil

    from moalign._io import atomic_directory, atomic_write_json
    from moalign.pipeline import load_model_spec

    run, args = resolved.run, resolved.args
    seed = int(getattr(args, "seed", 0))
    if hasattr(args, "disable_tqdm"):
        args.disable_tqdm = not run.progress
    start = time.perf_counter()
    train_rows = training_split(resolved, seed)  # bad data fails here, before the model loads
    model, tokenizer = load_model_spec(run.model, seed=seed)
    prepare, fit = RUNNERS[resolved.spec.data]
    ds = prepare(resolved, train_rows, tokenizer)
    out = Path(run.output_dir).expanduser()
    if not _is_main_process():  # under accelerate / torchrun only the main process writes
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            args.output_dir = str(Path(scratch) / "trainer")
            fit(resolved, model, tokenizer, ds, Path(scratch))
        return {}
    with atomic_directory(out, overwrite=out.exists()) as tmp:
        args.output_dir = str(tmp / "trainer")
        log, steps = fit(resolved, model, tokenizer, ds, tmp)
        tokenizer.save_pretrained(str(tmp))
        if (tmp / "trainer").is_dir() and not any((tmp / "trainer").iterdir()):
            shutil.rmtree(tmp / "trainer")
        to_dict = getattr(args, "to_dict", None)
        record = jsonable({
            "trainer": run.trainer, "model": run.model, "dataset": run.dataset,
            "objectives": run.objectives, "weights": run.weights, "lora": run.lora,
            "examples": len(ds), "steps": steps, "seconds": round(time.perf_counter() - start, 3),
            "metrics": objective_metrics(log, run.objectives), "run": dataclasses.asdict(run),
            "args": to_dict() if callable(to_dict) else dataclasses.asdict(args),
            "log_history": log,
        })
        atomic_write_json(tmp / TRAIN_RECORD, record)
    return record


# --------------------------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="YAML file: trainer, model, dataset, objectives, weights, output_dir, "
                             "lora and the trainer's config fields; --key value overrides any key")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.epilog = (keys_epilog(TrainRunConfig) + "; plus the fields of the trainer's config "
                     f"(trainers: {', '.join(TRAINERS)})")


def summary(record: Mapping[str, Any]) -> str:
    """The text ``moalign train`` prints at the end."""
    metrics = record["metrics"]
    columns = sorted({m for row in metrics.values() for m in row})
    rows = [[name, *(metrics[name].get(c) for c in columns)] for name in record["objectives"]]
    what = "LoRA adapter" if record["lora"] is not None else "model"
    lines = [f"trained {record['trainer']} on {record['model']} ({record['dataset']}, "
             f"{record['examples']} examples): {record['steps']} steps in {record['seconds']:.1f} s"]
    if columns:
        lines += ["last logged metrics per objective:", format_table(["objective", *columns], rows)]
    lines.append(f"saved the {what}, tokenizer and {TRAIN_RECORD} to {record['run']['output_dir']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    data, source = read_config(args.config, overrides)
    if args.quiet:
        data["progress"] = False
    with quiet_library_output(args.debug, progress=data.get("progress", True) is not False):
        resolved = resolve_train_config(data, source=source)
        record = train(resolved)
    if record:  # empty on the other processes of a multi-process run
        print(summary(record))
    return 0
