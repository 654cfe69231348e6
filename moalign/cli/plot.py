"""``moalign plot``: re-plot one ``front.json`` or overlay several (e.g. soup vs sweep).

``moalign plot a.json b.json -o cmp.png``: every hypervolume in the legend is computed against
the first front's reference point, so they compare (:func:`moalign.pareto.front.plot_fronts`).
A folder holding a ``front.json`` may be given instead of the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "plot one front.json, or overlay several to compare methods"
FORMATS = (".png", ".pdf", ".svg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.add_argument("fronts", nargs="+", metavar="FRONT.json",
                        help="front.json files (or folders holding one)")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.png",
                        help=f"figure to write ({', '.join(FORMATS)})")
    parser.add_argument("--labels", help="comma-separated legend labels, one per front "
                                         "(default: the method, plus the folder when methods repeat)")


def _labels(fronts: list[Any], paths: list[Path]) -> list[str]:
    methods = [f.method for f in fronts]
    if len(set(methods)) == len(methods):
        return methods
    return [f"{m} ({(p.parent if p.name == 'front.json' else p).name})"
            for m, p in zip(methods, paths, strict=True)]


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.errors import ConfigError
    from moalign.pareto.front import ParetoFront, plot_fronts

    problems = [f"unknown option '--{k}'" for k in overrides]
    paths = [Path(p).expanduser() for p in args.fronts]
    for p in paths:
        if not (p.is_file() or (p / "front.json").is_file()):
            problems.append(f"'{p}' is neither a front.json file nor a folder holding one")
    output = Path(args.output).expanduser()
    if output.suffix.lower() not in FORMATS:
        problems.append(f"--output '{output}' must end in {', '.join(FORMATS)}")
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    if labels is not None and len(labels) != len(paths):
        problems.append(f"--labels has {len(labels)} labels for {len(paths)} fronts")
    if problems:
        raise ConfigError(problems, source="command line")
    fronts = [ParetoFront.load(p) for p in paths]
    labels = labels or _labels(fronts, paths)
    plot_fronts(fronts, output, labels=labels)
    ref = fronts[0].reference_point
    for label, front, path in zip(labels, fronts, paths, strict=True):
        hv = f", hypervolume {front.hypervolume(ref):.6g}" if ref is not None else ""
        print(f"{label}: {len(front)} points ({int(front.nondominated.sum())} non-dominated){hv}"
              f"  [{path}]")
    if ref is not None and len(fronts) > 1:
        print(f"(hypervolumes against the reference point of the first front: {list(ref)})")
    print(f"wrote {output}")
    return 0
