"""Ground-truth video: a walk through the motorcycle scene as a real compressed video, plus the exact geometry of its
frames, and the true error of any label between two of them.

Why: label precision can only be measured where the true correspondence of every pixel is known. The renderer of
:mod:`gim_plugins.datasets` gives exact cameras, depth and a moving object's mask for every frame of a smooth camera
path through a real photo's geometry; encoding the frames with H.264 through PyAV (MPEG-4 Part 2 where the bundled
FFmpeg lacks an H.264 encoder) makes the labellers see real compression artefacts, as they do on downloaded videos.

:func:`write_truth_video` writes ``<video file>`` and, beside it, ``<truth dir>/<frame>.npz`` for every
``truth_every``-th frame (``K``, ``R``, ``t`` world-to-camera in metres, ``depth`` float32 metres with ``inf`` where
nothing is seen, ``object_mask``, ``object_pose`` 4×4 or absent; the frame is cropped to even width and height for
the encoder, which leaves ``K`` unchanged) and ``truth.json`` last. :func:`label_errors` gives, per label row
``x0, y0, x1, y1``, the distance in pixels between ``(x1, y1)`` and the true position of ``(x0, y0)`` in the second
frame, and whether the row touches the moving object.

The true position uses the depth of the four pixels around ``(x0, y0)`` and keeps the smallest error among the
candidates that are visible in the second frame (depth there within 3 %), so a correct label on a depth edge is not
counted as wrong because of the pixel grid; a point of the moving object moves with the object's poses; a point that
leaves the frame, is hidden there, or has no depth gets an infinite error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.atomic import atomic_path, atomic_write_text

__all__ = ["TruthFrame", "accuracy", "label_errors", "measure_labels", "measure_propagated", "read_truth",
           "truth_info", "write_truth_video"]

TRUTH_FILE = "truth.json"


@dataclass(frozen=True)
class TruthFrame:
    """The exact geometry of one frame (package pixel convention: centre of the top-left pixel at (0, 0))."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    depth: np.ndarray
    object_mask: np.ndarray
    object_pose: np.ndarray | None

    def backproject(self, uv: np.ndarray, z: np.ndarray) -> np.ndarray:
        """``(N, 2)`` pixels at camera depths ``(N,)`` → ``(N, 3)`` world points."""
        rays = np.linalg.solve(self.K, np.column_stack([uv, np.ones(len(uv))]).T).T
        return (rays * z[:, None] - self.t) @ self.R

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 3)`` world points → ``(N, 2)`` pixels and ``(N,)`` camera depths."""
        cam = points @ self.R.T + self.t
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam @ self.K.T)[:, :2] / cam[:, 2:3]
        return uv, cam[:, 2]


def _encoder(codec: str | None) -> str:
    import av

    for name in ([codec] if codec else ["libx264", "h264", "mpeg4"]):
        if name in av.codecs_available:
            return name
    raise RuntimeError(f"PyAV's FFmpeg has no encoder {codec or 'for H.264 or MPEG-4'}")


def write_truth_video(video: str | os.PathLike[str], truth_dir: str | os.PathLike[str], *, num_frames: int = 300,
                      fps: int = 30, scale: float = 1.0, seed: int = 0, moving: tuple[int, int] | None = (100, 200),
                      appearance: float = 0.5, truth_every: int = 10, codec: str | None = None,
                      crf: int = 23, supersample: int = 2) -> dict[str, Any]:
    """Render, encode and record a ground-truth walk through the motorcycle scene.

    Args:
        video: the video file to write (any container FFmpeg knows by its suffix, e.g. ``.mp4``).
        truth_dir: folder for the per-frame truth and ``truth.json``.
        num_frames: frames of the path (:func:`~gim_plugins.datasets.scene.smooth_path`).
        fps: frame rate written into the video.
        scale: image scale relative to the 741×500 source.
        seed: draws the path and the appearance changes.
        moving: ``(first, last)``: frames on which the textured card crosses the scene (``None``: no card).
        appearance: strength of the camera-like appearance drift and sensor noise (0: clean renders).
        truth_every: truth is kept for frames ``0, truth_every, …`` (the frames GIM's sampling uses when equal to
            its gap).
        codec: encoder name; default H.264 (``libx264``), else MPEG-4 Part 2.
        crf: H.264 constant rate factor (23 is x264's default quality).
        supersample: source samples per pixel along each axis (1 is enough for ``scale`` ≤ 0.5).

    Returns:
        The ``truth.json`` content: ``width``, ``height``, ``fps``, ``num_frames``, ``codec``, ``moving``, ...
    """
    import av

    from gim_plugins.datasets.scene import moving_card, render_motorcycle_path, smooth_path

    video, truth_dir = Path(video), Path(truth_dir)
    truth_dir.mkdir(parents=True, exist_ok=True)
    cameras = smooth_path(num_frames, seed=seed, scale=scale)
    card = moving_card(num_frames, first=moving[0], last=moving[1], supersample=supersample) if moving else None
    height, width = (s - s % 2 for s in cameras[0].size)
    codec = _encoder(codec)
    with atomic_path(video) as tmp:
        container = av.open(str(tmp), mode="w", format=video.suffix.lstrip(".") or None)
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)} if "264" in codec else {"qscale": "3"}
        for frame in render_motorcycle_path(cameras, moving=card, appearance=appearance, seed=seed,
                                            supersample=supersample):
            image = np.ascontiguousarray(frame.image[:height, :width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
            if frame.index % truth_every == 0:
                mask = frame.object_mask if frame.object_mask is not None else np.zeros(frame.depth.shape, bool)
                extra = {} if frame.object_pose is None else {"object_pose": frame.object_pose}
                with atomic_path(truth_dir / f"{frame.index}.npz") as part, open(part, "wb") as handle:
                    np.savez_compressed(handle, K=frame.K, R=frame.R, t=frame.t, depth=frame.depth[:height, :width],
                                        object_mask=mask[:height, :width], **extra)
        for packet in stream.encode():
            container.mux(packet)
        container.close()
    info = {"video": video.name, "width": width, "height": height, "fps": fps, "num_frames": num_frames,
            "scale": scale, "seed": seed, "moving": list(moving) if moving else None, "appearance": appearance,
            "truth_every": truth_every, "codec": codec, "crf": crf if "264" in codec else None,
            "supersample": supersample}
    atomic_write_text(truth_dir / TRUTH_FILE, json.dumps(info, indent=2) + "\n")
    return info


def truth_info(truth_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``truth.json`` of a truth folder (written last: its presence means the video is complete)."""
    return json.loads((Path(truth_dir) / TRUTH_FILE).read_text())


def read_truth(truth_dir: str | os.PathLike[str], index: int) -> TruthFrame:
    """The truth of frame ``index`` (a multiple of ``truth_every``)."""
    path = Path(truth_dir) / f"{index}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no ground truth for frame {index} in {truth_dir} (kept every "
                                f"{truth_info(truth_dir)['truth_every']} frames)")
    with np.load(path) as data:
        pose = data["object_pose"] if "object_pose" in data.files else None
        return TruthFrame(data["K"], data["R"], data["t"], data["depth"], data["object_mask"], pose)


