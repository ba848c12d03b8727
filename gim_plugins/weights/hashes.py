"""Hashing and verification: is this file the official checkpoint, and what does the cache hold?

Each weight directory keeps an ``index.json`` of the files' hashes with a *stamp* (size, mtime, inode and ctime),
so that ``gim weights list`` and loading need not re-hash multi-gigabyte files; a file whose stamp changed is hashed
again. The ctime is what makes the stamp honest: writing into a file and putting its mtime back (``touch -d``) still
changes it, so a modified file is never reported as verified. A spec's official hash is its sha256 or, where only
that is published, the git blob sha1 (``git hash-object``).

Loading a registered checkpoint from the cache goes through :func:`check_cached_file`: a file that differs from the
official one (or, without an official hash, from the one recorded at import) is refused with a one-line
:class:`HashMismatchError` naming ``gim weights verify`` and ``gim weights fetch``; ``GIM_WEIGHTS_ALLOW_MISMATCH=1``
turns the refusal into a warning. A slim copy is used only while it still belongs to the original next to it
(:func:`slim_is_current`).
"""

from __future__ import annotations

import hashlib
import json
import logging
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
    "FetchError",
    "HashMismatchError",
    "WeightStatus",
    "check_cached_file",
    "current_hashes",
    "file_hashes",
    "finish_download",
    "identify",
    "matches_spec",
    "record",
    "slim_is_current",
    "status",
    "verify_weights",
]

INDEX_FILE = "index.json"
ENV_ALLOW_MISMATCH = "GIM_WEIGHTS_ALLOW_MISMATCH"
"""Set to 1 to load a registered checkpoint whose hash differs from the official one, with a warning."""
_CHUNK = 1 << 20
log = logging.getLogger(__name__)


class HashMismatchError(RuntimeError, UserError):
    """A file whose size or hash differs from the known official one."""


class FetchError(RuntimeError, UserError):
    """A download that failed (no network, a server error, pip could not fetch a wheel)."""


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


_KEPT = ("source_verified", "source_sha256", "imported_sha256")
"""Index fields that describe where a file came from; re-hashing the file keeps them."""


def _stamp(path: Path) -> dict[str, int]:
    """What changes whenever the file's content can have changed: size, mtime, inode and ctime (nanoseconds)."""
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino, "ctime_ns": stat.st_ctime_ns}


def record(directory: Path, file_name: str, hashes: Mapping[str, Any], **extra: Any) -> None:
    """Remember a file's hashes with its stamp, so later status checks need not re-hash it."""
    path = directory / file_name
    index = _read_index(directory)
    previous = {k: v for k, v in index.get(file_name, {}).items() if k in _KEPT}
    index[file_name] = {**previous, **hashes, **_stamp(path), **extra}
    try:
        atomic_write_text(_index_path(directory), json.dumps(index, indent=1, sort_keys=True))
    except OSError as exc:  # a read-only cache: the next check hashes again
        log.debug("cannot record the hashes of %s: %s", path, exc)


def _recorded_hashes(path: Path) -> dict[str, Any] | None:
    """The recorded hashes of ``path`` if its stamp is unchanged since they were recorded, else ``None``."""
    entry = _read_index(path.parent).get(path.name)
    if not entry:
        return None
    stamp = _stamp(path)
    if any(entry.get(key) != value for key, value in stamp.items()):
        return None
    return entry


def current_hashes(path: Path, *, hash_now: bool = True) -> dict[str, Any] | None:
    """The file's hashes: recorded ones while its stamp is unchanged, else computed now (and recorded); ``None``
    when they would have to be computed and ``hash_now`` is False."""
    hashes = _recorded_hashes(path)
    if hashes is None and not hash_now:
        return None
    if hashes is None:
        log.info("hashing %s (changed or not yet hashed)", path)
        hashes = file_hashes(path)
        record(path.parent, path.name, hashes)
        hashes = {**_read_index(path.parent).get(path.name, {}), **hashes}
    return hashes


