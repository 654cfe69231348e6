"""The steps that commands and :func:`~moalign.front.trace_front` share: resolve a model or a
dataset from a config string, train one LoRA DPO run, evaluate one policy of a front.

Model specs: ``"tiny"`` (a random tiny Llama, for tests and ``--tiny`` runs), ``"smollm2"``
(the embedded SmolLM2-135M-Instruct), or any folder / hub id / GGUF file accepted by
:func:`moalign.models.load_policy`.

Dataset specs: ``"hh-rlhf"`` (bundled helpful-base + harmless-base, both objectives),
``"hh-rlhf/helpful-base"``, ``"hh-rlhf/harmless-base"``, ``"gsm8k"``, ``"math500"``, or a
path to a JSON-lines / JSON / parquet file already in the canonical schema.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext as _nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from moalign.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_TRAIN",
    "evaluate_front_policy",
    "load_dataset_spec",
    "load_model_for_front",
    "load_model_spec",
    "load_preference_splits",
    "train_lora_run",
]

#: Trainer settings every front run starts from (``FrontConfig.train`` overrides them).
DEFAULT_TRAIN: dict[str, Any] = {
    "beta": 0.1,
    "learning_rate": 5e-4,
    "max_steps": 12,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "max_length": 192,
    "logging_steps": 1,
    "bf16": False,
    "gradient_checkpointing": False,
    "save_strategy": "no",
    "report_to": "none",
}
#: Prompts longer than this many tokens keep their end (so completions are never cut).
DEFAULT_MAX_PROMPT_TOKENS = 96

PREFERENCE_DATASETS = {
    "hh-rlhf": "both",
    "hh-rlhf/helpful-base": "helpful-base",
    "hh-rlhf/harmless-base": "harmless-base",
}
PROMPT_DATASETS = ("gsm8k", "math500")


def load_model_spec(spec: str, *, seed: int = 0):
    """``(model, tokenizer)`` for a model spec (see the module docstring)."""
    if spec == "tiny":
        from moalign.models import tiny_causal_lm

        return tiny_causal_lm(seed=seed)
    from moalign.models import load_policy

    return load_policy(spec)


def load_model_for_front(cfg: Any):
    """The starting policy of a front, in eval mode."""
    model, tok = load_model_spec(cfg.model, seed=cfg.seed)
    return model.eval(), tok


def load_dataset_spec(spec: str):
    """A ``datasets.Dataset`` for a dataset spec (see the module docstring)."""
    from moalign import data

    if spec in PREFERENCE_DATASETS:
        return data.load_hh_rlhf(PREFERENCE_DATASETS[spec]).dataset
    if spec == "gsm8k":
        return data.load_gsm8k().dataset
    if spec == "math500":
        return data.load_math500().dataset
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"dataset '{spec}' is neither a bundled dataset "
            f"({', '.join([*PREFERENCE_DATASETS, *PROMPT_DATASETS])}) nor an existing file"
        )
    import datasets

    records = data.read_records(str(path))
    try:
        ds = records if isinstance(records, datasets.Dataset) else datasets.Dataset.from_list(records)
    except (TypeError, ValueError) as exc:  # pyarrow: rows that disagree on a column's type
        raise DataError(f"dataset '{spec}': {_mixed_column(records) or exc}") from None
    if len(ds) == 0:
        raise DataError(f"dataset '{spec}' is empty: it has no rows")
    return ds


def _mixed_column(rows: list[dict[str, Any]]) -> str | None:
    """The first column whose rows hold values of different kinds (a number in one row, text
    in another; text in one, chat messages in another), said with the two rows."""
    def kind(value: Any) -> str:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return "number" if number else type(value).__name__

    for key in dict.fromkeys(k for row in rows for k in row):
        first: tuple[int, str] | None = None
        for i, row in enumerate(rows):
            value = row.get(key)
            if value is None:
                continue
            if first is None:
                first = (i, kind(value))
            elif kind(value) != first[1]:
                return (f"column '{key}' holds a {first[1]} in row {first[0]} but a {kind(value)} "
                        f"in row {i} ({value!r:.60})")
    return None


def load_preference_splits(cfg: Any):
    """``(train, test)`` preference splits for a front, seeded; prompts truncated from the left.

    The training split keeps at most ``cfg.train_pairs`` pairs labelled for each objective.
    """
    from moalign.data import train_test_split_pairs, validate_preference_dataset

    ds = load_dataset_spec(cfg.dataset)
    validate_preference_dataset(ds, objectives=list(cfg.objectives))
    split = train_test_split_pairs(ds, test_size=cfg.test_size, seed=cfg.seed)
    train, test = split["train"].shuffle(seed=cfg.seed), split["test"]
    if cfg.train_pairs is not None:
        keep: set[int] = set()
        for name in cfg.objectives:
            keep.update(_labelled_indices(train, name)[: cfg.train_pairs].tolist())
        train = train.select(sorted(keep))
    return train, test


def train_lora_run(cfg: Any, base: Any, tokenizer: Any, train_ds: Any, out_dir: Path, *,
                   run_id: str, weights: list[float] | None = None,
                   conditioning: str | None = None) -> dict[str, Any]:
    """Train one LoRA MO-DPO run from a copy of ``base``; save the adapter in ``out_dir/adapter``.

    With ``weights``, pairs labelled for no objective of positive weight are dropped first
    (they would contribute nothing). Returns ``{"seconds", "steps", "weights", "final_loss"}``.
    """
    import torch
    from peft import LoraConfig

    from moalign.data import pref_column, truncate_prompts
    from moalign.trainers import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    fields = {**DEFAULT_TRAIN, **cfg.train}
    max_prompt = fields.pop("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS)
    ds = train_ds
    if weights is not None:
        active = [pref_column(n) for n, w in zip(cfg.objectives, weights) if w > 0]
        labelled = np.zeros(len(ds), dtype=bool)
        for column in active:
            lab = np.asarray(ds[column], dtype=np.float64)
            labelled |= np.isfinite(lab) & (lab != 0)
        ds = ds.select(np.flatnonzero(labelled).tolist())
    ds, _ = truncate_prompts(ds, tokenizer, max_prompt)
    try:
        args = MultiObjectiveDPOConfig(
            output_dir=str(out_dir / "trainer"), objectives=list(cfg.objectives),
            weights=weights, conditioning=conditioning, seed=cfg.seed,
            use_cpu=not torch.cuda.is_available(), disable_tqdm=not cfg.progress, **fields,
        )
    except TypeError as exc:
        raise ConfigError(f"'train': {exc}") from None
    lora = LoraConfig(task_type="CAUSAL_LM", **{"target_modules": "all-linear", **cfg.lora})
    model = copy.deepcopy(base).train()
    trainer = MultiObjectiveDPOTrainer(model=model, args=args, train_dataset=ds,
                                       processing_class=tokenizer, peft_config=lora)
    # a front prints its own summary: keep the progress bar, not a dict per logged step
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_bar_only())
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    trainer.model.save_pretrained(str(out_dir / "adapter"))
    return {"run": run_id, "seconds": seconds, "steps": int(trainer.state.global_step),
            "weights": weights, "conditioning": conditioning, "pairs": len(ds),
            "final_loss": float(result.training_loss)}


def _bar_only():
    """A ``ProgressCallback`` subclass (built on demand: transformers is imported late)."""
    from transformers.trainer_callback import ProgressCallback

    class BarOnly(ProgressCallback):
        """The Trainer's progress bar without the metrics it prints at every log."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    return BarOnly


