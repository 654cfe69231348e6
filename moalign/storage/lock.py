"""One writer per output folder: an exclusive OS-level lock held for the life of a command.

``moalign train``, ``trace``, ``sft``, ``reward`` and ``eval`` take :func:`output_lock` on the
folder (or file) they write, before any model loads. The lock is ``flock`` on a small file
beside the target, ``.<name>.lock`` in the same parent folder (beside, not inside: a finished
run replaces its folder by a rename, which would carry a lock file inside away with it). The
kernel releases an ``flock`` when its holder dies, however it dies, so a run killed by SIGKILL
never leaves a stale lock: the file may stay, the lock does not. The holder writes its pid into
the file, so a second process is refused at once with a message naming the folder and the pid.

Under ``accelerate launch`` / ``torchrun`` only the main process (``RANK`` 0) takes the lock;
the other processes of the same run never write the output folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from moalign.errors import ConfigError, MoalignError

__all__ = ["FolderInUseError", "lock_path", "output_lock"]

#: lock file path -> how many times this process holds it (the lock is re-entrant per process)
_HELD: dict[str, int] = {}


class FolderInUseError(MoalignError, RuntimeError):
    """Another process holds the lock of an output folder."""

    def __init__(self, path: Path, pid: int | None, key: str):
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"'{key}': '{path}' is in use by another moalign process ({holder}); "
                         f"wait for it to finish or choose another {key}")


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target`` (a folder or a file): ``.<name>.lock`` beside it, in its
    parent with symbolic links resolved, so two spellings of one folder share one lock."""
    target = Path(target).expanduser()
    parent = Path(os.path.realpath(target.parent if target.name else target))
    name = target.name or parent.name
    return parent / f".{name}.lock"


def _secondary_process() -> bool:
    """Whether this is a non-main process of a multi-process launch."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0
    except ValueError:
        return False


def _holder(fd: int) -> int | None:
    """The pid written in a lock file (the holder writes it right after locking: wait a little
    for it)."""
    for _ in range(20):
        with contextlib.suppress(OSError, ValueError):
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            if text:
                return int(text)
        time.sleep(0.01)
    return None


def _make_parents(folder: Path, key: str) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise ConfigError(f"'{key}': cannot create the folder '{path}' "
                          f"({exc.strerror or exc})") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for path in folders:
        try:
            path.rmdir()
        except FileNotFoundError:  # never made, or already gone
            continue
        except OSError:  # not empty: the command wrote there
            return


def _acquire(lock: Path, target: Path, key: str) -> int:
    """Lock ``lock`` without waiting; returns its open descriptor."""
    import fcntl  # POSIX only: imported where it is used

    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise ConfigError(f"'{key}': cannot write in '{lock.parent}' "
                              f"({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise ConfigError(f"'{key}': cannot lock '{lock}' ({exc.strerror or exc})") from None
            pid = _holder(fd)
            os.close(fd)
            raise FolderInUseError(target, pid, key) from None
        # the previous holder removes the file when it lets go: the lock must be on the file
        # that is at this name now, not on one that was just unlinked
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


@contextlib.contextmanager
def output_lock(target: str | os.PathLike, *, key: str = "output_dir") -> Iterator[Path | None]:
    """Hold the exclusive lock of ``target`` (an output folder or file) for the body.

    A second process that asks for it while it is held gets :class:`FolderInUseError` at once
    (``key`` names the config key in the message). Re-entrant within one process. Yields the
    lock file (``None`` on a secondary process of a multi-process launch, which takes none).
    """
    if _secondary_process():
        yield None
        return
    target = Path(target).expanduser().absolute()
    lock = lock_path(target)
    name = str(lock)
    if _HELD.get(name):
        _HELD[name] += 1
        try:
            yield lock
        finally:
            _HELD[name] -= 1
        return
    created = _make_parents(lock.parent, key)
    try:
        fd = _acquire(lock, target, key)
    except BaseException:
        _remove_empty(created)
        raise
    _HELD[name] = 1
    try:
        yield lock
    finally:
        del _HELD[name]
        with contextlib.suppress(OSError):
            os.unlink(lock)  # still held: nobody can lock this file in between
        os.close(fd)
        _remove_empty(created)  # a folder made for the lock alone and left empty goes too
