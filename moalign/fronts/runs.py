"""One run of a front: its trainer config, its training rows, trained by the function
``moalign train`` uses (:func:`moalign.trainers.runs.train_and_save`), and loaded back.

A run is LoRA (``FrontConfig.lora`` a mapping of :func:`moalign.models.lora.lora_config`
options, the builder ``moalign train`` uses: the adapter is saved in ``<run>/adapter``; the
reference is the adapter-free base) or full fine-tuning (``lora: null``: the whole model in
``<run>/model``). Every run starts from a copy of the pristine base.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moalign.config.checking import check_fields
from moalign.errors import ConfigError
from moalign.fronts.plan import (
    DEFAULT_MAX_PROMPT_TOKENS,
    FRONT_TRAINERS,
    TRACE_OWNED_TRAIN_KEYS,
    FrontOnlyTrainFields,
)
from moalign.trainers.registry import TRAINERS

if TYPE_CHECKING:
    from moalign.fronts.config import FrontConfig

__all__ = ["load_run_model", "run_args", "run_weights_folder", "train_problems", "train_run"]


def run_args(cfg: FrontConfig, run_dir: str | Path, *, weights: Any, conditioned: bool,
             given: Mapping[str, Any] | None = None) -> tuple[Any, list[str]]:
    """The trainer config of one run (``(config or None, problems)``): the trainer's CPU-sized
    defaults, then ``train:`` (or ``given``), then what the trace decides (objectives, the
    run's weights or conditioning, seed, output folder)."""
    from moalign.trainers.runs import build_args

    spec = TRAINERS[cfg.trainer]
    given = {k: v for k, v in (cfg.train if given is None else given).items()
             if k != "max_prompt_tokens"}
    names = list(cfg.objective_names)
    shared: dict[str, Any] = {"objectives": names, "weights": weights, "seed": cfg.seed,
                              "output_dir": str(Path(run_dir) / "trainer"),
                              "disable_tqdm": not cfg.progress}
    if conditioned:
        shared["conditioning"] = "prompt"
    return build_args(spec, given, shared, names=names if spec.data == "prompts" else None)


def train_problems(view: Mapping[str, Any], trial: FrontConfig | None = None) -> list[str]:
    """``train:`` of a front file (``view``: its keys with the defaults) checked against the
    chosen trainer's config class ("did you mean"); with ``trial`` (the whole config, when the
    rest of it is sound) a trial config of the first run is built too, which reports values
    the config itself refuses, a constraint on an objective that is not trained, ...
    Imports the trainer's library."""
    trainer, train = view.get("trainer"), view.get("train")
    if not isinstance(train, Mapping) or trainer not in FRONT_TRAINERS:
        return []
    spec = TRAINERS[trainer]
    try:
        cfg_cls = spec.config_class()
    except ImportError as exc:
        return [f"trainer '{trainer}' is not available in this installation ({exc})"]
    train = dict(train)
    problems = []
    for owned in TRACE_OWNED_TRAIN_KEYS:
        if owned in train:
            train.pop(owned)
            problems.append(f"'train': '{owned}' is set by the trace itself; use the top-level "
                            "keys (objectives, weights, seed) or the method instead")
    import dataclasses

    from moalign.tradeoff.tradeoff import RENAMED_FIELDS, renamed_field_problems

    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    old = [k for k in train if k in RENAMED_FIELDS and k not in fields]
    problems += ["train: " + p for p in renamed_field_problems(old)]
    train = {k: v for k, v in train.items() if k not in old}
    good, found = check_fields([FrontOnlyTrainFields, cfg_cls], train, prefix="train: ")
    problems += found
    if problems or trial is None:
        return problems
    conditioned = trial.method == "conditioned"
    weights = None if conditioned else _first_weights(trial)
    _, found = run_args(trial, Path(trial.output_dir) / "runs" / "check", weights=weights,
                        conditioned=conditioned, given=good)
    return ["train: " + p for p in found]


def _first_weights(cfg: FrontConfig) -> list[float]:
    if isinstance(cfg.weights, list) and cfg.weights:
        return [float(x) for x in cfg.weights[0]]
    return np.eye(len(cfg.objectives))[0].tolist()


def _preference_rows(ctx: Any, weights: list[float] | None) -> Any:
    """DPO family: with ``weights``, pairs labelled for no objective of positive weight are
    dropped (they would contribute nothing; MODPO reads only the first objective's labels)."""
    from moalign.data import pref_column

    cfg, ds = ctx.cfg, ctx.train_ds
    names = list(cfg.objective_names)
    if cfg.trainer == "modpo":
        active = [pref_column(names[0])]
    elif weights is not None:
        active = [pref_column(n) for n, w in zip(names, weights) if w > 0]
    else:
        return ds
    labelled = np.zeros(len(ds), dtype=bool)
    for column in active:
        lab = np.asarray(ds[column], dtype=np.float64)
        labelled |= np.isfinite(lab) & (lab != 0)
    return ds.select(np.flatnonzero(labelled).tolist())


def run_weights_folder(cfg: FrontConfig) -> str:
    """Where a run keeps its trained weights: ``adapter`` (LoRA) or ``model`` (full)."""
    return "model" if cfg.lora is None else "adapter"


def train_run(ctx: Any, out_dir: Path, *, run_id: str, weights: list[float] | None = None,
              conditioning: str | None = None) -> dict[str, Any]:
    """Train one run of ``ctx.cfg.trainer`` from a copy of the base and save its weights in
    ``out_dir`` (:func:`run_weights_folder`). Returns the record kept in ``run.json``:
    ``{"run", "trainer", "seconds", "steps", "weights", "conditioning", "examples",
    "final_loss"}``."""
    from moalign.data import truncate_prompts
    from moalign.trainers.runs import prompt_rows, train_and_save

    cfg = ctx.cfg
    spec = TRAINERS[cfg.trainer]
    args, problems = run_args(cfg, out_dir, weights=weights, conditioned=conditioning is not None)
    if problems:
        raise ConfigError(["train: " + p for p in problems])
    max_prompt = int(cfg.train.get("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS))
    if spec.data == "preference":
        ds, _ = truncate_prompts(_preference_rows(ctx, weights), ctx.tokenizer, max_prompt)
        objectives = None
    else:
        ds = prompt_rows(ctx.train_ds, ctx.tokenizer, max_prompt)
        objectives = ctx.objective_set()  # the loaded objectives: the scorers use the same copy
    peft_config = None
    if cfg.lora is not None:  # built as ``moalign train`` builds it: the same keys, the same adapter
        from moalign.models.lora import lora_config

        peft_config = lora_config(**cfg.lora)
    model = copy.deepcopy(ctx.base).train()
    record = train_and_save(spec, args, model, ctx.tokenizer, ds,
                            out_dir / run_weights_folder(cfg), objectives=objectives,
                            peft_config=peft_config, print_metrics=False)
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)  # scratch (e.g. GRPO's reference copy)
    return {"run": run_id, "trainer": cfg.trainer, "seconds": record["seconds"],
            "steps": record["steps"], "weights": weights, "conditioning": conditioning,
            "examples": len(ds), "final_loss": record["final_loss"]}


def load_run_model(ctx: Any, folder: Path) -> Any:
    """A fully fine-tuned run's model (``<run>/model``), on the base's device and dtype, in
    evaluation mode."""
    from transformers import AutoModelForCausalLM

    base = ctx.base
    model = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=base.dtype)
    return model.to(base.device).eval()
