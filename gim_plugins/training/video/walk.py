"""Step ``walk``: pictures of randomly chosen propagated pairs, to see what the training will learn from.

Like GIM's ``datasets/walk/walk.py``: per video, ``num_pairs`` (10) propagated pairs drawn with seed 3407; each
picture has three rows — the two frames in colour; both in grey with every label point; both in grey with the
correspondences drawn as lines — and text with the counts (labels, frames reached, span) and a fingerprint (video,
propagation id, frame size). What differs: the frames are scaled to fit ``max_size`` (default 640×360, so a
picture stays near 1300×1100 pixels; GIM draws them at up to 1280×720 and rotates them by 90°), at most
``max_lines`` correspondences are drawn (a random subset, all points still shown in row 2), and the file name is the
propagated pair's, ``walk/<vid>/{i0}_{i1}.png`` (GIM adds a time stamp), so a rerun skips pictures already drawn
(``overwrite=true`` draws them again, e.g. after choosing another propagation with ``ppid``).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.conf import Conf, merge_conf
from gim_plugins.errors import UserError
from gim_plugins.training.video.decode import read_frame
from gim_plugins.training.video.layout import (
    PROPAGATE_DIR,
    WALK_DIR,
    Layout,
    VideoPaths,
    propagated_file_name,
    read_json,
)
from gim_plugins.viz import to_uint8_rgb, write_png

__all__ = ["DEFAULT_CONF", "choose_pairs", "default_conf", "draw_walk", "main"]

DEFAULT_CONF: dict[str, Any] = {
    "num_pairs": 10,  # pictures per video (GIM: 10)
    "seed": 3407,  # GIM's seed
    "ppid": None,  # which propagation (folder name under propagate/); None: the only one holding the video
    "max_size": [640, 360],  # each frame is scaled to fit width × height
    "max_lines": 300,  # correspondences drawn as lines in row 3 (more hide the frames)
    "overwrite": False,  # draw again pictures that exist
    "progress": True,
}
default_conf = DEFAULT_CONF

MARGIN = 2
POINT = (132, 216, 230)  # GIM's colours, RGB
LINE = (252, 212, 159)


def choose_pairs(names: list[str], count: int, seed: int) -> list[str]:
    """``count`` of the propagated files ``names`` (sorted first), drawn with ``random.Random(seed)``."""
    ordered = sorted(names)
    return sorted(random.Random(seed).sample(ordered, min(count, len(ordered))))


def _fit(image: np.ndarray, max_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    import cv2

    height, width = image.shape[:2]
    scale = min(max_size[0] / width, max_size[1] / height, 1.0)
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    return image, scale


def _text(canvas: np.ndarray, lines: list[str], bottom: bool) -> None:
    import cv2

    scale = max(0.4, min(canvas.shape[0] / 900.0, 1.0)) * (0.6 if bottom else 0.8)
    step = int(36 * scale) + 6
    for k, line in enumerate(reversed(lines) if bottom else lines):
        y = canvas.shape[0] - 8 - k * step if bottom else step * (k + 1)
        # a black halo drawn with the same thickness (OpenCV's glyph advance grows with the thickness)
        for dx, dy in ((-1, -1), (1, 1), (-1, 1), (1, -1), (0, 2), (2, 0)):
            cv2.putText(canvas, line, (8 + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_walk(image0: np.ndarray, image1: np.ndarray, label: np.ndarray, *, header: list[str], footer: list[str],
              max_size: tuple[int, int] = (640, 360), max_lines: int = 300, seed: int = 3407) -> np.ndarray:
    """The three-row picture of one propagated pair (RGB uint8).

    Args:
        image0, image1: the frames (RGB, any size).
        label: ``(N, 4)`` ``x0, y0, x1, y1`` in the frames' pixels.
        header, footer: text lines drawn at the top left and the bottom left.
        max_size: each frame is scaled to fit ``(width, height)``.
        max_lines: at most this many correspondences are drawn as lines (a random subset drawn with ``seed``).
    """
    import cv2

    im0, s0 = _fit(to_uint8_rgb(image0), max_size)
    im1, s1 = _fit(to_uint8_rgb(image1), max_size)
    h, w0, w1 = max(im0.shape[0], im1.shape[0]), im0.shape[1], im1.shape[1]
    x1 = MARGIN + w0 + MARGIN
    canvas = np.full((MARGIN * 4 + 3 * h, x1 + w1 + MARGIN, 3), 255, np.uint8)
    grey0 = np.repeat(cv2.cvtColor(im0, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    grey1 = np.repeat(cv2.cvtColor(im1, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    tops = [MARGIN + r * (h + MARGIN) for r in range(3)]
    for top, (a, b) in zip(tops, [(im0, im1), (grey0, grey1), (grey0, grey1)], strict=True):
        canvas[top : top + a.shape[0], MARGIN : MARGIN + w0] = a
        canvas[top : top + b.shape[0], x1 : x1 + w1] = b
    p0 = np.rint(np.asarray(label[:, :2], np.float64) * s0).astype(int)
    p1 = np.rint(np.asarray(label[:, 2:], np.float64) * s1).astype(int)
    for (u0, v0), (u1, v1) in zip(p0, p1, strict=True):
        cv2.circle(canvas, (MARGIN + u0, tops[1] + v0), 1, POINT, -1, cv2.LINE_AA)
        cv2.circle(canvas, (x1 + u1, tops[1] + v1), 1, POINT, -1, cv2.LINE_AA)
    drawn = np.arange(len(label))
    if len(drawn) > max_lines:
        drawn = np.sort(np.random.default_rng(seed).choice(len(label), max_lines, replace=False))
    for k in drawn:
        (u0, v0), (u1, v1) = p0[k], p1[k]
        cv2.line(canvas, (MARGIN + u0, tops[2] + v0), (x1 + u1, tops[2] + v1), LINE, 1, cv2.LINE_AA)
    for k in drawn:
        (u0, v0), (u1, v1) = p0[k], p1[k]
        cv2.circle(canvas, (MARGIN + u0, tops[2] + v0), 2, POINT, -1, cv2.LINE_AA)
        cv2.circle(canvas, (x1 + u1, tops[2] + v1), 2, POINT, -1, cv2.LINE_AA)
    _text(canvas, [*header, f"#Lines {len(drawn)} of {len(label)}"], bottom=False)
    _text(canvas, footer, bottom=True)
    return canvas


def _ppid_of(layout: Layout, vid: str, wanted: str | None) -> str:
    root = layout.root / PROPAGATE_DIR
    holding = sorted(p.name for p in root.iterdir() if (p / vid).is_dir()) if root.is_dir() else []
    if wanted is not None:
        if wanted not in holding:
            raise UserError(f"{vid}: no propagation {wanted!r} (present: {holding or 'none'}); run 'gim video "
                            "propagate' with those labellers first")
        return wanted
    if not holding:
        raise UserError(f"{vid}: no propagated labels under {root}; run 'gim video propagate' first")
    if len(holding) > 1:
        raise UserError(f"{vid}: several propagations {holding}; choose one with ppid='…'")
    return holding[0]


def _colour(layout: Layout, vid: str) -> str:
    info = layout.video_info(vid)
    return str(read_json(info).get("frame_colour", "rgb")) if info.is_file() else "rgb"


def _walk_video(layout: Layout, vid: str, conf: Conf) -> tuple[int, int, list[str]]:
    """Draw one video's pictures; returns (drawn, already there, pairs whose frames are missing)."""
    pid = _ppid_of(layout, vid, conf.ppid)
    source = layout.propagate_dir(pid, vid)
    names = [p.name for p in source.glob("*.npy")]
    out = layout.walk_dir(vid)
    drawn, kept, missing = 0, 0, []
    colour = _colour(layout, vid)
    for name in choose_pairs(names, conf.num_pairs, conf.seed):
        target = out / (name[: -len(".npy")] + ".png")
        if target.is_file() and not conf.overwrite:
            kept += 1
            continue
        array = np.load(source / name)
        a, b = int(array[0, 0]), int(array[0, 1])
        try:
            image0, image1 = read_frame(layout.frame(vid, a), colour), read_frame(layout.frame(vid, b), colour)
        except FileNotFoundError:
            missing.append(name)
            continue
        i0, i1 = (int(v) for v in name[: -len(".npy")].split("_"))
        header = [f"#Labels {len(array) - 1}", f"Frames {a} -> {b} (span {b - a})"]
        footer = [f"Video: {vid}", f"Pair: {propagated_file_name(i0, i1)[:-4]}", f"Propagation: {pid}",
                  f"Frame size: {image0.shape[1]}x{image0.shape[0]}"]
        picture = draw_walk(image0, image1, array[1:], header=header, footer=footer,
                            max_size=tuple(conf.max_size), max_lines=conf.max_lines, seed=conf.seed)
        write_png(target, picture)
        drawn += 1
    if conf.progress:
        line = f"{vid}: {drawn} walk picture(s) drawn, {kept} already there, from {len(names)} propagated pairs → {out}"
        if missing:
            line += f"; {len(missing)} skipped: frames not cached (rerun 'gim video decode')"
        print(line, file=sys.stderr, flush=True)
    return drawn, kept, missing


