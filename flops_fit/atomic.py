"""Atomic file writes: a reader, or a crash at any instant, sees the old file or the new one,
never a half-written one. Used for the results table, fits, manifests and token shards."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path: str | os.PathLike[str], data: bytes | memoryview | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` (bytes, or a function that writes to a binary file) to a temporary file
    in the same directory, fsync it, then ``os.replace`` it over ``path`` (atomic on POSIX
    within one file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
    return path
