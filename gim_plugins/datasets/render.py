"""Point-splatting renderer: novel views of photos with known depth, with exact cameras and depth per view.

Why: tests, benchmarks and training need many views of real content whose geometry is known exactly (poses, depth,
correspondences), and nothing can be downloaded. A photo with a metric depth map is enough to render it from nearby
cameras; this module does that with numpy and OpenCV only. It knows nothing about any particular scene
(:mod:`gim_plugins.datasets.scene` builds the motorcycle scene on top of it).

Cameras, views and their conventions (world-to-camera ``R, t`` in metres, pixel centre at integer, z depth with
``inf`` unknown, 4×4 rest-to-world poses of moving objects) are in :mod:`gim_plugins.datasets.views`.

Pipeline (:func:`render`):
    1. Samples (:class:`PointSet`): every source pixel is cut into ``supersample²`` samples whose depth comes from a
       per-pixel quantity that is affine on planes (disparity or inverse depth), interpolated bilinearly inside smooth
       2×2 cells (exact for planes) and taken from the pixel itself at depth edges, so no sample floats between a
       foreground and a background surface.
    2. Depth splat: the samples are projected into the new camera and z-buffered (nearest sample wins per pixel).
    3. Holes: connected holes of at most ``max_hole_area`` pixels get the mean inverse depth of their finite
       neighbours; larger holes (disocclusions, the border, unknown depth) stay ``inf``. For moving objects only holes
       enclosed by the object are filled, so an object never grows into the background at the image border.
    4. Colour: each pixel with finite depth is back-projected with that depth and the source photo is sampled
       bilinearly where it lands (no pixel quantisation in the colours). Pixels without depth are black. Beyond the
       photo's last pixel centres the static scene reads black, a moving object its border pixel (no dark seam).
    5. Layers: moving objects are rendered the same way through their pose of the moment and composited with the
       static scene by depth; the result says which layer owns each pixel.
    6. Appearance (:class:`Appearance`, optional): exposure, gamma, white balance, defocus blur and sensor noise, so a
       render is not a pixel-perfect resampling of the source photo. Geometry and depth are unaffected.
    Colours and depth of a render are therefore consistent by construction.

Camera paths (:func:`render_path`): a sequence of cameras in, an iterator of :class:`Frame` out (image, depth, the
exact camera, the moving object's mask and pose), one frame at a time so that long paths never sit in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from gim_plugins.datasets.views import (
    Camera,
    Frame,
    backproject_rows,
    check_pose,
    project_rows,
    transform_rows,
)

__all__ = [
    "NEAR",
    "Appearance",
    "MovingObject",
    "PointSet",
    "Rendering",
    "degrade",
    "render",
    "render_path",
]

NEAR = 0.05  # metres: points closer to a camera are not rendered


@dataclass(frozen=True, eq=False)
class PointSet:
    """Surface samples of one photo: world points plus the photo (and its camera) their colours are read from.

    Attributes:
        points: ``(3, M)`` float64 world points (read-only), ``supersample²`` per source pixel with known depth.
        image: ``(H, W, 3)`` uint8 RGB source photo.
        camera: the source photo's camera.
    """

    points: np.ndarray
    image: np.ndarray
    camera: Camera

    @classmethod
    def from_field(cls, image: np.ndarray, field: np.ndarray, to_depth: Callable[[np.ndarray], np.ndarray],
                   camera: Camera, *, supersample: int = 2, edge: float = 1.0) -> PointSet:
        """Samples from a per-pixel quantity that is affine on planes (e.g. stereo disparity, inverse depth).

        Args:
            image: the source photo ``(H, W, 3)``.
            field: ``(H, W)`` values, non-finite where the depth is unknown.
            to_depth: converts field values to camera depth in metres (e.g. ``f·B / (d + doffs)``).
            camera: the photo's camera; its ``K`` must have no skew.
            supersample: samples per pixel along each axis.
            edge: a 2×2 cell is interpolated when all four values are finite and span at most ``edge``; otherwise
                a sample takes its own pixel's value.
        """
        if supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {supersample}")
        if field.shape != image.shape[:2] or tuple(field.shape) != camera.size:
            raise ValueError(f"field {field.shape}, image {image.shape[:2]} and camera {camera.size} sizes differ")
        if camera.K[0, 1] != 0:
            raise ValueError("the source camera's K must have no skew")
        fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
        height, width = field.shape
        padded = np.pad(field, 1, mode="edge")
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
        chunks = []
        offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
        for oy in offsets:
            for ox in offsets:
                sx, sy = int(np.sign(ox)), int(np.sign(oy))
                d00 = field
                d01 = padded[1:height + 1, 1 + sx:width + 1 + sx]
                d10 = padded[1 + sy:height + 1 + sy, 1:width + 1]
                d11 = padded[1 + sy:height + 1 + sy, 1 + sx:width + 1 + sx]
                ax, ay = abs(ox), abs(oy)
                stack = np.stack([d00, d01, d10, d11])
                with np.errstate(invalid="ignore"):
                    smooth = np.isfinite(stack).all(0) & (np.ptp(stack, axis=0) <= edge)
                    interp = (1 - ay) * ((1 - ax) * d00 + ax * d01) + ay * ((1 - ax) * d10 + ax * d11)
                value = np.where(smooth, interp, d00)
                valid = np.isfinite(value)
                z = to_depth(value[valid])
                u, v = cols[valid] + ox, rows[valid] + oy
                chunks.append(np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z]))
        points = np.concatenate(chunks, axis=1)
        if not (np.array_equal(camera.R, np.eye(3)) and not camera.t.any()):
            points = transform_rows(camera.R.T, points - camera.t[:, None])
        points.setflags(write=False)
        return cls(points, image, camera)

    @classmethod
    def from_depth(cls, image: np.ndarray, depth: np.ndarray, camera: Camera, *, supersample: int = 2,
                   edge: float = 0.01) -> PointSet:
        """Samples from a depth map (metres, ``inf`` unknown); inverse depth is interpolated, ``edge`` in 1/m
        (0.01 stops interpolation across a 3 % depth step at 3 m)."""
        depth = np.asarray(depth, dtype=np.float64)
        with np.errstate(divide="ignore"):
            inverse = np.where(np.isfinite(depth) & (depth > 0), 1.0 / depth, np.inf)
        return cls.from_field(image, inverse, lambda w: 1.0 / w, camera, supersample=supersample, edge=edge)


def _splat_depth(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
                 size: tuple[int, int]) -> np.ndarray:
    """z-buffered nearest-pixel splat: the depth of the closest sample landing in each pixel, ``inf`` elsewhere."""
    height, width = size
    uv, z = project_rows(K, R, t, points)
    with np.errstate(invalid="ignore"):
        u, v = np.rint(uv[0]), np.rint(uv[1])
        keep = (z > NEAR) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    index = (v[keep] * width + u[keep]).astype(np.int64)
    depth = np.full(height * width, np.inf, dtype=np.float64)
    np.minimum.at(depth, index, z[keep])  # the z-buffer: nearest sample per pixel
    return depth.astype(np.float32).reshape(height, width)


def _fill_small_holes(depth: np.ndarray, max_hole_area: int, *, enclosed_only: bool = False) -> np.ndarray:
    """Fill connected holes of at most ``max_hole_area`` pixels with the mean inverse depth of their neighbours
    (``enclosed_only``: only holes that do not touch the image border)."""
    import cv2

    if max_hole_area <= 0:
        return depth
    holes = ~np.isfinite(depth)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(holes.astype(np.uint8), connectivity=4)
    small_labels = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= max_hole_area)
    small_labels = small_labels[small_labels != 0]
    if enclosed_only:
        border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        small_labels = np.setdiff1d(small_labels, border)
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


def _backward_colours(depth: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, source: PointSet,
                      replicate_border: bool = False) -> np.ndarray:
    """Sample the source photo where each pixel's 3D point lands (bilinear); black where the depth is unknown.

    Within half a pixel of the photo's border the bilinear footprint leaves the photo: it is black there (the static
    scene's renders have always been made so), or the border pixel (``replicate_border``, used for moving objects,
    whose outline would otherwise get a dark seam).
    """
    import cv2

    height, width = depth.shape
    finite = np.isfinite(depth)
    rows, cols = np.nonzero(finite)
    points = backproject_rows(K, R, t, np.stack([cols, rows]).astype(np.float64), depth[finite].astype(np.float64))
    uv, _ = project_rows(source.camera.K, source.camera.R, source.camera.t, points)
    map_x = np.full((height, width), -10.0, np.float32)
    map_y = np.full((height, width), -10.0, np.float32)
    map_x[finite], map_y[finite] = np.nan_to_num(uv[0], nan=-10.0), np.nan_to_num(uv[1], nan=-10.0)
    border = cv2.BORDER_REPLICATE if replicate_border else cv2.BORDER_CONSTANT
    image = cv2.remap(np.ascontiguousarray(source.image), map_x, map_y, cv2.INTER_LINEAR, borderMode=border,
                      borderValue=0)
    image[~finite] = 0
    return image


def _render_layer(layer: PointSet, camera: Camera, pose: np.ndarray | None,
                  max_hole_area: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image, depth)`` of one layer: the static scene (``pose`` None) or a moving object, whose ``pose`` (rest to
    world) is folded into the camera rather than applied to the points."""
    K, R, t = camera.K, camera.R, camera.t
    moving = pose is not None
    if moving:
        R, t = R @ pose[:3, :3], R @ pose[:3, 3] + t
    depth = _fill_small_holes(_splat_depth(layer.points, K, R, t, camera.size), max_hole_area, enclosed_only=moving)
    return _backward_colours(depth, K, R, t, layer, replicate_border=moving), depth


