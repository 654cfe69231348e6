"""Score one policy on every objective: :func:`evaluate`, which ``moalign eval`` runs.

Two metrics:

- ``generation``: generate a reply to each held-out prompt and score it with every objective
  (:func:`moalign.evaluation.evaluate_policy`); the prompts are
  :func:`moalign.data.selection.distinct_prompt_rows`, as front traces choose theirs;
- ``implicit``: held-out implicit-reward pairwise accuracy per objective, generation-free
  (:func:`moalign.evaluation.implicit_reward_accuracy`; DPO, Rafailov et al. 2023): the policy
  against its reference (the model with its adapter disabled, or ``reference``).

``model`` may be the output folder of ``moalign train``: its base model and adapter are loaded.
By default the prompts / pairs come from the held-out side of the one seeded split
(:func:`moalign.data.heldout_split`) that ``moalign train`` and ``moalign trace`` leave out of
training.

    >>> import moalign
    >>> result = moalign.evaluate(model="out", metric="implicit", n=16)   # doctest: +SKIP
    >>> result["scores"], result["stderr"]                                # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moalign.config.checking import (
    Range,
    build_checked,
    check_fields,
    raise_problems,
    range_problems,
)
from moalign.data.catalog import dataset_columns, dataset_problems, describe_spec
from moalign.data.selection import distinct_prompt_rows
from moalign.data.split import MAX_PROMPT_TOKENS, TEST_SIZE
from moalign.errors import CheckpointError
from moalign.evaluation.generation import GENERATION_RANGES, generation_problems
from moalign.models.precision import precision_problems
from moalign.models.specs import model_problems
from moalign.objective.checks import objective_problems
from moalign.storage.files import jsonable
from moalign.workflows.train_config import TRAIN_RECORD

__all__ = ["EVAL_RANGES", "METRICS", "SPLITS", "EvalConfig", "evaluate", "evaluate_resolved",
           "load_evaluated_policy",
           "precision_of", "resolve_eval_config"]


@dataclass
class EvalConfig:
    """Keys of ``moalign eval`` (YAML, ``--key value``, or the declared options)."""

    #: Policy: ``tiny``, ``smollm2``, a checkpoint folder / GGUF / cached hub id, or the output
    #: folder of ``moalign train`` (its base model plus its adapter).
    model: str = "smollm2"
    #: A LoRA adapter folder to put on ``model``.
    adapter: str | None = None
    #: Reference policy of the ``implicit`` metric (default: ``model`` without its adapter).
    reference: str | None = None
    #: Objectives: scorer names or specs (``generation``), or names with ``pref_<name>`` label
    #: columns in the dataset (``implicit``).
    objectives: list[str] = field(default_factory=lambda: ["helpfulness", "harmlessness"])
    #: ``hh-rlhf`` (+ ``/helpful-base``, ``/harmless-base``), ``gsm8k``, ``math500``, a file, or
    #: ``{source, adapter, split, config, columns, options}`` (see ``moalign datasets``).
    dataset: str | dict[str, Any] = "hh-rlhf"
    #: ``generation`` or ``implicit`` (see the module docstring).
    metric: str = "generation"
    #: ``test``: the held-out side of the seeded split (``test_size``, ``seed``); ``all``: every row.
    split: str = "test"
    #: Held-out fraction of the split (as in ``moalign train`` / ``moalign trace``).
    test_size: float = TEST_SIZE
    #: Prompts (``generation``) or labelled pairs per objective (``implicit``).
    n: int = 32
    #: DPO beta of the implicit reward (only scales the margins; the accuracy does not depend on it).
    beta: float = 0.1
    #: Sequence-length cap of the implicit metric's log-probabilities (tokens).
    max_length: int = 256
    #: Prompts longer than this many tokens keep their end.
    max_prompt_tokens: int = MAX_PROMPT_TOKENS
    #: Sequences per forward pass of the implicit metric.
    batch_size: int = 8
    #: Generation settings (``max_new_tokens``, ``batch_size``, ``do_sample``, ``temperature``, ...).
    generation: dict[str, Any] = field(default_factory=lambda: {"max_new_tokens": 48})
    #: Seed of the split and of sampling.
    seed: int = 0
    #: Numeric precision of log-probs, generation and reward scoring: ``auto`` (bfloat16 where
    #: the machine runs it fast, else float32), ``float32`` or ``bfloat16``.
    precision: str = "auto"
    #: Also write the results to this JSON file.
    output: str | None = None
    #: Show a progress bar while generating.
    progress: bool = True


METRICS = ("generation", "implicit")
SPLITS = ("test", "all")
#: Allowed ranges of the numeric keys of :class:`EvalConfig` (its ``generation`` settings:
#: :data:`moalign.evaluation.generation.GENERATION_RANGES`, as in front traces).
EVAL_RANGES: dict[str, Range] = {
    "test_size": Range(low=0, high=1, low_open=True, high_open=True), "n": Range(low=1),
    "beta": Range(low=0, low_open=True), "max_length": Range(low=1),
    "max_prompt_tokens": Range(low=1), "batch_size": Range(low=1), "seed": Range(low=0),
}


def _train_output(path: str) -> dict[str, Any] | None:
    """The ``train.json`` of a ``moalign train`` output folder (None when there is none); a
    damaged one is a :class:`~moalign.errors.CheckpointError` naming the file."""
    from moalign.storage.readers import read_json

    record = Path(path).expanduser() / TRAIN_RECORD
    if not record.is_file():
        return None
    return read_json(record, required=("model",), what="moalign train record")


def _is_adapter(path: str) -> bool:
    return (Path(path).expanduser() / "adapter_config.json").is_file()


def _adapter_problems(path: str, key: str) -> list[str]:
    """A damaged adapter (its config or weights), named before any model loads."""
    from moalign.storage.readers import check_adapter, read_adapter_config

    folder = Path(path).expanduser()
    try:
        read_adapter_config(folder)
        check_adapter(folder)
    except CheckpointError as exc:
        return [f"'{key}': {exc}"]
    return []


def resolve_eval_config(data: dict[str, Any], *, source: str | None = None) -> EvalConfig:
    """Check every key of a ``moalign eval`` mapping before anything loads."""
    good, problems = check_fields([EvalConfig], data)
    cfg, found = build_checked(EvalConfig, good)
    problems += found
    cfg = cfg or EvalConfig(**good)
    if cfg.metric not in METRICS:
        problems.append(f"'metric' must be one of {', '.join(METRICS)}, got {cfg.metric!r}")
    if cfg.split not in SPLITS:
        problems.append(f"'split' must be one of {', '.join(SPLITS)}, got {cfg.split!r}")
    problems += range_problems(cfg, EVAL_RANGES)
    if isinstance(cfg.generation, dict):
        problems += range_problems(cfg.generation, GENERATION_RANGES, prefix="generation: ")
    try:
        trained = _train_output(cfg.model)
    except CheckpointError as exc:
        trained, problems = None, [*problems, f"'model': {exc}"]
    if trained is None or not _is_adapter(cfg.model):  # a model, or a full fine-tune's output
        problems += model_problems(cfg.model)
    else:
        problems += _adapter_problems(cfg.model, "model")
        if cfg.adapter is not None:
            problems.append(f"'adapter': '{cfg.model}' already holds the adapter of a moalign "
                            "train run")
    if cfg.adapter is not None and not _is_adapter(cfg.adapter):
        problems.append(f"'adapter': '{cfg.adapter}' is not a LoRA adapter folder "
                        "(no adapter_config.json)")
    elif cfg.adapter is not None:
        problems += _adapter_problems(cfg.adapter, "adapter")
    if cfg.reference is not None:
        problems += model_problems(cfg.reference, "reference")
    has_adapter = cfg.adapter is not None or (trained is not None and _is_adapter(cfg.model))
    if cfg.metric == "implicit" and not has_adapter and cfg.reference is None:
        problems.append("the 'implicit' metric compares the policy with a reference: give an "
                        "adapter (or a moalign train output) or 'reference'")
    problems += dataset_problems(cfg.dataset)
    labels = "column" if cfg.metric == "implicit" else "scorer"
    problems += objective_problems(cfg.objectives, labels=labels, dataset=describe_spec(cfg.dataset),
                                   columns=dataset_columns(cfg.dataset))
    problems += generation_problems(cfg.generation)
    problems += precision_problems(cfg.precision)
    raise_problems(problems, source)
    return cfg


def load_evaluated_policy(cfg: EvalConfig) -> tuple[Any, Any]:
    """``(model, tokenizer)``: the base (or ``moalign train`` output's base) with the adapter."""
    spec, adapter = cfg.model, cfg.adapter
    trained = _train_output(cfg.model)
    if trained is not None and _is_adapter(cfg.model):
        spec, adapter = trained["model"], cfg.model
    from moalign.models.placement import run_device
    from moalign.models.specs import load_model_spec

    # on the run's device (the GPU when there is one); float32 weights, computed in precision_of
    model, tokenizer = load_model_spec(spec, seed=cfg.seed, device=run_device())
    if adapter is not None:
        from peft import PeftModel

        from moalign.storage.readers import check_adapter

        check_adapter(Path(adapter).expanduser())  # again, just before peft reads it
        model = PeftModel.from_pretrained(model, str(Path(adapter).expanduser()))
    return model.eval(), tokenizer


def _check_rows(cfg: EvalConfig, ds: Any) -> None:
    """The columns each metric reads: ``prompt`` and the scorers' columns (``generation``);
    valid pairs with a ``pref_<name>`` column per objective (``implicit``)."""
    if cfg.metric == "implicit":
        from moalign.data import validate_preference_dataset

        validate_preference_dataset(ds, objectives=list(cfg.objectives), require_labels_for=[])
        return
    from moalign.trainers.runs import check_prompt_columns

    check_prompt_columns(ds, cfg.objectives, describe_spec(cfg.dataset), "the generation metric")


def _rows(cfg: EvalConfig) -> Any:
    """The evaluated rows, checked (:func:`_check_rows`) before any model loads."""
    from moalign.data import heldout_split
    from moalign.data.catalog import load_dataset

    ds = load_dataset(cfg.dataset)
    _check_rows(cfg, ds)
    if cfg.split == "test":
        ds = heldout_split(ds, test_size=cfg.test_size, seed=cfg.seed)[1]
    return ds


def _evaluate_generation(cfg: EvalConfig, model: Any, tokenizer: Any, ds: Any) -> dict[str, Any]:
    from moalign.data import truncate_prompt
    from moalign.evaluation import evaluate_policy
    from moalign.objective import ObjectiveSet

    objectives = ObjectiveSet(cfg.objectives)
    rows = ds.select(distinct_prompt_rows(ds, objectives.names, cfg.n))
    prompts = [truncate_prompt(p, tokenizer, cfg.max_prompt_tokens) for p in rows["prompt"]]
    columns = {c: list(rows[c]) for c in objectives.required_columns}
    result = evaluate_policy(model, tokenizer, prompts, objectives, columns=columns,
                             **{"seed": cfg.seed, "progress": cfg.progress, **cfg.generation})
    return {"scores": result.scores, "stderr": result.stderr, "n": result.counts,
            "examples": [{"prompt": p, "completion": c}
                         for p, c in zip(prompts[:3], result.completions[:3])]}


def _evaluate_implicit(cfg: EvalConfig, model: Any, tokenizer: Any, ds: Any) -> dict[str, Any]:
    from moalign.data import truncate_prompts
    from moalign.data.selection import first_labelled
    from moalign.evaluation import implicit_reward_accuracy

    keep = first_labelled(ds, list(cfg.objectives), cfg.n)
    pairs, _ = truncate_prompts(ds.select(keep), tokenizer, cfg.max_prompt_tokens)
    ref_model = None
    if cfg.reference is not None:
        from moalign.models.placement import run_device
        from moalign.models.specs import load_model_spec

        ref_model = load_model_spec(cfg.reference, seed=cfg.seed, device=run_device())[0].eval()
    from moalign.models.inference import inference_weights

    with inference_weights(ref_model, precision_of(cfg) if ref_model is not None else None):
        res = implicit_reward_accuracy(model, tokenizer, pairs, list(cfg.objectives),
                                       ref_model=ref_model, beta=cfg.beta,
                                       batch_size=cfg.batch_size, max_length=cfg.max_length)
    return {"scores": {k: v["accuracy"] for k, v in res.items()},
            "stderr": {k: v["stderr"] for k, v in res.items()},
            "n": {k: v["n"] for k, v in res.items()},
            "margin": {k: v["margin"] for k, v in res.items()}}


#: metric -> evaluation function
EVALUATORS = {"generation": _evaluate_generation, "implicit": _evaluate_implicit}


def precision_of(cfg: EvalConfig) -> str:
    """The precision ``cfg`` resolves to on the device its models run on."""
    from moalign.models.placement import run_device
    from moalign.models.precision import resolve_precision

    return resolve_precision(cfg.precision, device=run_device().type)


def evaluate(config: EvalConfig | Mapping[str, Any] | None = None, /, *,
             source: str | None = None, **keys: Any) -> dict[str, Any]:
    """Score one policy on every objective exactly as ``moalign eval`` does; returns the
    result ``moalign eval`` writes with ``output`` (``scores``, ``stderr``, ``n``, ...).

    ``config``: an :class:`EvalConfig` or a mapping of its keys; ``keys`` override it. Every
    problem is reported at once (a :class:`~moalign.errors.ConfigError`; ``source`` names the
    file) before any model or data loads. The result is returned, not written: the caller
    writes it (``moalign eval --output``).
    """
    if isinstance(config, EvalConfig):
        config = asdict(config)
    return evaluate_resolved(resolve_eval_config({**(config or {}), **keys}, source=source))


def evaluate_resolved(cfg: EvalConfig) -> dict[str, Any]:
    """:func:`evaluate` of a checked configuration (:func:`resolve_eval_config`)."""
    from moalign.evaluation.batching import measure_throughput
    from moalign.models.inference import inference_weights
    from moalign.models.precision import precision_scope

    start = time.perf_counter()
    ds = _rows(cfg)  # bad data fails here, before the model loads
    precision = precision_of(cfg)
    model, tokenizer = load_evaluated_policy(cfg)
    # the adapter is merged for generation; the implicit metric disables it for the reference
    merge = cfg.metric == "generation"
    with (precision_scope(precision), measure_throughput() as meter,
          inference_weights(model, precision, merge=merge)):
        result = EVALUATORS[cfg.metric](cfg, model, tokenizer, ds)
    return jsonable({"config": asdict(cfg), "metric": cfg.metric, **result,
                     "precision": precision, "throughput": meter.rates(),
                     "seconds": round(time.perf_counter() - start, 3)})
