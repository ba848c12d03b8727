"""COLMAP sparse models with their observations: every image's 2D points and every 3D point's track.

Why beside :mod:`.model` (which measures models): training uses a model's *tracks* as depth-free ground truth (two
observations of one 3D point are a correspondence), which needs the per-image point lists the measuring reader skips.
Both of COLMAP's formats are read without pycolmap — text (``cameras.txt``, ``images.txt``, ``points3D.txt``) and
binary (``.bin``, what hloc and ``colmap mapper`` write by default) — so models made by ``gim reconstruct``, hloc or
COLMAP itself all load. :func:`write_text_model` writes the text format (for tests and exports).

Coordinates are COLMAP's (centre of the top-left pixel at (0.5, 0.5)); :meth:`ObservedModel.keypoints` converts to
the package convention (``− 0.5``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gim_plugins.colmap_ext.model import qvec_to_rotmat

__all__ = [
    "CAMERA_MODELS",
    "ObservedImage",
    "ObservedModel",
    "calibration",
    "read_observed_model",
    "rotmat_to_qvec",
    "write_text_model",
]

CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12), 11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
"""COLMAP's camera model ids → (name, number of parameters)."""

_SINGLE_FOCAL = {"SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "FOV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"}
_PINHOLE = {"SIMPLE_PINHOLE", "PINHOLE"}


def calibration(model: str, params: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(K, pinhole)`` of a COLMAP camera: ``K`` in COLMAP's pixel convention, and whether the camera is an exact
    pinhole (a pinhole model, or a distortion model whose distortion parameters are all zero)."""
    params = np.asarray(params, dtype=np.float64)
    if model in _SINGLE_FOCAL:
        fx = fy = params[0]
        cx, cy, rest = params[1], params[2], params[3:]
    else:
        fx, fy, cx, cy, rest = params[0], params[1], params[2], params[3], params[4:]
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, model in _PINHOLE or not np.any(rest)


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """3×3 rotation → COLMAP quaternion ``(w, x, y, z)`` with ``w >= 0``."""
    R = np.asarray(R, dtype=np.float64)
    K = np.array([
        [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
        [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
        [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
        [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
    ]) / 3.0
    values, vectors = np.linalg.eigh(K)
    q = vectors[[3, 0, 1, 2], np.argmax(values)]
    return -q if q[0] < 0 else q


@dataclass(frozen=True)
class ObservedImage:
    """A registered image with its observations.

    Attributes:
        image_id: COLMAP's id.
        name: the image's path relative to the image folder.
        camera_id: its camera.
        R: world-to-camera rotation; ``t``: translation (``X_cam = R X + t``).
        xy: ``(N, 2)`` observed 2D points, COLMAP convention.
        point3D_ids: ``(N,)`` int64, the 3D point of each observation (−1: none).
    """

    image_id: int
    name: str
    camera_id: int
    R: np.ndarray
    t: np.ndarray
    xy: np.ndarray
    point3D_ids: np.ndarray


@dataclass(frozen=True)
class ObservedModel:
    """Cameras ``{id: (model, width, height, params)}``, images by id, and 3D points ``{id: xyz}``."""

    cameras: dict[int, tuple[str, int, int, np.ndarray]]
    images: dict[int, ObservedImage]
    points: dict[int, np.ndarray]

    def keypoints(self, image_id: int) -> np.ndarray:
        """``(N, 2)`` observations of an image in the package convention (COLMAP's minus 0.5)."""
        return self.images[image_id].xy - 0.5

    def shared_points(self) -> dict[tuple[int, int], int]:
        """``{(image_id0, image_id1): number of 3D points both observe}`` for ``id0 < id1``."""
        seen: dict[int, list[int]] = {}
        for image in self.images.values():
            for pid in np.unique(image.point3D_ids[image.point3D_ids >= 0]).tolist():
                seen.setdefault(pid, []).append(image.image_id)
        counts: dict[tuple[int, int], int] = {}
        for ids in seen.values():
            ids = sorted(ids)
            for a in range(len(ids)):
                for b in range(a + 1, len(ids)):
                    counts[(ids[a], ids[b])] = counts.get((ids[a], ids[b]), 0) + 1
        return counts

    def correspondences(self, image_id0: int, image_id1: int) -> np.ndarray:
        """``(M, 4)`` ``x0, y0, x1, y1`` (package convention): the observations of each 3D point both images see
        (the first observation where an image sees a point twice)."""
        def first(image: ObservedImage) -> dict[int, int]:
            out: dict[int, int] = {}
            for index, pid in enumerate(image.point3D_ids.tolist()):
                if pid >= 0:
                    out.setdefault(pid, index)
            return out

        a, b = self.images[image_id0], self.images[image_id1]
        fa, fb = first(a), first(b)
        common = sorted(set(fa) & set(fb))
        if not common:
            return np.zeros((0, 4))
        ia, ib = [fa[p] for p in common], [fb[p] for p in common]
        return np.concatenate([self.keypoints(image_id0)[ia], self.keypoints(image_id1)[ib]], axis=1)


def _text_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def _read_text(root: Path) -> ObservedModel:
    cameras = {}
    for line in _text_lines(root / "cameras.txt"):
        parts = line.split()
        if parts:
            cameras[int(parts[0])] = (parts[1], int(parts[2]), int(parts[3]), np.array(parts[4:], dtype=np.float64))
    images = {}
    lines = _text_lines(root / "images.txt")
    for index in range(0, len(lines) - 1, 2):
        head = lines[index].split()
        if len(head) < 10:
            continue
        obs = np.array(lines[index + 1].split(), dtype=np.float64).reshape(-1, 3)
        image_id = int(head[0])
        images[image_id] = ObservedImage(image_id, " ".join(head[9:]), int(head[8]),
                                         qvec_to_rotmat(np.array(head[1:5], dtype=np.float64)),
                                         np.array(head[5:8], dtype=np.float64), obs[:, :2], obs[:, 2].astype(np.int64))
    points = {}
    for line in _text_lines(root / "points3D.txt"):
        parts = line.split()
        if parts:
            points[int(parts[0])] = np.array(parts[1:4], dtype=np.float64)
    return ObservedModel(cameras, images, points)


class _Reader:
    def __init__(self, path: Path) -> None:
        self.data, self.offset = path.read_bytes(), 0

    def take(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset += out.nbytes
        return out

    def name(self) -> str:
        end = self.data.index(b"\x00", self.offset)
        text = self.data[self.offset:end].decode("utf-8")
        self.offset = end + 1
        return text


def _read_binary(root: Path) -> ObservedModel:
    cameras = {}
    reader = _Reader(root / "cameras.bin")
    for _ in range(reader.take("Q")[0]):
        camera_id, model_id, width, height = reader.take("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise ValueError(f"{root / 'cameras.bin'}: unknown camera model id {model_id}")
        name, count = CAMERA_MODELS[model_id]
        cameras[camera_id] = (name, int(width), int(height), np.array(reader.take("d" * count)))
    images = {}
    reader = _Reader(root / "images.bin")
    point_dtype = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
    for _ in range(reader.take("Q")[0]):
        image_id, *pose, camera_id = reader.take("idddddddi")
        name = reader.name()
        obs = reader.array(point_dtype, reader.take("Q")[0])
        images[image_id] = ObservedImage(image_id, name, camera_id, qvec_to_rotmat(np.array(pose[:4])),
                                         np.array(pose[4:]), np.stack([obs["x"], obs["y"]], axis=1),
                                         obs["id"].astype(np.int64))
    points = {}
    reader = _Reader(root / "points3D.bin")
    for _ in range(reader.take("Q")[0]):
        point_id, x, y, z, _r, _g, _b, _error, length = reader.take("QdddBBBdQ")
        reader.array(np.dtype("<i4"), 2 * length)
        points[point_id] = np.array([x, y, z])
    return ObservedModel(cameras, images, points)


def read_observed_model(model_dir: str | os.PathLike[str]) -> ObservedModel:
    """Read a COLMAP model folder (binary files preferred when both formats are present).

    Raises:
        FileNotFoundError: neither ``cameras.bin``/``images.bin``/``points3D.bin`` nor the ``.txt`` trio is there.
    """
    root = Path(model_dir)
    for suffix, reader in ((".bin", _read_binary), (".txt", _read_text)):
        if all((root / f"{name}{suffix}").is_file() for name in ("cameras", "images", "points3D")):
            return reader(root)
    raise FileNotFoundError(f"no COLMAP model in {root} (expected cameras, images and points3D as .bin or .txt)")


def write_text_model(model: ObservedModel, model_dir: str | os.PathLike[str]) -> Path:
    """Write ``cameras.txt``, ``images.txt`` and ``points3D.txt`` (tracks rebuilt from the images' observations;
    colours 0, errors −1 as pycolmap writes unknown values)."""
    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["# Camera list: CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    for cid, (name, width, height, params) in sorted(model.cameras.items()):
        lines.append(" ".join([str(cid), name, str(width), str(height), *map(repr, map(float, params))]))
    (root / "cameras.txt").write_text("\n".join(lines) + "\n")
    lines = ["# Image list: IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME / POINTS2D[] as (X, Y, POINT3D_ID)"]
    tracks: dict[int, list[tuple[int, int]]] = {}
    for iid, image in sorted(model.images.items()):
        pose = [*rotmat_to_qvec(image.R), *image.t]
        lines.append(" ".join([str(iid), *map(repr, map(float, pose)), str(image.camera_id), image.name]))
        obs = []
        for index, ((x, y), pid) in enumerate(zip(image.xy.tolist(), image.point3D_ids.tolist())):
            obs += [repr(float(x)), repr(float(y)), str(int(pid))]
            if pid >= 0:
                tracks.setdefault(int(pid), []).append((iid, index))
        lines.append(" ".join(obs))
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    lines = ["# 3D point list: POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    for pid, xyz in sorted(model.points.items()):
        track = [str(v) for pair in tracks.get(pid, []) for v in pair]
        lines.append(" ".join([str(pid), *map(repr, map(float, xyz)), "0", "0", "0", "-1", *track]))
    (root / "points3D.txt").write_text("\n".join(lines) + "\n")
    return root