def _pixel(values: np.ndarray, size: int) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(values, nan=-1.0)), 0, size - 1).astype(int)


def _near_holes(frame: TruthFrame, points: np.ndarray, margin: int) -> np.ndarray:
    """Whether each point is within ``margin`` pixels of a pixel without depth (nothing rendered there)."""
    import cv2

    holes = (~np.isfinite(frame.depth)).astype(np.uint8)
    near = cv2.dilate(holes, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    height, width = holes.shape
    return near[_pixel(points[:, 1], height), _pixel(points[:, 0], width)]


def label_errors(frame0: TruthFrame, frame1: TruthFrame, label: np.ndarray, *, tolerance: float = 0.03,
                 hole_margin: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True errors of ``(N, 4)`` label rows from ``frame0`` to ``frame1`` (module docstring).

    Returns:
        ``errors`` (N,) float64 pixels, inf where there is no true position; ``on_object`` (N,) bool;
        ``near_hole`` (N,) bool: a point lies within ``hole_margin`` px of unrendered pixels (the renderer's black
        cracks and borders, which real videos do not have and whose edges matchers gladly match).
    """
    label = np.asarray(label, np.float64).reshape(-1, 4)
    p0, p1 = label[:, :2], label[:, 2:]
    height, width = frame0.depth.shape
    best = np.full(len(label), np.inf)
    moves = None
    if frame0.object_pose is not None and frame1.object_pose is not None:
        moves = frame1.object_pose @ np.linalg.inv(frame0.object_pose)
    for dx in (0, 1):
        for dy in (0, 1):
            cx = np.clip(np.floor(p0[:, 0]).astype(int) + dx, 0, width - 1)
            cy = np.clip(np.floor(p0[:, 1]).astype(int) + dy, 0, height - 1)
            z = frame0.depth[cy, cx].astype(np.float64)
            ok = np.isfinite(z)
            points = frame0.backproject(p0, np.where(ok, z, 1.0))
            on_card = frame0.object_mask[cy, cx]
            if moves is not None:
                points = np.where(on_card[:, None], points @ moves[:3, :3].T + moves[:3, 3], points)
            else:
                ok &= ~on_card
            uv, z1 = frame1.project(points)
            h1, w1 = frame1.depth.shape
            with np.errstate(invalid="ignore"):
                inside = (uv[:, 0] > -0.5) & (uv[:, 0] < w1 - 0.5) & (uv[:, 1] > -0.5) & (uv[:, 1] < h1 - 0.5)
            u, v = _pixel(uv[:, 0], w1), _pixel(uv[:, 1], h1)
            seen = np.zeros(len(label), bool)
            for ox, oy in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                there = frame1.depth[np.clip(v + oy, 0, h1 - 1), np.clip(u + ox, 0, w1 - 1)]
                with np.errstate(invalid="ignore"):
                    seen |= np.abs(there - z1) <= tolerance * z1
            error = np.linalg.norm(p1 - uv, axis=1)
            best = np.where(ok & inside & seen, np.minimum(best, error), best)
    on_object = (frame0.object_mask[_pixel(p0[:, 1], height), _pixel(p0[:, 0], width)]
                 | frame1.object_mask[_pixel(p1[:, 1], frame1.depth.shape[0]), _pixel(p1[:, 0], frame1.depth.shape[1])])
    near_hole = _near_holes(frame0, p0, hole_margin) | _near_holes(frame1, p1, hole_margin)
    return best, on_object, near_hole


def accuracy(errors: np.ndarray, on_object: np.ndarray, near_hole: np.ndarray | None = None) -> dict[str, Any]:
    """Shares (fractions) of a set of label rows: ``within_1px``, ``within_2px``, ``on_object``; ``clear``: the share
    away from unrendered pixels, and ``clear_within_1px``/``clear_within_2px``: the precision of those."""
    count = len(errors)
    near_hole = np.zeros(count, bool) if near_hole is None else near_hole
    clear = ~near_hole

    def share(mask: np.ndarray) -> float | None:
        return float(np.mean(mask)) if len(mask) else None

    return {"labels": count, "within_1px": share(errors <= 1.0), "within_2px": share(errors <= 2.0),
            "on_object": share(on_object), "clear": share(clear), "clear_within_1px": share(errors[clear] <= 1.0),
            "clear_within_2px": share(errors[clear] <= 2.0)}


def _rows_accuracy(truth_dir: Path, files: list[tuple[Path, tuple[int, int], int]]) -> dict[str, Any]:
    """Accuracy of label files ``(path, (frame0, frame1), first row)`` against the truth."""
    cache: dict[int, TruthFrame] = {}

    def truth(index: int) -> TruthFrame:
        if index not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[index] = read_truth(truth_dir, index)
        return cache[index]

    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [(np.zeros(0), np.zeros(0, bool), np.zeros(0, bool))]
    for path, (a, b), first in files:
        parts.append(label_errors(truth(a), truth(b), np.load(path)[first:]))
    return accuracy(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def measure_labels(label_dirs: list[Path], truth_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Accuracy of every pair file in the given label folders (``pseudo/WALK …/<video folder>``), after filtering."""
    from gim_plugins.training.video.layout import parse_pair_file_name

    files = []
    for folder in label_dirs:
        for path in sorted(folder.glob("*.npy")):
            pair = parse_pair_file_name(path.name)
            if pair is not None:
                files.append((path, pair, 0))
    return _rows_accuracy(Path(truth_dir), files)


def measure_propagated(folder: str | os.PathLike[str], truth_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Accuracy of the propagated pairs in ``propagate/<ppid>/<vid>`` (between the frames each one reached)."""
    files = []
    for path in sorted(Path(folder).glob("*.npy")):
        head = np.load(path, mmap_mode="r")[0]
        files.append((path, (int(head[0]), int(head[1])), 1))
    return _rows_accuracy(Path(truth_dir), files)
