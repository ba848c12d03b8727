"""Read COLMAP text models and measure them: registration, points, track length, reprojection error, and the
camera-centre error against ground truth after a similarity (Sim3) alignment.

Why text: both engines can write it (pycolmap ``write_text``, ``colmap model_converter``), so one reader measures
both identically without pycolmap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Model", "ModelImage", "align_sim3", "camera_centre_errors", "qvec_to_rotmat", "read_text_model"]


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """COLMAP quaternion ``(w, x, y, z)`` → 3×3 rotation."""
    w, x, y, z = np.asarray(qvec, dtype=np.float64) / np.linalg.norm(qvec)
    return np.array([
        [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * z * x + 2 * w * y],
        [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
        [2 * z * x - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
    ])


@dataclass(frozen=True)
class ModelImage:
    """A registered image: world-to-camera ``R``, ``t``, its camera id and its image id in the model."""

    name: str
    R: np.ndarray
    t: np.ndarray
    camera_id: int
    image_id: int = -1

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t


@dataclass(frozen=True)
class Model:
    """A sparse model: registered images by name, cameras (model, width, height, params), 3D points."""

    images: dict[str, ModelImage]
    cameras: dict[int, tuple[str, int, int, np.ndarray]]
    points: np.ndarray  # (P, 3)
    errors: np.ndarray  # (P,) mean reprojection error of each point, px
    track_lengths: np.ndarray  # (P,)
    colors: np.ndarray | None = None  # (P, 3) uint8 RGB of each point
    tracks: tuple[np.ndarray, ...] | None = None  # per point: the image ids that observe it (int64)

    def statistics(self) -> dict[str, float]:
        """``registered``, ``points``, ``observations``, ``mean_track_length``, ``mean_reprojection_error``."""
        return {
            "registered": len(self.images),
            "points": len(self.points),
            "observations": int(self.track_lengths.sum()),
            "mean_track_length": float(self.track_lengths.mean()) if len(self.points) else 0.0,
            "mean_reprojection_error": float(self.errors.mean()) if len(self.points) else float("nan"),
        }


def _data_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"COLMAP text model file missing: {path}")
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def read_text_model(model_dir: str | os.PathLike[str]) -> Model:
    """Read ``cameras.txt``, ``images.txt`` and ``points3D.txt`` of a COLMAP text model."""
    root = Path(model_dir)
    cameras = {}
    for line in _data_lines(root / "cameras.txt"):
        parts = line.split()
        cameras[int(parts[0])] = (parts[1], int(parts[2]), int(parts[3]), np.array(parts[4:], dtype=np.float64))
    images = {}
    if not (root / "images.txt").is_file():
        raise FileNotFoundError(f"COLMAP text model file missing: {root / 'images.txt'}")
    # two lines per image (pose, then observations, which may be an empty line): keep blank lines here
    raw = [line for line in (root / "images.txt").read_text().splitlines() if not line.startswith("#")]
    for index in range(0, len(raw) - 1, 2):
        parts = raw[index].split()
        if len(parts) < 10:
            continue
        qvec, tvec = np.array(parts[1:5], dtype=np.float64), np.array(parts[5:8], dtype=np.float64)
        name = " ".join(parts[9:])
        images[name] = ModelImage(name, qvec_to_rotmat(qvec), tvec, int(parts[8]), int(parts[0]))
    points, errors, lengths, colors, tracks = [], [], [], [], []
    for line in _data_lines(root / "points3D.txt"):
        parts = line.split()
        points.append([float(v) for v in parts[1:4]])
        colors.append([int(v) for v in parts[4:7]])
        errors.append(float(parts[7]))
        lengths.append((len(parts) - 8) // 2)
        tracks.append(np.array(parts[8::2], dtype=np.int64))
    return Model(images, cameras, np.array(points, dtype=np.float64).reshape(-1, 3), np.array(errors),
                 np.array(lengths, dtype=np.int64), np.array(colors, dtype=np.uint8).reshape(-1, 3), tuple(tracks))


def align_sim3(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``target ≈ s·R·source + t`` (Umeyama 1991); returns ``(s, R, t)``."""
    src = np.asarray(source, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(target, dtype=np.float64).reshape(-1, 3)
    if len(src) < 3 or len(src) != len(dst):
        raise ValueError(f"need at least 3 corresponding points, got {len(src)} and {len(dst)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1
    R = U @ S @ Vt
    var = (xs ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(D) @ S) / var)
    return scale, R, mu_d - scale * R @ mu_s


def camera_centre_errors(model: Model, truth: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Camera-centre errors after aligning the registered centres to ``truth`` ``{name: centre}`` with Sim3.

    Returns ``median``, ``max`` and ``mean`` error (units of ``truth``) and ``aligned`` (images compared).
    """
    names = sorted(n for n in model.images if n in truth)
    if len(names) < 3:
        return {"aligned": len(names), "median": float("nan"), "max": float("nan"), "mean": float("nan")}
    estimated = np.stack([model.images[n].center for n in names])
    expected = np.stack([np.asarray(truth[n], dtype=np.float64) for n in names])
    scale, R, t = align_sim3(estimated, expected)
    errors = np.linalg.norm((scale * estimated @ R.T + t) - expected, axis=1)
    return {"aligned": len(names), "median": float(np.median(errors)), "max": float(errors.max()),
            "mean": float(errors.mean())}
