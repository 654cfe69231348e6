"""One run of any trainer of :data:`~moalign.trainers.registry.TRAINERS`, from config to saved
policy: the CPU-sized defaults, the config built and checked, prompt rows shaped for the online
trainers, the trainer built, trained, and its policy saved.

``moalign train`` (:mod:`moalign.workflows.training`) and front traces (:mod:`moalign.fronts`) both go
through these functions, so a front's run is trained exactly as ``moalign train`` trains it.
Nothing here imports torch or TRL until a function needs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from moalign.config.checking import build_checked
from moalign.trainers.registry import TrainerSpec

__all__ = ["GPU_DEFAULTS", "TRAINER_DEFAULTS", "build_args", "build_trainer", "check_prompt_columns",
           "check_saved_policy", "prompt_rows", "save_policy", "saves_checkpoints",
           "tradeoff_problems", "train_and_save", "trained_policy", "trainer_defaults"]

#: Trainer-config defaults sized for a CPU, per kind of data (``TrainerSpec.data``); each applies
#: only where the chosen config has the field, and what the user gives overrides it.
TRAINER_DEFAULTS: dict[str, dict[str, Any]] = {
    "preference": {
        "beta": 0.1, "learning_rate": 5e-4, "max_steps": 12, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1, "max_length": 192, "logging_steps": 1, "bf16": False,
        "gradient_checkpointing": False, "save_strategy": "no", "report_to": "none",
    },
    "prompts": {
        "max_steps": 8, "batch_size": 4, "mini_batch_size": 4, "ppo_epochs": 2,
        "max_new_tokens": 48, "save_final": False, "logging_steps": 1,
        "per_device_train_batch_size": 4, "num_generations": 4, "max_completion_length": 48,
        "bf16": False, "gradient_checkpointing": False, "save_strategy": "no", "report_to": "none",
    },
}


#: Where the run trains on a GPU, these replace the CPU-sized lengths of
#: :data:`TRAINER_DEFAULTS` (which would cut most real prompts and replies) and turn gradient
#: checkpointing on (non-reentrant, the trainers' default); what the user gives still decides.
GPU_DEFAULTS: dict[str, dict[str, Any]] = {
    "preference": {"max_length": 1024, "gradient_checkpointing": True},
    "prompts": {"max_new_tokens": 256, "max_completion_length": 256,
                "gradient_checkpointing": True},
}


def trainer_defaults(kind: str, device: Any = None) -> dict[str, Any]:
    """The defaults of a kind of data on ``device`` (default: the run's device,
    :func:`moalign.models.placement.run_device`): :data:`TRAINER_DEFAULTS` (CPU-sized, with
    ``use_cpu``) on a CPU; with :data:`GPU_DEFAULTS` over them on a GPU."""
    from moalign.models.placement import run_device

    kind_of_device = getattr(device, "type", device) or run_device().type
    if str(kind_of_device).startswith("cuda"):
        return {**TRAINER_DEFAULTS[kind], **GPU_DEFAULTS[kind], "use_cpu": False}
    return {**TRAINER_DEFAULTS[kind], "use_cpu": True}


def tradeoff_problems(args: Any, names: Sequence[str]) -> list[str]:
    """Every trainer combines its objectives (weights, schedule, scalarizer, constraints) in a
    :class:`~moalign.tradeoff.tradeoff.TradeOff`; the online ones build it when they start, after
    the policy has loaded, so build it now: e.g. a constraint on an objective that is not
    trained is reported up front. (The DPO-family configs check theirs when they are built.)"""
    if not hasattr(args, "constraints"):
        return []
    from moalign.errors import MoalignError
    from moalign.tradeoff.tradeoff import TradeOff

    try:
        TradeOff.from_config(tuple(names), args)
    except MoalignError as exc:
        return [str(exc)]
    return []


def build_args(spec: TrainerSpec, given: Mapping[str, Any], shared: Mapping[str, Any], *,
               names: Sequence[str] | None = None) -> tuple[Any, list[str]]:
    """The trainer config of ``spec``: :func:`trainer_defaults` where the config has the field,
    then the user's fields ``given``, the fields the trainer fixes (``spec.fixed``; a different
    value in ``given`` is a problem), then ``shared`` (objectives, weights, output_dir, seed...:
    only those the config has). With ``names`` (the objectives) the trade-off is built too.
    Returns ``(config or None, problems)``."""
    cfg_cls = spec.config_class()
    fields = {f.name for f in dataclasses.fields(cfg_cls) if f.init}
    values = {k: v for k, v in trainer_defaults(spec.data).items() if k in fields}
    values.update(given)
    problems = []
    for key, value in spec.fixed.items():
        if key in given and given[key] != value:
            problems.append(f"'{key}' is fixed to {value!r} by this trainer, got {given[key]!r}")
        values[key] = value
    values.update({k: v for k, v in shared.items() if k in fields})
    args, found = build_checked(cfg_cls, values)
    problems += found
    if args is not None and not problems and names is not None:
        problems += tradeoff_problems(args, names)
    return args, problems


def check_prompt_columns(ds: Any, objectives: Any, dataset: str, reader: str) -> None:
    """A ``prompt`` column (read by ``reader``) and every column the objectives read; a
    :class:`~moalign.errors.DataError` names the dataset and the column."""
    from moalign.errors import DataError
    from moalign.objective import ObjectiveSet

    objective_set = objectives if isinstance(objectives, ObjectiveSet) else ObjectiveSet(objectives)
    needed = {"prompt": reader, **{c: f"objective '{o.__name__}'"
                                   for o in objective_set for c in o.required_columns}}
    for column, who in needed.items():
        if column not in ds.column_names:
            raise DataError(f"dataset '{dataset}' has no column '{column}' (needed by {who}; "
                            f"columns: {', '.join(ds.column_names)})")


def prompt_rows(train: Any, tokenizer: Any, max_prompt_tokens: int,
                max_examples: int | None = None) -> Any:
    """Training prompts for the online trainers: the first ``max_examples`` rows (all: None),
    without the preference columns, prompts shortened from the left (the columns objectives
    read, e.g. ``answer``, are kept)."""
    from moalign.data import truncate_prompts

    if max_examples is not None:
        train = train.select(range(min(len(train), max_examples)))
    keep = [c for c in train.column_names
            if c not in ("chosen", "rejected") and not c.startswith("pref_")]
    return truncate_prompts(train.select_columns(keep), tokenizer, max_prompt_tokens)[0]


def build_trainer(spec: TrainerSpec, args: Any, model: Any, tokenizer: Any, dataset: Any, *,
                  objectives: Any = None, peft_config: Any = None) -> Any:
    """The trainer of ``spec``; the online ones get ``objectives`` (an
    :class:`~moalign.objective.ObjectiveSet`, passed as it is, or what builds one)."""
    cls = spec.trainer_class()
    kwargs: dict[str, Any] = {"args": args, "train_dataset": dataset,
                              "processing_class": tokenizer, "peft_config": peft_config}
    if spec.data == "prompts":
        from moalign.objective import ObjectiveSet

        objective_set = objectives if isinstance(objectives, ObjectiveSet) else ObjectiveSet(objectives)
        if "reward_funcs" in inspect.signature(cls).parameters:
            kwargs["reward_funcs"] = list(objective_set)
        else:
            kwargs["objectives"] = objective_set
    return cls(model=model, **kwargs)


def trained_policy(trainer: Any) -> Any:
    """The policy a trainer trained (a peft model under LoRA): MO-PPO's unwrapped ``policy``,
    the Trainer's ``model`` otherwise."""
    if hasattr(trainer, "policy"):
        return trainer.accelerator.unwrap_model(trainer.policy)
    return trainer.model


