"""``moalign trace``: trace a Pareto front (sweep, soup, conditioned or decoding) from YAML.

The keys are those of :class:`moalign.fronts.trace.FrontConfig`; every one is checked before any model
or data loads (:func:`moalign.config.checking.resolve_front_config`). The trace is resumable: rerun
the same command and finished runs and points are reused.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from moalign.cli._output import quiet_library_output, throughput_line
from moalign.config.checking import keys_epilog, read_config
from moalign.fronts.config import FrontConfig, resolve_front_config

HELP = ("trace a Pareto front (sweep | soup | conditioned | decoding) with any trainer (mo_dpo | "
        "modpo | grpo | ppo); resumable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("--config", metavar="FILE.yaml",
                        help="YAML file with FrontConfig keys (method, objectives, model, dataset, "
                             "output_dir, grid, train, lora, metric, ...); --key value overrides "
                             "any key, e.g. --train.max_steps 4")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    import textwrap

    from moalign.fronts.plan import TRAINER_METHOD_TABLE

    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the table's lines
    parser.epilog = TRAINER_METHOD_TABLE + "\n\n" + textwrap.fill(keys_epilog(FrontConfig), 90)


def describe_outputs(front: Any, output_dir: str | Path) -> str:
    """Where ``trace_front`` wrote its results, what the trace cost, in which precision and at
    what throughput."""
    out = Path(output_dir)
    cost = front.cost
    lines = [
        f"front:   {out / 'front.json'}",
        f"picture: {out / 'front.png'}",
        f"cost:    {cost['train_steps']} training steps, {cost['train_seconds']:.1f} s "
        f"training, {cost['eval_seconds']:.1f} s evaluation, in "
        f"{front.metadata.get('precision', 'float32')}",
    ]
    kinds = [k.removesuffix("_per_second") for k in cost if k.endswith("_per_second")]
    rates = throughput_line({k: {"per_second": cost[f"{k}_per_second"],
                                 "seconds": cost.get(f"{k}_seconds", 0.0)} for k in kinds})
    if rates:
        lines.append(f"         {rates}")
    return "\n".join(lines)


def precision_header(cfg: Any) -> str:
    """The first line of a trace: the precision it runs in, and why."""
    from moalign.models.precision import describe_precision

    resolved = cfg.resolved_precision()
    if cfg.precision == "auto" and isinstance(cfg.train.get("bf16"), bool):
        return f"precision: {resolved} (train.bf16: {str(cfg.train['bf16']).lower()})"
    return f"precision: {describe_precision(cfg.precision, resolved)}"


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.fronts.trace import trace_front

    data, source = read_config(args.config, overrides)
    if args.quiet:
        data["progress"] = False
    with quiet_library_output(args.debug, progress=data.get("progress", True) is not False):
        cfg = resolve_front_config(data, source=source)
        print(precision_header(cfg), flush=True)
        front = trace_front(cfg)
    print(front.to_table())
    print(describe_outputs(front, cfg.output_dir))
    return 0
