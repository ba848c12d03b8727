"""Cameras and views with exact geometry: the types the renderer and the scenes share.

Conventions (used by every module of :mod:`gim_plugins.datasets`):
    * ``R, t`` map world to camera: ``X_cam = R @ X_world + t``; the camera centre is ``-R.T @ t``; metres.
    * ``K`` uses the package pixel convention (centre of the top-left pixel at (0, 0)): a camera point ``X`` is seen
      at ``(K @ X)[:2] / X[2]``.
    * ``depth`` is the z coordinate (metres) in the view's camera frame, ``inf`` where unknown.
    * A rigid ``pose`` of a moving object is a 4×4 matrix mapping its rest coordinates to world coordinates.

Points are handled as ``(3, N)`` rows internally (:func:`project_rows`, :func:`backproject_rows`): a 3×3 product
written out per row is much faster than BLAS for millions of points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Camera",
    "Frame",
    "SceneView",
    "backproject_rows",
    "check_camera",
    "check_pose",
    "look_at",
    "project_rows",
    "transform_rows",
]


def transform_rows(M: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``M @ rows`` for a 3×3 ``M`` and ``(3, N)`` rows, written out per row (much faster than BLAS for N×3)."""
    return np.stack([M[i, 0] * rows[0] + M[i, 1] * rows[1] + M[i, 2] * rows[2] for i in range(3)])


def project_rows(K: np.ndarray, R: np.ndarray, t: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(3, N)`` world points → ``(2, N)`` pixels (NaN behind the camera) and ``(N,)`` camera depths."""
    cam = transform_rows(R, points) + t[:, None]
    z = cam[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = transform_rows(K, cam)
        uv = pix[:2] / z
    uv[:, ~(z > 0)] = np.nan
    return uv, z


def backproject_rows(K: np.ndarray, R: np.ndarray, t: np.ndarray, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """``(2, N)`` pixels at camera depths ``(N,)`` → ``(3, N)`` world points."""
    rays = transform_rows(np.linalg.inv(K), np.concatenate([uv, np.ones((1, uv.shape[1]))]))
    return transform_rows(R.T, rays * depth - t[:, None])


def check_camera(K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``K, R, t`` as float64 arrays, or ``ValueError`` for wrong shapes or an ``R`` that is not a rotation."""
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    if K.shape != (3, 3) or R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"expected K (3, 3), R (3, 3), t (3,), got {K.shape}, {R.shape}, {t.shape}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError("R must be a rotation matrix")
    return K, R, t


def check_pose(pose: np.ndarray) -> np.ndarray:
    """A 4×4 rigid pose as float64, or ``ValueError`` for a wrong shape or a rotation block that is not a rotation."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"an object pose must be a 4×4 matrix, got shape {pose.shape}")
    check_camera(np.eye(3), pose[:3, :3], pose[:3, 3])
    return pose


def look_at(center: np.ndarray, target: np.ndarray, roll: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``(R, t)`` of a camera at ``center`` looking at ``target`` (image y down, world y down),
    rolled by ``roll`` radians about its optical axis."""
    z = np.asarray(target, dtype=np.float64) - np.asarray(center, dtype=np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(roll), math.sin(roll)
    roll_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    R = roll_z @ np.stack([x, y, z])
    return R, -R @ np.asarray(center, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: intrinsics, world-to-camera pose and image size.

    Attributes:
        K: ``(3, 3)`` float64 intrinsics, package pixel convention.
        R: ``(3, 3)`` float64 world-to-camera rotation.
        t: ``(3,)`` float64 world-to-camera translation in metres.
        size: ``(H, W)`` in pixels.
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    size: tuple[int, int]

    def __post_init__(self) -> None:
        K, R, t = check_camera(self.K, self.R, self.t)
        height, width = (int(v) for v in self.size)
        if height < 1 or width < 1:
            raise ValueError(f"size must be (H, W) with H, W >= 1, got {self.size}")
        for name, value in (("K", K), ("R", R), ("t", t), ("size", (height, width))):
            object.__setattr__(self, name, value)

    @classmethod
    def look_at(cls, center: np.ndarray, target: np.ndarray, K: np.ndarray, size: tuple[int, int],
                roll: float = 0.0) -> Camera:
        """A camera at ``center`` looking at ``target`` (see :func:`look_at`)."""
        R, t = look_at(center, target, roll)
        return cls(K, R, t, size)

    def scaled(self, factor: float) -> Camera:
        """The same camera with the image resized by ``factor`` (size rounded; pixel-centre convention kept)."""
        height, width = self.size
        K = self.K.copy()
        K[:2, :2] *= factor
        K[:2, 2] = (K[:2, 2] + 0.5) * factor - 0.5
        return Camera(K, self.R, self.t, (max(1, round(height * factor)), max(1, round(width * factor))))

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (metres)."""
        return -self.R.T @ self.t

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ``(N, 3)`` world points: ``(N, 2)`` pixels and ``(N,)`` depths (pixels are NaN behind the camera)."""
        points = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
        uv, z = project_rows(self.K, self.R, self.t, points.T)
        return uv.T, z

    def backproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` of ``(N, 2)`` pixels at the given camera-frame depths ``(N,)``."""
        uv = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        return backproject_rows(self.K, self.R, self.t, uv.T, np.asarray(depth, dtype=np.float64).ravel()).T


@dataclass(frozen=True, eq=False)
class SceneView:
    """One view of a scene with its exact camera.

    Attributes:
        name: file name, e.g. ``"render_00.png"``.
        image: ``(H, W, 3)`` uint8 RGB.
        K: ``(3, 3)`` float64 intrinsics, package pixel convention (centre of the top-left pixel at (0, 0)).
        R: ``(3, 3)`` float64 world-to-camera rotation.
        t: ``(3,)`` float64 world-to-camera translation in metres.
        depth: ``(H, W)`` float32 depth in metres along the camera's z axis, ``inf`` where unknown; or ``None``.
    """

    name: str
    image: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    depth: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])

    @property
    def camera(self) -> Camera:
        """The view's :class:`Camera`."""
        return Camera(self.K, self.R, self.t, self.size)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (metres)."""
        return self.camera.center

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ``(N, 3)`` world points: ``(N, 2)`` pixels and ``(N,)`` depths (pixels are NaN behind the camera)."""
        return self.camera.project(points_world)

    def backproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` of ``(N, 2)`` pixels at the given camera-frame depths ``(N,)``."""
        return self.camera.backproject(pixels, depth)


@dataclass(frozen=True, eq=False)
class Frame(SceneView):
    """One frame of a rendered camera path: a :class:`SceneView` (always with depth) plus the moving object.

    Attributes:
        index: position of the frame in the path.
        object_mask: ``(H, W)`` bool, the pixels where the moving object is the nearest surface (all ``False``
            when there is no object or it is out of view).
        object_pose: 4×4 float64 rest-to-world pose of the moving object in this frame, ``None`` when absent.
    """

    index: int = 0
    object_mask: np.ndarray | None = None
    object_pose: np.ndarray | None = None
