"""The motorcycle scene: many views with exact ground truth, rendered offline from the real Middlebury pair.

Why: SfM, pose and matcher tests need many views of a real scene with exact intrinsics and poses, and nothing can be
downloaded. The scikit-image wheel ships one real rectified stereo pair with a dense ground-truth disparity
(:mod:`gim_plugins.datasets.motorcycle`). The left image and its disparity give a metric depth map; novel views are
rendered from it with :mod:`gim_plugins.datasets.render` (z-buffered supersampled splat, hole filling, backward
colour sampling, appearance changes), and the real right image is added with its calibrated pose. This module holds
the scene's data: the source samples, the real views, camera layouts (views, smooth paths), a moving object,
ground-truth correspondences and the on-disk format.

World frame and conventions (those of :mod:`gim_plugins.datasets.views`):
    * The world frame is the camera frame of the real left camera (x right, y down, z forward), in metres.
    * ``R, t`` map world to camera: ``X_cam = R @ X_world + t``; the camera centre is ``-R.T @ t``.
    * ``K`` uses the package pixel convention (centre of the top-left pixel at (0, 0)): a camera point ``X`` is seen
      at ``(K @ X)[:2] / X[2]``. The Middlebury principal points are used as given.
    * ``depth`` is the z coordinate (metres) in the view's camera frame, ``inf`` where unknown.

Source samples (:func:`source_points`): the left photo's disparity is interpolated inside smooth 2×2 cells (at most
1 px of disparity apart; disparity is affine on planes, so planes are exact) and converted to depth with the stereo
calibration ``Z = f·B / (d + doffs)``.

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

Videos: :func:`smooth_path` gives a smooth camera path inside the same range of views, :func:`moving_card` a
textured card crossing the scene in front of the motorcycle, and :func:`render_motorcycle_path` renders the frames
one at a time (:class:`~gim_plugins.datasets.views.Frame`: image, depth, exact camera, the card's mask and pose).
:func:`correspondences` between frames leaves out the pixels covered by the card.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gim_plugins.atomic import atomic_write_bytes
from gim_plugins.datasets import motorcycle
from gim_plugins.datasets.render import MovingObject, PointSet, degrade, render, render_path
from gim_plugins.datasets.views import Camera, Frame, SceneView, check_camera, look_at

__all__ = [
    "FORMAT",
    "Camera",
    "Frame",
    "MovingObject",
    "SceneView",
    "correspondences",
    "moving_card",
    "read_scene",
    "relative_pose",
    "render_motorcycle_path",
    "render_motorcycle_scene",
    "render_view",
    "scene_extent",
    "smooth_path",
    "source_points",
    "write_scene",
]

FORMAT = "gim_plugins.scene/1"
POSES_FILE = "poses.json"


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


def _disparity_to_depth(disparity: np.ndarray) -> np.ndarray:
    """Metres from left-image disparity: ``Z = f·B / (d + doffs)``."""
    cal = motorcycle.CALIBRATION
    return cal.focal * cal.baseline_mm / 1000.0 / (disparity + cal.doffs)


@functools.lru_cache(maxsize=4)
def source_points(supersample: int = 2) -> PointSet:
    """The scene's samples: ``supersample²`` per left pixel with ground truth, coloured by the left photo."""
    source = _source()
    camera = Camera(*_left_camera(), source.left.shape[:2])
    return PointSet.from_field(source.left, source.disparity, _disparity_to_depth, camera, supersample=supersample,
                               edge=1.0)


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
    K, R, t = check_camera(K, R, t)
    camera = Camera(K, R, t, size or _source().left.shape[:2])
    result = render(camera, source_points(supersample), max_hole_area=max_hole_area)
    return SceneView(name, result.image, K, R, t, result.depth)


def _left_points() -> np.ndarray:
    """``(3, N)`` world points of the left pixels with ground truth (one per pixel)."""
    depth = _source().depth
    rows, cols = np.nonzero(np.isfinite(depth))
    uv = np.stack([cols, rows], axis=1).astype(np.float64)
    return Camera(*_left_camera(), depth.shape).backproject(uv, depth[rows, cols].astype(np.float64)).T


@functools.lru_cache(maxsize=1)
def _orbit() -> tuple[np.ndarray, float, float, float]:
    """The median scene point, its distance and the azimuth / elevation (radians) of the left camera's ray to it."""
    target = np.median(_left_points(), axis=1)
    target.setflags(write=False)
    distance = float(np.linalg.norm(target))
    return target, distance, math.atan2(target[0], target[2]), math.asin(target[1] / distance)


def _orbit_center(target: np.ndarray, distance: float, azimuth: float, elevation: float) -> np.ndarray:
    """Centre of a camera at ``distance`` from ``target``, in the direction given by the angles (radians)."""
    direction = np.array([math.sin(azimuth) * math.cos(elevation), math.sin(elevation),
                          math.cos(azimuth) * math.cos(elevation)])
    return target - distance * direction


