"""GIM's pair augmentation: fit-resize, random rescale and crop, the image-1 perspective and rotation, label
filtering and retries; pixels warped and darkened in the workers or batch-wide on the training device.

What GIM's ``read_images`` and ``WALKDataset.__getitem__`` do (training mode), and how it is done here:

1. **Fit**: an image larger than the canvas is resized by the height or the width ratio, chosen at random (GIM's
   ``random.choice([sh, sw])``: one side fits, the other may overflow and is cropped); outside training by the
   smaller ratio (the whole picture fits).
2. **Random rescale** with probability ``1 − aug_prob`` (0.5): image 0 by 0.6–1.0 and image 1 by 1.0–1.4 of the
   fit size (both 0.6–1.4 when the pair has no label box, as GIM's MegaDepth loader); image 1's upper bound is
   lowered so that the label box still fits the canvas (GIM's rule). Sizes are floored to multiples of ``df``.
3. **Random crop** to the canvas. GIM only keeps the top-left corner of the label box inside the crop; here the crop
   start is drawn among the positions that keep the whole box (GIM's rule when the box is larger than the canvas).
4. **Padding**: bottom-right zeros up to the canvas; the validity mask marks the picture.
5. **Perspective** (p 0.9): image 1 is warped by a homography that moves each canvas corner by an integer offset in
   ±25 % of the canvas side (four distinct offsets per axis, as ``random.sample``), composed with a rotation by an
   angle in [−180°, 180°] about the canvas centre (GIM's ``degree_to_matrix``); the labels are warped along. GIM's
   corner targets are ``w − x`` against source corners at ``w − 1``, a 1/(w − 1) scale kept as it is.
6. **Label filtering**: a label survives when, in both images, the four coarse-grid points (multiples of ``df``)
   around it lie on the canvas and map back onto the picture (not the padding, not outside the warp) — GIM's check
   of the bilinear coarse-mask sample, done analytically. Exact duplicates are dropped (GIM's ``torch.unique``).
7. **Retries**: fewer than ``min_labels`` (64) left → everything is drawn again, up to ``retries`` (30) times.

Resizing maps points exactly for ``cv2.resize`` in the package's pixel convention (``(x + 0.5)·s − 0.5``), where
GIM uses ``x·s`` (a bias below half a pixel). Only the geometry is drawn in the retry loop (cheap, on label
coordinates); pixels are produced once. The photometric Dark augmentation (:mod:`.darkaug`) and the image-1 pixel
warp run either in the data worker or later, batch-wide on the device, through :func:`finish`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ImagePlan", "PairAugmenter", "PairPlan", "finish", "keep_mask", "plan_image", "sample_perspective"]


@dataclass(frozen=True)
class ImagePlan:
    """How one image becomes its network input: resize to ``resized`` then crop at ``crop`` (pixels of the
    resized image), giving a picture of ``size`` in the top-left corner of the canvas.

    Attributes:
        source_size: ``(h, w)`` of the original image.
        resized: ``(h, w)`` after resizing.
        crop: ``(x, y)`` of the crop's top-left corner in the resized image.
        size: ``(h, w)`` of the cropped picture (at most the canvas).
    """

    source_size: tuple[int, int]
    resized: tuple[int, int]
    crop: tuple[int, int]
    size: tuple[int, int]

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: network pixels per source pixel."""
        return self.resized[1] / self.source_size[1], self.resized[0] / self.source_size[0]

    @property
    def matrix(self) -> np.ndarray:
        """3×3 affine map source pixels → network pixels (package convention, exact for ``cv2.resize``)."""
        sx, sy = self.scale
        return np.array([[sx, 0.0, 0.5 * sx - 0.5 - self.crop[0]], [0.0, sy, 0.5 * sy - 0.5 - self.crop[1]],
                         [0.0, 0.0, 1.0]])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """``(N, 2)`` source pixels → network pixels."""
        return transform(self.matrix, points)

    def render(self, image: np.ndarray, canvas: tuple[int, int], interpolation: str = "linear") -> np.ndarray:
        """The canvas ``(H, W[, C])`` holding the resized and cropped picture, zero elsewhere (``nearest-exact``
        interpolation for depth maps)."""
        import cv2

        flag = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST_EXACT}[interpolation]
        (h, w), (x0, y0) = self.size, self.crop
        resized = image
        if tuple(image.shape[:2]) != self.resized:
            resized = cv2.resize(image, (self.resized[1], self.resized[0]), interpolation=flag)
        out = np.zeros((*canvas, *image.shape[2:]), dtype=image.dtype)
        out[:h, :w] = resized[y0:y0 + h, x0:x0 + w]
        return out


def transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3×3 (projective) matrix to ``(N, 2)`` points."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mapped = points @ matrix[:2, :2].T + matrix[:2, 2]
    w = points @ matrix[2, :2] + matrix[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return mapped / w[:, None]


def _floor_df(value: float, df: int) -> int:
    return max(int(value // df), 1) * df


def _crop_start(rng: np.random.Generator, full: int, window: int, box: tuple[float, float] | None) -> int:
    """Crop start in ``[0, full − window]`` keeping ``box = (low, high)`` (resized pixels) when it fits."""
    if full <= window:
        return 0
    if box is not None:
        low = max(0, math.ceil(box[1]) - window + 1)
        high = min(full - window, math.floor(box[0]))
        if low <= high:
            return int(rng.integers(low, high + 1))
        return int(min(int(rng.random() * (full - window)), max(math.floor(box[0]), 0)))  # GIM's rule
    return int(rng.random() * (full - window))


def plan_image(rng: np.random.Generator, source_size: tuple[int, int], canvas: tuple[int, int], df: int, *,
               train: bool, side: str | None = None, box: np.ndarray | None = None,
               aug_prob: float = 0.5) -> ImagePlan:
    """Draw one image's resize and crop as GIM's ``read_images`` (steps 1–3 of the module docstring).

    Args:
        source_size: ``(h, w)`` of the image.
        canvas: ``(H, W)`` network input size (multiples of ``df``).
        train: draw GIM's training randomness; otherwise fit the whole image.
        side: ``"left"`` (image 0: rescale 0.6–1.0), ``"right"`` (image 1: 1.0–1.4) or ``None`` (0.6–1.4).
        box: ``(x_min, y_min, x_max, y_max)`` of the labels in source pixels, kept inside the crop; or ``None``.
        aug_prob: probability of *not* rescaling (GIM's name).
    """
    h, w = source_size
    H, W = canvas
    if h > H or w > W:
        scale = float(rng.choice([H / h, W / w])) if train else min(H / h, W / w)
        w_new, h_new = float(round(w * scale)), float(round(h * scale))
    else:
        w_new, h_new = float(w), float(h)
    if train and rng.random() > aug_prob:
        ratio = max(h / H, w / W)
        low, high = {"left": (0.6, 1.0), "right": (1.0, 1.4)}.get(side or "", (0.6, 1.4))
        if ratio < 1.0:
            low, high = low / ratio, high / ratio
        if side == "right" and box is not None:
            high = min(high, H / max(box[3], 1e-6), W / max(box[2], 1e-6))
        factor = rng.uniform(min(low, high), max(low, high))
        w_new, h_new = w_new * factor, h_new * factor
    w_new, h_new = _floor_df(w_new, df), _floor_df(h_new, df)
    sx, sy = w_new / w, h_new / h
    box_x = box_y = None
    if box is not None:
        box_x = ((box[0] + 0.5) * sx - 0.5, (box[2] + 0.5) * sx - 0.5)
        box_y = ((box[1] + 0.5) * sy - 0.5, (box[3] + 0.5) * sy - 0.5)
    x0 = _crop_start(rng, w_new, W, box_x)
    y0 = _crop_start(rng, h_new, H, box_y)
    return ImagePlan((h, w), (h_new, w_new), (x0, y0), (min(h_new, H), min(w_new, W)))


def sample_perspective(rng: np.random.Generator, canvas: tuple[int, int], jitter: float = 0.25,
                       rotation: float = 180.0) -> np.ndarray:
    """GIM's image-1 homography on a ``(H, W)`` canvas: corner jitter (integers in ±``jitter``·side, distinct per
    axis) composed with a rotation by an angle in [−``rotation``, ``rotation``] degrees about the canvas centre."""
    import cv2

    h, w = canvas

    def offsets(side: int) -> np.ndarray:
        span = int(side * jitter)
        return rng.choice(np.arange(-span, span), 4, replace=False) if span >= 2 else np.zeros(4, np.int64)

    x_tl, x_bl, x_br, x_tr = offsets(w)
    y_tl, y_bl, y_br, y_tr = offsets(h)
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float32)
    dst = np.array([[x_tl, y_tl], [w - x_tr, y_tr], [w - x_br, h - y_br], [x_bl, h - y_bl]], np.float32)
    perspective = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
    angle = math.radians(-rng.uniform(-rotation, rotation))
    c, s = math.cos(angle), math.sin(angle)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    rotate = np.array([[c, -s, cx * (1 - c) + cy * s], [s, c, cy * (1 - c) - cx * s], [0.0, 0.0, 1.0]])
    return rotate @ perspective


def keep_mask(points: np.ndarray, size: tuple[int, int], canvas: tuple[int, int], df: int,
              homography: np.ndarray | None = None) -> np.ndarray:
    """``(N,)`` bool: the four coarse-grid points around each point lie on the canvas and map back (through the
    inverse of ``homography``) onto the ``size = (h, w)`` picture."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    H, W = canvas
    cells = np.floor(points / df) * df
    keep = np.isfinite(points).all(axis=1)
    inverse = None if homography is None else np.linalg.inv(homography)
    for dx in (0, df):
        for dy in (0, df):
            corner = cells + np.array([dx, dy])
            keep &= (corner[:, 0] >= 0) & (corner[:, 0] <= W - 1) & (corner[:, 1] >= 0) & (corner[:, 1] <= H - 1)
            back = corner if inverse is None else transform(inverse, corner)
            with np.errstate(invalid="ignore"):
                keep &= (back[:, 0] >= -1e-6) & (back[:, 0] <= size[1] - 1 + 1e-6)
                keep &= (back[:, 1] >= -1e-6) & (back[:, 1] <= size[0] - 1 + 1e-6)
    return keep


@dataclass(frozen=True)
class PairPlan:
    """A pair's drawn geometry and its surviving labels (network pixels, final)."""

    plan0: ImagePlan
    plan1: ImagePlan
    H1: np.ndarray
    labels: np.ndarray
    attempts: int
    dark0: np.ndarray = field(repr=False)
    dark1: np.ndarray = field(repr=False)


class PairAugmenter:
    """Draws a pair's augmentation from a sample generator (GIM's recipe; see the module docstring).

    Conf keys: ``image_size`` ``(W, H)`` (GIM's ``--img_size`` order; one number for a square), ``df``, ``train``,
    ``aug_prob``, ``perspective_prob``, ``jitter``, ``rotation``, ``keep_box`` (labels steer rescale and crop, as for
    video pairs), ``min_labels``, ``retries``, ``dark`` (Dark augmentation on).
    """

    default_conf: Mapping[str, Any] = {
        "image_size": (840, 840), "df": 8, "train": True, "aug_prob": 0.5, "perspective_prob": 0.9,
        "jitter": 0.25, "rotation": 180.0, "keep_box": True, "min_labels": 64, "retries": 30, "dark": True,
    }

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        from gim_plugins.conf import merge_conf

        self.conf = merge_conf(self.default_conf, dict(conf or {}))
        size = self.conf.image_size
        width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[-1]))
        df = int(self.conf.df)
        self.canvas = (_floor_df(height, df), _floor_df(width, df))

    def plan(self, rng: np.random.Generator, size0: tuple[int, int], size1: tuple[int, int],
             labels: np.ndarray | None) -> PairPlan | None:
        """Draw geometry until at least ``min_labels`` labels survive; ``None`` after ``retries`` failures.

        Args:
            size0, size1: ``(h, w)`` of the two source images.
            labels: ``(N, 4)`` correspondences in source pixels (or ``None``/empty for pose-only pairs).
        """
        from gim_plugins.training.data.darkaug import sample_dark

        conf, canvas, df = self.conf, self.canvas, int(self.conf.df)
        labels = np.zeros((0, 4)) if labels is None else np.asarray(labels, dtype=np.float64).reshape(-1, 4)
        box0 = box1 = None
        if conf.keep_box and len(labels):
            box0 = np.concatenate([labels[:, :2].min(0), labels[:, :2].max(0)])
            box1 = np.concatenate([labels[:, 2:].min(0), labels[:, 2:].max(0)])
        sides = ("left", "right") if conf.keep_box else (None, None)
        for attempt in range(1, int(conf.retries) + 1):
            plan0 = plan_image(rng, size0, canvas, df, train=conf.train, side=sides[0], box=box0,
                               aug_prob=conf.aug_prob)
            plan1 = plan_image(rng, size1, canvas, df, train=conf.train, side=sides[1], box=box1,
                               aug_prob=conf.aug_prob)
            H1 = np.eye(3)
            if conf.train and rng.random() < conf.perspective_prob:
                H1 = sample_perspective(rng, canvas, conf.jitter, conf.rotation)
            points0 = plan0.apply(labels[:, :2])
            points1 = transform(H1, plan1.apply(labels[:, 2:]))
            keep = keep_mask(points0, plan0.size, canvas, df) & keep_mask(points1, plan1.size, canvas, df, H1)
            kept = np.unique(np.concatenate([points0, points1], axis=1)[keep].astype(np.float32), axis=0)
            if len(kept) >= int(conf.min_labels):
                dark = conf.train and conf.dark
                dark0 = sample_dark(rng, min(plan0.scale)) if dark else np.zeros(16, np.float32)
                dark1 = sample_dark(rng, min(plan1.scale)) if dark else np.zeros(16, np.float32)
                return PairPlan(plan0, plan1, H1, kept, attempt, dark0, dark1)
        return None


