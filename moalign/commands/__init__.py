"""Subcommands of the ``moalign`` CLI, one module each (see :mod:`moalign.cli`)."""
