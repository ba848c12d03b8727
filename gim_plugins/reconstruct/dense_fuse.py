"""Fusion of the per-image dense points: multi-view consistency, voxel merge, normals.

Consistency: every image's own points make a coarse depth map (the median depth of the points falling in each
``cell × cell`` pixel block). A point triangulated from the pair (i, j) is projected into the other views k of i's
consistency list (k ≠ i, j: the two images that produced it cannot confirm it); it *agrees* with view k when one of
the 3 × 3 blocks around its projection holds a depth within ``depth_tolerance`` (relative) of its own depth in k.
A point needs ``min_consistent_views`` agreeing views. This is the check COLMAP's fusion makes with PatchMatch depth
maps, applied to triangulated points: a wrong match lands at a depth no other view confirms.

Merge: the surviving points are averaged per voxel (position, colour, and the viewing direction used to orient the
normal). Normals come from the principal axes of each fused point's ``normal_neighbours`` nearest neighbours
(SciPy's k-d tree), turned to face the cameras that saw the point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gim_plugins.reconstruct.dense_triangulate import ImagePoints
from gim_plugins.reconstruct.dense_views import View

__all__ = ["consistent_views", "depth_map", "estimate_normals", "voxel_merge"]


def depth_map(pixels: np.ndarray, depth: np.ndarray, size: tuple[int, int], cell: int) -> np.ndarray:
    """Median depth per ``cell × cell`` block of an image ``size = (H, W)`` (NaN where no point falls).

    Args:
        pixels: ``(N, 2)`` package-convention pixels of the points.
        depth: ``(N,)`` their depths in the camera.
    """
    height, width = (-(-size[0] // cell), -(-size[1] // cell))
    out = np.full(height * width, np.nan, dtype=np.float32)
    col = np.floor((pixels[:, 0] + 0.5) / cell).astype(np.int64)
    row = np.floor((pixels[:, 1] + 0.5) / cell).astype(np.int64)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height) & np.isfinite(depth) & (depth > 0)
    flat, z = row[inside] * width + col[inside], depth[inside]
    if len(flat):
        order = np.lexsort((z, flat))
        flat, z = flat[order], z[order]
        cells, start, count = np.unique(flat, return_index=True, return_counts=True)
        out[cells] = z[start + count // 2]
    return out.reshape(height, width)


def consistent_views(points: ImagePoints, view: View, others: Sequence[View], maps: dict[int, np.ndarray], *,
                     cell: int, depth_tolerance: float) -> np.ndarray:
    """How many of ``others`` (each with its depth map in ``maps`` by view index) agree with each point of ``view``.

    Returns:
        ``(N,)`` int32 counts.
    """
    xyz = points.xyz.astype(np.float64)
    counts = np.zeros(len(xyz), dtype=np.int32)
    offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    for other in others:
        if other.index == view.index or other.index not in maps:
            continue
        padded = np.pad(maps[other.index], 1, constant_values=np.nan)  # the 3×3 window never leaves the map
        height, width = padded.shape
        uv, z = other.project(xyz)
        with np.errstate(invalid="ignore"):
            col = np.floor((uv[:, 0] + 0.5) / cell) + 1
            row = np.floor((uv[:, 1] + 0.5) / cell) + 1
            usable = ((col >= 1) & (col <= width - 2) & (row >= 1) & (row <= height - 2) & (z > 0)
                      & (points.partner != other.index))
        index = np.flatnonzero(usable)
        flat = row[index].astype(np.int64) * width + col[index].astype(np.int64)
        stored = padded.ravel()[flat[None, :] + np.array([dr * width + dc for dr, dc in offsets])[:, None]]
        depth = z[index]
        with np.errstate(invalid="ignore"):
            agree = np.any(np.abs(stored - depth) <= depth_tolerance * depth, axis=0)
        counts[index[agree]] += 1
    return counts


def voxel_merge(xyz: np.ndarray, rgb: np.ndarray, towards: np.ndarray, voxel: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Average points per cubic voxel of side ``voxel``.

    Args:
        xyz: ``(N, 3)`` points.
        rgb: ``(N, 3)`` uint8 colours.
        towards: ``(N, 3)`` unit vectors from each point to the camera that saw it.
        voxel: voxel side (model units), > 0.

    Returns:
        ``(xyz (M, 3) float64, rgb (M, 3) uint8, towards (M, 3) unit, count (M,))``.
    """
    if voxel <= 0:
        raise ValueError(f"voxel size must be > 0, got {voxel}")
    if not len(xyz):
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros((0, 3)), np.zeros(0, np.int64)
    keys = np.floor(xyz / voxel).astype(np.int64)
    keys -= keys.min(axis=0)
    span = keys.max(axis=0) + 1
    if float(span[0]) * float(span[1]) * float(span[2]) < 2.0**62:  # one int64 per voxel: a 1-D unique is fast
        packed = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]
        _, inverse, count = np.unique(packed, return_inverse=True, return_counts=True)
    else:
        _, inverse, count = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()

    def mean(values: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(inverse, values[:, d], len(count)) for d in range(3)], axis=1) / count[:, None]

    direction = mean(towards)
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    colour = np.clip(np.rint(mean(rgb.astype(np.float64))), 0, 255).astype(np.uint8)
    return mean(xyz.astype(np.float64)), colour, direction, count


def estimate_normals(xyz: np.ndarray, towards: np.ndarray, neighbours: int = 12) -> np.ndarray:
    """Unit normals ``(M, 3)`` by local PCA (the axis of least spread of each point's nearest neighbours), each
    turned to the side of ``towards`` (the cameras). Fewer than 3 points: normals point along ``towards``."""
    if len(xyz) < 3:
        return towards.astype(np.float32)
    from scipy.spatial import cKDTree

    k = min(neighbours, len(xyz))
    _, index = cKDTree(xyz).query(xyz, k=k)
    normals = np.empty_like(xyz)
    for start in range(0, len(xyz), 65536):
        local = xyz[index[start : start + 65536]]  # (B, k, 3)
        local = local - local.mean(axis=1, keepdims=True)
        _, vectors = np.linalg.eigh(np.einsum("bki,bkj->bij", local, local))
        normals[start : start + 65536] = vectors[:, :, 0]
    flip = np.sum(normals * towards, axis=1) < 0
    normals[flip] *= -1
    return normals.astype(np.float32)