# --------------------------------------------------------------------------------------------
# Evaluation of one policy of a front
# --------------------------------------------------------------------------------------------


def _max_prompt_tokens(cfg: Any) -> int:
    return int({**DEFAULT_TRAIN, **cfg.train}.get("max_prompt_tokens", DEFAULT_MAX_PROMPT_TOKENS))


def _labelled_indices(ds: Any, name: str) -> np.ndarray:
    from moalign.data import pref_column

    labels = np.asarray(ds[pref_column(name)], dtype=np.float64)
    return np.flatnonzero(np.isfinite(labels) & (labels != 0))


def _eval_pairs(cfg: Any, ctx: Any):
    """The first ``eval_pairs`` held-out pairs of each objective, prompts cut as in training
    (keeping their end), so a weight condition added in front always fits."""
    if getattr(ctx, "_eval_pairs", None) is None:
        from moalign.data import truncate_prompts
        from moalign.evaluation import labelled_rows

        keep: set[int] = set()
        for name in cfg.objectives:
            idx = _labelled_indices(ctx.test_ds, name)
            if idx.size == 0:
                raise DataError(f"no held-out pair is labelled for objective '{name}'; "
                                "raise test_size or check the dataset's pref_ columns")
            keep.update(idx[: cfg.eval_pairs].tolist())
        rows, _ = truncate_prompts(ctx.test_ds.select(sorted(keep)), ctx.tokenizer,
                                   _max_prompt_tokens(cfg))
        ctx._eval_pairs = labelled_rows(rows, list(cfg.objectives))
    return ctx._eval_pairs


def _reference_logprobs(cfg: Any, ctx: Any, rows: list[dict[str, Any]]):
    """Log-probs of the held-out pairs under the starting policy, computed once per trace."""
    if getattr(ctx, "_reference_logprobs", None) is None:
        from moalign.evaluation import pair_logprobs

        model = ctx.peft if ctx.peft is not None else ctx.base
        with model.disable_adapter() if ctx.peft is not None else _nullcontext():
            ctx._reference_logprobs = pair_logprobs(model, ctx.tokenizer, rows,
                                                    max_length=cfg.max_length)
    return ctx._reference_logprobs


