"""The registered views of a sparse model and, for each, the neighbours it is densely matched with.

Why covisibility: two images that observe many of the same sparse 3D points overlap; the triangulation angle of
those points says whether their baseline is wide enough to give depth (a pair taken from one spot triangulates
nothing). For every registered image, the neighbours are the images sharing at least ``min_shared_points`` points
with it whose median triangulation angle over the shared points is at least ``min_angle_deg``, ranked by
``shared · min(1, angle / good_angle_deg)`` (so a wider baseline counts, up to ``good_angle_deg``). The first
``neighbours`` are matched; the first ``consistency_views`` are the views a dense point of the image is checked
against.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gim_plugins.colmap_ext.cameras import CameraModel
from gim_plugins.colmap_ext.model import Model

__all__ = ["View", "model_digest", "rank_neighbours", "views_of"]


@dataclass(frozen=True, eq=False)
class View:
    """A registered image: its camera (COLMAP model), world-to-camera pose and index in the view list."""

    index: int
    name: str
    camera: CameraModel
    R: np.ndarray
    t: np.ndarray

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t

    def to_camera(self, xyz: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` → camera-frame points ``(N, 3)`` (written out per column: a BLAS product of an
        N×3 by a 3×3 matrix is several times slower)."""
        R = self.R
        return xyz[:, :1] * R[:, 0] + xyz[:, 1:2] * R[:, 1] + xyz[:, 2:3] * R[:, 2] + self.t

    def project(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points → pixels ``(N, 2)`` in the package convention (centre of the top-left pixel at (0, 0); NaN
        behind the camera) and depths ``(N,)``."""
        uv, z = self.camera.project(self.to_camera(xyz))
        return uv - 0.5, z


def views_of(model: Model) -> list[View]:
    """The model's registered images as :class:`View` objects, sorted by name."""
    views = []
    for index, name in enumerate(sorted(model.images)):
        image = model.images[name]
        views.append(View(index, name, CameraModel.of(model.cameras[image.camera_id]), image.R, image.t))
    return views


def model_digest(model_dir: Path) -> str:
    """What the dense results of a model depend on: its cameras, poses and points (text files), hashed."""
    digest = hashlib.sha1()
    for name in ("cameras.txt", "images.txt", "points3D.txt"):
        digest.update((model_dir / name).read_bytes())
    return digest.hexdigest()


def _points_per_view(model: Model, views: list[View]) -> list[np.ndarray]:
    """Per view, the sorted indices of the model points it observes."""
    index_of_id = {model.images[v.name].image_id: v.index for v in views}
    rows: list[list[int]] = [[] for _ in views]
    for point, track in enumerate(model.tracks or ()):
        for image_id in set(track.tolist()):
            view = index_of_id.get(image_id)
            if view is not None:
                rows[view].append(point)
    return [np.array(r, dtype=np.int64) for r in rows]


def rank_neighbours(model: Model, views: list[View], *, min_shared_points: int = 15, min_angle_deg: float = 1.0,
                    good_angle_deg: float = 5.0, limit: int = 20) -> list[list[tuple[int, int, float]]]:
    """For every view, the other views ranked as dense-matching partners (best first).

    Shared points are counted with a sparse product (scales to thousands of views); angles are measured for the
    ``4 · limit`` views sharing most points, and at most ``limit`` partners are returned per view.

    Returns:
        Per view, ``[(other view index, shared points, median triangulation angle in degrees), …]`` of the views
        passing ``min_shared_points`` and ``min_angle_deg``.
    """
    from scipy import sparse

    if model.tracks is None:
        raise ValueError("the model has no point tracks (read it with gim_plugins.colmap_ext.model.read_text_model)")
    per_view = _points_per_view(model, views)
    columns = np.concatenate([np.full(len(p), v) for v, p in enumerate(per_view)]) if views else np.zeros(0)
    incidence = sparse.csr_matrix((np.ones(len(columns), dtype=np.int32), (np.concatenate(per_view or [[]]),
                                   columns)), shape=(len(model.points), len(views)))
    shared = (incidence.T @ incidence).tocsr()
    centers = np.stack([v.center for v in views]) if views else np.zeros((0, 3))
    ranked: list[list[tuple[int, int, float]]] = []
    for i in range(len(views)):
        row = shared.getrow(i)
        order = np.argsort(-row.data, kind="stable")
        candidates = []
        for j, count in zip(row.indices[order][: 4 * limit + 1], row.data[order][: 4 * limit + 1]):
            if j == i or count < max(1, min_shared_points):
                continue
            points = model.points[np.intersect1d(per_view[i], per_view[j], assume_unique=True)]
            rays_i, rays_j = points - centers[i], points - centers[j]
            cos = np.sum(rays_i * rays_j, axis=1) / (np.linalg.norm(rays_i, axis=1) * np.linalg.norm(rays_j, axis=1))
            angle = float(np.degrees(np.median(np.arccos(np.clip(cos, -1.0, 1.0)))))
            if angle >= min_angle_deg:
                candidates.append((int(j), int(count), angle))
        candidates.sort(key=lambda c: (-c[1] * min(1.0, c[2] / good_angle_deg), c[0]))
        ranked.append(candidates[:limit])
    return ranked