def slim_is_current(directory: Path, spec: WeightSpec, *, hash_now: bool = True) -> bool:
    """Whether the slim copy of ``spec`` in ``directory`` is intact and was made from the original that is there
    now (or, with no original left, from a verified or recorded one). Without ``hash_now``, a file whose stamp
    changed counts as not current (nothing is hashed)."""
    slim = directory / slim_name(spec)
    if not slim.is_file():
        return False
    entry = _read_index(directory).get(slim.name) or {}
    source = entry.get("source_sha256")
    own = current_hashes(slim, hash_now=hash_now)
    if not source or own is None or own["sha256"] != entry.get("imported_sha256", entry.get("sha256")):
        return False
    original = directory / spec.file_name
    if original.is_file():
        hashes = current_hashes(original, hash_now=hash_now)
        return hashes is not None and hashes["sha256"] == source
    return True


def _expected(spec: WeightSpec, hashes: Mapping[str, Any], entry: Mapping[str, Any]) -> bool | None:
    """True/False: the file is/is not the official one, or (no official hash) the one imported; None: unknown."""
    verdict = matches_spec(spec, hashes)
    if verdict is None and entry.get("imported_sha256"):
        return bool(entry["imported_sha256"] == hashes["sha256"])
    return verdict


def _mismatch_message(spec: WeightSpec, path: Path, hashes: Mapping[str, Any], why: str) -> str:
    return (f"{path} is not the {why} {spec.name} checkpoint (size {hashes['size']}, sha256 "
            f"{hashes['sha256'][:16]}…): damaged or replaced. Run `gim weights verify {spec.name}`, then "
            f"`gim weights fetch {spec.name} --force` (or import the right file); {ENV_ALLOW_MISMATCH}=1 loads it "
            "anyway")


def check_cached_file(spec: WeightSpec, path: Path) -> None:
    """Refuse to load a registered checkpoint of the weight cache whose content is not the expected one.

    The expected content is the official hash, or (without one) the sha256 recorded when the file was imported or
    fetched; a slim copy must match its own record and its original (:func:`slim_is_current`).

    Raises:
        HashMismatchError: one line naming the file, ``gim weights verify`` / ``fetch`` and the override
            ``GIM_WEIGHTS_ALLOW_MISMATCH=1`` (which logs a warning instead).
    """
    from gim_plugins.weights.cache import SLIM_SUFFIX

    hashes = current_hashes(path)
    assert hashes is not None
    if path.name.endswith(SLIM_SUFFIX):
        ok = slim_is_current(path.parent, spec)
        why = "slim copy of the current"
    else:
        verdict = _expected(spec, hashes, hashes)
        ok = verdict is not False
        why = "official" if matches_spec(spec, hashes) is False else "imported"
    if ok:
        return
    message = _mismatch_message(spec, path, hashes, why)
    if os.environ.get(ENV_ALLOW_MISMATCH, "").strip() not in ("", "0"):
        log.warning("%s (loading it because %s is set)", message, ENV_ALLOW_MISMATCH)
        return
    raise HashMismatchError(message)


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
        if slim.is_file() and not slim_is_current(directory, spec, hash_now=rehash):
            slim = directory / "(stale)"  # a slim copy of another file (or not checked yet): not reported
        if path.is_file():
            hashes = None if rehash else _recorded_hashes(path)
            if hashes is None and rehash:
                record(directory, spec.file_name, file_hashes(path))
                hashes = _read_index(directory).get(spec.file_name)
            if hashes is None:
                return WeightStatus(spec, "present", path, slim=slim if slim.is_file() else None)
            verdict = _expected(spec, hashes, hashes)
            if verdict is True and matches_spec(spec, hashes) is None:
                verdict = None  # the file imported, but no official hash to call it verified
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
    record(dest.parent, dest.name, hashes, source_verified=verdict is True, imported_sha256=hashes["sha256"])
