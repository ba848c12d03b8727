"""Keypoints per image and index matches per pair: what every exporter writes, whatever the matcher.

Sparse matchers give it directly (features extracted once per image, matches as keypoint indices); dense matchers
give per-pair point pairs that :mod:`gim_plugins.colmap_ext.tracks` turns into it. Keypoints are in the package's
pixel convention; exporters convert (+0.5) at the COLMAP boundary only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Correspondences", "from_hloc_h5", "indices_of", "track_statistics"]


@dataclass
class Correspondences:
    """Keypoints of each image and keypoint-index matches of each pair.

    Attributes:
        keypoints: ``{image name: (N, 2) float32}``, centre of the top-left pixel at (0, 0).
        image_sizes: ``{image name: (H, W)}``.
        matches: ``{(name0, name1): (K, 2) int64 [i0, i1]}``; each pair once, in one order.
        keypoint_scores: ``{image name: (N,) float32}`` (detection score or accumulated match score).
        match_scores: ``{(name0, name1): (K,) float32}``.
        dense: the keypoints come from merged dense matches (hloc's ``match_dense`` layout on export).
    """

    keypoints: dict[str, np.ndarray]
    image_sizes: dict[str, tuple[int, int]]
    matches: dict[tuple[str, str], np.ndarray]
    keypoint_scores: dict[str, np.ndarray] = field(default_factory=dict)
    match_scores: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    dense: bool = False

    def validate(self) -> None:
        """Check names, shapes, bounds and indices; raises ValueError / KeyError naming the offending entry."""
        missing = set(self.keypoints) ^ set(self.image_sizes)
        if missing:
            raise KeyError(f"keypoints and image sizes name different images: {sorted(missing)}")
        for name, kp in self.keypoints.items():
            if kp.ndim != 2 or kp.shape[1] != 2:
                raise ValueError(f"{name}: keypoints must be (N, 2), got {kp.shape}")
            height, width = self.image_sizes[name]
            if len(kp) and (kp.min(0) < -0.5).any() | (kp[:, 0].max() > width - 0.5) | (kp[:, 1].max() > height - 0.5):
                raise ValueError(f"{name}: keypoints outside the {width}×{height} image (inconsistent image size?)")
        seen: set[frozenset[str]] = set()
        for (name0, name1), pairs in self.matches.items():
            for name in (name0, name1):
                if name not in self.keypoints:
                    raise KeyError(f"pair ({name0}, {name1}): image {name!r} has no keypoints")
            if name0 == name1:
                raise ValueError(f"pair ({name0}, {name1}) matches an image with itself")
            key = frozenset((name0, name1))
            if key in seen:
                raise ValueError(f"pair ({name0}, {name1}) appears twice (in both orders?)")
            seen.add(key)
            if pairs.ndim != 2 or pairs.shape[1] != 2:
                raise ValueError(f"pair ({name0}, {name1}): matches must be (K, 2), got {pairs.shape}")
            if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= len(self.keypoints[name0])
                               or pairs[:, 1].max() >= len(self.keypoints[name1])):
                raise ValueError(f"pair ({name0}, {name1}): match indices out of range")

    @property
    def names(self) -> list[str]:
        return sorted(self.keypoints)

    def summary(self) -> dict[str, float]:
        """Keypoints per image, matches per pair and the potential track lengths (before verification)."""
        stats = track_statistics(self.keypoints, self.matches)
        return {
            "images": len(self.keypoints),
            "pairs": len(self.matches),
            "pairs_with_matches": sum(1 for m in self.matches.values() if len(m)),
            "mean_keypoints": float(np.mean([len(k) for k in self.keypoints.values()])) if self.keypoints else 0.0,
            "mean_matches": float(np.mean([len(m) for m in self.matches.values()])) if self.matches else 0.0,
            **stats,
        }


def indices_of(keypoints: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Row index in ``keypoints`` of each row of ``points`` (exact coordinate equality; -1 where absent).

    Why: a sparse matcher's public result carries matched coordinates copied from its features; this recovers the
    keypoint indices COLMAP needs without a private API. Duplicate keypoints map to their first occurrence.
    """
    kp = np.ascontiguousarray(keypoints, dtype=np.float32).reshape(-1, 2)
    pts = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 2)
    if not len(kp) or not len(pts):
        return np.full(len(pts), -1, dtype=np.int64)
    key_kp = kp.view(np.uint64).ravel()  # the 8 bytes of (x, y) as one sortable key
    key_pts = pts.view(np.uint64).ravel()
    order = np.argsort(key_kp, kind="stable")
    sorted_keys = key_kp[order]
    position = np.searchsorted(sorted_keys, key_pts)
    position = np.clip(position, 0, len(sorted_keys) - 1)
    found = sorted_keys[position] == key_pts
    return np.where(found, order[position], -1).astype(np.int64)


