"""``moalign sft``: supervised fine-tuning with TRL's SFTTrainer from a YAML configuration."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "supervised fine-tuning (TRL SFTTrainer) of a policy, configured by YAML + --key value"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from moalign.config.checking import keys_epilog
    from moalign.trainers.sft import SFTTrainingConfig

    parser.add_argument("--config", metavar="FILE.yaml", help="YAML configuration; --key value "
                        "options override its keys (e.g. --max-steps 20)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.epilog = (keys_epilog(SFTTrainingConfig) + ". A run with save_steps: N continues "
                     "after a stop with resume: true")


def _secondary_process() -> bool:
    """A process other than the main one of an ``accelerate launch`` / ``torchrun`` run (it takes
    no lock, writes nothing and prints nothing)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.cli._output import print_summary
    from moalign.config.checking import load_command_config
    from moalign.storage.lock import output_lock
    from moalign.trainers.sft import SFTTrainingConfig, train_sft

    cfg = load_command_config(SFTTrainingConfig, args.config, overrides)
    with output_lock(cfg.output_dir):  # one writer per output folder
        cfg = load_command_config(SFTTrainingConfig, args.config, overrides)  # again, under it
        _check_rows(cfg)  # every row, before the model loads
        result = train_sft(cfg, progress=not args.quiet)
    if _secondary_process():  # the main process wrote the output (the others waited) and reports
        return 0
    rows = [
        ("model", cfg.model + (" + LoRA" + (" (merged)" if cfg.merge_lora else "") if cfg.lora else "")),
        ("dataset", f"{cfg.dataset} ({result.n_examples} examples)"),
        ("steps", str(result.steps)),
        ("train loss", f"{result.train_loss:.4f}"),
        ("time", result.seconds),
        ("saved to", str(result.output_dir)),
    ]
    print_summary(rows)
    return 0


def _check_rows(cfg: Any) -> None:
    """The rows :func:`~moalign.trainers.sft.train_sft` will train on, each checked
    (:func:`moalign.data.sft_rows.validate_sft_dataset`: a bad one is named with its row and
    column)."""
    from moalign.data.catalog import describe_spec
    from moalign.data.sft_rows import validate_sft_dataset
    from moalign.trainers.sft import load_sft_dataset

    rows = load_sft_dataset(cfg.dataset, max_examples=cfg.max_examples, seed=cfg.seed)
    validate_sft_dataset(rows, describe_spec(cfg.dataset))
