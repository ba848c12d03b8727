"""Posed pairs with depth: MegaDepth in the D2-Net scene-info format (GIM's ``MegaDepthDataset``).

Data users bring (MegaDepth is not redistributable here)::

    <root>/                      MegaDepth's root (paths in the scene files are relative to it)
      <npz_dir>/<scene>.npz      D2-Net scene info: image_paths, depth_paths, intrinsics, poses, overlap_matrix
      Undistorted_SfM/<scene>/images/*.jpg, phoenix/S6/.../depths/*.h5   (whatever the scene file names)

``image_paths[i]``/``depth_paths[i]`` are paths relative to ``root`` (``None`` for images outside the model),
``intrinsics[i]`` a 3×3 matrix of the undistorted image in COLMAP's pixel convention (centre of the top-left pixel
at (0.5, 0.5); ``pixel_centre=0.5``), ``poses[i]`` a 4×4 world-to-camera matrix, ``overlap_matrix[i, j]`` the
share of image ``i``'s 3D points seen by ``j`` (−1: none). Depth files are HDF5 with a ``depth`` dataset (metres up
to scale, 0 unknown) the size of the image.

Pairs (GIM): overlaps in ``(0.01, 0.7]``, split into 0.1-wide bins; a pair counts when *both* directions' overlaps
fall in the same bin (GIM's rule: a pair whose two overlaps lie in different bins is never used); at most
``max_pairs`` (GIM: 100 000) per scene, spread evenly over the bins and drawn with GIM's seeded ``random.sample``.
Each item: ``gt`` True with depth; labels are ground-truth correspondences — random pixels of image 0 with depth,
reprojected into image 1 and kept where image 1's depth agrees (relative difference < ``depth_tolerance``, LoFTR's
0.2) — sent through the same augmentation as video labels (GIM's MegaDepth recipe: rescale 0.6–1.4, no label box,
the 90 % perspective of image 1, no minimum label count).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.training.data.base import PairDataset, read_rgb

__all__ = ["NPZ_DIRS", "MegaDepthDataset", "depth_correspondences", "find_npz_dir", "megadepth_datasets",
           "select_pairs"]


def select_pairs(overlap: np.ndarray, low: float = 0.01, high: float = 0.7, max_pairs: int = 100000,
                 seed: int = 3407) -> list[tuple[int, int]]:
    """GIM's MegaDepth pair selection: overlap bins of 0.1 from ``low`` to ``high``, ``max_pairs`` split evenly over
    them (GIM's ``split``), each bin subsampled with ``random.seed(seed); random.sample(...)``."""
    overlap = np.asarray(overlap, dtype=np.float64).copy()
    np.fill_diagonal(overlap, -1.0)  # D2-Net's files hold -1 there; an image is never paired with itself
    edges = np.concatenate((np.arange(low, high, 0.1), [high]))
    bins = len(edges) - 1
    per_bin = [max_pairs // bins + 1] * (max_pairs % bins) + [max_pairs // bins] * (bins - max_pairs % bins)
    pairs: list[tuple[int, int]] = []
    for lo, hi, quota in zip(edges[:-1], edges[1:], per_bin):
        valid = (overlap > lo) & (overlap <= hi)
        candidates = np.unique(np.sort(np.vstack(np.where(valid)).T, axis=1), axis=0)
        if len(candidates) == 0:
            continue
        both = (overlap[candidates[:, 0], candidates[:, 1]] > lo) & (overlap[candidates[:, 0], candidates[:, 1]] <= hi)
        both &= (overlap[candidates[:, 1], candidates[:, 0]] > lo) & (overlap[candidates[:, 1], candidates[:, 0]] <= hi)
        chosen = candidates[both].tolist()
        if len(chosen) > quota:
            chosen = random.Random(seed).sample(chosen, quota)
        pairs += [(int(a), int(b)) for a, b in chosen]
    return pairs


def depth_correspondences(depth0: np.ndarray, depth1: np.ndarray, K0: np.ndarray, K1: np.ndarray,
                          T_0to1: np.ndarray, rng: np.random.Generator, count: int,
                          tolerance: float = 0.2) -> np.ndarray:
    """``(M, 4)`` ground-truth correspondences from depth: up to ``count`` random pixels of image 0 with depth (pixel
    centres, package convention), projected into image 1 and kept where they land inside it in front of the camera
    and image 1's depth there (nearest pixel) agrees within ``tolerance`` (relative)."""
    valid = np.flatnonzero(np.isfinite(depth0.ravel()) & (depth0.ravel() > 0))
    if len(valid) == 0:
        return np.zeros((0, 4))
    picked = rng.choice(valid, min(count, len(valid)), replace=False)
    v, u = np.divmod(picked, depth0.shape[1])
    z0 = depth0.ravel()[picked].astype(np.float64)
    rays = np.linalg.inv(K0) @ np.stack([u, v, np.ones_like(u)]).astype(np.float64)
    points = T_0to1[:3, :3] @ (rays * z0) + T_0to1[:3, 3:4]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv1 = (K1 @ points)[:2] / points[2]
    h1, w1 = depth1.shape
    col, row = np.rint(uv1[0]), np.rint(uv1[1])
    inside = (points[2] > 0) & (col >= 0) & (col <= w1 - 1) & (row >= 0) & (row <= h1 - 1)
    keep = np.zeros(len(picked), bool)
    idx = np.flatnonzero(inside)
    z1 = depth1[row[idx].astype(np.int64), col[idx].astype(np.int64)].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        keep[idx] = np.isfinite(z1) & (z1 > 0) & (np.abs(z1 - points[2, idx]) / z1 < tolerance)
    return np.stack([u[keep], v[keep], uv1[0, keep], uv1[1, keep]], axis=1).astype(np.float64)


def _read_depth(path: Path) -> np.ndarray:
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"depth map not found: {path}")
    with h5py.File(path, "r") as handle:
        if "depth" not in handle:
            raise ValueError(f"{path}: no 'depth' dataset (MegaDepth depth maps are HDF5 with a 'depth' dataset)")
        return np.asarray(handle["depth"], dtype=np.float32)


class MegaDepthDataset(PairDataset):
    """The pairs of one MegaDepth scene (one "scene" for the sampler).

    Args:
        root: MegaDepth's root (scene-file paths are relative to it).
        scene_file: the D2-Net ``<scene>.npz``.
        conf: ``min_overlap`` / ``max_overlap`` (GIM: 0.01 / 0.7), ``max_pairs`` (GIM: 100 000), ``pixel_centre``
            (where the intrinsics put the centre of the top-left pixel: 0.5 for COLMAP-made files, 0 for the
            package's), ``depth_tolerance``, ``candidates`` (pixels of image 0 tried per pair; default 4 ×
            ``max_labels``), plus the shared options of :class:`~.base.PairDataset`.
    """

    kind = "megadepth"
    default_conf: Mapping[str, Any] = {"min_overlap": 0.01, "max_overlap": 0.7, "max_pairs": 100000,
                                       "pixel_centre": 0.5, "depth_tolerance": 0.2, "candidates": None}
    augment_defaults: Mapping[str, Any] = {"keep_box": False, "min_labels": 0}

    def __init__(self, root: str | os.PathLike[str], scene_file: str | os.PathLike[str],
                 conf: Mapping[str, Any] | None = None) -> None:
        scene_file = Path(scene_file)
        super().__init__(conf, self.default_conf, scene_file.stem)
        if not scene_file.is_file():
            raise FileNotFoundError(f"MegaDepth scene file not found: {scene_file}")
        self.root = Path(root)
        with np.load(scene_file, allow_pickle=True) as npz:
            missing = {"image_paths", "depth_paths", "intrinsics", "poses", "overlap_matrix"} - set(npz.files)
            if missing:
                raise ValueError(f"{scene_file}: not a D2-Net scene-info file (missing {sorted(missing)})")
            self.image_paths, self.depth_paths = npz["image_paths"], npz["depth_paths"]
            self.intrinsics, self.poses = npz["intrinsics"], npz["poses"]
            overlap = np.asarray(npz["overlap_matrix"], dtype=np.float64)
        self.pairs = select_pairs(overlap, self.conf.min_overlap, self.conf.max_overlap, int(self.conf.max_pairs))
        self.overlap = overlap

    def camera(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(K, world-to-camera 4×4)`` of image ``i`` with ``K`` in the package's pixel convention."""
        K = np.asarray(self.intrinsics[i], dtype=np.float64).reshape(3, 3).copy()
        K[:2, 2] -= float(self.conf.pixel_centre) * K[2, 2]
        return K, np.asarray(self.poses[i], dtype=np.float64).reshape(4, 4)

    def load(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        i, j = self.pairs[index]
        image0 = read_rgb(self.root / str(self.image_paths[i]))
        image1 = read_rgb(self.root / str(self.image_paths[j]))
        depth0 = _read_depth(self.root / str(self.depth_paths[i]))
        depth1 = _read_depth(self.root / str(self.depth_paths[j]))
        for image, depth, k in ((image0, depth0, i), (image1, depth1, j)):
            if image.shape[:2] != depth.shape:
                raise ValueError(f"{self.image_paths[k]}: image {image.shape[:2]} and depth {depth.shape} differ")
        (K0, P0), (K1, P1) = self.camera(i), self.camera(j)
        T_0to1 = P1 @ np.linalg.inv(P0)
        count = int(self.conf.candidates or 4 * int(self.conf.max_labels))
        labels = depth_correspondences(depth0, depth1, K0, K1, T_0to1, rng, count, float(self.conf.depth_tolerance))
        plan = self.augmenter.plan(rng, image0.shape[:2], image1.shape[:2], labels)
        if plan is None:
            return None
        return self.sample(plan, image0, image1, rng, pair=(str(self.image_paths[i]), str(self.image_paths[j])),
                           zs=False, gt=True, K0=K0, K1=K1, T_0to1=T_0to1, depth0=depth0, depth1=depth1)


NPZ_DIRS = ("scene_info", "output")
"""Where the scene files are looked for when no ``npz_dir`` is given: D2-Net's name, then GIM's (``output/``)."""


def find_npz_dir(root: str | os.PathLike[str]) -> Path:
    """The scene-file folder of a MegaDepth root: the first of :data:`NPZ_DIRS` holding ``*.npz`` files.

    Raises:
        FileNotFoundError: none of them holds scene files.
    """
    for name in NPZ_DIRS:
        folder = Path(root) / name
        if folder.is_dir() and any(folder.glob("*.npz")):
            return folder
    raise FileNotFoundError(f"no D2-Net scene files (*.npz) in {' or '.join(str(Path(root) / n) for n in NPZ_DIRS)}: "
                            "pass the MegaDepth root, or name the folder with npz_dir=")


def megadepth_datasets(root: str | os.PathLike[str], scenes: Sequence[str] | None = None,
                       conf: Mapping[str, Any] | None = None, *, npz_dir: str | None = None) -> list[MegaDepthDataset]:
    """One :class:`MegaDepthDataset` per scene file in ``root/npz_dir`` (default: ``scene_info/``, else GIM's
    ``output/``; ``scenes``: these stems only; GIM lists its 152 training scenes in
    ``datasets/_train_/MegaDepth.txt``), scenes without pairs dropped.

    Raises:
        FileNotFoundError: no scene files.
    """
    folder = find_npz_dir(root) if npz_dir is None else Path(root) / npz_dir
    files = sorted(folder.glob("*.npz")) if scenes is None else [folder / f"{s}.npz" for s in scenes]
    if not files:
        raise FileNotFoundError(f"no D2-Net scene files (*.npz) in {folder}")
    datasets = [MegaDepthDataset(root, f, conf) for f in files]
    return [d for d in datasets if len(d)]
