"""A multi-view scene with exact ground truth, rendered offline from the real Middlebury motorcycle pair.

Why: SfM, pose and matcher tests need many views of a real scene with exact intrinsics and poses, and nothing can be
downloaded. The scikit-image wheel ships one real rectified stereo pair with a dense ground-truth disparity
(:mod:`gim_plugins.datasets.motorcycle`). The left image and its disparity give a metric depth map; novel views are
rendered from it, and the real right image is added with its calibrated pose.

World frame and conventions:
    * The world frame is the camera frame of the real left camera (x right, y down, z forward), in metres.
    * ``R, t`` map world to camera: ``X_cam = R @ X_world + t``; the camera centre is ``-R.T @ t``.
    * ``K`` uses the package pixel convention (centre of the top-left pixel at (0, 0)): a camera point ``X`` is seen
      at ``(K @ X)[:2] / X[2]``. The Middlebury principal points are used as given.
    * ``depth`` is the z coordinate (metres) in the view's camera frame, ``inf`` where unknown.

Rendering (:func:`render_view`):
    1. Depth splat: every left pixel is cut into ``supersample²`` samples (disparity interpolated bilinearly inside
       smooth 2×2 cells, which is exact for planes since disparity is affine there; nearest at depth edges),
       back-projected, projected into the new camera and z-buffered (nearest sample wins per pixel).
    2. Holes: connected holes of at most ``max_hole_area`` pixels get the mean inverse depth of their finite
       neighbours; larger holes (disocclusions, the border, unknown disparity) stay ``inf``.
    3. Colour: each pixel with finite depth is back-projected with that depth and the left image is sampled
       bilinearly where it lands (no pixel quantisation in the colours). Pixels without depth are black.
    4. Appearance (``appearance`` > 0, renders only): per-view exposure, gamma, white balance, defocus blur and
       sensor noise, so that a render is not a pixel-perfect resampling of the left photo.
    Colours and depth of a render are therefore consistent by construction; the test checks it independently by
    projecting the left view's ground truth into the renders.

Difficulty (measured, 12 renders + the real right image against the left one, essential matrix + recoverPose,
AUC of max(rotation, translation-direction) error): RootSIFT AUC@5/10/20 = 77.0 / 88.5 / 94.3 (seed 0),
83.8 / 91.9 / 95.9 (seed 1); ALIKED+LightGlue 78.4 / 89.2 / 94.6 (seed 0). Clean renders (``appearance=0``) give
RootSIFT 88.5 / 94.2 / 97.1. Easier than real wide-baseline pairs: the scene is one photo's geometry.

Views of :func:`render_motorcycle_scene` (defaults): the cameras look at the median scene point (≈2.75 m in front of
the left camera), with centres on a golden-angle spiral: azimuth within ±``spread_deg`` (9°), elevation within
±0.6·``spread_deg``, distance to the target ×0.85…1.10, roll ±4°, all jittered by ``seed``. For seed 0 that gives
baselines of 0.13–0.46 m to the left camera (the camera centres span 1.06 m) and 1.6–10° rotations relative to it:
every render overlaps every other (SfM is well conditioned), while disocclusions (10–30 % black pixels) and scale
changes keep the matching non-trivial. The real right camera sits 0.193 m to the right of the left one (R = I).

On-disk format (:func:`write_scene` / :func:`read_scene`): the images as PNG files named after the views, and
``poses.json`` = ``{"format": "gim_plugins.scene/1", "world": ..., "units": "metres", "pixel_convention":
"centre-at-integer", "views": [{"name", "width", "height", "K": 3×3, "R": 3×3, "t": [3], "depth": file or null}]}``;
optional depth maps as ``depth/<name>.npy`` (float32 metres, ``inf`` unknown). Every file is written atomically
(temporary file + ``os.replace``) and ``poses.json`` last, so a directory with ``poses.json`` is complete.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gim_plugins.atomic import atomic_write_bytes
from gim_plugins.datasets import motorcycle

__all__ = [
    "FORMAT",
    "SceneView",
    "correspondences",
    "read_scene",
    "relative_pose",
    "render_motorcycle_scene",
    "render_view",
    "scene_extent",
    "write_scene",
]

FORMAT = "gim_plugins.scene/1"
POSES_FILE = "poses.json"
_NEAR = 0.05  # metres: points closer to a camera are not rendered


@dataclass(frozen=True, eq=False)
class SceneView:
    """One view of the scene with its exact camera.

    Attributes:
        name: file name, e.g. ``"render_00.png"``, ``"left.png"``, ``"right.png"``.
        image: ``(H, W, 3)`` uint8 RGB.
        K: ``(3, 3)`` float64 intrinsics, package pixel convention (centre of the top-left pixel at (0, 0)).
        R: ``(3, 3)`` float64 world-to-camera rotation.
        t: ``(3,)`` float64 world-to-camera translation in metres (world frame = the real left camera).
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
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (metres)."""
        return -self.R.T @ self.t

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ``(N, 3)`` world points: ``(N, 2)`` pixels and ``(N,)`` depths (pixels are NaN behind the camera)."""
        points = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
        uv, z = _project_rows(self.K, self.R, self.t, points.T)
        return uv.T, z

    def backproject(self, pixels: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` of ``(N, 2)`` pixels at the given camera-frame depths ``(N,)``."""
        uv = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        return _backproject_rows(self.K, self.R, self.t, uv.T, np.asarray(depth, dtype=np.float64).ravel()).T


def _apply(M: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``M @ rows`` for a 3×3 ``M`` and ``(3, N)`` rows, written out per row (much faster than BLAS for N×3)."""
    return np.stack([M[i, 0] * rows[0] + M[i, 1] * rows[1] + M[i, 2] * rows[2] for i in range(3)])


def _project_rows(K: np.ndarray, R: np.ndarray, t: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(3, N)`` world points → ``(2, N)`` pixels (NaN behind the camera) and ``(N,)`` camera depths."""
    cam = _apply(R, points) + t[:, None]
    z = cam[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        pix = _apply(K, cam)
        uv = pix[:2] / z
    uv[:, ~(z > 0)] = np.nan
    return uv, z


def _backproject_rows(K: np.ndarray, R: np.ndarray, t: np.ndarray, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """``(2, N)`` pixels at camera depths ``(N,)`` → ``(3, N)`` world points."""
    rays = _apply(np.linalg.inv(K), np.concatenate([uv, np.ones((1, uv.shape[1]))]))
    return _apply(R.T, rays * depth - t[:, None])


@dataclass(frozen=True)
class _Source:
    """The left image, its metric depth and the right image (read-only arrays)."""

    left: np.ndarray
    right: np.ndarray
    disparity: np.ndarray
    depth: np.ndarray


@functools.lru_cache(maxsize=1)
def _source() -> _Source:
    from gim_plugins.io import read_image

    files = motorcycle.paths()
    left, right = read_image(files["left"])[..., :3], read_image(files["right"])[..., :3]
    disparity = motorcycle.load_disparity(files["disparity"])
    depth = (motorcycle.CALIBRATION.depth_mm(disparity) / 1000.0).astype(np.float32)
    for array in (left, right, disparity, depth):
        array.setflags(write=False)
    return _Source(left, right, disparity, depth)


def _left_camera() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return motorcycle.CALIBRATION.K("left"), np.eye(3), np.zeros(3)


def _right_camera() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return motorcycle.CALIBRATION.K("right"), np.eye(3), np.array([-motorcycle.CALIBRATION.baseline_mm / 1000, 0, 0])


def _supersampled_points(disparity: np.ndarray, supersample: int, edge: float = 1.0) -> np.ndarray:
    """World points ``(3, M)`` of ``supersample²`` samples per left pixel with a finite disparity.

    The disparity of a sample is interpolated bilinearly from the 2×2 cell around it when the cell is finite and
    spans at most ``edge`` px of disparity; otherwise (depth edges, unknown neighbours) the pixel's own value is used,
    so no sample floats between a foreground and a background surface.
    """
    cal = motorcycle.CALIBRATION
    height, width = disparity.shape
    padded = np.pad(disparity, 1, mode="edge")
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    chunks = []
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    for oy in offsets:
        for ox in offsets:
            sx, sy = int(np.sign(ox)), int(np.sign(oy))
            d00 = disparity
            d01 = padded[1:height + 1, 1 + sx:width + 1 + sx]
            d10 = padded[1 + sy:height + 1 + sy, 1:width + 1]
            d11 = padded[1 + sy:height + 1 + sy, 1 + sx:width + 1 + sx]
            ax, ay = abs(ox), abs(oy)
            stack = np.stack([d00, d01, d10, d11])
            with np.errstate(invalid="ignore"):
                smooth = np.isfinite(stack).all(0) & (np.ptp(stack, axis=0) <= edge)
                interp = (1 - ay) * ((1 - ax) * d00 + ax * d01) + ay * ((1 - ax) * d10 + ax * d11)
            disp = np.where(smooth, interp, d00)
            valid = np.isfinite(disp)
            z = cal.focal * cal.baseline_mm / 1000.0 / (disp[valid] + cal.doffs)
            u, v = cols[valid] + ox, rows[valid] + oy
            chunks.append(np.stack([(u - cal.cx_left) * z / cal.focal, (v - cal.cy) * z / cal.focal, z]))
    return np.concatenate(chunks, axis=1)


@functools.lru_cache(maxsize=4)
def _cached_points(supersample: int) -> np.ndarray:
    points = _supersampled_points(_source().disparity, supersample)
    points.setflags(write=False)
    return points


def _splat_depth(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                 size: tuple[int, int]) -> np.ndarray:
    """z-buffered nearest-pixel splat: the depth of the closest sample landing in each pixel, ``inf`` elsewhere."""
    height, width = size
    uv, z = _project_rows(K, R, t, points)
    with np.errstate(invalid="ignore"):
        u, v = np.rint(uv[0]), np.rint(uv[1])
        keep = (z > _NEAR) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    index = (v[keep] * width + u[keep]).astype(np.int64)
    depth = np.full(height * width, np.inf, dtype=np.float64)
    np.minimum.at(depth, index, z[keep])  # the z-buffer: nearest sample per pixel
    return depth.astype(np.float32).reshape(height, width)


def _fill_small_holes(depth: np.ndarray, max_hole_area: int) -> np.ndarray:
    """Fill connected holes of at most ``max_hole_area`` pixels with the mean inverse depth of their neighbours."""
    import cv2

    if max_hole_area <= 0:
        return depth
    holes = ~np.isfinite(depth)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    small_labels = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= max_hole_area)
    small_labels = small_labels[small_labels != 0]
    todo = np.isin(labels, small_labels) & holes
    depth = depth.copy()
    kernel = np.ones((3, 3), np.float32)
    while todo.any():
        finite = np.isfinite(depth)
        inv = np.where(finite, 1.0 / np.where(finite, depth, 1.0), 0.0).astype(np.float32)
        total = cv2.filter2D(inv, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        weight = cv2.filter2D(finite.astype(np.float32), -1, kernel, borderType=cv2.BORDER_CONSTANT)
        ready = todo & (weight > 0)
        if not ready.any():
            break
        depth[ready] = weight[ready] / total[ready]
        todo &= ~ready
    return depth


def _backward_colours(depth: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Sample the left image where each pixel's 3D point lands (bilinear); black where the depth is unknown."""
    import cv2

    height, width = depth.shape
    finite = np.isfinite(depth)
    rows, cols = np.nonzero(finite)
    points = _backproject_rows(K, R, t, np.stack([cols, rows]).astype(np.float64), depth[finite].astype(np.float64))
    uv, _ = _project_rows(*_left_camera(), points)
    map_x = np.full((height, width), -10.0, np.float32)
    map_y = np.full((height, width), -10.0, np.float32)
    map_x[finite], map_y[finite] = np.nan_to_num(uv[0], nan=-10.0), np.nan_to_num(uv[1], nan=-10.0)
    image = cv2.remap(np.ascontiguousarray(_source().left), map_x, map_y, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    image[~finite] = 0
    return image


def render_view(name: str, K: np.ndarray, R: np.ndarray, t: np.ndarray, *, size: tuple[int, int] | None = None,
                supersample: int = 2, max_hole_area: int = 48) -> SceneView:
    """Render the scene from any camera (``X_cam = R @ X_world + t``, package pixel convention).

    Args:
        name: the view's file name.
        K, R, t: the camera (see the module docstring).
        size: ``(H, W)`` of the render; default the left image's size.
        supersample: samples per left pixel along each axis (2 handles magnifications up to ≈2).
        max_hole_area: holes of at most this many pixels are filled; larger ones stay black with ``inf`` depth.
    """
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    if K.shape != (3, 3) or R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"expected K (3, 3), R (3, 3), t (3,), got {K.shape}, {R.shape}, {t.shape}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError("R must be a rotation matrix")
    size = size or _source().left.shape[:2]
    depth = _splat_depth(_cached_points(supersample), K, R, t, size)
    depth = _fill_small_holes(depth, max_hole_area)
    return SceneView(name, _backward_colours(depth, K, R, t), K, R, t, depth)


def _degrade(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Camera-like appearance changes: exposure, gamma, white balance, defocus blur and sensor noise.

    Why: clean renders of one photo are easier to match than real view pairs (AUC@5 ≈ 88 for RootSIFT); these
    changes bring the difficulty back to that of real image pairs. ``strength`` 0 returns the image unchanged.
    """
    import cv2

    if strength <= 0:
        return image
    black = ~image.any(axis=2)
    gain = 1.0 + strength * rng.uniform(-0.25, 0.25)
    gamma = 1.0 + strength * rng.uniform(-0.2, 0.2)
    balance = 1.0 + strength * rng.uniform(-0.06, 0.06, size=3)
    blur = strength * rng.uniform(0.3, 1.0)
    noise = strength * rng.uniform(1.0, 3.0)
    values = image.astype(np.float32) / 255.0
    values = np.clip(values * gain * balance, 0.0, 1.0) ** gamma
    values = cv2.GaussianBlur(values, (0, 0), blur)
    values = values * 255.0 + rng.normal(0.0, noise, values.shape).astype(np.float32)
    out = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    out[black] = 0
    return out


def _look_at(center: np.ndarray, target: np.ndarray, roll: float) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera ``(R, t)`` of a camera at ``center`` looking at ``target`` (y down), rolled by ``roll`` rad."""
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = math.cos(roll), math.sin(roll)
    roll_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    R = roll_z @ np.stack([x, y, z])
    return R, -R @ center


def _left_points() -> np.ndarray:
    """``(3, N)`` world points of the left pixels with ground truth (one per pixel)."""
    depth = _source().depth
    rows, cols = np.nonzero(np.isfinite(depth))
    uv = np.stack([cols, rows]).astype(np.float64)
    return _backproject_rows(*_left_camera(), uv, depth[rows, cols].astype(np.float64))


def _spiral_cameras(num_views: int, seed: int, spread_deg: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """``num_views`` look-at cameras around the median scene point, ordered by azimuth (deterministic per seed).

    Angles are measured around the ray from the scene centre to the left camera, so the left camera sits at the
    centre of the spiral.
    """
    rng = np.random.default_rng(seed)
    target = np.median(_left_points(), axis=1)
    distance = float(np.linalg.norm(target))
    azimuth0 = math.atan2(target[0], target[2])
    elevation0 = math.asin(target[1] / distance)
    golden = math.pi * (3.0 - math.sqrt(5.0))
    cameras = []
    for i in range(num_views):
        radius = spread_deg * math.sqrt((i + 0.5) / num_views)
        azimuth = radius * math.cos(i * golden) + rng.uniform(-1.0, 1.0)
        elevation = 0.6 * radius * math.sin(i * golden) + rng.uniform(-1.0, 1.0)
        scale = rng.uniform(0.85, 1.10)
        roll = math.radians(rng.uniform(-4.0, 4.0))
        az, el = azimuth0 + math.radians(azimuth), elevation0 + math.radians(elevation)
        direction = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        cameras.append((azimuth, _look_at(target - scale * distance * direction, target, roll)))
    cameras.sort(key=lambda item: item[0])
    return [camera for _, camera in cameras]


def render_motorcycle_scene(num_views: int = 12, *, seed: int = 0, include_real: bool = True,
                            spread_deg: float = 9.0, appearance: float = 1.0, supersample: int = 2,
                            max_hole_area: int = 48, with_depth: bool = True) -> list[SceneView]:
    """Render ``num_views`` views of the motorcycle scene (plus the two real photos) with exact cameras.

    Args:
        num_views: number of rendered views (``render_00.png`` …), ordered by azimuth (left to right), so that
            consecutive views overlap most (sequential pairing works).
        seed: jitter of the view placement; the same seed gives the same views, bit for bit.
        include_real: add the real ``left.png`` (the world frame, GT depth) and ``right.png`` (R = I, centre
            0.193 m to the right; depth splatted from the left ground truth).
        spread_deg: half-angle of the view cone around the scene centre (see the module docstring).
        appearance: strength of the per-render exposure / gamma / white-balance / blur / noise changes (0: clean
            renders; the geometry and depth are unaffected).
        supersample, max_hole_area: see :func:`render_view`.
        with_depth: keep the depth maps (``False`` sets ``depth=None`` to save memory).

    Returns:
        ``[left, render_00, …, render_{n-1}, right]`` (names sorted alphabetically), or the renders only.
    """
    if num_views < 0:
        raise ValueError(f"num_views must be >= 0, got {num_views}")
    source = _source()
    views = []
    if include_real:
        K, R, t = _left_camera()
        views.append(SceneView("left.png", source.left, K, R, t, source.depth))
    for i, (R, t) in enumerate(_spiral_cameras(num_views, seed, spread_deg)):
        view = render_view(f"render_{i:02d}.png", _left_camera()[0], R, t, supersample=supersample,
                           max_hole_area=max_hole_area)
        image = _degrade(view.image, np.random.default_rng([seed, i]), appearance)
        views.append(SceneView(view.name, image, view.K, view.R, view.t, view.depth))
    if include_real:
        K, R, t = _right_camera()
        depth = _fill_small_holes(_splat_depth(_cached_points(supersample), K, R, t, source.right.shape[:2]),
                                  max_hole_area)
        views.append(SceneView("right.png", source.right, K, R, t, depth))
    if not with_depth:
        views = [SceneView(v.name, v.image, v.K, v.R, v.t, None) for v in views]
    return views


def relative_pose(view0: SceneView, view1: SceneView) -> tuple[np.ndarray, np.ndarray]:
    """``(R, t)`` mapping camera-0 coordinates to camera-1 coordinates (``X1 = R @ X0 + t``, metres)."""
    R = view1.R @ view0.R.T
    return R, view1.t - R @ view0.t


def correspondences(view0: SceneView, view1: SceneView, *, step: int = 1,
                    tolerance: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth pixel correspondences from ``view0`` to ``view1`` (both need depth).

    Pixels of ``view0`` on a grid of ``step`` px with a finite depth are projected into ``view1``; a pair is kept
    when it lands inside ``view1`` and is visible there (``view1``'s depth at the nearest pixel agrees within
    ``tolerance`` relative depth).

    Returns:
        ``(k0, k1)``: ``(N, 2)`` float64 pixels (package convention); ``k0`` on integer pixel centres.
    """
    if view0.depth is None or view1.depth is None:
        raise ValueError("correspondences need views with depth maps")
    height0, width0 = view0.size
    rows, cols = np.mgrid[0:height0:step, 0:width0:step]
    rows, cols = rows.ravel(), cols.ravel()
    z0 = view0.depth[rows, cols]
    keep = np.isfinite(z0)
    k0 = np.stack([cols[keep], rows[keep]], axis=1).astype(np.float64)
    uv, z1 = view1.project(view0.backproject(k0, z0[keep]))
    height1, width1 = view1.size
    with np.errstate(invalid="ignore"):
        inside = (uv[:, 0] > -0.5) & (uv[:, 0] < width1 - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < height1 - 0.5)
    col1 = np.clip(np.rint(np.nan_to_num(uv[:, 0])).astype(int), 0, width1 - 1)
    row1 = np.clip(np.rint(np.nan_to_num(uv[:, 1])).astype(int), 0, height1 - 1)
    with np.errstate(invalid="ignore"):
        visible = inside & (np.abs(view1.depth[row1, col1] - z1) <= tolerance * z1)
    return k0[visible], uv[visible]


def scene_extent(views: Sequence[SceneView] | None = None, *, percentile: float = 1.0) -> float:
    """Size of the scene in metres: the diagonal of the ``percentile``–``100−percentile`` box of the left view's
    ground-truth points (≈4.3 m for the motorcycle; robust to a few far outliers). ``views`` is accepted for
    symmetry and ignored: the geometry is the same for every rendering."""
    points = _left_points().T
    low, high = np.percentile(points, [percentile, 100.0 - percentile], axis=0)
    return float(np.linalg.norm(high - low))


def write_scene(views: Sequence[SceneView], out_dir: str | os.PathLike[str], *, depth: bool = False) -> Path:
    """Write the views' images (PNG), optionally their depth maps, and ``poses.json`` (last) into ``out_dir``.

    Returns:
        The path of ``poses.json``.
    """
    import io

    import cv2

    out = Path(out_dir)
    names = [v.name for v in views]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate view names: {sorted({n for n in names if names.count(n) > 1})}")
    records = []
    for view in views:
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(view.image), cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"cannot encode {view.name} as PNG")
        atomic_write_bytes(out / view.name, encoded.tobytes())
        depth_file = None
        if depth and view.depth is not None:
            depth_file = f"depth/{Path(view.name).stem}.npy"
            buffer = io.BytesIO()
            np.save(buffer, view.depth.astype(np.float32))
            atomic_write_bytes(out / depth_file, buffer.getvalue())
        height, width = view.size
        records.append({"name": view.name, "width": width, "height": height, "K": view.K.tolist(),
                        "R": view.R.tolist(), "t": view.t.tolist(), "depth": depth_file})
    document = {"format": FORMAT, "world": "camera frame of the real left Middlebury camera (x right, y down)",
                "units": "metres", "pixel_convention": "centre-at-integer",
                "pose": "X_cam = R @ X_world + t", "views": records}
    poses = out / POSES_FILE
    atomic_write_bytes(poses, (json.dumps(document, indent=1) + "\n").encode())
    return poses


def read_scene(path: str | os.PathLike[str]) -> list[SceneView]:
    """Read a scene written by :func:`write_scene` (``path``: the directory or its ``poses.json``)."""
    from gim_plugins.io import read_image

    path = Path(path)
    poses = path / POSES_FILE if path.is_dir() else path
    if not poses.is_file():
        raise FileNotFoundError(f"no {POSES_FILE} in {poses.parent} (not a scene written by write_scene?)")
    document = json.loads(poses.read_text())
    if document.get("format") != FORMAT:
        raise ValueError(f"{poses}: unknown format {document.get('format')!r}, expected {FORMAT!r}")
    views = []
    for record in document["views"]:
        image = read_image(poses.parent / record["name"])
        if image.shape[:2] != (record["height"], record["width"]):
            raise ValueError(f"{record['name']}: image is {image.shape[1]}×{image.shape[0]}, poses.json says "
                             f"{record['width']}×{record['height']}")
        depth = np.load(poses.parent / record["depth"]) if record.get("depth") else None
        views.append(SceneView(record["name"], image[..., :3], np.array(record["K"], dtype=np.float64),
                               np.array(record["R"], dtype=np.float64), np.array(record["t"], dtype=np.float64),
                               depth))
    return views
