"""Two-view triangulation of correspondences with the sparse model's cameras, and the per-image result files.

Each correspondence of a (reference, neighbour) pair is triangulated linearly (DLT on undistorted normalised
coordinates, the homogeneous least-squares solution) and kept only if it lies in front of both cameras, reprojects
within ``max_reprojection_error`` pixels in both images (through the cameras' distortion) and is seen under a
triangulation angle of at least ``min_angle_deg`` (narrower rays give depth errors that grow as 1/angle).

A reference image's points (all its neighbours together) are one ``.npz`` file in ``dense/points/``, written
atomically with the key it was computed for; a rerun with the same key skips the image.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.atomic import atomic_write_bytes
from gim_plugins.reconstruct.dense_views import View

__all__ = ["ImagePoints", "load_points", "points_file", "save_points", "triangulate_pair"]

_CHUNK = 65536


def triangulate_pair(view0: View, view1: View, k0: np.ndarray, k1: np.ndarray, *, max_reprojection_error: float,
                     min_angle_deg: float) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Triangulate ``k0 ↔ k1`` (package-convention pixels of ``view0`` and ``view1``) and filter the points.

    Returns:
        ``(keep (N,) bool, xyz (N, 3) world points, counts)`` with ``counts`` = matches and how many pass each
        filter in turn: ``in_front``, ``reprojection``, ``angle``.
    """
    n = len(k0)
    xyz = np.full((n, 3), np.nan)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        xyz[part] = _dlt(view0, view1, k0[part], k1[part])
    counts = {"matches": n}
    with np.errstate(invalid="ignore"):
        cam0, cam1 = view0.to_camera(xyz), view1.to_camera(xyz)
        keep = np.isfinite(xyz).all(axis=1) & (cam0[:, 2] > 0) & (cam1[:, 2] > 0)
        counts["in_front"] = int(keep.sum())
        for view, k in ((view0, k0), (view1, k1)):
            uv, _ = view.project(xyz)
            keep &= np.linalg.norm(uv - k, axis=1) <= max_reprojection_error
        counts["reprojection"] = int(keep.sum())
        rays0, rays1 = xyz - view0.center, xyz - view1.center
        cos = np.sum(rays0 * rays1, axis=1) / (np.linalg.norm(rays0, axis=1) * np.linalg.norm(rays1, axis=1))
        keep &= cos <= np.cos(np.radians(min_angle_deg))
    counts["angle"] = int(keep.sum())
    return keep, xyz, counts


def _dlt(view0: View, view1: View, k0: np.ndarray, k1: np.ndarray) -> np.ndarray:
    """Linear triangulation: the right singular vector of the 4×4 DLT system of each correspondence."""
    rows = []
    for view, k in ((view0, k0), (view1, k1)):
        x = view.camera.image_to_normalised(k + 0.5)  # COLMAP's pixel convention at this boundary
        P = np.concatenate([view.R, view.t[:, None]], axis=1)
        rows += [x[:, :1] * P[2] - P[0], x[:, 1:] * P[2] - P[1]]
    A = np.stack(rows, axis=1)  # (N, 4, 4)
    _, _, vt = np.linalg.svd(A)
    X = vt[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return X[:, :3] / X[:, 3:]


@dataclass(frozen=True, eq=False)
class ImagePoints:
    """The dense points of one reference image.

    Attributes:
        pixels: ``(N, 2)`` float32, where each point is seen in the reference image (package convention).
        xyz: ``(N, 3)`` float32 world points (model units).
        rgb: ``(N, 3)`` uint8 colour of the reference image at ``pixels``.
        partner: ``(N,)`` int32 view index of the neighbour each point was triangulated with.
        key: what the points were computed from (JSON).
        stats: per-filter counts and timing.
    """

    pixels: np.ndarray
    xyz: np.ndarray
    rgb: np.ndarray
    partner: np.ndarray
    key: str
    stats: Mapping[str, Any]

    def __len__(self) -> int:
        return len(self.xyz)


def points_file(folder: Path, name: str) -> Path:
    """The result file of image ``name``: a readable, collision-free file name (names may contain folders)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-80:]
    return folder / f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:10]}.npz"


def save_points(path: Path, points: ImagePoints) -> Path:
    """Write one image's points atomically (a killed run leaves the previous file or none)."""
    buffer = io.BytesIO()
    np.savez(buffer, pixels=points.pixels.astype(np.float32), xyz=points.xyz.astype(np.float32),
             rgb=points.rgb.astype(np.uint8), partner=points.partner.astype(np.int32), key=np.array(points.key),
             stats=np.array(json.dumps(dict(points.stats), sort_keys=True)))
    return atomic_write_bytes(path, buffer.getvalue())


def load_points(path: Path, key: str | None = None) -> ImagePoints | None:
    """One image's points, or ``None`` when the file is missing, unreadable or was made for another ``key``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = str(data["key"])
            if key is not None and stored != key:
                return None
            return ImagePoints(data["pixels"], data["xyz"], data["rgb"], data["partner"], stored,
                               json.loads(str(data["stats"])))
    except (OSError, ValueError, KeyError):
        return None
