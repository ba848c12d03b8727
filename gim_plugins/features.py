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
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gim_plugins.io import ImageInput
    from gim_plugins.models.base import SparseMatcher
    from gim_plugins.types import Features, MatchResult

__all__ = ["FeatureCache"]

FORMAT = "gim_plugins.features/1"
_DATASETS = ("keypoints", "descriptors", "scores")


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

    Example:
        >>> cache = FeatureCache(load_matcher("aliked_lightglue"), "feats.h5")   # doctest: +SKIP
        >>> result = cache.match("images/a.jpg", "images/b.jpg")                 # doctest: +SKIP
        >>> cache.num_extracted                                                 # doctest: +SKIP
        2
    """

    def __init__(self, matcher: SparseMatcher, path: str | os.PathLike[str] | None = None, *,
                 overwrite: bool = False) -> None:
        if not getattr(matcher, "is_sparse", False):
            raise TypeError(f"matcher {getattr(matcher, 'name', matcher)!r} is dense; only sparse matchers extract "
                            "per-image features")
        self.matcher = matcher
        self.fingerprint = matcher.feature_fingerprint()
        self.path = Path(path) if path is not None else None
        self.num_extracted = 0
        self._memory: dict[str, Features] = {}
        if self.path is not None:
            self._open_file(overwrite)

    def _open_file(self, overwrite: bool) -> None:
        import h5py

        assert self.path is not None
        if self.path.exists():
            try:
                with h5py.File(self.path, "r") as handle:
                    stored = handle.attrs.get("fingerprint")
            except OSError as exc:
                raise OSError(f"feature file {self.path} is unreadable ({exc}); delete it to start over") from exc
            if stored == self.fingerprint:
                return
            if not overwrite:
                raise ValueError(
                    f"{self.path} holds features of another extractor or configuration:\n  stored:  {stored}\n"
                    f"  current: {self.fingerprint}\nuse another file or overwrite=True"
                )
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(self.path, "w") as handle:
            handle.attrs["fingerprint"] = self.fingerprint
            handle.attrs["format"] = FORMAT

    def __contains__(self, key: str) -> bool:
        if key in self._memory:
            return True
        if self.path is None:
            return False
        import h5py

        with h5py.File(self.path, "r") as handle:
            return key in handle and _complete(handle[key])

    def keys(self) -> Iterator[str]:
        """Names of the cached images."""
        if self.path is None:
            yield from self._memory
            return
        import h5py

        names: list[str] = []
        with h5py.File(self.path, "r") as handle:
            def visit(name: str, obj: Any) -> None:
                if _complete(obj):
                    names.append(name)
            handle.visititems(visit)
        yield from names

    def get(self, key: str, image: ImageInput | None = None) -> Features:
        """The features of image ``key``, extracting them from ``image`` (default: ``key`` as a path) if needed."""
        cached = self._memory.get(key)
        if cached is not None:
            return cached
        if self.path is not None and key in self:
            features = self._read(key)
        else:
            features = self.matcher.extract(key if image is None else image)
            self.num_extracted += 1
            if self.path is not None:
                self._write(key, features)
        self._memory[key] = features
        return features

    def match(self, key0: str, key1: str, image0: ImageInput | None = None,
              image1: ImageInput | None = None) -> MatchResult:
        """Match two cached images (extracting whichever is not cached yet)."""
        return self.matcher.match_features(self.get(key0, image0), self.get(key1, image1))

    def put(self, key: str, features: Features) -> None:
        """Store features extracted elsewhere with the same matcher (e.g. another process's cache of one run)."""
        if self.path is not None:
            self._write(key, features)
        self._memory[key] = features

    def _write(self, key: str, features: Features) -> None:
        import h5py

        assert self.path is not None
        with h5py.File(self.path, "a") as handle:
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
        import h5py
        import torch

        from gim_plugins.types import Features

        assert self.path is not None
        with h5py.File(self.path, "r") as handle:
            group = handle[key]
            return Features(
                torch.from_numpy(group["keypoints"][()]),
                torch.from_numpy(group["descriptors"][()]),
                torch.from_numpy(group["scores"][()]),
                tuple(int(v) for v in group.attrs["image_size"]),
                self.matcher.name,
            )
