"""hloc's file formats without hloc: features / matches HDF5 files and pair lists (layouts as hloc 1.5 writes them).

Why in the core: ``colmap_ext`` must read and write hloc-format files without importing hloc (not on PyPI), and
``hloc_ext`` must write exactly what hloc's own readers (``get_keypoints``, ``get_matches``, ``find_pair``,
``list_h5_names``) expect. One implementation serves both.

Layouts (all keypoints in the package's pixel convention, centre of the top-left pixel at (0, 0), as hloc's):

* sparse features: group ``<image name>`` (``/`` in names nests groups) with ``keypoints`` (N, 2), ``descriptors``
  (D, N) and ``scores`` (N,) — float16 with ``as_half`` like hloc's ``extract_features`` — and ``image_size``
  (2,) int64 = **(W, H)**; optional attribute ``uncertainty`` on the ``keypoints`` dataset.
* dense features (hloc ``match_dense``): ``keypoints`` (N, 2) float32 and ``score`` (N,) float32 (singular name).
* sparse matches: group ``names_to_pair(n0, n1)`` = ``"n0/n1"`` (``/`` inside names replaced by ``-``) with
  ``matches0`` (N0,) int16 (−1 = unmatched) and ``matching_scores0`` (N0,) float16.
* dense matches: the same plus the raw ``keypoints0``, ``keypoints1`` (M, 2) float32 and ``scores`` (M,) float32;
  ``matches0`` is int32.

Readers find a pair under ``n0/n1``, ``n1/n0`` and the old ``n0_n1`` / ``n1_n0`` keys and flip reversed pairs, as
hloc does. Writers work on an open ``h5py.File``; :func:`atomic_h5` gives one that replaces the target only when the
whole batch was written (a killed run leaves the previous file intact).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gim_plugins.atomic import atomic_path, atomic_write_text

if TYPE_CHECKING:
    import h5py

from gim_plugins.errors import InputError

__all__ = [
    "atomic_h5",
    "find_pair",
    "list_h5_names",
    "matches0_from_pairs",
    "names_to_pair",
    "names_to_pair_old",
    "read_dense_matches",
    "read_keypoints",
    "read_matches",
    "read_pairs",
    "write_features",
    "write_matches",
    "write_pairs",
]

PathLike = str | os.PathLike[str]


def names_to_pair(name0: str, name1: str, separator: str = "/") -> str:
    """hloc's pair key: ``name0`` and ``name1`` with ``/`` replaced by ``-``, joined by ``separator``."""
    return separator.join((name0.replace("/", "-"), name1.replace("/", "-")))


def names_to_pair_old(name0: str, name1: str) -> str:
    """hloc's older pair key (``_`` separator), still accepted by its readers."""
    return names_to_pair(name0, name1, separator="_")


def find_pair(handle: h5py.File, name0: str, name1: str) -> tuple[str, bool]:
    """The key of pair ``(name0, name1)`` in an open matches file and whether it is stored reversed.

    Raises:
        KeyError: the pair is in none of the four forms.
    """
    for key, reverse in ((names_to_pair(name0, name1), False), (names_to_pair(name1, name0), True),
                         (names_to_pair_old(name0, name1), False), (names_to_pair_old(name1, name0), True)):
        if key in handle:
            return key, reverse
    raise KeyError(f"pair ({name0!r}, {name1!r}) not found in {handle.filename} (matched with another pair list?)")


