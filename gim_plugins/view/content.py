"""What ``gim view`` shows from a reconstruction folder: cameras, sparse points, the dense cloud and linked pictures.

Reads ``sparse/0`` (COLMAP text model: cameras as frusta, sparse points) and ``dense/fused.ply`` when present,
subsamples both to bounded sizes (a seeded random subset, so the page and the PNG show the same points), and finds
the other results a folder may hold by their known names: the ZEB report (``report.md``, ``summaries.json``,
``auc_curves.png``, ``error_cdf.png``) and the pictures of ``gim video walk`` (``walk/<video>/*.png``), searched a
few folders deep. Nothing found is fine; no model and no cloud is a user error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.errors import UserError

__all__ = ["REPORT_NAMES", "Camera", "Content", "collect", "find_extras"]

REPORT_NAMES = ("report.md", "summaries.json", "auc_curves.png", "error_cdf.png")
"""File names the ZEB runner and report write (``python -m gim_plugins.zeb report``)."""
WALK_DIR = "walk"
"""Folder of ``gim video walk`` pictures: ``walk/<video id>/*.png``."""
_MAX_DEPTH = 4
_MAX_WALK_PICTURES = 24


@dataclass(frozen=True, eq=False)
class Camera:
    """A registered image for drawing: name, centre, world-to-camera rotation, size, focal and principal point
    (pixels, COLMAP convention)."""

    name: str
    center: np.ndarray
    R: np.ndarray
    size: tuple[int, int]  # (width, height)
    focal: tuple[float, float]
    principal_point: tuple[float, float]

    def frustum(self, depth: float) -> np.ndarray:
        """``(5, 3)`` world points: the centre and the image corners at ``depth`` in front of it."""
        (fx, fy), (cx, cy), (w, h) = self.focal, self.principal_point, self.size
        corners = np.array([[(u - cx) / fx * depth, (v - cy) / fy * depth, depth]
                            for u, v in ((0, 0), (w, 0), (w, h), (0, h))])
        return np.vstack([self.center, corners @ self.R + self.center])


@dataclass(frozen=True, eq=False)
class Content:
    """Everything drawn and linked by the page (positions in the model's frame)."""

    root: Path
    cameras: list[Camera]
    sparse_xyz: np.ndarray
    sparse_rgb: np.ndarray
    dense_xyz: np.ndarray
    dense_rgb: np.ndarray
    dense_total: int
    sparse_total: int
    extras: dict[str, list[Path]] = field(default_factory=dict)
    summaries: dict[str, Any] = field(default_factory=dict)

    def center_and_radius(self) -> tuple[np.ndarray, float]:
        """A robust centre (median) and radius (90th-percentile distance) of what is shown."""
        xyz = self.dense_xyz if len(self.dense_xyz) else self.sparse_xyz
        if not len(xyz):
            xyz = np.stack([c.center for c in self.cameras]) if self.cameras else np.zeros((1, 3))
        center = np.median(xyz, axis=0)
        radius = float(np.percentile(np.linalg.norm(xyz - center, axis=1), 90)) if len(xyz) > 1 else 1.0
        return center, radius if radius > 0 else 1.0


def _subsample(xyz: np.ndarray, rgb: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(xyz) <= limit:
        return xyz, rgb
    pick = np.sort(np.random.default_rng(seed).choice(len(xyz), limit, replace=False))
    return xyz[pick], rgb[pick]


def _files(root: Path, depth: int) -> list[Path]:
    """Files under ``root`` at most ``depth`` folders deep, sorted, skipping hidden names and bulky work folders
    (the dense step's per-image points and MVS workspace)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".") and d not in ("points", "mvs")
                               and level < depth)
        found += [Path(folder) / f for f in files if not f.startswith(".")]
    return sorted(found)


def find_extras(root: Path) -> dict[str, list[Path]]:
    """Known result files under ``root`` (at most a few folders deep): ``{"zeb": [...], "walk": [...]}``."""
    zeb: list[Path] = []
    walk: list[Path] = []
    for path in _files(root, _MAX_DEPTH):
        if path.name in REPORT_NAMES:
            zeb.append(path)
        elif (path.suffix.lower() in (".png", ".jpg") and path.parent.parent.name == WALK_DIR
              and len(walk) < _MAX_WALK_PICTURES):
            walk.append(path)
    return {"zeb": zeb, "walk": walk}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def collect(root: Path, *, max_points: int = 200_000, max_sparse_points: int = 50_000, seed: int = 0) -> Content:
    """Read what there is to show in the reconstruction folder ``root``.

    Raises:
        UserError: ``root`` is not a folder, or it holds neither ``sparse/0`` nor ``dense/fused.ply``.
    """
    from gim_plugins.colmap_ext.cameras import CameraModel
    from gim_plugins.colmap_ext.model import read_text_model
    from gim_plugins.colmap_ext.ply import read_ply

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder: pass the output folder of gim reconstruct")
    model_dir, fused = root / "sparse" / "0", root / "dense" / "fused.ply"
    has_model, has_dense = (model_dir / "images.txt").is_file(), fused.is_file()
    if not has_model and not has_dense:
        raise UserError(f"nothing to view in {root}: no sparse/0 model and no dense/fused.ply (run gim reconstruct "
                        f"IMAGES --out {root} [--dense] first)")
    cameras, sparse_xyz, sparse_rgb = [], np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    if has_model:
        model = read_text_model(model_dir)
        for name in sorted(model.images):
            image = model.images[name]
            camera = CameraModel.of(model.cameras[image.camera_id])
            cameras.append(Camera(name, image.center, image.R, (camera.width, camera.height), camera.focal,
                                  camera.principal_point))
        sparse_xyz = model.points
        sparse_rgb = model.colors if model.colors is not None else np.full((len(model.points), 3), 200, np.uint8)
    dense_xyz, dense_rgb = np.zeros((0, 3)), np.zeros((0, 3), np.uint8)
    if has_dense:
        cloud = read_ply(fused)
        dense_xyz = cloud.xyz.astype(np.float64)
        dense_rgb = cloud.rgb if cloud.rgb is not None else np.full((len(cloud), 3), 200, np.uint8)
    summaries = {"reconstruction": _read_json(root / "summary.json"), "dense": _read_json(root / "dense" /
                                                                                          "summary.json")}
    sparse_total, dense_total = len(sparse_xyz), len(dense_xyz)
    sparse_xyz, sparse_rgb = _subsample(sparse_xyz, sparse_rgb, max_sparse_points, seed)
    dense_xyz, dense_rgb = _subsample(dense_xyz, dense_rgb, max_points, seed)
    return Content(root, cameras, sparse_xyz, sparse_rgb, dense_xyz, dense_rgb, dense_total, sparse_total,
                   find_extras(root), summaries)