def _warp(images: Any, homographies: Any, canvas: tuple[int, int]) -> Any:
    from kornia.geometry.transform import warp_perspective

    return warp_perspective(images, homographies, dsize=canvas, mode="bilinear", padding_mode="zeros",
                            align_corners=True)


def finish(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the pending pixel work of a batch on its own device: Dark augmentation of both images, then the warp
    of ``image1`` and ``mask1`` by ``H1`` (GIM's order: darken, then warp). Rows without ``pending`` are untouched;
    labels and geometry never change. Returns a new batch dict with ``pending`` all False."""
    import torch

    from gim_plugins.training.data.darkaug import apply_dark

    out = dict(batch)
    rows = torch.nonzero(batch["pending"]).flatten()
    if len(rows) == 0:
        return out
    image0, image1 = batch["image0"].clone(), batch["image1"].clone()
    mask1 = batch["mask1"].clone()
    image0[rows] = apply_dark(image0[rows], batch["mask0"][rows], batch["dark0"][rows])
    darkened1 = apply_dark(image1[rows], mask1[rows], batch["dark1"][rows])
    identity = torch.eye(3, device=darkened1.device, dtype=batch["H1"].dtype)
    warped = ~torch.all(torch.isclose(batch["H1"][rows], identity).flatten(1), dim=1)
    if bool(warped.any()):
        sel = torch.nonzero(warped).flatten()
        H = batch["H1"][rows][sel].to(darkened1.dtype)
        canvas = (int(image1.shape[-2]), int(image1.shape[-1]))
        darkened1[sel] = _warp(darkened1[sel], H, canvas)
        mask = _warp(mask1[rows][sel][:, None].to(darkened1.dtype), H, canvas)[:, 0] > 0
        sub = mask1[rows]
        sub[sel] = mask
        mask1[rows] = sub
    image1[rows] = darkened1
    out.update(image0=image0, image1=image1, mask1=mask1, pending=torch.zeros_like(batch["pending"]))
    return out
