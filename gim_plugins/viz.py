"""The two pictures of GIM's demo: inlier matches drawn on the pair, and image 1 warped into image 0.

``match`` picture (as GIM's ``demo.py`` draws it): two rows separated by a 2-px margin; row 1 shows both images,
row 2 shows them with the inlier matches as green circles of radius 3, blended 0.5/0.5 with a copy that also has
1-px lines. ``warp`` picture: image 0, image 1 warped into image 0 by the homography, and their 50 % blend, side by
side. All images are RGB uint8 numpy arrays; :func:`write_png` converts to OpenCV's BGR on the way out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gim_plugins.atomic import atomic_write_bytes

__all__ = ["draw_matches", "draw_warp", "to_uint8_rgb", "write_png"]

MARGIN = 2
GREEN = (0, 255, 0)


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """A float ``(3, H, W)`` / ``(H, W, 3)`` image in [0, 1] or uint8 array → ``(H, W, 3)`` uint8 RGB."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[2] != 3:
        array = array.transpose(1, 2, 0)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


def _side_by_side(images: list[np.ndarray], margin: int = MARGIN) -> tuple[np.ndarray, list[int]]:
    height = max(im.shape[0] for im in images)
    width = sum(im.shape[1] for im in images) + margin * (len(images) - 1)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    offsets, x = [], 0
    for im in images:
        canvas[: im.shape[0], x : x + im.shape[1]] = im
        offsets.append(x)
        x += im.shape[1] + margin
    return canvas, offsets


def draw_matches(image0: np.ndarray, image1: np.ndarray, keypoints0: np.ndarray, keypoints1: np.ndarray,
                 inliers: np.ndarray | None = None) -> np.ndarray:
    """The ``match`` picture: both images, then both with the (inlier) matches drawn. Returns RGB uint8."""
    import cv2

    im0, im1 = to_uint8_rgb(image0), to_uint8_rgb(image1)
    k0, k1 = np.asarray(keypoints0, dtype=np.float64), np.asarray(keypoints1, dtype=np.float64)
    if inliers is not None:
        k0, k1 = k0[np.asarray(inliers, bool)], k1[np.asarray(inliers, bool)]
    top, offsets = _side_by_side([im0, im1])
    circles = top.copy()
    for (x0, y0), (x1, y1) in zip(k0, k1):
        cv2.circle(circles, (round(x0), round(y0)), 3, GREEN, -1, lineType=cv2.LINE_AA)
        cv2.circle(circles, (round(x1) + offsets[1], round(y1)), 3, GREEN, -1, lineType=cv2.LINE_AA)
    lines = circles.copy()
    for (x0, y0), (x1, y1) in zip(k0, k1):
        cv2.line(lines, (round(x0), round(y0)), (round(x1) + offsets[1], round(y1)), GREEN, 1, lineType=cv2.LINE_AA)
    bottom = cv2.addWeighted(circles, 0.5, lines, 0.5, 0)
    gap = np.full((MARGIN, top.shape[1], 3), 255, dtype=np.uint8)
    return np.concatenate([top, gap, bottom], axis=0)


def draw_warp(image0: np.ndarray, image1: np.ndarray, homography_1to0: np.ndarray | None) -> np.ndarray:
    """The ``warp`` picture: image 0 | image 1 warped into image 0 | 50 % blend (image 1 unwarped if no H)."""
    import cv2

    im0, im1 = to_uint8_rgb(image0), to_uint8_rgb(image1)
    height, width = im0.shape[:2]
    if homography_1to0 is None:
        warped = np.zeros_like(im0)
        h, w = min(height, im1.shape[0]), min(width, im1.shape[1])
        warped[:h, :w] = im1[:h, :w]
    else:
        warped = cv2.warpPerspective(im1, np.asarray(homography_1to0, dtype=np.float64), (width, height))
    blend = cv2.addWeighted(im0, 0.5, warped, 0.5, 0)
    canvas, _ = _side_by_side([im0, warped, blend])
    return canvas


def write_png(path: str | os.PathLike[str], image_rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (atomically: a partial file never replaces a good one)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(to_uint8_rgb(image_rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    return atomic_write_bytes(path, encoded.tobytes())
