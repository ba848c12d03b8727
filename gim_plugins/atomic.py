"""Atomic file writes: a file holds either its old content or its complete new content, never half of it.

Every output a pipeline resumes from (dumps, poses, pair lists, HDF5 files, indexes, pictures) is written through
here: into a temporary file in the target's directory (same file system, so the final ``os.replace`` is atomic),
flushed to disk, then renamed over the target. An exception or a kill leaves the target untouched; the temporary
file is removed on exceptions (a ``kill -9`` can leave a ``.<name>.*.tmp`` file behind, never a broken target).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path to write instead of ``path``; it replaces ``path`` when the block completes.

    Use it for writers that want a file name (``torch.save``, ``h5py.File``, ``fig.savefig``)::

        with atomic_path("model.pt") as tmp:
            torch.save(state_dict, tmp)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # not mkstemp: its files are private (0600); the writer creates this one with the user's umask, like any file
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as handle:  # the data must be on disk before the rename makes it visible
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "xb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))
