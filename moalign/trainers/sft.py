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

from moalign.data.catalog import dataset_problems, describe_spec, load_dataset
from moalign.errors import ConfigError, DataError
from moalign.models.specs import model_problems
from moalign.storage.files import output_dir_problems

__all__ = ["SFTResult", "SFTTrainingConfig", "load_sft_dataset", "train_sft"]

#: the column sets TRL's SFTTrainer accepts, in the order they are looked for
SFT_FORMATS = (("prompt", "completion"), ("messages",), ("text",))
METRICS_FILE = "metrics.json"


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
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
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
    seed: int = 0
    #: ``float32`` or ``bfloat16`` training
    dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self) -> list[str]:
        """Every problem of this configuration, found without loading any model or data."""
        p: list[str] = []
        for key in ("lora_r", "lora_alpha", "batch_size", "gradient_accumulation_steps",
                    "logging_steps"):
            if getattr(self, key) < 1:
                p.append(f"'{key}' must be >= 1, got {getattr(self, key)}")
        if self.max_steps == 0 or self.max_steps < -1:
            p.append(f"'max_steps' must be >= 1 (or -1 to use num_train_epochs), got {self.max_steps}")
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            p.append(f"'num_train_epochs' must be > 0, got {self.num_train_epochs}")
        if not self.learning_rate > 0:
            p.append(f"'learning_rate' must be > 0, got {self.learning_rate}")
        if self.max_length is not None and self.max_length < 2:
            p.append(f"'max_length' must be >= 2 or null, got {self.max_length}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            p.append(f"'max_prompt_tokens' must be >= 1 or null, got {self.max_prompt_tokens}")
        if (self.max_prompt_tokens is not None and self.max_length is not None
                and self.max_prompt_tokens >= self.max_length):
            p.append(f"'max_prompt_tokens' ({self.max_prompt_tokens}) must be below 'max_length' "
                     f"({self.max_length}), or the completions are cut")
        if self.max_examples is not None and self.max_examples < 1:
            p.append(f"'max_examples' must be >= 1 or null, got {self.max_examples}")
        if not 0.0 <= self.lora_dropout < 1.0:
            p.append(f"'lora_dropout' must be in [0, 1), got {self.lora_dropout}")
        if self.lora and not self.lora_target_modules:
            p.append("'lora_target_modules' must name at least one module when 'lora' is true")
        if not self.output_dir:
            p.append("'output_dir' must not be empty")
        p.extend(model_problems(self.model, tiny=False))
        p.extend(dataset_problems(self.dataset, hub=True))
        p.extend(output_dir_problems(self.output_dir, self.overwrite))
        return p


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
    model; the output folder appears only when training and saving succeeded.
    """
    import tempfile

    import torch
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from moalign.config import build_config
    from moalign.models import load_policy, lora_config
    from moalign.storage.files import atomic_directory, atomic_write_json

    cfg = config if isinstance(config, SFTTrainingConfig) else build_config(SFTTrainingConfig, config)
    start = time.perf_counter()
    train = load_sft_dataset(cfg.dataset, max_examples=cfg.max_examples, seed=cfg.seed)
    model, tokenizer = load_policy(cfg.model, dtype=cfg.dtype)
    shortened = 0
    if cfg.max_prompt_tokens is not None and "prompt" in train.column_names:
        from moalign.data import truncate_prompts

        train, shortened = truncate_prompts(train, tokenizer, cfg.max_prompt_tokens)
    peft_config = None
    if cfg.lora:
        peft_config = lora_config(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                                  target_modules=list(cfg.lora_target_modules))
    with tempfile.TemporaryDirectory(prefix="moalign-sft-") as tmp:
        args = SFTConfig(
            output_dir=tmp, max_steps=cfg.max_steps, num_train_epochs=cfg.num_train_epochs,
            learning_rate=cfg.learning_rate, per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            max_length=cfg.max_length, completion_only_loss=cfg.completion_only_loss,
            logging_steps=cfg.logging_steps, seed=cfg.seed, save_strategy="no",
            report_to="none", bf16=cfg.dtype == "bfloat16", use_cpu=not torch.cuda.is_available(),
            gradient_checkpointing=None, activation_checkpointing=False, disable_tqdm=not progress,
        )
        model.train()
        trainer = SFTTrainer(model=model, args=args, train_dataset=train,
                             processing_class=tokenizer, peft_config=peft_config)
        if not progress:
            trainer.remove_callback(PrinterCallback)
        out = trainer.train()
        model = trainer.model
    if cfg.lora and cfg.merge_lora:
        model = model.merge_and_unload()
    seconds = time.perf_counter() - start
    history = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "model": cfg.model, "dataset": cfg.dataset, "steps": int(out.global_step),
        "train_loss": float(out.training_loss), "loss_history": history,
        "n_examples": len(train), "prompts_shortened": shortened, "seconds": round(seconds, 1), "config": dataclasses.asdict(cfg),
    }
    output = Path(cfg.output_dir).expanduser()
    with atomic_directory(output, overwrite=cfg.overwrite) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(Path(tmp) / METRICS_FILE, metrics)
    return SFTResult(output, int(out.global_step), float(out.training_loss), len(train), seconds,
                     json.loads(json.dumps(metrics)))
