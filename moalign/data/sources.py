"""Reading raw records: in-memory rows, local files and folders, or a hub dataset id.

Adapters accept any of these through :func:`read_records`, which returns either a
:class:`datasets.Dataset` or a list of dicts, and :func:`get_columns`, which pulls the columns an
adapter needs and names the missing one (and the row, for dict rows).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict

from moalign.errors import DataError

__all__ = ["Records", "Source", "get_columns", "hub_offline", "read_records"]

#: Raw input of an adapter after reading.
Records = Dataset | list[dict[str, Any]]
#: What an adapter accepts: rows, a dataset, a local path, or a hub dataset id.
Source = Dataset | DatasetDict | Sequence[Mapping[str, Any]] | str | os.PathLike

_JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
_TABLE_SUFFIXES = (".parquet", ".csv")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """Whether Hugging Face hub access is switched off (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``)."""
    if any(os.environ.get(v, "").strip().lower() in _TRUE
           for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub ships with datasets
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _read_json(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            text = f.read()
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # truncated gzip, not UTF-8, ...
        raise DataError(f"{path}: cannot read it: {type(exc).__name__}: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON: {exc}") from None
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {n}: invalid JSON: {exc}") from None
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i} is a {type(row).__name__}, not a JSON object")
    return rows


def _pick_split(dd: DatasetDict, split: str, where: str) -> Dataset:
    if split not in dd:
        raise DataError(f"{where} has no split '{split}' (splits: {', '.join(dd)})")
    return dd[split]


def _read_file(path: Path) -> Records:
    name = path.name.lower()
    if name.endswith(_JSON_SUFFIXES):
        return _read_json(path)
    readers = {".parquet": Dataset.from_parquet, ".csv": Dataset.from_csv}
    for suffix, reader in readers.items():
        if name.endswith(suffix):
            try:
                return reader(str(path))
            except Exception as exc:  # pyarrow / pandas: an empty, truncated or damaged file
                raise DataError(f"{path}: cannot read it as a {suffix} file: "
                                f"{type(exc).__name__}: {exc}") from None
    raise DataError(
        f"{path}: unsupported file type; use one of {', '.join(_JSON_SUFFIXES + _TABLE_SUFFIXES)}"
    )


def _read_folder(path: Path, split: str) -> Records:
    if any((path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
        from datasets import load_from_disk

        loaded = load_from_disk(str(path))
        return _pick_split(loaded, split, str(path)) if isinstance(loaded, DatasetDict) else loaded
    for suffix in _JSON_SUFFIXES + _TABLE_SUFFIXES:
        candidate = path / f"{split}{suffix}"
        if candidate.is_file():
            return _read_file(candidate)
    raise DataError(
        f"{path}: folder has no '{split}' file ({split}.jsonl[.gz], {split}.json, "
        f"{split}.parquet, {split}.csv) and is not a saved dataset"
    )


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~", "\\"))
        or text.lower().endswith(_JSON_SUFFIXES + _TABLE_SUFFIXES)
        or not _HUB_ID_RE.match(text)
    )


def read_records(
    source: Source,
    *,
    split: str = "test",
    config: str | None = None,
    data_dir: str | None = None,
) -> Records:
    """Read ``source`` into a :class:`~datasets.Dataset` or a list of dict rows.

    ``source`` may be rows (a sequence of mappings), a ``Dataset`` / ``DatasetDict`` (``split``
    picks one), a local file (``.jsonl``, ``.json``, either gzip'd, ``.parquet``, ``.csv``), a
    local folder (a saved dataset, or one holding ``<split>.<ext>``), or a hub dataset id (read
    with ``datasets.load_dataset(source, config, data_dir=..., split=split)``; only when the hub
    is reachable: with ``HF_HUB_OFFLINE=1`` it is a :class:`DataError` that says so).
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, DatasetDict):
        return _pick_split(source, split, "dataset dict")
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        path = Path(text).expanduser()
        if path.is_file():
            return _read_file(path)
        if path.is_dir():
            return _read_folder(path, split)
        if _looks_like_path(text):
            raise DataError(f"no such file or folder: '{text}'")
        return _read_hub(text, split=split, config=config, data_dir=data_dir)
    if isinstance(source, Sequence):
        rows = list(source)
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise DataError(f"row {i}: expected a mapping of columns, got {type(row).__name__}")
        return [dict(r) for r in rows]
    raise DataError(
        f"cannot read data from a {type(source).__name__}: pass rows, a datasets.Dataset, "
        "a local path or a hub dataset id"
    )


def _read_hub(name: str, *, split: str, config: str | None, data_dir: str | None) -> Dataset:
    if hub_offline():
        raise DataError(
            f"'{name}' is not a local file or folder, and the Hugging Face hub is offline "
            "(HF_HUB_OFFLINE=1): pass a local path, or go online to read it from the hub"
        )
    from datasets import load_dataset

    try:
        return load_dataset(name, config, data_dir=data_dir, split=split)
    except Exception as exc:  # network, missing dataset, bad config: all user-facing
        raise DataError(f"cannot load '{name}' from the Hugging Face hub: {exc}") from None


def get_columns(
    records: Records, names: Sequence[str], *, source: str, optional: Sequence[str] = ()
) -> dict[str, list[Any]]:
    """The columns ``names`` (and those of ``optional`` that exist) of ``records`` as lists.

    A missing required column is a :class:`DataError` naming it (and, for dict rows, the first
    row that lacks it).
    """
    out: dict[str, list[Any]] = {}
    if isinstance(records, Dataset):
        have = records.column_names
        for name in names:
            if name not in have:
                raise DataError(f"{source}: no column '{name}' (columns: {', '.join(have)})")
        for name in [*names, *(o for o in optional if o in have)]:
            out[name] = records.select_columns([name])[:][name]
        return out
    for i, row in enumerate(records):
        for name in names:
            if name not in row:
                raise DataError(
                    f"{source}: row {i} has no column '{name}' (columns: {', '.join(row)})"
                )
    present_optional = [o for o in optional if records and all(o in row for row in records)]
    for name in [*names, *present_optional]:
        out[name] = [row[name] for row in records]
    return out