def _engine_gathers(engine: Any) -> Any:
    """The ZeRO-3 engine's "gather the 16-bit weights on save" switch (its config object), or
    None where there is no such engine."""
    config = getattr(getattr(engine, "_config", None), "zero_config", None)
    return config if hasattr(config, "gather_16bit_weights_on_model_save") else None


@contextlib.contextmanager
def _full_state_on_save(trainer: Any) -> Iterator[None]:
    """While the final policy is saved, sharded training states gather a whole one: FSDP's
    ``SHARDED_STATE_DICT`` (checkpoints) becomes ``FULL_STATE_DICT``, and a ZeRO-3 engine
    without ``stage3_gather_16bit_weights_on_model_save`` gathers anyway (without this
    ``Trainer.save_model`` writes nothing under FSDP, and only a ZeRO checkpoint under ZeRO-3:
    no policy a soup or an evaluation can load). Both are put back afterwards."""
    state = trainer.accelerator.state
    fsdp = getattr(state, "fsdp_plugin", None) if getattr(trainer, "is_fsdp_enabled", False) else None
    old_type = getattr(fsdp, "state_dict_type", None)
    engine = _engine_gathers(getattr(trainer, "model_wrapped", None)) \
        if getattr(trainer, "is_deepspeed_enabled", False) else None
    old_gather = getattr(engine, "gather_16bit_weights_on_model_save", None)
    if fsdp is not None and "FULL_STATE_DICT" not in str(old_type):
        fsdp.set_state_dict_type("FULL_STATE_DICT")
    if engine is not None:
        engine.gather_16bit_weights_on_model_save = True
    try:
        yield
    finally:
        if fsdp is not None and fsdp.state_dict_type != old_type:
            fsdp.set_state_dict_type(old_type)
        if engine is not None:
            engine.gather_16bit_weights_on_model_save = old_gather


