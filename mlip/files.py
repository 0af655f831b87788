"""Atomic file writes: the one helper every writer of model files, checkpoints, tables and plots uses.

Layer 1 (with :mod:`mlip.errors` and :mod:`mlip.device`): standard library only.

A file is written to a temporary name in the destination folder and moved over the destination with
``os.replace`` (atomic on POSIX within one file system), so a reader never sees a half-written file
and an interrupted write leaves the old file in place. The temporary file is removed on any error.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` (mode 0644).

    Write to the yielded path with anything that takes a file name (``torch.save``, ``ase.io.write``
    with an explicit ``format``, ``fig.savefig``). Parent folders are created. On an exception the
    temporary file is deleted and ``path`` is untouched.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:  # on disk before the rename (a crash leaves the old file or the new one)
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
