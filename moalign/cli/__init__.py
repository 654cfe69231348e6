"""The ``moalign`` command.

Each subcommand lives in its own module under :mod:`moalign.cli` and is imported only
when it runs, so ``moalign objectives`` starts quickly. A command module defines ``HELP``
(one line), ``add_arguments(parser)`` and ``run(args, overrides) -> int``, where
``overrides`` are the ``--key value`` pairs that were not declared arguments.

Errors that moalign raises on purpose (:class:`~moalign.errors.MoalignError`) are printed as
one readable message with exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from moalign._plugins import Registry
from moalign.errors import MoalignError

#: subcommand -> its module under moalign.cli, imported when it runs
COMMANDS = Registry("command")
for _name in ("objectives", "datasets", "sft", "reward", "train", "trace", "eval", "demo", "plot",
              "export", "generate", "report"):
    COMMANDS.register(_name, path=f"moalign.cli.{_name}")


def _load(name: str):
    return COMMANDS[name]


def _available() -> dict[str, object]:
    found = {}
    for name in COMMANDS:
        try:
            found[name] = _load(name)
        except ModuleNotFoundError as exc:
            if exc.name != f"moalign.cli.{name}":
                raise
    return found


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moalign",
        description="Multi-objective preference optimization of language models.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {only: _load(only)} if only else _available()
    for name, module in modules.items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        module.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    only = command if command in COMMANDS else None
    debug = "--debug" in argv
    try:
        parser = build_parser(only)
        args, rest = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return 0 if not argv or argv in (["-h"], ["--help"]) else 2
        module = _load(args.command)
        from moalign.config import parse_overrides

        overrides = parse_overrides(rest)
        return int(module.run(args, overrides) or 0)
    except MoalignError as exc:
        if debug:
            raise
        print(f"moalign: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moalign: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
