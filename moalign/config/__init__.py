"""Configuration: YAML files and ``--key value`` overrides, and the one config checker.

- :mod:`moalign.config.loading`: :func:`load_yaml`, :func:`parse_overrides`, :func:`merge`,
  :func:`build_config` (a typed dataclass from a mapping);
- :mod:`moalign.config.checking`: :func:`check_fields`, :func:`build_checked`,
  :func:`load_command_config`, :func:`read_config`: every problem of a config at once, before
  any model or data loads;
- :mod:`moalign.config.fields`: :func:`doc` / :func:`document_fields`, the one place a config
  field's help text is written.
"""

from __future__ import annotations

from moalign.config.checking import (
    build_checked,
    check_fields,
    defaults_of,
    did_you_mean,
    keys_epilog,
    load_command_config,
    raise_problems,
    read_config,
)
from moalign.config.fields import doc, document_fields
from moalign.config.loading import build_config, load_yaml, merge, parse_overrides

__all__ = [
    "build_checked",
    "build_config",
    "check_fields",
    "defaults_of",
    "did_you_mean",
    "doc",
    "document_fields",
    "keys_epilog",
    "load_command_config",
    "load_yaml",
    "merge",
    "parse_overrides",
    "raise_problems",
    "read_config",
]
