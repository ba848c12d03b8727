"""Extract each image once: an in-memory or HDF5 feature cache in front of a sparse matcher.

Matching N images in all pairs with a sparse matcher should cost N extractions, not N·(N−1). :class:`FeatureCache`
keys features by a name (usually the image path relative to an image directory) and stores them in memory, or in an
HDF5 file so that an interrupted run keeps what it extracted. The file records the matcher's feature fingerprint
(name, extraction options, weights); opening it with a different extractor is refused unless ``overwrite=True``,
because silently mixing features of two extractors gives plausible-looking garbage.

HDF5 layout (one group per image name; ``/`` in names makes nested groups, as in hloc): ``keypoints`` (N, 2) float32
in the package's pixel convention, ``descriptors`` (N, D) float32, ``scores`` (N,) float32, attribute ``image_size``
(H, W). Root attributes: ``fingerprint`` and ``format``. The ``image_size`` attribute is written last: an entry
without it (a run interrupted while writing) counts as absent and is extracted again.

Several processes may share one file (parallel ``gim reconstruct`` steps, a notebook reading it): every access
holds a lock on ``<file>.lock`` (shared for reading, exclusive for writing), so concurrent writers take turns and
no entry is lost. A file held open by a program that does not take that lock (HDF5 locks the file itself) is waited
for too. Both waits are bounded (``lock_timeout`` seconds, a message after a few seconds): then
:class:`FeatureFileLockedError` says who to wait for. A locked file is never mistaken for a corrupt one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gim_plugins.errors import InputError, UserError

if TYPE_CHECKING:
    from gim_plugins.io import ImageInput
    from gim_plugins.models.base import SparseMatcher
    from gim_plugins.types import Features, MatchResult

__all__ = ["FeatureCache", "FeatureFileError", "FeatureFileLockedError"]

log = logging.getLogger(__name__)

FORMAT = "gim_plugins.features/1"
_DATASETS = ("keypoints", "descriptors", "scores")
LOCK_TIMEOUT = 300.0
"""Seconds a feature file access waits for another process's lock before giving up."""
MAX_IN_MEMORY = 256
"""Images whose features a file-backed cache keeps decoded (ALIKED's 2048 keypoints: about 1 MB each), so a
reconstruction of thousands of images holds a flat few hundred MB instead of every image's features."""
_NOTICE_AFTER = 3.0


class FeatureFileError(OSError, UserError):
    """A feature file that HDF5 cannot read (killed mid-write, truncated, not HDF5); it can be moved aside."""


class FeatureFileLockedError(OSError, UserError):
    """A feature file another process keeps locked for longer than the wait allows; it is not damaged."""


def _is_lock_error(exc: BaseException) -> bool:
    """Whether an HDF5 open failed because another process holds the file (not because the file is bad)."""
    import errno

    text = str(exc).lower()
    return (getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK)
            or "unable to lock file" in text or "resource temporarily unavailable" in text)


@contextlib.contextmanager
def _flock(path: Path, *, exclusive: bool, timeout: float) -> Iterator[None]:
    """Hold ``<path>.lock`` (shared or exclusive), waiting at most ``timeout`` seconds."""
    try:
        import fcntl
    except ImportError:  # not POSIX: HDF5's own locking and the retries below still apply
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    try:
        handle = open(lock_path, "a+b")
    except OSError:  # a read-only folder: nobody can write there, so reading needs no lock
        if exclusive:
            raise
        yield
        return
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    start = noticed = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now - start > timeout:
                    raise FeatureFileLockedError(
                        f"{path} is locked by another process for more than {timeout:.0f} s (another gim run using "
                        "the same output folder?); wait for it to finish or use another output folder") from None
                if now - noticed > _NOTICE_AFTER:
                    log.warning("waiting for another process to release %s", path)
                    noticed = float("inf")
                time.sleep(0.05)
        yield
    finally:
        handle.close()  # releases the lock