def list_h5_names(path: PathLike) -> list[str]:
    """Names of the groups holding datasets (image names of a features file), sorted."""
    import h5py

    names: set[str] = set()
    with h5py.File(path, "r") as handle:
        def visit(_: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                names.add(obj.parent.name.strip("/"))
        handle.visititems(visit)
    return sorted(names)


def read_keypoints(path: PathLike, name: str, *, with_uncertainty: bool = False
                   ) -> np.ndarray | tuple[np.ndarray, float | None]:
    """``(N, 2)`` float32 keypoints of image ``name`` (and the ``uncertainty`` attribute when asked)."""
    import h5py

    with h5py.File(path, "r") as handle:
        if name not in handle or "keypoints" not in handle[name]:
            raise KeyError(f"no keypoints for image {name!r} in {path}")
        dataset = handle[name]["keypoints"]
        keypoints = np.asarray(dataset[()], dtype=np.float32)
        uncertainty = dataset.attrs.get("uncertainty")
    if with_uncertainty:
        return keypoints, None if uncertainty is None else float(uncertainty)
    return keypoints


def read_matches(path: PathLike, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray]:
    """``(K, 2)`` int64 keypoint indices ``[i0, i1]`` and ``(K,)`` float32 scores of a pair (flipped if stored
    reversed)."""
    import h5py

    with h5py.File(path, "r") as handle:
        key, reverse = find_pair(handle, name0, name1)
        matches0 = np.asarray(handle[key]["matches0"][()]).astype(np.int64)
        scores0 = np.asarray(handle[key]["matching_scores0"][()], dtype=np.float32)
    index = np.flatnonzero(matches0 != -1)
    matches = np.stack([index, matches0[index]], axis=-1)
    if reverse:
        matches = matches[:, ::-1]
    return np.ascontiguousarray(matches), scores0[index]


def read_dense_matches(path: PathLike, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw dense correspondences of a pair: ``keypoints0``, ``keypoints1`` (M, 2) and ``scores`` (M,)."""
    import h5py

    with h5py.File(path, "r") as handle:
        key, reverse = find_pair(handle, name0, name1)
        group = handle[key]
        if "keypoints0" not in group:
            raise KeyError(f"pair {key!r} in {path} holds no raw dense matches (keypoints0/keypoints1)")
        k0 = np.asarray(group["keypoints0"][()], dtype=np.float32)
        k1 = np.asarray(group["keypoints1"][()], dtype=np.float32)
        scores = np.asarray(group["scores"][()], dtype=np.float32)
    return (k1, k0, scores) if reverse else (k0, k1, scores)


def _replace_group(handle: h5py.File, key: str) -> h5py.Group:
    if key in handle:
        del handle[key]
    return handle.create_group(key)


def write_features(handle: h5py.File, name: str, keypoints: Any, *, descriptors: Any = None, scores: Any = None,
                   image_size: tuple[int, int] | None = None, uncertainty: float | None = None,
                   as_half: bool = True, dense: bool = False) -> None:
    """Write one image's features in hloc's layout (replacing an existing entry).

    Args:
        handle: an open, writable features file.
        name: the image name (relative path).
        keypoints: ``(N, 2)`` pixels (package convention = hloc's).
        descriptors: ``(N, D)`` — stored transposed as hloc's ``(D, N)``; sparse only.
        scores: ``(N,)`` detection scores (sparse: ``scores``; dense: ``score``).
        image_size: ``(H, W)`` of the image, stored as hloc's ``(W, H)``; sparse only.
        uncertainty: the ``uncertainty`` attribute of ``keypoints`` (hloc: detection noise × mean scale).
        as_half: store sparse arrays as float16 like hloc's default ``extract_features``.
        dense: write the ``match_dense`` layout (float32 ``keypoints`` and ``score`` only).
    """
    kp = np.asarray(keypoints, dtype=np.float32).reshape(-1, 2)
    group = _replace_group(handle, name)
    if dense:
        group.create_dataset("keypoints", data=kp)
        if scores is not None:
            group.create_dataset("score", data=np.asarray(scores, dtype=np.float32).reshape(-1))
        return
    dtype = np.float16 if as_half else np.float32
    dataset = group.create_dataset("keypoints", data=kp.astype(dtype))
    if uncertainty is not None:
        dataset.attrs["uncertainty"] = float(uncertainty)
    if descriptors is not None:
        desc = np.asarray(descriptors, dtype=np.float32)
        if desc.ndim != 2 or desc.shape[0] != len(kp):
            raise ValueError(f"descriptors: expected shape ({len(kp)}, D), got {desc.shape}")
        group.create_dataset("descriptors", data=np.ascontiguousarray(desc.T).astype(dtype))
    if scores is not None:
        group.create_dataset("scores", data=np.asarray(scores, dtype=np.float32).reshape(-1).astype(dtype))
    if image_size is not None:
        height, width = (int(v) for v in image_size)
        group.create_dataset("image_size", data=np.array([width, height], dtype=np.int64))


def matches0_from_pairs(matches: Any, num_keypoints0: int, scores: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(K, 2)`` → hloc's ``matches0`` (N0,) with −1 for unmatched, and ``matching_scores0`` (N0,).

    Raises:
        ValueError: an index out of range, or a keypoint of image 0 matched twice (``matches0`` holds one match per
            keypoint).
    """
    pairs = np.asarray(matches, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= num_keypoints0):
        raise ValueError(f"match indices out of range for {num_keypoints0} keypoints in image 0")
    if len(np.unique(pairs[:, 0])) != len(pairs):
        raise ValueError("a keypoint of image 0 is matched more than once; hloc's matches0 stores one match each")
    matches0 = np.full(num_keypoints0, -1, dtype=np.int64)
    matches0[pairs[:, 0]] = pairs[:, 1]
    scores0 = np.zeros(num_keypoints0, dtype=np.float32)
    scores0[pairs[:, 0]] = 1.0 if scores is None else np.asarray(scores, dtype=np.float32).reshape(-1)
    return matches0, scores0


def write_matches(handle: h5py.File, name0: str, name1: str, matches: Any, num_keypoints0: int, *,
                  scores: Any = None, dense: tuple[Any, Any, Any] | None = None, wide: bool = False) -> None:
    """Write one pair's matches in hloc's layout under ``names_to_pair(name0, name1)`` (replacing an entry).

    Args:
        matches: ``(K, 2)`` keypoint indices ``[i0, i1]``.
        num_keypoints0: keypoints of ``name0`` (the length of ``matches0``).
        scores: ``(K,)`` match scores (default 1).
        dense: ``(keypoints0, keypoints1, scores)`` raw dense correspondences to keep beside the assignment
            (``match_dense`` layout: ``matches0`` int32 instead of int16).
        wide: store ``matches0`` as int32 without raw points (merged dense keypoints; hloc's readers accept it).
    """
    matches0, scores0 = matches0_from_pairs(matches, num_keypoints0, scores)
    group = _replace_group(handle, names_to_pair(name0, name1))
    if dense is None:
        if not wide and matches0.max(initial=-1) > np.iinfo(np.int16).max:
            raise ValueError("hloc stores sparse matches0 as int16: image 1 has more than 32767 keypoints "
                             "(use wide=True)")
        group.create_dataset("matches0", data=matches0.astype(np.int32 if wide else np.int16))
    else:
        k0, k1, raw_scores = dense
        group.create_dataset("keypoints0", data=np.asarray(k0, dtype=np.float32).reshape(-1, 2))
        group.create_dataset("keypoints1", data=np.asarray(k1, dtype=np.float32).reshape(-1, 2))
        group.create_dataset("scores", data=np.asarray(raw_scores, dtype=np.float32).reshape(-1))
        group.create_dataset("matches0", data=matches0.astype(np.int32))
    group.create_dataset("matching_scores0", data=scores0.astype(np.float16))


@contextlib.contextmanager
def atomic_h5(path: PathLike, *, append: bool = True) -> Iterator[h5py.File]:
    """A writable HDF5 file that replaces ``path`` only if the block completes.

    The existing file (when ``append``) is copied to a temporary file next to it; writes go to the copy, which is
    renamed over ``path`` on success and deleted on error or interruption.
    """
    import h5py

    target = Path(path)
    with atomic_path(target) as tmp:
        if append and target.exists():
            shutil.copyfile(target, tmp)
        with h5py.File(tmp, "a" if append and target.exists() else "w") as handle:
            yield handle


def read_pairs(path: PathLike) -> list[tuple[str, str]]:
    """hloc's pair list: ``name0 name1`` per line; blank lines and ``#`` comments skipped."""
    pairs = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"{path}:{number}: expected 'name0 name1', got {line!r}")
        pairs.append((parts[0], parts[1]))
    return pairs


def write_pairs(path: PathLike, pairs: Iterable[tuple[str, str]]) -> Path:
    """Write a pair list atomically (names must not contain whitespace, as in hloc)."""
    lines = []
    for name0, name1 in pairs:
        if any(c.isspace() for c in name0 + name1):
            raise InputError(f"image names with whitespace cannot be written to a pair list: {name0!r}, {name1!r}")
        lines.append(f"{name0} {name1}\n")
    return atomic_write_text(path, "".join(lines))
