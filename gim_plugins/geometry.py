"""Robust two-view geometry with OpenCV's USAC_MAGSAC, as GIM's demo uses it.

GIM's demo fits the fundamental matrix with ``cv2.findFundamentalMat(k0, k1, cv2.USAC_MAGSAC, 1.0, 0.999999,
10000)`` (its inliers are the green matches of the picture) and the homography image 1 → image 0 with
USAC_MAGSAC, an 8-px threshold, confidence 0.999 and 10000 iterations on all matches; these are the defaults of
:func:`estimate_fundamental` and :func:`estimate_homography` (and of ``MatchResult.fundamental``/``homography``).

Both functions take keypoints in the package's pixel convention and return a :class:`GeometryFit` whose ``inliers``
is a boolean numpy mask over the input matches. Fewer than the minimal number of matches, or a degenerate sample,
give ``model=None`` and an all-false mask instead of an exception: "no geometry" is a normal outcome for an
unrelated pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GeometryFit", "estimate_fundamental", "estimate_homography"]


@dataclass(frozen=True)
class GeometryFit:
    """A robustly fitted 3×3 model and its inlier mask.

    Attributes:
        model: the 3×3 matrix (float64), or ``None`` when no model could be fitted.
        inliers: ``(N,)`` bool mask over the input matches.
    """

    model: np.ndarray | None
    inliers: np.ndarray

    @property
    def num_inliers(self) -> int:
        """Number of inlier matches."""
        return int(self.inliers.sum())


def _points(points: Any, name: str) -> np.ndarray:
    array = points.detach().cpu().numpy() if hasattr(points, "detach") else np.asarray(points)
    array = np.ascontiguousarray(array, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (N, 2), got {array.shape}")
    return array


def _fit(kind: str, pts0: Any, pts1: Any, threshold: float, confidence: float, max_iters: int) -> GeometryFit:
    import cv2

    p0, p1 = _points(pts0, "points0"), _points(pts1, "points1")
    if len(p0) != len(p1):
        raise ValueError(f"points0 and points1 must have the same length, got {len(p0)} and {len(p1)}")
    minimal = 8 if kind == "F" else 4
    empty = GeometryFit(None, np.zeros(len(p0), dtype=bool))
    if len(p0) < minimal:
        return empty
    try:
        if kind == "F":
            model, mask = cv2.findFundamentalMat(p0, p1, cv2.USAC_MAGSAC, threshold, confidence, max_iters)
        else:
            model, mask = cv2.findHomography(p0, p1, cv2.USAC_MAGSAC, threshold, maxIters=max_iters,
                                             confidence=confidence)
    except cv2.error:
        return empty
    if model is None or mask is None or model.shape != (3, 3):
        return empty
    return GeometryFit(model.astype(np.float64), mask.ravel().astype(bool))


def estimate_fundamental(
    points0: Any, points1: Any, threshold: float = 1.0, confidence: float = 0.999999, max_iters: int = 10000
) -> GeometryFit:
    """Fundamental matrix ``F`` with ``x1ᵀ F x0 = 0`` by USAC_MAGSAC.

    Args:
        points0: ``(N, 2)`` pixels in image 0 (numpy or torch).
        points1: ``(N, 2)`` matching pixels in image 1.
        threshold: inlier threshold in pixels (GIM's demo: 1.0).
        confidence: RANSAC confidence (GIM's demo: 0.999999).
        max_iters: iteration cap (GIM's demo: 10000).
    """
    return _fit("F", points0, points1, threshold, confidence, max_iters)


def estimate_homography(
    points_src: Any, points_dst: Any, threshold: float = 8.0, confidence: float = 0.999, max_iters: int = 10000
) -> GeometryFit:
    """Homography ``H`` with ``dst ~ H src`` by USAC_MAGSAC (GIM's demo warp: threshold 8 px, confidence 0.999)."""
    return _fit("H", points_src, points_dst, threshold, confidence, max_iters)