def track_statistics(keypoints: Mapping[str, np.ndarray], matches: Mapping[tuple[str, str], np.ndarray]
                     ) -> dict[str, float]:
    """Connected components of the match graph over (image, keypoint) nodes: the tracks SfM can build at most.

    Returns ``mean_track_length`` (observations per component, components of ≥ 2 observations),
    ``tracks`` (their number), ``share_long_tracks`` (share of components observed in ≥ 3 images) and
    ``inconsistent_tracks`` (components that hold two keypoints of one image).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    names = sorted(keypoints)
    counts = [len(keypoints[n]) for n in names]
    offsets = dict(zip(names, np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)))
    total = int(sum(counts))
    rows, cols = [], []
    for (name0, name1), pairs in matches.items():
        if len(pairs):
            rows.append(pairs[:, 0].astype(np.int64) + offsets[name0])
            cols.append(pairs[:, 1].astype(np.int64) + offsets[name1])
    empty = {"tracks": 0, "mean_track_length": 0.0, "share_long_tracks": 0.0, "inconsistent_tracks": 0}
    if not rows or total == 0:
        return empty
    row, col = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(row), dtype=np.int8), (row, col)), shape=(total, total))
    _, labels = connected_components(graph, directed=False)
    image_of = np.repeat(np.arange(len(names)), counts)
    size = np.bincount(labels)
    distinct_images = np.bincount(np.unique(labels * len(names) + image_of) // len(names), minlength=len(size))
    tracks = size >= 2
    if not tracks.any():
        return empty
    return {"tracks": int(tracks.sum()), "mean_track_length": float(size[tracks].mean()),
            "share_long_tracks": float((distinct_images[tracks] >= 3).mean()),
            "inconsistent_tracks": int((distinct_images[tracks] < size[tracks]).sum())}


def from_hloc_h5(features: str | os.PathLike[str], matches: str | os.PathLike[str],
                 pairs: Sequence[tuple[str, str]], image_sizes: Mapping[str, tuple[int, int]] | None = None
                 ) -> Correspondences:
    """Read hloc's ``features.h5`` / ``matches.h5`` (any of its layouts) for ``pairs``, without hloc.

    Args:
        image_sizes: ``{name: (H, W)}``; needed for images whose features carry no ``image_size`` (dense layout).
    """
    import h5py

    from gim_plugins import h5io

    names = sorted({n for pair in pairs for n in pair})
    keypoints, sizes, scores = {}, {}, {}
    with h5py.File(features, "r") as handle:
        for name in names:
            if name not in handle or "keypoints" not in handle[name]:
                raise KeyError(f"no keypoints for image {name!r} in {features}")
            group = handle[name]
            keypoints[name] = np.asarray(group["keypoints"][()], dtype=np.float32)
            for key in ("scores", "score"):
                if key in group:
                    scores[name] = np.asarray(group[key][()], dtype=np.float32)
            if "image_size" in group:
                width, height = (int(v) for v in group["image_size"][()])
                sizes[name] = (height, width)
            elif image_sizes is not None and name in image_sizes:
                sizes[name] = tuple(image_sizes[name])  # type: ignore[assignment]
            else:
                raise KeyError(f"{name}: {features} stores no image_size; pass image_sizes")
    pair_matches, pair_scores = {}, {}
    for name0, name1 in pairs:
        indices, values = h5io.read_matches(matches, name0, name1)
        pair_matches[(name0, name1)], pair_scores[(name0, name1)] = indices, values
    return Correspondences(keypoints, sizes, pair_matches, scores, pair_scores)
