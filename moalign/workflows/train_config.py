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
    check_fields,
    defaults_of,
    did_you_mean,
    raise_problems,
)
from moalign.data.catalog import dataset_columns, dataset_problems, describe_spec
from moalign.data.split import MAX_PROMPT_TOKENS, TEST_SIZE
from moalign.models.lora import lora_problems
from moalign.models.placement import dtype_problems
from moalign.models.precision import bf16_problems, precision_problems
from moalign.models.specs import model_problems
from moalign.objective.checks import objective_problems
from moalign.trainers.registry import TRAINERS, TrainerSpec
from moalign.trainers.resume import CHECKPOINT_DIR, plan_resume
from moalign.trainers.runs import trainer_defaults  # the CPU-sized defaults live with the trainers

__all__ = ["RUN_IDENTITY", "TRAIN_RECORD", "ResolvedTrain", "TrainRunConfig", "identity_problems",
           "resolve_train_config", "run_identity", "trainer_defaults"]

#: File that ``moalign train`` writes last into its output folder (what makes it "finished").
TRAIN_RECORD = "train.json"
#: File, beside the checkpoints in ``<output_dir>/trainer``, recording the configuration that
#: determines the run's results (:func:`run_identity`); a resume must match it.
RUN_IDENTITY = "run_config.json"
#: Keys of :class:`TrainRunConfig` that do not change what a run computes.
_RUN_COSMETIC = frozenset({"output_dir", "overwrite", "resume", "progress"})
#: Fields of the trainers' configs that do not change what a run computes: where and how often
#: it logs, saves and evaluates, the process's rank, progress bars, data-loading workers.
_ARGS_COSMETIC = frozenset({
    "output_dir", "report_to", "run_name", "disable_tqdm", "push_to_hub", "resume_from_checkpoint",
    "overwrite_output_dir", "local_rank", "do_train", "do_eval", "do_predict", "project",
    "per_device_eval_batch_size", "dataloader_num_workers", "dataloader_pin_memory",
    "dataloader_persistent_workers", "dataloader_prefetch_factor", "skip_memory_metrics",
    "num_completions_to_print", "ddp_timeout", "include_for_metrics", "batch_eval_metrics",
    "load_best_model_at_end", "metric_for_best_model", "greater_is_better",
    "prediction_loss_only", "restore_callback_states_from_checkpoint",
})
_ARGS_COSMETIC_PREFIXES = ("logging_", "log_", "save_", "hub_", "eval_", "trackio_")
#: Per kind of data: the dataset and objectives used when the config names none (bundled).
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "preference": {"dataset": "hh-rlhf", "objectives": ["helpfulness", "harmlessness"]},
    "prompts": {"dataset": "gsm8k", "objectives": ["reasoning_accuracy", "length"]},
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
    #: Replace an ``output_dir`` that an earlier ``moalign train`` wrote (or start an unfinished
    #: one over, removing its checkpoints).
    overwrite: bool = False
    #: Continue a run that was stopped: ``true`` (from the newest complete checkpoint in
    #: ``<output_dir>/trainer``; an error when there is none), ``auto`` (from it when there is
    #: one, else start fresh), a ``checkpoint-<step>`` folder, or ``false`` (start fresh).
    #: Half-written checkpoints are never loaded; a finished ``output_dir`` is never resumed.
    #: Checkpoints are saved with ``save_strategy: steps`` and ``save_steps`` (ppo: ``save_steps``).
    resume: bool | str = False
    #: LoRA options (:func:`moalign.models.lora_config` arguments); null trains every weight.
    lora: dict | None = dataclasses.field(default_factory=dict)
    #: Training pairs per objective (DPO family) or prompts (ppo / grpo); null: all.
    max_examples: int | None = 256
    #: Held-out fraction left out of training (the split ``moalign eval --split test`` uses).
    test_size: float = TEST_SIZE
    #: Prompts longer than this many tokens keep their end.
    max_prompt_tokens: int = MAX_PROMPT_TOKENS
    #: Training precision, given to the trainer's ``bf16`` field (autocast; float32 weights):
    #: ``auto`` (bfloat16 where the machine runs it fast: CUDA with bf16, a CPU with AMX-BF16 /
    #: AVX512-BF16; else float32), ``float32`` or ``bfloat16``. An explicit ``bf16`` decides
    #: under ``auto``.
    precision: str = "auto"
    #: The dtype the policy's weights load in: ``auto`` (bfloat16 on a CUDA device with
    #: bfloat16 unless the precision is float32; float32 elsewhere), ``float32``, ``bfloat16``
    #: or ``float16``. Resolved when the config is checked, and recorded so in ``train.json``.
    dtype: str = "auto"
    #: Show progress bars.
    progress: bool = True


@dataclasses.dataclass
class ResolvedTrain:
    """A validated ``moalign train`` configuration."""

    run: TrainRunConfig
    spec: TrainerSpec
    args: Any
    columns: frozenset[str] | None
    #: The checkpoint the run continues from (``resume``), or None for a fresh run.
    resume_from: str | None = None


def _run_problems(view: Mapping[str, Any]) -> list[str]:
    problems = []
    if not 0 < view["test_size"] < 1:
        problems.append(f"'test_size' must be in (0, 1), got {view['test_size']}")
    if view["max_examples"] is not None and view["max_examples"] < 1:
        problems.append(f"'max_examples' must be >= 1 (or null for all), got {view['max_examples']}")
    if view["max_prompt_tokens"] < 1:
        problems.append(f"'max_prompt_tokens' must be >= 1, got {view['max_prompt_tokens']}")
    return problems + dtype_problems(view["dtype"])


