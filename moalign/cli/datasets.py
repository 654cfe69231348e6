"""``moalign datasets``: list the bundled datasets and the dataset adapters (plugins)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "list the bundled datasets and the dataset adapters (built-in and installed plugins)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", "-v", action="store_true", help="show where each comes from")
    parser.epilog = ("a config's 'dataset:' is a bundled name, a path in the canonical schema, or "
                     "{source: <hub id or path>, adapter: <name>, split, config, columns, options}")


def run(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from moalign.cli._output import format_table
    from moalign.data.adapters import describe_adapters
    from moalign.data.catalog import CATALOG
    from moalign.errors import ConfigError

    if overrides:
        raise ConfigError(f"'moalign datasets' takes no options, got {sorted(overrides)}")
    print("bundled datasets (dataset: <name>):")
    print(format_table(["name", "kind", "description"],
                       [[n, d.kind, d.description] for n, d in CATALOG.items()]))
    print("\nadapters (dataset: {source: ..., adapter: <name>}):")
    rows = [[n, kind, desc, *([source] if args.verbose else [])]
            for n, kind, source, desc in describe_adapters()]
    print(format_table(["name", "kind", "description", *(["source"] if args.verbose else [])],
                       rows))
    return 0
