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


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.cli._output import print_summary
    from moalign.config.checking import load_command_config
    from moalign.storage.lock import output_lock
    from moalign.trainers.sft import SFTTrainingConfig, train_sft

    cfg = load_command_config(SFTTrainingConfig, args.config, overrides)
    with output_lock(cfg.output_dir):  # one writer per output folder
        cfg = load_command_config(SFTTrainingConfig, args.config, overrides)  # again, under it
        result = train_sft(cfg, progress=not args.quiet)
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
