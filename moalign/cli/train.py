"""``moalign train``: fine-tune a policy with one multi-objective trainer.

A thin shell over :func:`moalign.workflows.train` (``moalign.train`` in Python): it reads the
YAML file and ``--key value`` overrides, prints the precision line first and the last logged
per-objective metrics at the end. See :mod:`moalign.workflows.training` for what a run writes,
resumes and replaces.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from moalign.cli._output import format_table, quiet_library_output
from moalign.config.checking import keys_epilog, read_config
from moalign.trainers.registry import TRAINERS
from moalign.workflows.train_config import TRAIN_RECORD, ResolvedTrain, TrainRunConfig
from moalign.workflows.training import train

HELP = "fine-tune a policy with a multi-objective trainer (mo_dpo, modpo, conditioned_dpo, ppo, grpo)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="YAML file: trainer, model, dataset, objectives, weights, output_dir, "
                             "lora and the trainer's config fields; --key value overrides any key")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.epilog = (keys_epilog(TrainRunConfig) + "; plus the fields of the trainer's config "
                     f"(trainers: {', '.join(TRAINERS)}). A run that saves checkpoints "
                     "(save_strategy: steps, save_steps: N; ppo: save_steps: N) continues after "
                     "a stop with resume: true")


def summary(record: Mapping[str, Any]) -> str:
    """The text ``moalign train`` prints at the end."""
    metrics = record["metrics"]
    columns = sorted({m for row in metrics.values() for m in row})
    rows = [[name, *(metrics[name].get(c) for c in columns)] for name in record["objectives"]]
    what = "LoRA adapter" if record["lora"] is not None else "model"
    from moalign.data.catalog import describe_spec

    lines = [f"trained {record['trainer']} on {record['model']} ({describe_spec(record['dataset'])}, "
             f"{record['examples']} examples): {record['steps']} steps in {record['seconds']:.1f} s"]
    if record.get("resumed_from"):
        lines.append(f"resumed from {record['resumed_from']}")
    if columns:
        lines += ["last logged metrics per objective:", format_table(["objective", *columns], rows)]
    lines.append(f"saved the {what}, tokenizer and {TRAIN_RECORD} to {record['run']['output_dir']}")
    return "\n".join(lines)


def precision_line(resolved: ResolvedTrain) -> str:
    """Which precision the run trains in, and why (the first line ``moalign train`` prints)."""
    from moalign.models.precision import describe_precision, resolve_precision

    bf16 = getattr(resolved.args, "bf16", None)
    if not isinstance(bf16, bool):
        return "float32 (this trainer has no bf16 setting)"
    used = "bfloat16" if bf16 else "float32"
    if resolved.run.precision == "auto" and used != resolve_precision("auto"):
        return f"{used} (bf16: {str(bf16).lower()} in the config)"
    return describe_precision(resolved.run.precision, used)


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    data, source = read_config(args.config, overrides)
    if args.quiet:
        data["progress"] = False
    with quiet_library_output(args.debug, progress=data.get("progress", True) is not False):
        record = train(data, source=source, on_start=lambda resolved: print(
            f"precision: {precision_line(resolved)}", flush=True))
    if record:  # empty on the other processes of a multi-process run
        print(summary(record))
    return 0
