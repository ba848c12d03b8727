"""Dense matches → long tracks: merge each image's per-pair keypoints so one 3D point is seen in many images.

The problem (RoMa #38, colmap #2545, deep-image-matching #93, hloc #428): a dense matcher samples different
points in every pair, so image A's keypoints from pair (A, B) and from pair (A, C) never coincide. Written to COLMAP
as they are, every track has length 2: the mapper triangulates the initial pair and then finds no 2D–3D
correspondences to register a third image.

The fix, per image (:func:`merge_keypoints`):

1. **Quantise**: every observation of the image (from all its pairs, either side) is snapped to a grid of
   ``grid`` px; observations in one grid cell become one candidate with the score-weighted mean position and the
   summed match score as weight.
2. **Merge nearby candidates**: strongest first, a candidate absorbs all unassigned candidates within ``radius``
   px (a greedy non-maximum suppression with a k-d tree). The merged keypoint sits at the weighted mean of what it
   absorbed; its score is the summed weight. ``max_keypoints`` keeps the strongest keypoints per image.
3. **Re-index the matches**: each raw match becomes a pair of merged keypoint indices; duplicates and many-to-one
   matches are resolved one-to-one, keeping the highest match score.

``radius`` bounds the geometric error the merge can add (≈ radius / 2 on average); it should be at least the
matcher's localisation noise so that observations of one scene point from different pairs meet. ``mode="none"``
only merges identical coordinates (what a naive export does) and is the baseline the tests compare against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gim_plugins.colmap_ext.correspondences import Correspondences
from gim_plugins.conf import merge_conf
from gim_plugins.errors import InputError

__all__ = ["DEFAULT_CONF", "build_correspondences", "merge_keypoints", "unique_matches"]

DEFAULT_CONF: dict[str, Any] = {
    "mode": "merge",  # "merge" (quantise + merge across pairs) or "none" (only identical coordinates merge)
    "grid": 0.5,  # px, quantisation cell
    "radius": 1.5,  # px, keypoints of one image closer than this become one keypoint
    "max_keypoints": None,  # per image, strongest first (None: all)
    "min_score": 0.0,  # raw matches below this score are dropped first
}

RawMatches = Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]]


def merge_keypoints(points: np.ndarray, weights: np.ndarray, *, grid: float, radius: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge one image's observations into keypoints.

    Args:
        points: ``(M, 2)`` observations (all pairs, both sides).
        weights: ``(M,)`` non-negative match scores.
        grid: quantisation cell in px (0: exact coordinates only).
        radius: merge radius in px (0: no merging beyond the grid).

    Returns:
        ``(keypoints (N, 2) float32, keypoint weights (N,), index (M,))`` with ``keypoints[index[i]]`` the keypoint
        that observation ``i`` became.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    w = np.maximum(np.asarray(weights, dtype=np.float64).reshape(-1), 1e-6)
    if not len(pts):
        return np.zeros((0, 2), np.float32), np.zeros(0), np.zeros(0, np.int64)
    if grid > 0:
        cells = np.floor(pts / grid + 0.5).astype(np.int64)
        _, bin_of, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    else:
        _, bin_of, inverse = np.unique(pts, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    nbins = len(bin_of)
    bin_weight = np.bincount(inverse, weights=w, minlength=nbins)
    bin_pos = np.stack([np.bincount(inverse, weights=w * pts[:, k], minlength=nbins) for k in (0, 1)], 1)
    bin_pos /= bin_weight[:, None]
    if radius <= 0:
        cluster_of_bin = np.arange(nbins)
    else:
        from scipy.spatial import cKDTree

        order = np.lexsort((bin_pos[:, 1], bin_pos[:, 0], -bin_weight))  # strongest first, ties by position
        neighbours = cKDTree(bin_pos).query_ball_point(bin_pos[order], r=radius)
        cluster_of_bin = np.full(nbins, -1, dtype=np.int64)
        count = 0
        for seed, members in zip(order.tolist(), neighbours):
            if cluster_of_bin[seed] >= 0:
                continue
            members = np.asarray(members, dtype=np.int64)
            members = members[cluster_of_bin[members] < 0]
            cluster_of_bin[members] = count
            count += 1
    nclusters = int(cluster_of_bin.max()) + 1
    cluster_weight = np.bincount(cluster_of_bin, weights=bin_weight, minlength=nclusters)
    keypoints = np.stack([np.bincount(cluster_of_bin, weights=bin_weight * bin_pos[:, k], minlength=nclusters)
                          for k in (0, 1)], 1) / cluster_weight[:, None]
    return keypoints.astype(np.float32), cluster_weight, cluster_of_bin[inverse]


def unique_matches(idx0: np.ndarray, idx1: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row selection making ``(idx0, idx1)`` one-to-one, keeping the highest score (ties: first row)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    _, first0 = np.unique(idx0[order], return_index=True)
    kept = order[np.sort(first0)]
    _, first1 = np.unique(idx1[kept], return_index=True)
    return np.sort(kept[first1])


def build_correspondences(raw: RawMatches, image_sizes: Mapping[str, tuple[int, int]],
                          conf: Mapping[str, Any] | None = None) -> Correspondences:
    """Turn per-pair dense matches ``{(name0, name1): (k0, k1, scores)}`` into shared keypoints and index matches.

    Args:
        raw: per-pair ``(M, 2)`` points in both images and ``(M,)`` scores (package pixel convention).
        image_sizes: ``{name: (H, W)}`` of every image in ``raw``.
        conf: options of :data:`DEFAULT_CONF`.
    """
    conf = merge_conf(DEFAULT_CONF, conf, owner="colmap_ext.tracks")
    if conf.mode not in ("merge", "none"):
        raise InputError(f"tracks mode must be 'merge' or 'none', got {conf.mode!r}")
    grid, radius = (conf.grid, conf.radius) if conf.mode == "merge" else (0.0, 0.0)
    pairs = list(raw)
    observations: dict[str, list[tuple[int, int, np.ndarray, np.ndarray]]] = {name: [] for name in image_sizes}
    kept_rows = []
    for p, (name0, name1) in enumerate(pairs):
        k0, k1, scores = (np.asarray(a) for a in raw[(name0, name1)])
        for name in (name0, name1):
            if name not in observations:
                raise KeyError(f"pair ({name0}, {name1}): no image size for {name!r}")
        keep = np.flatnonzero(scores >= conf.min_score)
        kept_rows.append(keep)
        observations[name0].append((p, 0, k0[keep].reshape(-1, 2), scores[keep]))
        observations[name1].append((p, 1, k1[keep].reshape(-1, 2), scores[keep]))
    keypoints, keypoint_scores = {}, {}
    assignment: dict[tuple[int, int], np.ndarray] = {}
    for name, items in observations.items():
        if not items:
            keypoints[name], keypoint_scores[name] = np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
            continue
        points = np.concatenate([item[2] for item in items])
        weights = np.concatenate([item[3] for item in items])
        kp, weight, index = merge_keypoints(points, weights, grid=grid, radius=radius)
        height, width = image_sizes[name]
        kp[:, 0] = np.clip(kp[:, 0], -0.5, width - 0.5)
        kp[:, 1] = np.clip(kp[:, 1], -0.5, height - 0.5)
        if conf.max_keypoints is not None and len(kp) > conf.max_keypoints:
            strongest = np.argsort(-weight, kind="stable")[: conf.max_keypoints]
            remap = np.full(len(kp), -1, dtype=np.int64)
            remap[strongest] = np.arange(len(strongest))
            kp, weight, index = kp[strongest], weight[strongest], remap[index]
        keypoints[name], keypoint_scores[name] = kp, weight.astype(np.float32)
        start = 0
        for p, side, pts, _ in items:
            assignment[(p, side)] = index[start:start + len(pts)]
            start += len(pts)
    matches, match_scores = {}, {}
    for p, (name0, name1) in enumerate(pairs):
        idx0, idx1 = assignment[(p, 0)], assignment[(p, 1)]
        scores = np.asarray(raw[(name0, name1)][2])[kept_rows[p]]
        valid = np.flatnonzero((idx0 >= 0) & (idx1 >= 0))
        rows = valid[unique_matches(idx0[valid], idx1[valid], scores[valid])]
        matches[(name0, name1)] = np.stack([idx0[rows], idx1[rows]], 1).astype(np.int64)
        match_scores[(name0, name1)] = scores[rows].astype(np.float32)
    return Correspondences(keypoints, dict(image_sizes), matches, keypoint_scores, match_scores, dense=True)