@dataclass(frozen=True, eq=False)
class Rendering:
    """What :func:`render` returns.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB, black where nothing was rendered.
        depth: ``(H, W)`` float32 camera depth in metres, ``inf`` where nothing was rendered.
        labels: ``(H, W)`` int8: 0 where the static scene is seen, ``k`` where object ``k`` (1-based, in the order
            given) is the nearest surface, -1 where nothing is.
    """

    image: np.ndarray
    depth: np.ndarray
    labels: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """``(H, W)`` bool: pixels with a rendered surface (finite depth)."""
        return np.isfinite(self.depth)

    @property
    def object_mask(self) -> np.ndarray:
        """``(H, W)`` bool: pixels where a moving object is the nearest surface."""
        return self.labels > 0


def render(camera: Camera, static: PointSet, *, objects: Sequence[tuple[PointSet, np.ndarray]] = (),
           max_hole_area: int = 48) -> Rendering:
    """Render a static point set and optional moving objects from ``camera`` (steps 2–5 of the module docstring).

    Args:
        camera: the new view.
        static: the scene's samples (world coordinates).
        objects: ``(points, pose)`` pairs: samples in the object's rest coordinates and its 4×4 rest-to-world pose.
        max_hole_area: holes of at most this many pixels are filled; larger ones stay black with ``inf`` depth.
    """
    image, depth = _render_layer(static, camera, None, max_hole_area)
    labels = np.where(np.isfinite(depth), 0, -1).astype(np.int8)
    for k, (points, pose) in enumerate(objects, start=1):
        layer_image, layer_depth = _render_layer(points, camera, check_pose(pose), max_hole_area)
        front = layer_depth < depth
        image[front], depth[front], labels[front] = layer_image[front], layer_depth[front], k
    return Rendering(image, depth, labels)


