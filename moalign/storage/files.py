"""Crash-safe file writing: write to a temporary sibling, then rename.

A reader never sees a half-written file: either the old content or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_json", "atomic_write_text",
           "jsonable", "output_dir_problems", "writable_problems"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    """Serialize ``obj`` as JSON and write it atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and move it to ``path`` only on success.

    Usage::

        with atomic_directory("points/w0.5-0.5") as tmp:
            model.save_pretrained(tmp)

    If the body raises (or the process dies), ``path`` does not appear; a stale temporary
    folder from a killed run is named ``.<name>.tmp-*`` and is ignored by readers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # as mkdir would create it, not mkdtemp's 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def jsonable(obj: Any) -> Any:
    """``obj`` with non-finite floats as None and unknown objects as strings (for JSON files)."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "item") and callable(obj.item):
        return jsonable(obj.item())
    return str(obj)


def output_dir_problems(path: str | os.PathLike | None, overwrite: bool, *,
                        key: str = "output_dir") -> list[str]:
    """Problems with an output folder, found before any work: a file in the way, or a folder
    that exists while ``overwrite`` is off."""
    if path is None:
        return []
    out = Path(path).expanduser()
    if out.exists() and not (out.is_dir() and overwrite):
        return [f"'{key}' '{out}' already exists (set overwrite: true to replace it)"
                if out.is_dir() else f"'{key}' '{out}' is a file"]
    return []


def _probe(folder: Path) -> None:
    """Create and remove a small file in ``folder`` (named as a temporary, ignored by readers)."""
    fd, name = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(name)


def writable_problems(path: str | os.PathLike, *, key: str = "output_dir") -> list[str]:
    """Problems writing the output folder ``path``, found before any work by writing a small
    file: in its nearest existing parent (where it is built under a temporary name) and, when
    it exists, in the folder itself. Each problem names the folder and the reason."""
    out = Path(path).expanduser()
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"'{key}': '{parent}' is not a folder, so '{out}' cannot be made"]
    for folder in [parent, *([out] if out.is_dir() else [])]:
        try:
            _probe(folder)
        except OSError as exc:
            return [f"'{key}': cannot write in '{folder}' ({exc.strerror or exc}); make it "
                    f"writable or choose another {key}"]
    return []