def _eval_prompts(cfg: Any, ctx: Any) -> list[Any]:
    """``eval_prompts`` distinct held-out prompts, taken in turn from each objective's pairs
    (so every objective's prompts are represented), cut as in training."""
    if getattr(ctx, "_eval_prompts", None) is None:
        from moalign.data import truncate_prompt

        queues = [list(_labelled_indices(ctx.test_ds, name)) for name in cfg.objectives]
        seen, prompts = set(), []
        while len(prompts) < cfg.eval_prompts and any(queues):
            for queue in queues:
                while queue:
                    prompt = ctx.test_ds[int(queue.pop(0))]["prompt"]
                    if repr(prompt) not in seen:
                        seen.add(repr(prompt))
                        prompts.append(truncate_prompt(prompt, ctx.tokenizer,
                                                       _max_prompt_tokens(cfg)))
                        break
                if len(prompts) >= cfg.eval_prompts:
                    break
        ctx._eval_prompts = prompts
    return ctx._eval_prompts


def _generate(cfg: Any, ctx: Any, policy: Any, prompts: list[Any]) -> list[str]:
    from moalign.evaluation import generate_completions

    if policy.transform_prompt is not None:
        prompts = [policy.transform_prompt(p) for p in prompts]
    fn = policy.generate or generate_completions
    settings = {"seed": cfg.seed, **cfg.generation}
    return fn(policy.model, ctx.tokenizer, prompts, **settings)


def _report(cfg: Any, ctx: Any, policy: Any) -> dict[str, Any]:
    from moalign.evaluation import mean_and_stderr
    from moalign.objective import load_objective

    out = {}
    for name, spec in cfg.report.items():
        ds = load_dataset_spec(spec.get("dataset", "gsm8k")).select(range(int(spec.get("n", 8))))
        objective = load_objective(spec.get("spec", name))
        completions = _generate(cfg, ctx, policy, list(ds["prompt"]))
        cols = {c: list(ds[c]) for c in objective.required_columns}
        scores = objective(list(ds["prompt"]), completions, **cols)
        m, se, n = mean_and_stderr([np.nan if s is None else s for s in scores])
        out[name] = {"score": m, "stderr": se, "n": n}
    return out


def evaluate_front_policy(cfg: Any, ctx: Any, policy: Any) -> dict[str, Any]:
    """Scores of one policy: ``{"scores", "stderr", "metadata"}`` (see ``FrontConfig.metric``)."""
    scores: dict[str, float] = {}
    stderr: dict[str, float] = {}
    if cfg.metric == "implicit":
        if policy.adapter is None and policy.generate is None:
            # the starting policy is its own reference: every implicit reward is 0, a tie
            scores = {o: 0.5 for o in cfg.objectives}
            stderr = {o: 0.0 for o in cfg.objectives}
        else:
            from moalign.evaluation import implicit_reward_accuracy

            beta = float({**DEFAULT_TRAIN, **cfg.train}["beta"])
            rows = _eval_pairs(cfg, ctx)
            reference = None
            if policy.transform_prompt is None:  # one reference pass serves every point
                reference = _reference_logprobs(cfg, ctx, rows)
            res = implicit_reward_accuracy(
                policy.model, ctx.tokenizer, rows, list(cfg.objectives), beta=beta,
                max_length=cfg.max_length, transform_prompt=policy.transform_prompt,
                reference_logprobs=reference)
            scores = {o: res[o]["accuracy"] for o in cfg.objectives}
            stderr = {o: res[o]["stderr"] for o in cfg.objectives}
    else:
        from moalign.evaluation import summarize
        from moalign.objective import ObjectiveSet

        scorers = ObjectiveSet([cfg.scorers.get(o, o) for o in cfg.objectives])
        if scorers.names != tuple(cfg.objectives):
            raise ConfigError(f"scorers {list(scorers.names)} must be named like the "
                              f"objectives {list(cfg.objectives)}")
        prompts = _eval_prompts(cfg, ctx)
        completions = _generate(cfg, ctx, policy, prompts)
        per = scorers.score(prompts, completions).values.double().numpy()
        scores, stderr, _ = summarize(scorers.names, per)
    unscored = [o for o in cfg.objectives if not np.isfinite(scores[o])]
    if unscored:
        raise DataError(f"no held-out example could be scored for {', '.join(unscored)}: every "
                        "score was None (check the scorer and the evaluation data)")
    metadata = {"report": _report(cfg, ctx, policy)} if cfg.report else {}
    return {"scores": scores, "stderr": {o: float(np.nan_to_num(v)) for o, v in stderr.items()},
            "metadata": metadata}
