"""``moalign eval``: score one policy on every objective, with the mean and its standard error.

A thin shell over :func:`moalign.workflows.evaluate` (``moalign.evaluate`` in Python; the
metrics and the held-out data are described there): it reads the keys, prints the precision
line and the table, and writes the result with ``--output``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from moalign.cli._output import format_table, quiet_library_output, throughput_line
from moalign.config.checking import keys_epilog, read_config
from moalign.data.catalog import describe_spec
from moalign.workflows.scoring import METRICS, EvalConfig, evaluate_resolved, resolve_eval_config

HELP = "evaluate one policy on each objective (generation + scorers, or implicit-reward accuracy)"


def summary(result: dict[str, Any]) -> str:
    cfg = result["config"]
    what = "implicit-reward accuracy" if result["metric"] == "implicit" else "mean score"
    rows = [[name, result["scores"][name], result["stderr"][name], result["n"][name]]
            for name in result["scores"]]
    split = "held-out split" if cfg["split"] == "test" else "all rows"
    lines = [
        f"{cfg['model']}{' + ' + cfg['adapter'] if cfg['adapter'] else ''} on {describe_spec(cfg['dataset'])} "
        f"({split}), {result['metric']} metric, {result['seconds']:.1f} s, "
        f"{result.get('precision', 'float32')}",
        format_table(["objective", what, "± stderr", "n"], rows),
    ]
    rates = throughput_line(result.get("throughput") or {})
    return "\n".join(lines + ([rates] if rates else []))



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file with the keys below")
    parser.add_argument("--model", help="policy: tiny, smollm2, a checkpoint, or a moalign train output")
    parser.add_argument("--adapter", help="LoRA adapter folder to put on the model")
    parser.add_argument("--objectives", help="comma-separated objectives, e.g. helpfulness,harmlessness")
    parser.add_argument("--dataset", help="hh-rlhf, gsm8k, math500, ... or a file")
    parser.add_argument("--metric", choices=METRICS, help="generation (default) or implicit")
    parser.add_argument("--output", "-o", metavar="FILE.json", help="also write the results here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.epilog = keys_epilog(EvalConfig)


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    import contextlib

    from moalign.storage.files import atomic_write_json
    from moalign.storage.lock import output_lock

    declared = {k: getattr(args, k) for k in ("model", "adapter", "objectives", "dataset",
                                               "metric", "output")
                if getattr(args, k) is not None}
    if args.quiet:
        declared["progress"] = False
    data, source = read_config(args.config, {**overrides, **declared})
    with quiet_library_output(args.debug, progress=data.get("progress", True) is not False):
        cfg = resolve_eval_config(data, source=source)
        from moalign.models.precision import describe_precision

        print(f"precision: {describe_precision(cfg.precision)}", flush=True)
        # one writer per output file, from before the model loads until the file is written
        with output_lock(cfg.output, key="output") if cfg.output else contextlib.nullcontext():
            result = evaluate_resolved(cfg)
            print(summary(result))
            if cfg.output:
                path = atomic_write_json(Path(cfg.output).expanduser(), result)
                print(f"wrote {path}")
    return 0
