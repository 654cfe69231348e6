"""``moalign reward``: train a reward model for one objective and report its held-out accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "train a reward model for one objective (held-out pairwise accuracy, saved checkpoint)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from moalign.config.checking import keys_epilog
    from moalign.rewards.training import RewardTrainingConfig

    parser.add_argument("--config", metavar="FILE.yaml", help="YAML configuration; --key value "
                        "options override its keys (e.g. --objective harmlessness)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.epilog = keys_epilog(RewardTrainingConfig)


def _secondary_process() -> bool:
    """A process other than the main one of an ``accelerate launch`` / ``torchrun`` run (it takes
    no lock, writes nothing and prints nothing)."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.cli._output import print_summary
    from moalign.config.checking import load_command_config
    from moalign.rewards.training import (
        RewardTrainingConfig,
        default_reward_model_dir,
        train_reward_model,
    )
    from moalign.storage.lock import output_lock

    cfg = load_command_config(RewardTrainingConfig, args.config, overrides)
    output = cfg.output_dir or default_reward_model_dir(cfg.objective)
    with output_lock(output):  # one writer per output folder
        cfg = load_command_config(RewardTrainingConfig, args.config, overrides)  # again, under it
        result = train_reward_model(cfg, progress=not args.quiet)
    if _secondary_process():  # the main process wrote the output (the others waited) and reports
        return 0
    m = result.metrics
    rows = [
        ("objective", result.objective),
        ("method", f"{result.method} on {cfg.model}"),
        ("pairs", f"{result.n_train} train / {result.n_test} held out ({cfg.test_size:.0%}, seed {cfg.seed})"),
        ("held-out accuracy", f"{result.test_accuracy:.3f}"),
        ("train accuracy", f"{result.train_accuracy:.3f}"),
    ]
    if "l2" in m:
        rows.append(("l2 (head)", f"{m['l2']:g}"))
    rows += [("time", result.seconds), ("saved to", str(Path(result.output_dir)))]
    print_summary(rows)
    return 0
