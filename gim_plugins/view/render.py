"""The PNG picture of ``gim view`` (for reports): the page's starting view, rendered in numpy.

Points are splatted as ``point_size`` × ``point_size`` squares with a z-buffer (the nearest point wins each pixel:
points sorted by pixel, then depth, first of each pixel kept), sparse points on top of the dense ones only where
nearer, camera frusta drawn last as anti-aliased lines (OpenCV). Same viewpoint, field of view and background as
the HTML page, so the picture is what the page shows before any interaction.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gim_plugins.view.content import Content
from gim_plugins.view.page import FOV_DEG, initial_view, line_segments

__all__ = ["BACKGROUND", "render_png", "render_view"]

BACKGROUND = (30, 30, 34)


def _project(xyz: np.ndarray, view: dict, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """World points → pixel coordinates ``(N, 2)`` and view distances ``(N,)`` (≤ 0 behind the eye)."""
    width, height = size
    right, up, back = (np.asarray(view[k]) for k in ("right", "up", "back"))
    eye = np.asarray(view["target"]) + view["distance"] * back
    rel = xyz - eye
    x, y, depth = rel @ right, rel @ up, -(rel @ back)
    focal = (height / 2) / math.tan(math.radians(FOV_DEG) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([width / 2 + focal * x / depth, height / 2 - focal * y / depth], axis=1)
    return uv, depth


def render_view(content: Content, size: tuple[int, int] = (1200, 900), point_size: int = 2) -> np.ndarray:
    """The starting view as an ``(H, W, 3)`` uint8 RGB image."""
    import cv2

    width, height = size
    view = initial_view(content)
    xyz = np.vstack([content.dense_xyz, content.sparse_xyz]).astype(np.float64)
    rgb = np.vstack([content.dense_rgb, content.sparse_rgb]).astype(np.uint8)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    if len(xyz):
        uv, depth = _project(xyz, view, size)
        ok = np.isfinite(uv).all(axis=1) & (depth > 0)
        cols, rows, depth, colour = (np.floor(uv[ok, 0]).astype(np.int64), np.floor(uv[ok, 1]).astype(np.int64),
                                     depth[ok], rgb[ok])
        offsets = [(dr, dc) for dr in range(point_size) for dc in range(point_size)]
        r = np.concatenate([rows + dr for dr, _ in offsets])
        c = np.concatenate([cols + dc for _, dc in offsets])
        z, col = np.tile(depth, len(offsets)), np.tile(colour, (len(offsets), 1))
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        flat, z, col = r[inside] * width + c[inside], z[inside], col[inside]
        order = np.lexsort((z, flat))
        flat, col = flat[order], col[order]
        first = np.ones(len(flat), dtype=bool)
        first[1:] = flat[1:] != flat[:-1]
        image.reshape(-1, 3)[flat[first]] = col[first]
    segments, segment_rgb = line_segments(content)
    if len(segments):
        uv, depth = _project(segments.astype(np.float64), view, size)
        for k in range(0, len(segments) - 1, 2):
            if depth[k] <= 0 or depth[k + 1] <= 0 or not np.isfinite(uv[k : k + 2]).all():
                continue
            a, b = (tuple(int(v) for v in np.rint(np.clip(uv[i], -1e6, 1e6))) for i in (k, k + 1))
            cv2.line(image, a, b, tuple(int(v) for v in segment_rgb[k]), 1, cv2.LINE_AA)
    return image


def render_png(content: Content, path: Path, size: tuple[int, int] = (1200, 900)) -> Path:
    """Write :func:`render_view` as a PNG, atomically; returns ``path``."""
    import cv2

    from gim_plugins.atomic import atomic_write_bytes

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(render_view(content, size), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode the view as PNG")
    return atomic_write_bytes(path, encoded.tobytes())
