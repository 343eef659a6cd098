"""Atomic file writes: a reader, or a crash at any instant, sees the old file or the new one,
never a half-written one. Used for the results table, fits, manifests and token shards.

Files get the mode a plain ``open(path, "w")`` would give (0666 minus the umask, typically
0644), not ``mkstemp``'s private 0600: a sweep on shared storage must be readable by the team.
After the rename the directory is fsynced too, so a crash cannot lose the new name (POSIX
makes a rename durable only once its directory entry is on disk)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _umask_mode() -> int:
    """0666 minus the process umask. Linux reports it in /proc (os.umask has no getter, and
    setting-then-restoring it races with other threads, e.g. Ray's, creating files)."""
    try:
        with open("/proc/self/status") as fh:
            mask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or create in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | memoryview | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` (bytes, or a function that writes to a binary file) to a temporary file
    in the same directory, fsync it, ``os.replace`` it over ``path`` (atomic on POSIX within
    one file system), then fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _umask_mode())
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a small text file (JSON, a table) with the same temp-then-rename guarantee."""
    return atomic_write(path, text.encode("utf-8"))
