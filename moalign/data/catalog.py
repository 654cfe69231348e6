"""The one catalog of datasets known by name, and the one loader of a dataset spec.

A **dataset spec** is one of

- a name of :data:`CATALOG` (``hh-rlhf``, ``hh-rlhf/helpful-base``, ``hh-rlhf/harmless-base``,
  ``gsm8k``, ``math500``: the copies bundled with moalign);
- a path to a JSON-lines / JSON / parquet / CSV file or a folder, already in the canonical
  schema;
- a mapping ``{source: <hub id or path>, adapter: <name>, split, config, columns, options}``:
  the source is read with ``datasets`` (hub ids only when online), ``columns`` renames the
  source's columns to the names the adapter expects (``{adapter name: source name}``),
  ``options`` are the adapter's own arguments, and the adapter
  (:mod:`moalign.data.adapters`, a plugin) converts the rows; its report (rows kept and dropped
  with reasons) is printed.

Every command and :func:`moalign.trace_front` loads data through :func:`load_dataset`; the cheap
checks that run before any model loads (:func:`dataset_problems`, :func:`dataset_columns`) read
the same table.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moalign._plugins import Registry, did_you_mean
from moalign.errors import DataError

__all__ = ["CATALOG", "SPEC_KEYS", "NamedDataset", "dataset_columns", "dataset_problems",
           "describe_spec", "load_dataset"]


@dataclass(frozen=True)
class NamedDataset:
    """A dataset known by name: what it holds (``kind``: ``preference`` pairs or ``prompts``),
    its columns (known without loading it) and how to load it."""

    kind: str
    columns: frozenset[str]
    load: Callable[[], Any]
    description: str = ""


def _hh(subset: str) -> Callable[[], Any]:
    def load() -> Any:
        from moalign.data.hh_rlhf import load_hh_rlhf

        return load_hh_rlhf(subset).dataset

    return load


def _gsm8k() -> Any:
    from moalign.data.reasoning import load_gsm8k

    return load_gsm8k().dataset


def _math500() -> Any:
    from moalign.data.reasoning import load_math500

    return load_math500().dataset


_PAIRS = frozenset({"prompt", "chosen", "rejected"})
#: name -> the bundled dataset it loads.
CATALOG = Registry("dataset", error=lambda message, name: DataError(message))
CATALOG.register("hh-rlhf", NamedDataset(
    "preference", _PAIRS | {"pref_helpfulness", "pref_harmlessness"}, _hh("both"),
    "HH-RLHF helpful-base + harmless-base test pairs"))
CATALOG.register("hh-rlhf/helpful-base", NamedDataset(
    "preference", _PAIRS | {"pref_helpfulness"}, _hh("helpful-base"),
    "HH-RLHF helpful-base test pairs"))
CATALOG.register("hh-rlhf/harmless-base", NamedDataset(
    "preference", _PAIRS | {"pref_harmlessness"}, _hh("harmless-base"),
    "HH-RLHF harmless-base test pairs"))
CATALOG.register("gsm8k", NamedDataset(
    "prompts", frozenset({"prompt", "answer", "solution"}), _gsm8k,
    "GSM8K test problems with reference answers"))
CATALOG.register("math500", NamedDataset(
    "prompts", frozenset({"prompt", "answer", "solution", "subject", "level"}), _math500,
    "MATH-500 problems with reference answers"))


def load_dataset(spec: str | Mapping[str, Any], *, hub: bool = False) -> Any:
    """A ``datasets.Dataset`` for a dataset spec (see the module docstring).

    With ``hub=True`` a spec that is neither a name nor an existing path is read as a hub id
    (through :func:`moalign.data.read_records`). Raises :class:`DataError` for an unknown
    spec, an empty dataset, or rows that disagree on a column's type (naming the column).
    """
    import datasets

    from moalign.data.sources import read_records

    if isinstance(spec, Mapping):
        return _load_spec(spec)
    if spec in CATALOG:
        return CATALOG[spec].load()
    path = Path(spec).expanduser()
    if not path.exists() and not hub:
        raise DataError(f"dataset '{spec}' is neither a bundled dataset ({', '.join(CATALOG)}) "
                        f"nor an existing file{did_you_mean(spec, CATALOG)}")
    records = read_records(str(path) if path.exists() else spec)
    try:
        ds = records if isinstance(records, datasets.Dataset) else datasets.Dataset.from_list(
            list(records))
    except (TypeError, ValueError) as exc:  # pyarrow: rows that disagree on a column's type
        raise DataError(f"dataset '{spec}': {_mixed_column(list(records)) or exc}") from None
    if len(ds) == 0:
        raise DataError(f"dataset '{spec}' is empty: it has no rows")
    return _drop_degenerate(ds, str(spec))


def _drop_degenerate(ds: Any, name: str) -> Any:
    """A preference file (prompt, chosen, rejected) through the ``canonical`` adapter's drop
    of pairs that say nothing (chosen == rejected, an empty reply, no label at all): the report
    is printed when something was dropped, and nothing left is an error naming the dataset."""
    from moalign.data.adapters import CANONICAL
    from moalign.data.schema import CORE_COLUMNS, validate_preference_dataset

    if not all(c in ds.column_names for c in CORE_COLUMNS):
        return ds  # prompts (gsm8k-style)
    try:
        validate_preference_dataset(ds, require_labels_for=[])
    except DataError:
        return ds  # malformed rows: the commands' row checks name the row and the column
    result = CANONICAL.convert(ds)
    if result.report.n_dropped:
        print(f"dataset '{name}': {result.report}", file=sys.stderr)
    if len(result.dataset) == 0:
        raise DataError(f"dataset '{name}': nothing trainable remains after dropping degenerate "
                        f"pairs ({result.report})")
    return result.dataset


def _mixed_column(rows: list[dict[str, Any]]) -> str | None:
    """The first column whose rows hold values of different kinds (a number in one row, text
    in another; text in one, chat messages in another), said with the two rows."""
    def kind(value: Any) -> str:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return "number" if number else type(value).__name__

    for key in dict.fromkeys(k for row in rows for k in row):
        first: tuple[int, str] | None = None
        for i, row in enumerate(rows):
            value = row.get(key)
            if value is None:
                continue
            if first is None:
                first = (i, kind(value))
            elif kind(value) != first[1]:
                return (f"column '{key}' holds a {first[1]} in row {first[0]} but a {kind(value)} "
                        f"in row {i} ({value!r:.60})")
    return None


def dataset_problems(spec: Any, key: str = "dataset", *, hub: bool = False) -> list[str]:
    """A dataset spec that is neither known by name nor an existing file or folder (with
    ``hub=True``, only a spec that looks like a local path must exist); for a mapping, every
    problem of :func:`_spec_problems`."""
    if isinstance(spec, Mapping):
        return _spec_problems(spec, key)
    if not isinstance(spec, str) or spec in CATALOG or Path(spec).expanduser().exists():
        return []
    if hub:
        from moalign.data.sources import _looks_like_path

        if not _looks_like_path(spec):
            return []
        return [f"'{key}': no such file or folder: '{spec}'"]
    return [f"'{key}': dataset '{spec}' is neither a bundled dataset ({', '.join(CATALOG)})"
            f" nor an existing file or folder{did_you_mean(spec, CATALOG)}"]


def dataset_columns(spec: str | Mapping[str, Any]) -> frozenset[str] | None:
    """Columns of a dataset, without loading it: catalog names from :data:`CATALOG`, a
    JSON-lines / parquet / CSV file from its first record or schema; None when that cannot be
    told."""
    if isinstance(spec, Mapping):
        return _spec_columns(spec)
    if spec in CATALOG:
        return CATALOG[spec].columns
    path = Path(spec).expanduser()
    if not path.is_file():
        return None
    name = path.name.lower()
    try:
        if name.endswith((".jsonl", ".jsonl.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        row = json.loads(line)
                        return frozenset(row) if isinstance(row, dict) else None
            return None
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return frozenset(pq.read_schema(path).names)
        if name.endswith(".csv"):
            import csv

            with open(path, newline="", encoding="utf-8") as fh:
                return frozenset(next(csv.reader(fh), [])) or None  # empty: the loader says so
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # the loader reports an unreadable file with its own message
    return None


# --------------------------------------------------------------------------------------------
# Mapping specs: {source, adapter, split, config, columns, options}
# --------------------------------------------------------------------------------------------

#: The keys of a mapping dataset spec.
SPEC_KEYS = ("source", "adapter", "split", "config", "columns", "options")


def describe_spec(spec: Any) -> str:
    """A short name of a dataset spec, for messages and records."""
    if isinstance(spec, Mapping):
        return f"{spec.get('source')} (adapter {spec.get('adapter', 'canonical')})"
    return str(spec)


def _spec_problems(spec: Mapping[str, Any], key: str) -> list[str]:
    """Problems of a mapping spec found without reading its rows: unknown keys, a missing
    source, an unknown adapter (the known ones listed), a hub id while offline, a local file
    that lacks a column the adapter needs."""
    from moalign.data.adapters import available_adapters, get_adapter
    from moalign.data.sources import _looks_like_path, hub_offline

    problems = [f"'{key}': unknown key '{k}' in a dataset spec{did_you_mean(k, SPEC_KEYS)} (keys: "
                f"{', '.join(SPEC_KEYS)})" for k in spec if k not in SPEC_KEYS]
    source = spec.get("source")
    if not isinstance(source, str) or not source.strip():
        return [*problems, f"'{key}': a dataset spec needs 'source': a hub id or a local path"]
    for name in ("columns", "options"):
        if spec.get(name) is not None and not isinstance(spec.get(name), Mapping):
            problems.append(f"'{key}.{name}' must be a mapping, got {spec[name]!r}")
    adapter_name = spec.get("adapter", "canonical")
    try:
        adapter = get_adapter(adapter_name)
    except Exception:  # unknown or broken plugin: list what there is
        return [*problems, f"'{key}.adapter': unknown dataset adapter {adapter_name!r}"
                f"{did_you_mean(adapter_name, available_adapters())} (adapters: "
                f"{', '.join(available_adapters())})"]
    if isinstance(spec.get("options"), Mapping):
        problems += adapter.option_problems(spec["options"], key)
    path = Path(source).expanduser()
    if not path.exists():
        if _looks_like_path(source):
            return [*problems, f"'{key}.source': no such file or folder: '{source}'"]
        if hub_offline():
            problems.append(
                f"'{key}.source': '{source}' is a hub dataset id, but this machine is offline "
                "(HF_HUB_OFFLINE=1): download it where the hub is reachable (for instance "
                f"datasets.load_dataset('{source}').to_json('data.jsonl')) and pass the local "
                "copy as 'source: data.jsonl'")
        return problems
    have = dataset_columns(str(path)) if path.is_file() else None
    mapping = spec.get("columns") if isinstance(spec.get("columns"), Mapping) else {}
    if have is not None:
        shown = ", ".join(sorted(have))
        absent = {a: s for a, s in mapping.items() if s not in have}
        for target, name in absent.items():
            problems.append(f"'{key}.columns': '{target}: {name}' maps a column '{name}' that "
                            f"source '{source}' does not have{did_you_mean(name, have)} (columns: "
                            f"{shown})")
        renamed = {**{c: c for c in have}, **dict(mapping)}
        missing = [c for c in adapter.columns
                   if c not in absent and c not in have and renamed.get(c) not in have]
        for column in missing:
            problems.append(f"'{key}': source '{source}' has no column '{column}' that adapter "
                            f"'{adapter.name}' needs (columns: {', '.join(sorted(have))}); map "
                            f"one with 'columns: {{{column}: <its name>}}'")
    return problems


def _spec_columns(spec: Mapping[str, Any]) -> frozenset[str] | None:
    from moalign.data.adapters import get_adapter

    try:
        adapter = get_adapter(spec.get("adapter", "canonical"))
    except Exception:
        return None
    if adapter.name == "canonical" and isinstance(spec.get("source"), str):
        have = dataset_columns(spec["source"])
        mapping = spec.get("columns")
        if have is None or not isinstance(mapping, Mapping):
            return have
        renamed = {s: a for a, s in mapping.items() if s in have}  # source name -> its new name
        return frozenset(renamed.get(c, c) for c in have)
    return adapter.output_columns(dict(spec.get("options") or {}))


def _load_spec(spec: Mapping[str, Any]) -> Any:
    """Read, rename, convert, report: the dataset of a mapping spec."""
    from moalign.data.adapters import get_adapter
    from moalign.data.sources import read_records

    problems = _spec_problems(spec, "dataset")
    if problems:
        raise DataError("; ".join(problems))
    adapter = get_adapter(spec.get("adapter", "canonical"))
    records = read_records(spec["source"], split=spec.get("split", "train"),
                           config=spec.get("config"))
    columns = {s: a for a, s in (spec.get("columns") or {}).items() if s != a}
    if columns:
        records = _rename(records, columns, spec["source"])
    result = adapter.convert(records, **dict(spec.get("options") or {}))
    print(result.report, file=sys.stderr)
    if len(result.dataset) == 0:
        raise DataError(f"dataset {describe_spec(spec)}: nothing trainable remains after the "
                        f"adapter ({result.report})")
    return result.dataset


def _rename(records: Any, columns: Mapping[str, str], source: str) -> Any:
    """Rename source columns (``{source name: adapter name}``); a missing one is named."""
    import datasets

    have = records.column_names if isinstance(records, datasets.Dataset) else (
        list(records[0]) if records else [])
    missing = [s for s in columns if s not in have]
    if missing:
        raise DataError(f"source '{source}' has no column {', '.join(map(repr, missing))} "
                        f"named in 'columns' (columns: {', '.join(have)})")
    if isinstance(records, datasets.Dataset):
        return records.rename_columns(dict(columns))
    return [{columns.get(k, k): v for k, v in row.items()} for row in records]
