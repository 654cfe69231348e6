"""``moalign export``: a point of a traced front as a folder any server loads without moalign.

``moalign export FRONT --weights 0.3,0.7 --output DIR`` writes a merged transformers model (or
with ``--adapter`` one LoRA adapter) with a model card; ``--point ID`` picks a traced point by
its id; ``--grid N`` writes one adapter per weight vector of the simplex grid and the vLLM
command serving them all. See :mod:`moalign.fronts.export`.
"""

from __future__ import annotations

import argparse
from typing import Any

from moalign.cli._output import quiet_library_output

HELP = ("export a point of a traced front (any weights of a soup or conditioned front) as a "
        "transformers folder or LoRA adapter, or --grid N adapters plus their vLLM command")

EPILOG = """\
sweep points: by --point ID or their exact weights. soup: any weights, exactly interpolated.
conditioned: the weights are built into the chat template. MOD (decoding) points are refused
(a mixture of models is not one model): use `moalign generate`, or --soup for the soup of the
same runs. Each folder gets a README.md model card with the scores when the point was traced.
examples:
  moalign export fronts/soup --weights 0.3,0.7 --output out/w0.3
  moalign export fronts/soup --point w0.50-0.50 --adapter --output out/a0.5
  moalign export fronts/soup --grid 4 --output out/grid && sh out/grid/serve.sh"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.allow_abbrev = False
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("front", metavar="FRONT", help="a trace folder or its front.json")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", metavar="W", help="weight vector, e.g. 0.3,0.7")
    which.add_argument("--point", metavar="ID", help="a traced point's id, e.g. w0.50-0.50")
    which.add_argument("--grid", type=int, metavar="N",
                       help="one LoRA adapter per simplex grid vector with step 1/N")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write")
    parser.add_argument("--adapter", action="store_true",
                        help="write a LoRA adapter instead of a merged model")
    parser.add_argument("--soup", action="store_true",
                        help="MOD fronts: export the soup of the same runs at these weights")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DIR")


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.errors import ConfigError
    from moalign.fronts.export.folder import export_grid, export_point

    if overrides:
        raise ConfigError(f"unknown options: {', '.join('--' + k for k in overrides)}")
    with quiet_library_output(args.debug, progress=False):
        if args.grid is not None:
            if args.adapter or args.soup:
                raise ConfigError("--grid writes adapters already; drop --adapter / --soup")
            result = export_grid(args.front, args.output, args.grid, overwrite=args.overwrite)
        else:
            result = export_point(args.front, args.output, weights=args.weights,
                                  point=args.point, adapter=args.adapter, soup=args.soup,
                                  overwrite=args.overwrite)
    if result.command:
        print(f"wrote {len(result.adapters)} adapters under {result.output / 'adapters'}")
        print(f"serve them all: sh {result.output / 'serve.sh'}\n{result.command}")
    else:
        what = f"traced point {result.point}" if result.point else "not measured"
        print(f"wrote {result.output} (weights {result.weights[0]}; {what}; model card: "
              f"{result.output / 'README.md'})")
    return 0