@dataclass(frozen=True)
class Appearance:
    """Camera-like appearance of one picture: exposure gain, gamma, per-channel white balance, defocus blur (pixels)
    and sensor noise (8-bit levels).

    Why: clean renders of one photo are easier to match than real view pairs (RootSIFT AUC@5 ≈ 88 on the motorcycle
    renders); these changes bring the difficulty back to that of real image pairs.
    """

    gain: float
    gamma: float
    balance: tuple[float, float, float]
    blur: float
    noise: float

    @classmethod
    def draw(cls, rng: np.random.Generator, strength: float) -> Appearance:
        """Random settings; ``strength`` 1 is the default difficulty, 0 the identity."""
        gain = 1.0 + strength * rng.uniform(-0.25, 0.25)
        gamma = 1.0 + strength * rng.uniform(-0.2, 0.2)
        balance = 1.0 + strength * rng.uniform(-0.06, 0.06, size=3)
        blur = strength * rng.uniform(0.3, 1.0)
        noise = strength * rng.uniform(1.0, 3.0)
        return cls(float(gain), float(gamma), tuple(float(b) for b in balance), float(blur), float(noise))

    def blend(self, other: Appearance, weight: float) -> Appearance:
        """Linear interpolation towards ``other`` (``weight`` 0 → self, 1 → other), for smooth drifts in videos."""
        def mix(a: float, b: float) -> float:
            return float((1.0 - weight) * a + weight * b)

        return Appearance(mix(self.gain, other.gain), mix(self.gamma, other.gamma),
                          tuple(mix(a, b) for a, b in zip(self.balance, other.balance)),
                          mix(self.blur, other.blur), mix(self.noise, other.noise))

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The image as this camera would see it (sensor noise drawn from ``rng``); black pixels stay black."""
        import cv2

        black = ~image.any(axis=2)
        values = image.astype(np.float32) / 255.0
        values = np.clip(values * self.gain * np.asarray(self.balance), 0.0, 1.0) ** self.gamma
        if self.blur > 0:
            values = cv2.GaussianBlur(values, (0, 0), self.blur)
        values = values * 255.0 + rng.normal(0.0, self.noise, values.shape).astype(np.float32)
        out = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        out[black] = 0
        return out


def degrade(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random camera-like appearance changes (:class:`Appearance`); ``strength`` 0 returns the image unchanged."""
    if strength <= 0:
        return image
    return Appearance.draw(rng, strength).apply(image, rng)


