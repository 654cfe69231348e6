"""The one catalog of datasets known by name, and the one loader of a dataset spec.

A **dataset spec** is a name of :data:`CATALOG` (``hh-rlhf``, ``hh-rlhf/helpful-base``,
``hh-rlhf/harmless-base``, ``gsm8k``, ``math500``: the copies bundled with moalign) or a path
to a JSON-lines / JSON / parquet / CSV file or a folder, already in the canonical schema. Every
command and :func:`moalign.trace_front` loads data through :func:`load_dataset`; the cheap
checks that run before any model loads (:func:`dataset_problems`, :func:`dataset_columns`) read
the same table.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moalign.errors import DataError

__all__ = ["CATALOG", "NamedDataset", "dataset_columns", "dataset_problems", "load_dataset"]


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
CATALOG: dict[str, NamedDataset] = {
    "hh-rlhf": NamedDataset("preference", _PAIRS | {"pref_helpfulness", "pref_harmlessness"},
                            _hh("both"), "HH-RLHF helpful-base + harmless-base test pairs"),
    "hh-rlhf/helpful-base": NamedDataset("preference", _PAIRS | {"pref_helpfulness"},
                                         _hh("helpful-base"), "HH-RLHF helpful-base test pairs"),
    "hh-rlhf/harmless-base": NamedDataset("preference", _PAIRS | {"pref_harmlessness"},
                                          _hh("harmless-base"), "HH-RLHF harmless-base test pairs"),
    "gsm8k": NamedDataset("prompts", frozenset({"prompt", "answer", "solution"}), _gsm8k,
                          "GSM8K test problems with reference answers"),
    "math500": NamedDataset("prompts",
                            frozenset({"prompt", "answer", "solution", "subject", "level"}),
                            _math500, "MATH-500 problems with reference answers"),
}


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(str(name), list(CATALOG), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def load_dataset(spec: str, *, hub: bool = False) -> Any:
    """A ``datasets.Dataset`` for a dataset spec (see the module docstring).

    With ``hub=True`` a spec that is neither a name nor an existing path is read as a hub id
    (through :func:`moalign.data.read_records`). Raises :class:`DataError` for an unknown
    spec, an empty dataset, or rows that disagree on a column's type (naming the column).
    """
    import datasets

    from moalign.data.sources import read_records

    if spec in CATALOG:
        return CATALOG[spec].load()
    path = Path(spec).expanduser()
    if not path.exists() and not hub:
        raise DataError(f"dataset '{spec}' is neither a bundled dataset ({', '.join(CATALOG)}) "
                        f"nor an existing file{_did_you_mean(spec)}")
    records = read_records(str(path) if path.exists() else spec)
    try:
        ds = records if isinstance(records, datasets.Dataset) else datasets.Dataset.from_list(
            list(records))
    except (TypeError, ValueError) as exc:  # pyarrow: rows that disagree on a column's type
        raise DataError(f"dataset '{spec}': {_mixed_column(list(records)) or exc}") from None
    if len(ds) == 0:
        raise DataError(f"dataset '{spec}' is empty: it has no rows")
    return ds


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
    ``hub=True``, only a spec that looks like a local path must exist)."""
    if not isinstance(spec, str) or spec in CATALOG or Path(spec).expanduser().exists():
        return []
    if hub:
        from moalign.data.sources import _looks_like_path

        if not _looks_like_path(spec):
            return []
        return [f"'{key}': no such file or folder: '{spec}'"]
    return [f"'{key}': dataset '{spec}' is neither a bundled dataset ({', '.join(CATALOG)})"
            f" nor an existing file or folder{_did_you_mean(spec)}"]


def dataset_columns(spec: str) -> frozenset[str] | None:
    """Columns of a dataset, without loading it: catalog names from :data:`CATALOG`, a
    JSON-lines / parquet / CSV file from its first record or schema; None when that cannot be
    told."""
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
