"""Supervised fine-tuning: ``moalign sft``, a configured TRL ``SFTTrainer``.

moalign adds a validated configuration (YAML + ``--key value`` overrides, every problem reported
before anything loads), the data plumbing and an atomic save; the training loop is TRL's.

Data (``dataset``):

- ``hh-rlhf`` (default), ``hh-rlhf/helpful-base`` or ``hh-rlhf/harmless-base``: the bundled
  HH-RLHF pairs, each turned into a prompt-completion example whose target is the ``chosen``
  reply (the dialogue history is the prompt, as chat messages);
- any file / folder / hub id with ``prompt`` + ``completion`` columns (text or chat messages),
  a ``messages`` column (whole conversations) or a ``text`` column, passed to TRL as is;
- a file in moalign's preference schema (``prompt``, ``chosen``, ``rejected``): ``chosen``
  becomes the completion.

The result is a Hugging Face folder that ``transformers`` (and :func:`moalign.models.load_policy`)
loads directly: with LoRA the adapter is merged into the weights unless ``merge_lora`` is false,
in which case the adapter folder is saved.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from moalign.config.checking import Range, range_problems
from moalign.data.catalog import dataset_problems, describe_spec, load_dataset
from moalign.errors import ConfigError, DataError
from moalign.models.lora import LORA_DEFAULTS
from moalign.models.specs import model_problems
from moalign.storage.files import output_dir_problems
from moalign.trainers.ranges import TRAINING_RANGES
from moalign.trainers.resume import CHECKPOINT_DIR, plan_resume

__all__ = ["SFT_RANGES", "SFTResult", "SFTTrainingConfig", "load_sft_dataset", "train_sft"]

#: the column sets TRL's SFTTrainer accepts, in the order they are looked for
SFT_FORMATS = (("prompt", "completion"), ("messages",), ("text",))
METRICS_FILE = "metrics.json"
#: Allowed ranges of the numeric keys of :class:`SFTTrainingConfig`.
SFT_RANGES: dict[str, Range] = {
    **{k: TRAINING_RANGES[k] for k in ("max_steps", "num_train_epochs", "seed")},
    "learning_rate": Range(low=0, low_open=True),
    "batch_size": Range(low=1), "gradient_accumulation_steps": Range(low=1),
    "logging_steps": Range(low=1), "save_steps": Range(low=0),
    "lora_r": Range(low=1), "lora_alpha": Range(low=1), "lora_dropout": Range(low=0, high=1,
                                                                              high_open=True),
    "max_length": Range(low=2, none=True), "max_prompt_tokens": Range(low=1, none=True),
    "max_examples": Range(low=1, none=True),
}


@dataclass
class SFTTrainingConfig:
    """Configuration of ``moalign sft`` (YAML keys and ``--key value`` overrides)."""

    #: policy to fine-tune: ``smollm2`` (embedded SmolLM2-135M-Instruct), a folder or a hub id
    model: str = "smollm2"
    #: ``hh-rlhf`` (+ ``/helpful-base``, ``/harmless-base``) or a file / folder / hub id
    dataset: str | dict[str, Any] = "hh-rlhf"
    #: where the fine-tuned model goes
    output_dir: str = "outputs/sft"
    #: replace an existing ``output_dir``
    overwrite: bool = False
    #: train a LoRA adapter (peft) instead of all weights
    lora: bool = True
    #: merge the LoRA adapter into the saved weights (a plain checkpoint); false saves the adapter
    merge_lora: bool = True
    #: LoRA rank, alpha, dropout and target modules: the ``r``, ``lora_alpha``, ``lora_dropout``
    #: and ``target_modules`` of :func:`moalign.models.lora_config` (the builder and defaults of
    #: ``moalign train`` and front traces), spelled flat
    lora_r: int = LORA_DEFAULTS["r"]
    lora_alpha: int = LORA_DEFAULTS["lora_alpha"]
    lora_dropout: float = LORA_DEFAULTS["lora_dropout"]
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LORA_DEFAULTS["target_modules"])
    )
    #: optimizer steps (-1: from ``num_train_epochs``)
    max_steps: int = 100
    #: passes over the data when ``max_steps`` is -1
    num_train_epochs: float = 1.0
    learning_rate: float = 2e-4
    #: examples per device and step
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    #: tokens per example (longer ones are truncated from the right by TRL); null: no limit
    max_length: int | None = 256
    #: prompt-completion data: keep only the END of each prompt, at most this many tokens
    #: (earliest turns dropped first), so TRL's truncation does not cut the completion; null: off
    max_prompt_tokens: int | None = 128
    #: use at most this many examples (null: all)
    max_examples: int | None = None
    #: loss only on the completion tokens (prompt-completion data)
    completion_only_loss: bool = True
    logging_steps: int = 10
    #: save a checkpoint to ``<output_dir>/trainer`` every this many steps (0: none), so that a
    #: stopped run can be resumed
    save_steps: int = 0
    #: continue a stopped run: ``true`` (from the newest complete checkpoint in
    #: ``<output_dir>/trainer``; an error when there is none), ``auto`` (from it when there is
    #: one, else start fresh), a ``checkpoint-<step>`` folder, or ``false`` (start fresh).
    #: Half-written checkpoints are never loaded; a finished ``output_dir`` is never resumed.
    resume: bool | str = False
    seed: int = 0
    #: ``float32`` or ``bfloat16`` training
    dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self) -> list[str]:
        """Every problem of this configuration, found without loading any model or data."""
        p: list[str] = range_problems(self, SFT_RANGES)
        if (self.max_prompt_tokens is not None and self.max_length is not None
                and self.max_prompt_tokens >= self.max_length):
            p.append(f"'max_prompt_tokens' ({self.max_prompt_tokens}) must be below 'max_length' "
                     f"({self.max_length}), or the completions are cut")
        if self.lora and not self.lora_target_modules:
            p.append("'lora_target_modules' must name at least one module when 'lora' is true")
        if not self.output_dir:
            p.append("'output_dir' must not be empty")
        p.extend(model_problems(self.model, tiny=False))
        p.extend(dataset_problems(self.dataset, hub=True))
        p.extend(self.resume_plan()[1])
        return p

    def resume_plan(self) -> tuple[str | None, list[str]]:
        """``(checkpoint to continue from or None, problems of output_dir / resume)``: with
        ``resume: false`` an existing ``output_dir`` needs ``overwrite``; otherwise see
        :func:`moalign.trainers.resume.plan_resume`."""
        if self.resume is False:
            found = output_dir_problems(self.output_dir, self.overwrite)
            if found and (Path(self.output_dir).expanduser() / CHECKPOINT_DIR).is_dir():
                # an unfinished run: say how to continue it
                found = plan_resume(self.output_dir, False, self.overwrite, finished=METRICS_FILE,
                                    command="moalign sft")[1] or found
            return None, found
        return plan_resume(self.output_dir, self.resume, self.overwrite, finished=METRICS_FILE,
                           command="moalign sft")


@dataclass
class SFTResult:
    """What :func:`train_sft` produced."""

    output_dir: Path
    steps: int
    train_loss: float
    n_examples: int
    seconds: float
    metrics: dict[str, Any]


def _as_completion(reply: Any) -> Any:
    if isinstance(reply, str):
        return reply
    return [dict(m) for m in reply]


def load_sft_dataset(dataset: str | dict[str, Any], *, max_examples: int | None = None, seed: int = 0):
    """The SFT examples of ``dataset`` (see the module docstring) as a ``datasets.Dataset``.

    Raises :class:`DataError` naming the columns when none of the accepted formats fits.
    """
    from datasets import Dataset

    ds = load_dataset(dataset, hub=True)
    columns = set(ds.column_names)
    if {"prompt", "chosen"} <= columns and "completion" not in columns:
        prompts, chosen = ds["prompt"], ds["chosen"]
        ds = Dataset.from_dict({"prompt": prompts, "completion": [_as_completion(c) for c in chosen]})
        columns = {"prompt", "completion"}
    for fmt in SFT_FORMATS:
        if set(fmt) <= columns:
            ds = ds.select_columns(list(fmt))
            break
    else:
        raise DataError(
            f"dataset '{describe_spec(dataset)}' has none of the SFT formats: 'prompt' + 'completion', "
            f"'messages', 'text', or a preference set ('prompt' + 'chosen'); its columns: "
            f"{', '.join(sorted(columns)) or 'none'}"
        )
    if len(ds) == 0:
        raise DataError(f"dataset '{describe_spec(dataset)}' is empty")
    if max_examples is not None and len(ds) > max_examples:
        ds = ds.shuffle(seed=seed).select(range(max_examples))
    return ds


def train_sft(config: SFTTrainingConfig | dict[str, Any], *, progress: bool = False) -> SFTResult:
    """Fine-tune ``config.model`` on ``config.dataset`` with TRL's ``SFTTrainer`` and save it.

    The configuration is checked first (all problems at once), then the data load, then the
    model; the output folder is finished only when training and saving succeeded
    (``metrics.json`` is written last). With ``save_steps`` the checkpoints go to
    ``<output_dir>/trainer`` as the run goes (and stay there), so ``resume`` can continue a
    stopped run; without them the whole folder is built under a temporary name.
    """
    import os
    import shutil
    import tempfile

    import torch
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from moalign.config import build_config
    from moalign.models import flat_lora_options, load_policy, lora_config
    from moalign.storage.files import atomic_directory, atomic_write_json
    from moalign.trainers.resume import ValidatedResume

    class ValidatedSFTTrainer(ValidatedResume, SFTTrainer):
        """TRL's SFTTrainer resumed only from a complete checkpoint."""

    cfg = config if isinstance(config, SFTTrainingConfig) else build_config(SFTTrainingConfig, config)
    resume_from, problems = cfg.resume_plan()
    if problems:
        raise ConfigError(problems)
    start = time.perf_counter()
    train = load_sft_dataset(cfg.dataset, max_examples=cfg.max_examples, seed=cfg.seed)
    model, tokenizer = load_policy(cfg.model, dtype=cfg.dtype)
    shortened = 0
    if cfg.max_prompt_tokens is not None and "prompt" in train.column_names:
        from moalign.data import truncate_prompts

        train, shortened = truncate_prompts(train, tokenizer, cfg.max_prompt_tokens)
    peft_config = None
    if cfg.lora:
        peft_config = lora_config(**flat_lora_options(cfg))
    output = Path(cfg.output_dir).expanduser()
    checkpoints = output / CHECKPOINT_DIR
    in_place = cfg.save_steps > 0 or resume_from is not None
    with tempfile.TemporaryDirectory(prefix="moalign-sft-") as tmp:
        args = SFTConfig(
            output_dir=str(checkpoints) if in_place else tmp, max_steps=cfg.max_steps,
            num_train_epochs=cfg.num_train_epochs,
            learning_rate=cfg.learning_rate, per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            max_length=cfg.max_length, completion_only_loss=cfg.completion_only_loss,
            logging_steps=cfg.logging_steps, seed=cfg.seed,
            save_strategy="steps" if cfg.save_steps else "no", save_steps=cfg.save_steps or 500,
            report_to="none", bf16=cfg.dtype == "bfloat16", use_cpu=not torch.cuda.is_available(),
            gradient_checkpointing=None, activation_checkpointing=False, disable_tqdm=not progress,
        )
        # under accelerate / torchrun one process writes the output (args.should_save, as the
        # Trainer saves); the others wait for it
        with args.main_process_first(local=args.save_on_each_node, desc="the checkpoint folder"):
            if args.should_save and in_place and resume_from is None and checkpoints.exists():
                shutil.rmtree(checkpoints)  # a fresh start (overwrite: true): no old checkpoint
        model.train()
        trainer = ValidatedSFTTrainer(model=model, args=args, train_dataset=train,
                                      processing_class=tokenizer, peft_config=peft_config)
        if not progress:
            trainer.remove_callback(PrinterCallback)
        out = trainer.train(resume_from)
        model = trainer.model
    if cfg.lora and cfg.merge_lora:
        model = model.merge_and_unload()
    seconds = time.perf_counter() - start
    history = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "model": cfg.model, "dataset": cfg.dataset, "steps": int(out.global_step),
        "train_loss": float(out.training_loss), "loss_history": history,
        "n_examples": len(train), "prompts_shortened": shortened, "seconds": round(seconds, 1),
        "resumed_from": resume_from, "config": dataclasses.asdict(cfg),
    }
    if args.should_save:  # one writer; every process renaming the folder would collide
        with atomic_directory(output, overwrite=cfg.overwrite or output.exists()) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(Path(tmp) / METRICS_FILE, metrics)
            if in_place and checkpoints.is_dir():  # last: the checkpoints move into the result
                os.replace(checkpoints, Path(tmp) / CHECKPOINT_DIR)
    trainer.accelerator.wait_for_everyone()  # the folder is whole when any process returns
    return SFTResult(output, int(out.global_step), float(out.training_loss), len(train), seconds,
                     json.loads(json.dumps(metrics)))
