"""``moalign objectives``: list the registered objectives."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "list the objectives that can be used (built-in and installed plugins)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", help="show where each comes from")


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.errors import ConfigError
    from moalign.objective import describe_objectives

    if overrides:
        raise ConfigError(f"'moalign objectives' takes no options, got {sorted(overrides)}")
    rows = describe_objectives()
    width = max((len(r[0]) for r in rows), default=4)
    for name, source, desc in rows:
        line = f"{name:<{width}}  {desc}"
        if args.verbose:
            line += f"  [{source}]"
        print(line)
    return 0