def check_saved_policy(folder: str | Path) -> None:
    """A saved policy holds whole, non-empty weights: a ``*.safetensors`` file whose tensors all
    have elements (a partitioned ZeRO-3 / FSDP parameter saved without gathering has none).
    :class:`~moalign.errors.CheckpointError` otherwise, naming the folder."""
    from moalign.errors import CheckpointError
    from moalign.storage.checkpoints import check_safetensors

    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"the trained policy saved in '{folder}' has no *.safetensors "
                              "weights (a DeepSpeed / FSDP checkpoint cannot be loaded as a "
                              "policy)")
    for f in files:
        empty = [name for name, info in check_safetensors(f).items()
                 if name != "__metadata__" and 0 in info.get("shape", [1])]
        if empty:
            raise CheckpointError(f"the trained policy saved in '{f}' holds {len(empty)} empty "
                                  f"tensors (e.g. '{empty[0]}'): sharded weights were saved "
                                  "without being gathered")


def save_policy(trainer: Any, save_to: str | Path) -> None:
    """Save the policy a trainer trained (the adapter under LoRA, the whole model otherwise)
    into ``save_to``, gathered from every process: call it on **every** process. The TRL-based
    trainers save through ``Trainer.save_model`` (which gathers ZeRO-3 / FSDP shards; the
    final save always gathers a whole policy, see :func:`_full_state_on_save`), MO-PPO through
    its ``save_policy`` (which gathers them from its prepared module); only the main process
    writes, the others wait until the folder is complete, and the result is checked
    (:func:`check_saved_policy`)."""
    save_to = Path(save_to)
    acc = trainer.accelerator
    if hasattr(trainer, "policy"):  # MO-PPO: its own loop on accelerate, gathers itself
        trainer.save_policy(save_to)
    else:
        with _full_state_on_save(trainer):
            trainer.save_model(str(save_to))  # gathers on every process, the main one writes
        if trainer.args.should_save:  # the run's arguments are recorded elsewhere, not pickled
            (save_to / "training_args.bin").unlink(missing_ok=True)
    if acc.is_main_process:
        check_saved_policy(save_to)
    acc.wait_for_everyone()


def _quiet(trainer: Any) -> None:
    """No metrics dict printed per logged step (a progress bar is kept where there is one)."""
    if not hasattr(trainer, "remove_callback"):
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        """The Trainer's progress bar without the metrics it prints at every log."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(BarOnly)


def saves_checkpoints(args: Any) -> bool:
    """Whether a trainer config saves ``checkpoint-<step>`` folders while training: a
    ``save_strategy`` other than ``no`` (TRL-based trainers), or ``save_steps`` > 0 (MO-PPO)."""
    strategy = getattr(args, "save_strategy", None)
    if strategy is not None:
        return str(getattr(strategy, "value", strategy)) != "no"
    return bool(getattr(args, "save_steps", 0))


def train_and_save(spec: TrainerSpec, args: Any, model: Any, tokenizer: Any, dataset: Any,
                   save_to: str | Path, *, objectives: Any = None, peft_config: Any = None,
                   print_metrics: bool = True, resume_from: str | None = None) -> dict[str, Any]:
    """Build the trainer of ``spec``, train it and save its policy (the adapter under LoRA, the
    whole model otherwise) to ``save_to``. ``resume_from`` is a checkpoint folder to continue
    from (one :func:`moalign.trainers.resume.plan_resume` chose; the trainer checks it again).
    Returns ``{"log", "steps", "seconds", "final_loss"}`` (``seconds``: training alone;
    ``final_loss``: None where the trainer reports none)."""
    trainer = build_trainer(spec, args, model, tokenizer, dataset, objectives=objectives,
                            peft_config=peft_config)
    if not print_metrics:
        _quiet(trainer)
    start = time.perf_counter()
    result = trainer.train() if resume_from is None else trainer.train(resume_from)
    seconds = time.perf_counter() - start
    state = getattr(trainer, "state", None)
    log = list(getattr(state, "log_history", None) or (result if isinstance(result, list) else []))
    steps = int(getattr(state, "global_step", None) or getattr(trainer, "step", 0))
    save_policy(trainer, save_to)
    loss = getattr(result, "training_loss", None)
    return {"log": log, "steps": steps, "seconds": seconds,
            "final_loss": None if loss is None else float(loss)}