def _resolve_dtype(run: TrainRunConfig, args: Any) -> None:
    """``run.dtype`` resolved for the device the run trains on (``use_cpu``) and its
    precision (the trainer's ``bf16``): what the policy loads in and ``train.json`` records."""
    from moalign.models.placement import resolve_dtype, run_device

    device = run_device(use_cpu=getattr(args, "use_cpu", None))
    bf16 = getattr(args, "bf16", None)
    precision = None if bf16 is None else ("bfloat16" if bf16 else "float32")
    run.dtype = resolve_dtype(run.dtype, device, precision)


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


def _precision_into(given: dict[str, Any], precision: str, cfg_cls: Any) -> list[str]:
    """Set the trainer's ``bf16`` from ``precision`` (TRL trains in bfloat16 autocast, on the
    CPU too with ``use_cpu``), unless ``bf16`` is given; a contradiction is a problem."""
    problems = precision_problems(precision)
    if problems or "bf16" not in {f.name for f in dataclasses.fields(cfg_cls)}:
        return problems
    bf16 = given.get("bf16")
    if isinstance(bf16, bool):
        return bf16_problems(precision, bf16)
    from moalign.models.precision import resolve_precision

    given["bf16"] = resolve_precision(precision) == "bfloat16"
    return problems


def run_identity(run: TrainRunConfig, args: Any) -> dict[str, Any]:
    """The configuration that determines a run's results, as JSON values: the keys of ``run``
    (LoRA options completed with their defaults) and the trainer config's fields, less the
    cosmetic ones (where and how often it logs and saves, progress bars, ...)."""
    from moalign.storage.files import jsonable

    values = {f.name: getattr(run, f.name) for f in dataclasses.fields(run)
              if f.name not in _RUN_COSMETIC}
    if isinstance(run.lora, Mapping):
        from moalign.models.lora import lora_options

        values["lora"] = lora_options(run.lora)
    if args is not None and dataclasses.is_dataclass(args):
        values.update({f.name: getattr(args, f.name) for f in dataclasses.fields(args)
                       if f.name not in _ARGS_COSMETIC
                       and not f.name.startswith(_ARGS_COSMETIC_PREFIXES)})
    return jsonable(values)


def _flat(values: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Key -> (value in ``values``, value in ``other``) for the keys both have; a mapping on
    both sides is compared key by key (``lora.r``)."""
    out = {}
    for key in values.keys() & other.keys():
        a, b = values[key], other[key]
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for sub in sorted(a.keys() | b.keys()):
                out[f"{key}.{sub}"] = (a.get(sub, "(not set)"), b.get(sub, "(not set)"))
        else:
            out[key] = (a, b)
    return out


def identity_problems(output_dir: str, resume_from: str | None,
                      identity: Mapping[str, Any]) -> list[str]:
    """A resume whose run recorded another configuration (``run_config.json`` beside its
    checkpoints): one problem naming each changed key with its recorded and its new value.
    Keys only one side has (a trainer's own fields, when the trainer changed; fields added
    since the run began) are not compared: the keys they depend on are."""
    if resume_from is None:
        return []
    saved = Path(resume_from).expanduser().parent / RUN_IDENTITY
    if not saved.is_file():  # a run begun before run_config.json was written
        return []
    import json

    from moalign.errors import CheckpointError
    from moalign.storage.checkpoints import read_json

    try:
        before = read_json(saved, what="run configuration",
                           hint="set overwrite: true to start the run over")
    except CheckpointError as exc:
        return [f"'resume': {exc}"]
    changed = [(k, a, b) for k, (a, b) in sorted(_flat(before, identity).items()) if a != b]
    if not changed:
        return []
    listed = "; ".join(f"{k}: {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in changed)
    return [f"'resume': the run in '{output_dir}' was trained with another configuration "
            f"({listed}); a resumed run keeps its configuration: set overwrite: true (with "
            "resume: false or auto) to start it over, or choose another output_dir"]


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
    lora_found = lora_problems(run.lora, aliases=("alpha", "dropout"))
    problems += lora_found
    if not lora_found and not model_problems(run.model):  # targets the model does not have
        from moalign.models.specs import lora_target_problems

        problems += lora_target_problems(run.model, run.lora)
    resume_from, found = plan_resume(
        run.output_dir, run.resume, run.overwrite, finished=TRAIN_RECORD,
        required=getattr(spec.trainer_class(), "resume_required", ()) if cfg_cls else ())
    problems += found
    args = None
    if cfg_cls is not None:
        from moalign.trainers.runs import build_args

        given = {k: v for k, v in good.items() if k not in run_fields}
        problems += _precision_into(given, run.precision, cfg_cls)
        shared = {"objectives": run.objectives, "output_dir": str(Path(run.output_dir) / CHECKPOINT_DIR)}
        if run.weights is not None and not bad_weights:
            shared["weights"] = run.weights
        names = None
        if not problems and kind == "prompts":  # DPO-family configs check their trade-off
            from moalign.objective import ObjectiveSet

            names = ObjectiveSet(run.objectives).names
        args, found = build_args(spec, given, shared, names=names)
        problems += [p.replace("by this trainer", f"by trainer '{trainer}'") for p in found]
    if not problems:  # a resume continues the same configuration, checked before loading
        _resolve_dtype(run, args)
        problems += identity_problems(run.output_dir, resume_from, run_identity(run, args))
    raise_problems(problems, source)
    return ResolvedTrain(run, spec, args, columns, resume_from)
