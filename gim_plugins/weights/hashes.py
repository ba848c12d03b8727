"""Hashing and verification: is this file the official checkpoint, and what does the cache hold?

Each weight directory keeps an ``index.json`` of the files' hashes with their size and mtime, so that
``gim weights list`` need not re-hash multi-gigabyte files; a file whose size or mtime changed is hashed again. A
spec's official hash is its sha256 or, where only that is published, the git blob sha1 (``git hash-object``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gim_plugins.atomic import atomic_write_text
from gim_plugins.errors import UserError
from gim_plugins.weights.cache import search_dirs, slim_name
from gim_plugins.weights.catalogue import WEIGHTS, WeightSpec, get_spec

__all__ = [
    "INDEX_FILE",
    "HashMismatchError",
    "WeightStatus",
    "file_hashes",
    "finish_download",
    "identify",
    "matches_spec",
    "record",
    "status",
    "verify_weights",
]

INDEX_FILE = "index.json"
_CHUNK = 1 << 20


class HashMismatchError(RuntimeError, UserError):
    """A file whose size or hash differs from the known official one."""


def file_hashes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"size", "sha256", "git_sha1"}`` of a file, in one pass (git_sha1 = ``git hash-object``)."""
    size = os.path.getsize(path)
    sha256 = hashlib.sha256()
    git = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha256.update(chunk)
            git.update(chunk)
    return {"size": size, "sha256": sha256.hexdigest(), "git_sha1": git.hexdigest()}


def matches_spec(spec: WeightSpec, hashes: Mapping[str, Any]) -> bool | None:
    """True/False when the spec has a hash to compare against; None when nothing is known."""
    if spec.size is not None and hashes["size"] != spec.size:
        return False
    if spec.sha256:
        return hashes["sha256"] == spec.sha256
    if spec.git_sha1:
        return hashes["git_sha1"] == spec.git_sha1
    return None


def identify(hashes: Mapping[str, Any]) -> WeightSpec | None:
    """The known checkpoint whose official hash equals these hashes, if any."""
    for spec in WEIGHTS.values():
        if matches_spec(spec, hashes):
            return spec
    return None


def _index_path(directory: Path) -> Path:
    return directory / INDEX_FILE


def _read_index(directory: Path) -> dict[str, Any]:
    try:
        return json.loads(_index_path(directory).read_text())
    except (OSError, ValueError):
        return {}


def record(directory: Path, file_name: str, hashes: Mapping[str, Any], **extra: Any) -> None:
    """Remember a file's hashes with its size and mtime, so later status checks need not re-hash it."""
    path = directory / file_name
    index = _read_index(directory)
    index[file_name] = {**hashes, "mtime_ns": path.stat().st_mtime_ns, **extra}
    atomic_write_text(_index_path(directory), json.dumps(index, indent=1, sort_keys=True))


def _recorded_hashes(path: Path) -> dict[str, Any] | None:
    entry = _read_index(path.parent).get(path.name)
    if not entry:
        return None
    stat = path.stat()
    if entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
        return None
    return entry


@dataclass(frozen=True)
class WeightStatus:
    """What ``gim weights list`` reports for one checkpoint.

    ``state`` is one of ``missing``, ``present`` (found, not yet hashed), ``verified`` (official hash matches),
    ``recorded`` (no official hash exists; the sha256 recorded at import is shown), ``mismatch`` (differs from the
    official file: a re-encoded mirror or a corrupt download).
    """

    spec: WeightSpec
    state: str
    path: Path | None = None
    sha256: str | None = None
    slim: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def status(name: str, *, rehash: bool = False) -> WeightStatus:
    """The status of checkpoint ``name`` in the search directories (hashes only when ``rehash`` or unrecorded+cheap)."""
    spec = get_spec(name)
    for directory in search_dirs():
        path, slim = directory / spec.file_name, directory / slim_name(spec)
        if path.is_file():
            hashes = None if rehash else _recorded_hashes(path)
            if hashes is None and rehash:
                hashes = file_hashes(path)
                record(directory, spec.file_name, hashes)
            if hashes is None:
                return WeightStatus(spec, "present", path, slim=slim if slim.is_file() else None)
            verdict = matches_spec(spec, hashes)
            state = {True: "verified", False: "mismatch", None: "recorded"}[verdict]
            return WeightStatus(spec, state, path, hashes["sha256"], slim if slim.is_file() else None)
        if slim.is_file():
            entry = _read_index(directory).get(slim.name, {})
            verdict = entry.get("source_verified")
            state = "verified" if verdict else "recorded"
            return WeightStatus(spec, state, slim, entry.get("sha256"), slim, ("slim state-dict copy",))
    return WeightStatus(spec, "missing")


def verify_weights(name: str) -> WeightStatus:
    """Re-hash checkpoint ``name`` (and record the result); ``state`` says whether it is the official file."""
    return status(name, rehash=True)


def finish_download(spec: WeightSpec, part: Path, dest: Path) -> None:
    """Verify a completed ``.part`` file and move it into place; delete it on mismatch."""
    hashes = file_hashes(part)
    verdict = matches_spec(spec, hashes)
    if verdict is False:
        part.unlink()
        raise HashMismatchError(
            f"downloaded {spec.file_name} does not match the official file (size {hashes['size']}, sha256 "
            f"{hashes['sha256']}); it was deleted"
        )
    os.replace(part, dest)
    record(dest.parent, dest.name, hashes, source_verified=verdict is True)