def _spiral_cameras(num_views: int, seed: int, spread_deg: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """``num_views`` look-at cameras around the median scene point, ordered by azimuth (deterministic per seed).

    Angles are measured around the ray from the scene centre to the left camera, so the left camera sits at the
    centre of the spiral.
    """
    rng = np.random.default_rng(seed)
    target, distance, azimuth0, elevation0 = _orbit()
    golden = math.pi * (3.0 - math.sqrt(5.0))
    cameras = []
    for i in range(num_views):
        radius = spread_deg * math.sqrt((i + 0.5) / num_views)
        azimuth = radius * math.cos(i * golden) + rng.uniform(-1.0, 1.0)
        elevation = 0.6 * radius * math.sin(i * golden) + rng.uniform(-1.0, 1.0)
        scale = rng.uniform(0.85, 1.10)
        roll = math.radians(rng.uniform(-4.0, 4.0))
        az, el = azimuth0 + math.radians(azimuth), elevation0 + math.radians(elevation)
        center = _orbit_center(target, scale * distance, az, el)
        cameras.append((azimuth, look_at(center, target, roll)))
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
        image = degrade(view.image, np.random.default_rng([seed, i]), appearance)
        views.append(SceneView(view.name, image, view.K, view.R, view.t, view.depth))
    if include_real:
        K, R, t = _right_camera()
        camera = Camera(K, R, t, source.right.shape[:2])
        depth = render(camera, source_points(supersample), max_hole_area=max_hole_area).depth
        views.append(SceneView("right.png", source.right, K, R, t, depth))
    if not with_depth:
        views = [SceneView(v.name, v.image, v.K, v.R, v.t, None) for v in views]
    return views


def _clamped_bspline(keys: np.ndarray, count: int) -> np.ndarray:
    """``count`` evenly spaced samples ``(count, D)`` of the uniform cubic B-spline of ``keys`` ``(N, D)``, with the
    end keys tripled so the curve starts and ends on them at rest. It stays inside the keys' convex hull."""
    control = np.concatenate([keys[:1], keys[:1], keys, keys[-1:], keys[-1:]])
    segments = len(control) - 3
    s = np.linspace(0.0, segments, count)
    j = np.minimum(s.astype(int), segments - 1)
    u = (s - j)[:, None]
    basis = [(1 - u) ** 3, 3 * u**3 - 6 * u**2 + 4, -3 * u**3 + 3 * u**2 + 3 * u + 1, u**3]
    return sum(b * control[j + k] for k, b in enumerate(basis)) / 6.0


def smooth_path(num_frames: int, *, seed: int = 0, spread_deg: float = 9.0, num_keys: int = 6,
                scale: float = 1.0) -> list[Camera]:
    """A smooth camera path through the motorcycle scene (for ground-truth videos), deterministic per ``seed``.

    ``num_keys`` key poses stay inside the range of :func:`render_motorcycle_scene`'s views, which the source renders
    without large holes: the azimuth sweeps from +``spread_deg`` to −``spread_deg`` (jittered by 1°: the camera moves
    from left to right, world x growing), the elevation stays inside the ellipse of half-axes ``spread_deg`` and
    0.6·``spread_deg``, the distance to the target is ×0.85…1.10, the roll ±4°, and the look-at target moves within
    ±0.1 m (x, y) of the median scene point. Every parameter (camera position angles, distance, roll, target)
    follows the uniform cubic B-spline of the keys, with the end keys tripled: twice continuously differentiable,
    never outside the keys' range (a B-spline stays in their convex hull), starting on the first key and ending on
    the last one at rest. More frames sample the same curve more densely.

    Args:
        num_frames: number of cameras.
        seed: draws the key poses.
        spread_deg: half-angle of the range of views (degrees).
        num_keys: key poses (more keys: a busier path).
        scale: image scale relative to the 741×500 source (``K`` scaled, pixel-centre convention kept).

    Returns:
        ``num_frames`` cameras with the left camera's intrinsics (scaled).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_keys < 2:
        raise ValueError(f"num_keys must be >= 2, got {num_keys}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    rng = np.random.default_rng(seed)
    target, distance, azimuth0, elevation0 = _orbit()
    azimuth = np.clip(np.linspace(spread_deg, -spread_deg, num_keys) + rng.uniform(-1.0, 1.0, num_keys),
                      -spread_deg, spread_deg)
    room = np.sqrt(np.clip(1.0 - (azimuth / spread_deg) ** 2, 0.0, 1.0)) if spread_deg > 0 else np.zeros(num_keys)
    elevation = 0.6 * spread_deg * room * rng.uniform(-1.0, 1.0, num_keys)
    keys = np.column_stack([azimuth, elevation, rng.uniform(0.85, 1.10, num_keys), rng.uniform(-4.0, 4.0, num_keys),
                            rng.uniform(-0.1, 0.1, (num_keys, 2))])
    K, size = _left_camera()[0], _source().left.shape[:2]
    cameras = []
    for az, el, dist, roll, dx, dy in _clamped_bspline(keys, num_frames):
        look = target + np.array([dx, dy, 0.0])
        center = _orbit_center(look, dist * distance, azimuth0 + math.radians(az), elevation0 + math.radians(el))
        camera = Camera.look_at(center, look, K, size, math.radians(roll))
        cameras.append(camera if scale == 1.0 else camera.scaled(scale))
    return cameras


def _bundled_image(name: str) -> np.ndarray:
    """An RGB photo shipped inside scikit-image (e.g. ``"astronaut.png"``, ``"coffee.png"``)."""
    from gim_plugins.io import read_image

    return read_image(motorcycle.data_dir() / name)[..., :3]


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def moving_card(num_frames: int, *, first: int | None = None, last: int | None = None,
                texture: np.ndarray | None = None, width_m: float = 0.4, depth_m: float = 1.6,
                supersample: int = 2) -> MovingObject:
    """A flat textured card crossing the scene in front of the motorcycle, for paths of ``num_frames`` frames.

    The card (default texture: scikit-image's astronaut photo, ``width_m`` wide) is present on frames
    ``first … last − 1`` (default: the middle half of the path) and absent elsewhere. It moves at constant speed on
    a straight line from x = −1.2 m to x = +1.2 m at height y = 0 and depth z = ``depth_m`` (world frame; the
    motorcycle's nearest surface is 2.1 m from the left camera), turning about the vertical axis from −30° to +30°
    and about its normal from −10° to +10°. In its rest coordinates it lies in the plane z = 0, centred on the origin.

    Returns:
        A :class:`MovingObject` with ``num_frames`` poses (``None`` where absent).
    """
    first = num_frames // 4 if first is None else first
    last = (3 * num_frames) // 4 if last is None else last
    if not 0 <= first < last <= num_frames:
        raise ValueError(f"need 0 <= first < last <= num_frames, got first={first}, last={last}, "
                         f"num_frames={num_frames}")
    texture = _bundled_image("astronaut.png") if texture is None else np.asarray(texture)
    height, width = texture.shape[:2]
    focal = width / width_m  # the texture seen from 1 m in front of the card
    K = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])
    camera = Camera(K, np.eye(3), np.array([0.0, 0.0, 1.0]), (height, width))
    points = PointSet.from_depth(texture, np.ones((height, width)), camera, supersample=supersample)
    poses: list[np.ndarray | None] = [None] * num_frames
    for index in range(first, last):
        fraction = (index - first) / max(last - 1 - first, 1)
        pose = np.eye(4)
        pose[:3, :3] = _rotation(1, math.radians(-30.0 + 60.0 * fraction)) @ _rotation(
            2, math.radians(-10.0 + 20.0 * fraction))
        pose[:3, 3] = [-1.2 + 2.4 * fraction, 0.0, depth_m]
        poses[index] = pose
    return MovingObject(points, poses)


def render_motorcycle_path(cameras: Sequence[Camera], *, moving: MovingObject | None = None, supersample: int = 2,
                           max_hole_area: int = 48, appearance: float = 0.0, seed: int = 0) -> Iterator[Frame]:
    """Render the motorcycle scene along a camera path, one frame at a time (see
    :func:`gim_plugins.datasets.render.render_path`): e.g. ``render_motorcycle_path(smooth_path(300),
    moving=moving_card(300))``."""
    return render_path(cameras, source_points(supersample), moving=moving, max_hole_area=max_hole_area,
                       appearance=appearance, seed=seed)


def relative_pose(view0: SceneView, view1: SceneView) -> tuple[np.ndarray, np.ndarray]:
    """``(R, t)`` mapping camera-0 coordinates to camera-1 coordinates (``X1 = R @ X0 + t``, metres)."""
    R = view1.R @ view0.R.T
    return R, view1.t - R @ view0.t


def correspondences(view0: SceneView, view1: SceneView, *, step: int = 1,
                    tolerance: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth pixel correspondences from ``view0`` to ``view1`` (both need depth).

    Pixels of ``view0`` on a grid of ``step`` px with a finite depth are projected into ``view1``; a pair is kept
    when it lands inside ``view1`` and is visible there (``view1``'s depth at the nearest pixel agrees within
    ``tolerance`` relative depth). For :class:`Frame` views, pixels covered by the moving object are left out on
    both sides (neither a ``view0`` pixel on the object nor a ``view1`` landing pixel on it), so every pair is a
    point of the static scene.

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
    mask0 = getattr(view0, "object_mask", None)
    if mask0 is not None:
        keep &= ~mask0[rows, cols]
    k0 = np.stack([cols[keep], rows[keep]], axis=1).astype(np.float64)
    uv, z1 = view1.project(view0.backproject(k0, z0[keep]))
    height1, width1 = view1.size
    with np.errstate(invalid="ignore"):
        inside = (uv[:, 0] > -0.5) & (uv[:, 0] < width1 - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < height1 - 0.5)
    col1 = np.clip(np.rint(np.nan_to_num(uv[:, 0])).astype(int), 0, width1 - 1)
    row1 = np.clip(np.rint(np.nan_to_num(uv[:, 1])).astype(int), 0, height1 - 1)
    with np.errstate(invalid="ignore"):
        visible = inside & (np.abs(view1.depth[row1, col1] - z1) <= tolerance * z1)
    mask1 = getattr(view1, "object_mask", None)
    if mask1 is not None:
        visible &= ~mask1[row1, col1]
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
