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
