"""Builders shared by the training-data tests: coordinate-coded images, a homography pair, ZeroMatch trees, a
D2-Net MegaDepth scene and a COLMAP model made from the rendered motorcycle scene."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def coordinate_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """``(h, w, 3)`` float32 in [0, 255]: red = x, green = y (pixel centres), blue = smooth texture. Bilinear resampling
    of a linear ramp is exact, so any resampled copy still says which source pixel each of its pixels shows."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (height, width)).astype(np.float32), (0, 0), 2.0)
    return np.stack([xs, ys, texture], axis=2)


def decode(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` source coordinates read (bilinearly) from a coordinate-coded ``(3, H, W)`` image in [0, 1]."""
    out = []
    for channel in (0, 1):
        plane = np.ascontiguousarray(image[channel] * 255.0, dtype=np.float32)
        mx = points[:, 0:1].astype(np.float32)
        my = points[:, 1:2].astype(np.float32)
        out.append(cv2.remap(plane, mx, my, cv2.INTER_LINEAR)[:, 0])
    return np.stack(out, axis=1).astype(np.float64)


HOMOGRAPHY = np.array([[0.92, 0.08, 14.0], [-0.06, 0.97, 9.0], [2e-4, -1e-4, 1.0]])
"""Image 0 → image 1 of the synthetic pair."""


def homography_pair(height: int = 200, width: int = 240, step: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image0, image1, labels)``: a coordinate-coded image, its warp by :data:`HOMOGRAPHY`, and the exact
    correspondences of a grid of image-0 pixels that land well inside image 1 (12 px from image 0's border, whose
    warp is image 1's black border: a label closer than the resampling footprint would read black)."""
    image0 = coordinate_image(height, width)
    image1 = cv2.warpPerspective(image0, HOMOGRAPHY, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ys, xs = np.mgrid[12:height - 12:step, 12:width - 12:step]
    p0 = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    q = np.c_[p0, np.ones(len(p0))] @ HOMOGRAPHY.T
    p1 = q[:, :2] / q[:, 2:]
    inside = (p1[:, 0] > 3) & (p1[:, 0] < width - 4) & (p1[:, 1] > 3) & (p1[:, 1] < height - 4)
    return image0, image1, np.concatenate([p0, p1], axis=1)[inside]


def make_walk_tree(root: Path, frames: dict[int, np.ndarray], labels: dict[tuple[int, int], np.ndarray], *,
                   style: str = "ours", vid: str = "clip", ppid: str = "SIFT 10 20 40 F FM 32 PM 512",
                   label_size: tuple[int, int] | None = None, bad: list[tuple[int, int]] = ()) -> Path:
    """A ZeroMatch tree with propagated labels. ``style="ours"``: correct-colour PNGs and our decode record;
    ``"gim"``: GIM's R/B-swapped PNGs and no record. ``labels[(i0, i1)]`` are written with row 0 = ``[i0, i1, i0,
    i1]``; ``label_size`` = ``(w, h)`` of the labelled video frames (default the frames' size)."""
    from gim_plugins.training.video.layout import Layout, write_json

    layout = Layout(root)
    height, width = next(iter(frames.values())).shape[:2]
    for index, image in frames.items():
        path = layout.frame(vid, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        rgb = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        cv2.imwrite(str(path), rgb if style == "gim" else rgb[..., ::-1])  # GIM writes RGB arrays as if BGR
    out = layout.propagate_dir(ppid, vid)
    out.mkdir(parents=True, exist_ok=True)
    for (i0, i1), label in labels.items():
        np.save(layout.propagated_file(ppid, vid, i0, i1),
                np.concatenate([[[i0, i1, i0, i1]], label]).astype(np.float32))
    if bad:
        layout.bad_pairs(ppid, vid).write_text("".join(f"{a} {b}\n" for a, b in bad))
    if style == "ours":
        size = label_size or (width, height)
        write_json(layout.video_info(vid), {"vid": vid, "width": size[0], "height": size[1], "frame_colour": "rgb"})
    return root


def write_megadepth_scene(root: Path, views: list, name: str = "0000", *, pixel_centre: float = 0.5) -> Path:
    """A D2-Net scene-info file for ``views`` (images, HDF5 depth, COLMAP-convention intrinsics, 4×4 poses and an
    overlap matrix measured from the ground-truth depth); returns the ``.npz`` path."""
    import h5py

    from gim_plugins.datasets import scene

    image_paths, depth_paths, intrinsics, poses = [], [], [], []
    for view in views:
        stem = Path(view.name).stem
        image_rel, depth_rel = f"Undistorted_SfM/{name}/images/{stem}.jpg", f"phoenix/{name}/depths/{stem}.h5"
        (root / image_rel).parent.mkdir(parents=True, exist_ok=True)
        (root / depth_rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / image_rel), view.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        with h5py.File(root / depth_rel, "w") as handle:
            handle["depth"] = np.where(np.isfinite(view.depth), view.depth, 0).astype(np.float32)
        K = view.K.copy()
        K[:2, 2] += pixel_centre
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = view.R, view.t
        image_paths.append(image_rel)
        depth_paths.append(depth_rel)
        intrinsics.append(K)
        poses.append(pose)
    n = len(views)
    overlap = -np.ones((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                k0, _ = scene.correspondences(views[i], views[j], step=8)
                total = np.isfinite(views[i].depth[::8, ::8]).sum()
                overlap[i, j] = len(k0) / max(total, 1)
    path = root / "scene_info" / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, image_paths=np.array(image_paths, dtype=object), depth_paths=np.array(depth_paths, dtype=object),
             intrinsics=np.stack(intrinsics), poses=np.stack(poses), overlap_matrix=overlap)
    return path


def observed_model_from_views(views: list, image_dir: Path, *, points: int = 600, seed: int = 0):
    """An :class:`ObservedModel` of ``views`` with their exact poses (PINHOLE cameras, COLMAP convention): 3D points
    back-projected from random pixels of the first view and observed in every view that sees them; images written
    to ``image_dir``."""
    from gim_plugins.colmap_ext.observations import ObservedImage, ObservedModel

    rng = np.random.default_rng(seed)
    image_dir.mkdir(parents=True, exist_ok=True)
    first = views[0]
    rows, cols = np.nonzero(np.isfinite(first.depth))
    pick = rng.choice(len(rows), points, replace=False)
    uv = np.stack([cols[pick], rows[pick]], axis=1).astype(np.float64) + rng.uniform(-0.4, 0.4, (points, 2))
    world = first.backproject(uv, first.depth[rows[pick], cols[pick]])
    cameras, images = {}, {}
    for number, view in enumerate(views, start=1):
        cv2.imwrite(str(image_dir / view.name), view.image[..., ::-1])
        height, width = view.size
        K = view.K
        cameras[number] = ("PINHOLE", width, height, np.array([K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5]))
        projected, z = view.project(world)
        col = np.clip(np.rint(np.nan_to_num(projected[:, 0])).astype(int), 0, width - 1)
        row = np.clip(np.rint(np.nan_to_num(projected[:, 1])).astype(int), 0, height - 1)
        with np.errstate(invalid="ignore"):
            visible = (z > 0) & (projected[:, 0] >= 0) & (projected[:, 0] <= width - 1) & (projected[:, 1] >= 0)
            visible &= (projected[:, 1] <= height - 1) & (np.abs(view.depth[row, col] - z) < 0.01 * z)
        ids = np.flatnonzero(visible)
        images[number] = ObservedImage(number, view.name, number, view.R, view.t, projected[ids] + 0.5,
                                       (ids + 1).astype(np.int64))
    return ObservedModel(cameras, images, {i + 1: world[i] for i in range(points)}), world