@dataclass(frozen=True, eq=False)
class MovingObject:
    """A rigid object moving through a camera path.

    Attributes:
        points: its samples in rest coordinates.
        poses: one entry per frame of the path: a 4×4 rest-to-world pose, or ``None`` where the object is absent.
    """

    points: PointSet
    poses: Sequence[np.ndarray | None]


def render_path(cameras: Sequence[Camera], static: PointSet, *, moving: MovingObject | None = None,
                max_hole_area: int = 48, appearance: float = 0.0, seed: int = 0,
                name: str = "frame_{:04d}.png") -> Iterator[Frame]:
    """Render a camera path frame by frame (a generator: one frame is computed per ``next``, none is kept).

    Args:
        cameras: the path; frame ``i`` has exactly ``cameras[i]``'s ``K, R, t`` and size.
        static: the scene's samples.
        moving: an optional moving object with one pose (or ``None``) per camera.
        max_hole_area: see :func:`render`.
        appearance: strength of the camera appearance (0: clean frames). It drifts smoothly from one random setting
            at the first frame to another at the last; sensor noise is new in every frame. Deterministic per ``seed``.
        name: format of the frame names, given the frame index.

    Yields:
        :class:`Frame` objects in path order.
    """
    if moving is not None and len(moving.poses) != len(cameras):
        raise ValueError(f"the moving object has {len(moving.poses)} poses for {len(cameras)} cameras")
    if any(not isinstance(camera, Camera) for camera in cameras):
        raise TypeError("render_path needs a sequence of Camera objects")
    return _frames(cameras, static, moving, max_hole_area, appearance, seed, name)


def _frames(cameras: Sequence[Camera], static: PointSet, moving: MovingObject | None, max_hole_area: int,
            appearance: float, seed: int, name: str) -> Iterator[Frame]:
    if appearance > 0:
        rng = np.random.default_rng(seed)
        start, end = Appearance.draw(rng, appearance), Appearance.draw(rng, appearance)
    last = max(len(cameras) - 1, 1)
    for index, camera in enumerate(cameras):
        pose = moving.poses[index] if moving is not None else None
        pose = None if pose is None else check_pose(pose)
        objects = [] if pose is None else [(moving.points, pose)]
        result = render(camera, static, objects=objects, max_hole_area=max_hole_area)
        image = result.image
        if appearance > 0:
            image = start.blend(end, index / last).apply(image, np.random.default_rng([seed, index]))
        yield Frame(name.format(index), image, camera.K, camera.R, camera.t, result.depth, index=index,
                    object_mask=result.object_mask, object_pose=pose)