def main(conf: Mapping[str, Any] | None, paths: VideoPaths | Mapping[str, Any]) -> Path:
    """Draw the walk pictures of every video of ``paths`` that has propagated labels; returns ``<root>/walk``.

    Raises:
        UserError: no propagated labels, an unknown or ambiguous ``ppid``, bad options.
    """
    conf = merge_conf(DEFAULT_CONF, conf, owner="gim video walk")
    if conf.num_pairs < 1 or conf.max_lines < 0 or len(conf.max_size) != 2 or min(conf.max_size) < 16:
        raise UserError("walk needs num_pairs >= 1, max_lines >= 0 and max_size=[width, height] of at least 16 px")
    if not isinstance(paths, VideoPaths):
        paths = VideoPaths(Path(paths["root"]), tuple(paths["videos"]) if paths.get("videos") else None)
    layout = paths.layout
    root = layout.root / PROPAGATE_DIR
    videos = list(paths.videos or sorted({v.name for p in root.iterdir() if p.is_dir() for v in p.iterdir()
                                          if v.is_dir()} if root.is_dir() else []))
    if not videos:
        raise UserError(f"no propagated labels under {root}; run 'gim video propagate' first")
    for vid in videos:
        _walk_video(layout, vid, conf)
    return layout.root / WALK_DIR
