"""Ground truth for the dense step on the rendered motorcycle scene; shared by the tests and
``benchmarks/dense_scene.py``.

* :func:`write_truth_model` writes a COLMAP text model with the scene's *exact* cameras and poses (PINHOLE, the
  principal point moved by +0.5 px into COLMAP's convention) and sparse points sampled from the left view's
  ground-truth depth, observed by every view that sees them (depth test as in
  :func:`gim_plugins.datasets.scene.correspondences`). Dense results on it measure the dense step alone.
* :func:`cloud_accuracy` measures a cloud against the true surface: distance of each point to the nearest surface
  sample (the scene's source points, two per pixel and axis, ≈1 mm apart), and completeness = share of the left
  view's surface points (one per pixel) with a cloud point within ``radius``.
* :func:`align_model` is the similarity that takes a reconstruction's frame to the scene's (rotation from the
  cameras' orientations, scale and shift from their centres).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gim_plugins.datasets import scene

__all__ = ["align_model", "cloud_accuracy", "rotmat_to_qvec", "write_truth_model"]


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """3×3 rotation → COLMAP quaternion ``(w, x, y, z)`` with ``w ≥ 0``."""
    K = np.array([
        [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
        [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
        [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
        [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]]]) / 3.0
    values, vectors = np.linalg.eigh(K)
    q = vectors[[3, 0, 1, 2], np.argmax(values)]
    return -q if q[0] < 0 else q


def write_truth_model(views: Sequence[scene.SceneView], out_dir: Path, *, num_points: int = 4000,
                      seed: int = 0) -> Path:
    """Write the exact model of ``views`` (with depth) as COLMAP text files into ``out_dir``; returns it."""
    rng = np.random.default_rng(seed)
    reference = next(v for v in views if v.depth is not None)
    rows, cols = np.nonzero(np.isfinite(reference.depth))
    pick = rng.choice(len(rows), min(num_points, len(rows)), replace=False)
    pixels = np.stack([cols[pick], rows[pick]], axis=1).astype(np.float64)
    xyz = reference.backproject(pixels, reference.depth[rows[pick], cols[pick]])
    observations: list[list[tuple[float, float, int]]] = [[] for _ in views]  # per view: x, y (COLMAP), point id
    tracks: list[list[tuple[int, int]]] = [[] for _ in xyz]
    for image_index, view in enumerate(views):
        uv, z = view.project(xyz)
        height, width = view.size
        with np.errstate(invalid="ignore"):
            inside = (uv[:, 0] > -0.5) & (uv[:, 0] < width - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < height - 0.5)
        col = np.clip(np.rint(np.nan_to_num(uv[:, 0])).astype(int), 0, width - 1)
        row = np.clip(np.rint(np.nan_to_num(uv[:, 1])).astype(int), 0, height - 1)
        with np.errstate(invalid="ignore"):
            visible = inside & (np.abs(view.depth[row, col] - z) <= 0.01 * z)
        for point in np.flatnonzero(visible):
            tracks[point].append((image_index + 1, len(observations[image_index])))
            observations[image_index].append((float(uv[point, 0]) + 0.5, float(uv[point, 1]) + 0.5, int(point) + 1))
    out_dir.mkdir(parents=True, exist_ok=True)
    cameras, images = [], []
    for index, view in enumerate(views):
        fx, fy, cx, cy = (float(v) for v in (view.K[0, 0], view.K[1, 1], view.K[0, 2] + 0.5, view.K[1, 2] + 0.5))
        height, width = view.size
        cameras.append(f"{index + 1} PINHOLE {width} {height} {fx!r} {fy!r} {cx!r} {cy!r}")
        q = rotmat_to_qvec(view.R)
        images.append(f"{index + 1} {' '.join(repr(float(v)) for v in q)} {' '.join(repr(float(v)) for v in view.t)}"
                      f" {index + 1} {view.name}")
        images.append(" ".join(f"{x!r} {y!r} {p}" for x, y, p in observations[index]))
    points = []
    for point, track in enumerate(tracks):
        if len(track) < 2:
            continue
        colour = reference.image[int(pixels[point, 1]), int(pixels[point, 0])]
        points.append(f"{point + 1} {' '.join(repr(float(v)) for v in xyz[point])} "
                      f"{' '.join(str(int(c)) for c in colour)} 0.0 " + " ".join(f"{i} {j}" for i, j in track))
    (out_dir / "cameras.txt").write_text("\n".join(cameras) + "\n")
    (out_dir / "images.txt").write_text("\n".join(images) + "\n")
    (out_dir / "points3D.txt").write_text("\n".join(points) + "\n")
    return out_dir


def align_model(model_dir: Path, views: Sequence[scene.SceneView]) -> tuple[float, np.ndarray, np.ndarray]:
    """``(s, R, t)`` with ``world ≈ s·R·x + t`` for the reconstruction in ``model_dir``.

    The rotation is the mean of the per-camera rotations ``R_trueᵀ·R_model`` (projected onto SO(3)); scale and
    translation then fit the camera centres. Centres alone leave the rotation poorly fixed when the cameras are a few
    decimetres apart and nearly coplanar (a 10° error was seen), and that error grows with the distance to the scene.
    """
    from gim_plugins.colmap_ext.model import read_text_model

    model = read_text_model(model_dir)
    truth = {v.name: v for v in views}
    names = sorted(n for n in model.images if n in truth)
    if len(names) < 2:
        raise ValueError(f"need at least 2 registered views of the scene, got {len(names)}")
    U, _, Vt = np.linalg.svd(sum(truth[n].R.T @ model.images[n].R for n in names))
    R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    source = np.stack([model.images[n].center for n in names]) @ R.T
    target = np.stack([truth[n].center for n in names])
    xs, xd = source - source.mean(0), target - target.mean(0)
    s = float((xs * xd).sum() / (xs ** 2).sum())
    return s, R, target.mean(0) - s * source.mean(0)


def cloud_accuracy(xyz_world: np.ndarray, *, radius: float = 0.01, far: float = 0.05) -> dict[str, float]:
    """Accuracy (median / 90th-percentile distance to the true surface, metres and share of the scene extent; share
    of points farther than ``far``) and completeness (share of the true surface within ``radius`` of a point) of a
    cloud in the scene's frame."""
    from scipy.spatial import cKDTree

    xyz = np.asarray(xyz_world, dtype=np.float64).reshape(-1, 3)
    extent = scene.scene_extent()
    if not len(xyz):
        return {"points": 0, "median_m": float("nan"), "p90_m": float("nan"), "median_share": float("nan"),
                "p90_share": float("nan"), "far_share": float("nan"), "completeness": 0.0, "extent_m": extent}
    distance, _ = cKDTree(scene.source_points(2).points.T).query(xyz, k=1)
    truth = scene.source_points(1).points.T  # one surface sample per pixel of the left photo
    reach, _ = cKDTree(xyz).query(truth, k=1, distance_upper_bound=radius)
    median, p90 = float(np.median(distance)), float(np.percentile(distance, 90))
    return {"points": len(xyz), "median_m": median, "p90_m": p90, "median_share": median / extent,
            "p90_share": p90 / extent, "far_share": float(np.mean(distance > far)),
            "completeness": float(np.mean(np.isfinite(reach))), "extent_m": extent}
