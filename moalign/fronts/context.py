"""What the methods of a front share: the data splits, the starting policy, trained LoRA runs.

:class:`Context` loads (and checks) the data before the model, trains each run once from a copy
of the pristine base (:func:`train_lora_run`), keeps finished runs on disk (resumable) and
loads their adapters into one peft model. :class:`Policy` says how to query one point.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moalign.data.selection import first_labelled
from moalign.errors import ConfigError
from moalign.fronts.config import DEFAULT_MAX_PROMPT_TOKENS, DEFAULT_TRAIN, FrontConfig
from moalign.storage.checkpoints import check_adapter, read_json
from moalign.storage.files import atomic_directory, atomic_write_json

__all__ = ["Context", "Policy", "load_preference_splits", "train_lora_run"]


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


class Context:
    """What a method needs: the base model, data splits, trained runs and their adapters."""

    def __init__(self, cfg: FrontConfig, out: Path):
        from moalign.models import specs

        self.cfg, self.out = cfg, out
        self.train_ds, self.test_ds = load_preference_splits(cfg)  # bad data: before the model
        self.base, self.tokenizer = specs.load_model_spec(cfg.model, seed=cfg.seed)
        self.base.eval()
        self.peft: Any = None  # the base wrapped with every loaded adapter (after training)
        self.train_seconds, self.train_steps = 0.0, 0

    def run(self, run_id: str, **trainer_fields: Any) -> str:
        """Train (or find, when finished before) the LoRA run ``run_id``; return its id.

        Every run starts from a copy of the pristine base, so call all of them before
        :meth:`adapter` wraps the base.
        """
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

    def per_objective_runs(self) -> list[str]:
        """One run per objective, trained at that objective's vertex of the simplex (the
        policies ``soup`` interpolates and ``decoding`` mixes)."""
        k = len(self.cfg.objectives)
        return [self.run(f"only_{name}", weights=np.eye(k)[i].tolist())
                for i, name in enumerate(self.cfg.objectives)]

    def adapter(self, run_id: str) -> Any:
        """The peft model with run ``run_id``'s adapter loaded (under that name)."""
        path = str(self.out / "runs" / run_id / "adapter")
        if self.peft is None:
            from peft import PeftModel

            self.peft = PeftModel.from_pretrained(self.base, path, adapter_name=run_id)
        elif run_id not in self.peft.peft_config:
            self.peft.load_adapter(path, adapter_name=run_id)
        return self.peft


def load_preference_splits(cfg: Any):
    """``(train, test)`` preference splits for a front, seeded; prompts truncated from the left.

    The training split keeps at most ``cfg.train_pairs`` pairs labelled for each objective.
    """
    from moalign.data import catalog, train_test_split_pairs, validate_preference_dataset

    ds = catalog.load_dataset(cfg.dataset)
    validate_preference_dataset(ds, objectives=list(cfg.objectives))
    split = train_test_split_pairs(ds, test_size=cfg.test_size, seed=cfg.seed)
    train, test = split["train"].shuffle(seed=cfg.seed), split["test"]
    if cfg.train_pairs is not None:
        train = train.select(first_labelled(train, list(cfg.objectives), cfg.train_pairs))
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