def _open_h5(path: Path, mode: str, timeout: float) -> Any:
    """``h5py.File(path, mode)``, waiting (bounded) while another program holds HDF5's own lock on it.

    Raises:
        FeatureFileLockedError: still locked after ``timeout`` seconds.
        FeatureFileError: the file exists but is not a readable HDF5 file.
    """
    import h5py

    start = time.monotonic()
    warned = False
    while True:
        try:
            return h5py.File(path, mode)
        except OSError as exc:
            if not _is_lock_error(exc):
                if mode != "r" and isinstance(exc, FileNotFoundError | PermissionError):
                    raise
                raise FeatureFileError(f"feature file {path} is unreadable ({exc}); delete it to start over"
                                       ) from exc
            if time.monotonic() - start > timeout:
                raise FeatureFileLockedError(
                    f"{path} is held open by another program for more than {timeout:.0f} s (an h5py session, "
                    "HDFView?); close it and run again") from exc
            if not warned and time.monotonic() - start > _NOTICE_AFTER:
                log.warning("waiting for another program to close %s", path)
                warned = True
            time.sleep(0.1)


def _complete(obj: Any) -> bool:
    """Whether an HDF5 object is a fully written feature entry (datasets present, ``image_size`` written last)."""
    import h5py

    return isinstance(obj, h5py.Group) and all(name in obj for name in _DATASETS) and "image_size" in obj.attrs


