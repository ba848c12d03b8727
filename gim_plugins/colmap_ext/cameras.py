"""COLMAP's camera models in numpy: pixels ↔ normalised image coordinates, with lens distortion.

Why: the dense step triangulates correspondences with the poses *and* intrinsics of a COLMAP model, which the mapper
usually estimates with radial distortion (``SIMPLE_RADIAL`` by default). Pixels here are in COLMAP's convention
(the top-left pixel's corner at (0, 0), so its centre is at (0.5, 0.5)); callers add 0.5 to the package's keypoints
(centre at (0, 0)) at this boundary, as everywhere else in :mod:`gim_plugins.colmap_ext`.

Supported models (parameter order as COLMAP's ``cameras.txt``): ``SIMPLE_PINHOLE`` (f, cx, cy), ``PINHOLE``
(fx, fy, cx, cy), ``SIMPLE_RADIAL`` (f, cx, cy, k), ``RADIAL`` (f, cx, cy, k1, k2) and ``OPENCV``
(fx, fy, cx, cy, k1, k2, p1, p2) — the ones ``gim reconstruct`` offers and COLMAP's undistorter maps to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SUPPORTED_MODELS", "CameraModel"]

SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
_NUM_PARAMS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8}


@dataclass(frozen=True, eq=False)
class CameraModel:
    """One COLMAP camera: model name, image size and parameters.

    Attributes:
        model: one of :data:`SUPPORTED_MODELS`.
        width, height: image size in pixels.
        params: the model's parameters, in ``cameras.txt`` order.
    """

    model: str
    width: int
    height: int
    params: np.ndarray

    def __post_init__(self) -> None:
        if self.model not in _NUM_PARAMS:
            raise ValueError(f"camera model {self.model!r} is not supported (supported: {', '.join(SUPPORTED_MODELS)})")
        params = np.asarray(self.params, dtype=np.float64).ravel()
        if len(params) != _NUM_PARAMS[self.model]:
            raise ValueError(f"{self.model} has {_NUM_PARAMS[self.model]} parameters, got {len(params)}")
        object.__setattr__(self, "params", params)

    @classmethod
    def of(cls, entry: tuple[str, int, int, Sequence[float]]) -> CameraModel:
        """From an entry of :attr:`gim_plugins.colmap_ext.model.Model.cameras` ``(model, width, height, params)``."""
        model, width, height, params = entry
        return cls(model, int(width), int(height), np.asarray(params))

    @property
    def focal(self) -> tuple[float, float]:
        """``(fx, fy)`` in pixels."""
        p = self.params
        return (p[0], p[0]) if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL") else (p[0], p[1])

    @property
    def principal_point(self) -> tuple[float, float]:
        """``(cx, cy)`` in COLMAP's pixel convention."""
        p = self.params
        return (p[1], p[2]) if self.model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL") else (p[2], p[3])

    def distort(self, uv: np.ndarray) -> np.ndarray:
        """Undistorted normalised coordinates ``(N, 2)`` → distorted normalised coordinates."""
        u, v = uv[:, 0], uv[:, 1]
        p = self.params
        r2 = u * u + v * v
        if self.model == "SIMPLE_RADIAL":
            radial = p[3] * r2
            return uv + uv * radial[:, None]
        if self.model == "RADIAL":
            radial = p[3] * r2 + p[4] * r2 * r2
            return uv + uv * radial[:, None]
        if self.model == "OPENCV":
            k1, k2, p1, p2 = p[4:8]
            radial = k1 * r2 + k2 * r2 * r2
            du = u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u)
            dv = v * radial + 2 * p2 * u * v + p1 * (r2 + 2 * v * v)
            return uv + np.stack([du, dv], axis=1)
        return uv

    def undistort(self, uv: np.ndarray, iterations: int = 30) -> np.ndarray:
        """Distorted normalised coordinates → undistorted ones (fixed-point iteration, as exact as the model for the
        moderate distortion COLMAP estimates)."""
        if self.model in ("SIMPLE_PINHOLE", "PINHOLE"):
            return uv
        out = uv.copy()
        for _ in range(iterations):
            out = uv - (self.distort(out) - out)
        return out

    def image_to_normalised(self, xy: np.ndarray) -> np.ndarray:
        """Pixels ``(N, 2)`` in COLMAP's convention → undistorted normalised coordinates ``(N, 2)`` (z = 1 plane)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        (fx, fy), (cx, cy) = self.focal, self.principal_point
        return self.undistort(np.stack([(xy[:, 0] - cx) / fx, (xy[:, 1] - cy) / fy], axis=1))

    def project(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame points ``(N, 3)`` → pixels ``(N, 2)`` in COLMAP's convention and depths ``(N,)``; pixels of
        points at or behind the camera are NaN."""
        points = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        z = points[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = points[:, :2] / z[:, None]
        uv[~(z > 0)] = np.nan
        uv = self.distort(uv)
        (fx, fy), (cx, cy) = self.focal, self.principal_point
        return np.stack([uv[:, 0] * fx + cx, uv[:, 1] * fy + cy], axis=1), z
