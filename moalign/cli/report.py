"""``moalign report FRONT... -o report.html``: one self-contained HTML page (works offline)
with the interactive front of each trace, its hypervolume, spans and cost with their
intervals, and the replies of the start and every point to a few held-out prompts
(:mod:`moalign.fronts.report`). ``--replies N`` generates the replies a trace has not stored.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from moalign.cli._output import quiet_library_output

HELP = "write one self-contained HTML report (interactive front, intervals, cost, replies)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("fronts", nargs="+", metavar="FRONT",
                        help="trace folders or front.json files (several: one page)")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.html",
                        help="the page to write")
    parser.add_argument("--labels", help="comma-separated labels, one per front")
    parser.add_argument("--replies", type=int, default=0, metavar="N",
                        help="generate (once, stored in the trace) the replies of the start "
                             "and every point to N held-out prompts where they are missing")


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.errors import ConfigError
    from moalign.fronts.report.page import write_report

    problems = [f"unknown option --{k}" for k in overrides]
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    if labels is not None and len(labels) != len(args.fronts):
        problems.append(f"--labels has {len(labels)} labels for {len(args.fronts)} fronts")
    if not args.output.lower().endswith((".html", ".htm")):
        problems.append(f"--output '{args.output}' must end in .html")
    if args.replies < 0:
        problems.append("--replies must be 0 or more")
    if problems:
        raise ConfigError(problems, source="command line")
    with quiet_library_output(args.debug, progress=False):
        out = write_report(args.fronts, args.output, labels=labels, replies=args.replies,
                           progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, self-contained)")
    return 0