class FeatureCache:
    """Features of many images, extracted at most once each.

    Args:
        matcher: the sparse matcher whose ``extract`` fills the cache.
        path: an HDF5 file to persist features in; ``None`` keeps them in memory.
        overwrite: discard an existing file written with another fingerprint instead of refusing it.
        lock_timeout: seconds to wait for another process's lock on the file (then :class:`FeatureFileLockedError`).
        max_in_memory: with a file, keep at most this many images' features decoded in memory (least recently used
            go; the file keeps them), so memory stays flat however many images a run has; ``None``: no bound.
            Without a file every entry stays in memory (nothing could be read back).

    Example:
        >>> cache = FeatureCache(load_matcher("aliked_lightglue"), "feats.h5")   # doctest: +SKIP
        >>> result = cache.match("images/a.jpg", "images/b.jpg")                 # doctest: +SKIP
        >>> cache.num_extracted                                                 # doctest: +SKIP
        2
    """

    def __init__(self, matcher: SparseMatcher, path: str | os.PathLike[str] | None = None, *,
                 overwrite: bool = False, lock_timeout: float = LOCK_TIMEOUT,
                 max_in_memory: int | None = MAX_IN_MEMORY) -> None:
        if not getattr(matcher, "is_sparse", False):
            raise TypeError(f"matcher {getattr(matcher, 'name', matcher)!r} is dense; only sparse matchers extract "
                            "per-image features")
        self.matcher = matcher
        self.fingerprint = matcher.feature_fingerprint()
        self.path = Path(path) if path is not None else None
        self.lock_timeout = float(lock_timeout)
        self.num_extracted = 0
        if max_in_memory is not None and (isinstance(max_in_memory, bool) or int(max_in_memory) < 1):
            raise ValueError(f"max_in_memory must be a positive integer or None, got {max_in_memory!r}")
        self.max_in_memory = None if self.path is None or max_in_memory is None else int(max_in_memory)
        self._memory: OrderedDict[str, Features] = OrderedDict()
        if self.path is not None:
            self._open_file(overwrite)

    @contextlib.contextmanager
    def _h5(self, mode: str) -> Iterator[Any]:
        """The HDF5 file opened in ``mode`` under the cross-process lock (shared for ``"r"``)."""
        assert self.path is not None
        with _flock(self.path, exclusive=mode != "r", timeout=self.lock_timeout):
            handle = _open_h5(self.path, mode, self.lock_timeout)
            with handle:
                yield handle

    def _open_file(self, overwrite: bool) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._h5("a") as handle:  # created when absent; the exclusive lock makes check-and-create atomic
            stored = handle.attrs.get("fingerprint")
            if stored is None and not len(handle):
                handle.attrs["fingerprint"] = self.fingerprint
                handle.attrs["format"] = FORMAT
                return
            if stored == self.fingerprint:
                return
            if not overwrite:
                raise InputError(
                    f"{self.path} holds features of another extractor or configuration:\n  stored:  {stored}\n"
                    f"  current: {self.fingerprint}\nuse another file or overwrite=True"
                )
            for key in list(handle):
                del handle[key]
            handle.attrs["fingerprint"] = self.fingerprint
            handle.attrs["format"] = FORMAT

    def __contains__(self, key: str) -> bool:
        if key in self._memory:
            return True
        if self.path is None:
            return False
        with self._h5("r") as handle:
            return key in handle and _complete(handle[key])

    def keys(self) -> Iterator[str]:
        """Names of the cached images."""
        if self.path is None:
            yield from self._memory
            return
        names: list[str] = []
        with self._h5("r") as handle:
            def visit(name: str, obj: Any) -> None:
                if _complete(obj):
                    names.append(name)
            handle.visititems(visit)
        yield from names

    def get(self, key: str, image: ImageInput | None = None, *, mask: Any = None) -> Features:
        """The features of image ``key``, extracting them from ``image`` (default: ``key`` as a path) if needed.

        ``mask`` (``H×W`` bool) is passed to extractors that take a detection mask; the cache does not key on it, so
        use a ``key`` per (image, mask).
        """
        cached = self._memory.get(key)
        if cached is not None:
            self._memory.move_to_end(key)
            return cached
        if self.path is not None and key in self:
            features = self._read(key)
        else:
            source = key if image is None else image
            features = self.matcher.extract(source) if mask is None else self.matcher.extract(source, mask=mask)
            self.num_extracted += 1
            if self.path is not None:
                self._write(key, features)
        self._remember(key, features)
        return features

    def _remember(self, key: str, features: Features) -> None:
        self._memory[key] = features
        self._memory.move_to_end(key)
        while self.max_in_memory is not None and len(self._memory) > self.max_in_memory:
            self._memory.popitem(last=False)  # the file has it

    def discard(self, key: str) -> None:
        """Drop image ``key`` from memory (an HDF5 file keeps it): bounds memory when images come in order."""
        self._memory.pop(key, None)

    def match(self, key0: str, key1: str, image0: ImageInput | None = None,
              image1: ImageInput | None = None) -> MatchResult:
        """Match two cached images (extracting whichever is not cached yet)."""
        return self.matcher.match_features(self.get(key0, image0), self.get(key1, image1))

    def put(self, key: str, features: Features) -> None:
        """Store features extracted elsewhere with the same matcher (e.g. another process's cache of one run)."""
        if self.path is not None:
            self._write(key, features)
        self._remember(key, features)

    def _write(self, key: str, features: Features) -> None:
        with self._h5("a") as handle:
            if key in handle:
                del handle[key]
            group = handle.create_group(key)
            group.create_dataset("keypoints", data=features.keypoints.numpy())
            group.create_dataset("descriptors", data=features.descriptors.numpy())
            group.create_dataset("scores", data=features.scores.numpy())
            handle.flush()
            group.attrs["image_size"] = features.image_size  # last: marks the entry complete
            handle.flush()

    def _read(self, key: str) -> Features:
        import torch

        from gim_plugins.types import Features

        with self._h5("r") as handle:
            group = handle[key]
            return Features(
                torch.from_numpy(group["keypoints"][()]),
                torch.from_numpy(group["descriptors"][()]),
                torch.from_numpy(group["scores"][()]),
                tuple(int(v) for v in group.attrs["image_size"]),
                self.matcher.name,
            )
