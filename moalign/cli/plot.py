"""``moalign plot``: re-plot one ``front.json`` or overlay several (e.g. soup vs sweep).

``moalign plot a.json b.json -o cmp.png``: hypervolumes only compare at one reference point, so
fronts that store different reference points are refused unless ``--reference-point x,y``
recomputes every front at those numbers or ``--common-reference`` uses the first front's
(:func:`moalign.pareto.front.plot_fronts`). Fronts traced on the same held-out examples, with
per-example scores, also get the paired-bootstrap interval of their hypervolume difference
with the first front (:func:`moalign.pareto.front.hypervolume_difference`). A folder holding a
``front.json`` may be given instead of the file.
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
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument("--reference-point", metavar="X,Y",
                     help="recompute every hypervolume at this reference point (one number per "
                          "objective; write --reference-point=-1,0 for a negative first value)")
    ref.add_argument("--common-reference", action="store_true",
                     help="recompute every hypervolume at the first front's reference point")


def _labels(fronts: list[Any], paths: list[Path]) -> list[str]:
    methods = [f.method for f in fronts]
    if len(set(methods)) == len(methods):
        return methods
    return [f"{m} ({(p.parent if p.name == 'front.json' else p).name})"
            for m, p in zip(methods, paths, strict=True)]


def _parse_reference(text: str | None, problems: list[str]) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.strip().strip("[]").split(",")]
    except ValueError:
        problems.append(f"--reference-point '{text}' must be comma-separated numbers, e.g. 0.5,0.5")
        return None


def _difference_line(label: str, first_label: str, first: Any, front: Any,
                     ref: list[float] | None, forced: bool) -> str | None:
    """The paired hypervolume difference with the first front, when it can be computed."""
    from moalign.errors import MoalignError
    from moalign.pareto.bootstrap import significant
    from moalign.pareto.front import hypervolume_difference

    if ref is None or not all(p.per_example for f in (first, front) for p in f.points):
        return None
    try:
        d = hypervolume_difference(first, front, reference_point=ref if forced else None)
    except MoalignError as exc:
        return f"  {label} vs {first_label}: no paired comparison ({exc})"
    lo, hi = d["ci"]
    level = d["bootstrap"]["level"]
    word = "significant" if significant(d["ci"]) else "within noise"
    return (f"  hypervolume {label} minus {first_label}: {d['value']:+.4g} [{lo:+.3g}, {hi:+.3g}] "
            f"(paired bootstrap, {level:.0%}): {word}")


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.errors import ConfigError
    from moalign.pareto.front import ParetoFront, common_reference, plot_fronts

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
    forced = _parse_reference(args.reference_point, problems)
    if problems:
        raise ConfigError(problems, source="command line")
    fronts = [ParetoFront.load(p) for p in paths]
    if args.common_reference:
        forced = fronts[0].reference_point
    labels = labels or _labels(fronts, paths)
    ref = common_reference(fronts, forced)  # refuses different stored reference points
    plot_fronts(fronts, output, labels=labels, reference_point=forced)
    for label, front, path in zip(labels, fronts, paths, strict=True):
        hv = f", hypervolume {front.hypervolume(ref):.6g}" if ref is not None else ""
        print(f"{label}: {len(front)} points ({int(front.nondominated.sum())} non-dominated){hv}"
              f"  [{path}]")
    if ref is not None and len(fronts) > 1:
        how = "recomputed at" if forced is not None else "all at the stored"
        print(f"(hypervolumes {how} reference point {list(ref)})")
        for label, front in zip(labels[1:], fronts[1:], strict=True):
            line = _difference_line(label, labels[0], fronts[0], front, ref, forced is not None)
            if line:
                print(line)
    print(f"wrote {output}")
    return 0
