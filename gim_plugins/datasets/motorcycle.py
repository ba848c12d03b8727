"""The Middlebury 2014 "Motorcycle" stereo pair bundled with scikit-image: real photos with exact calibration.

Rectified stereo (Scharstein et al., GCPR 2014), downsampled 4× to 741×500. Ground truth: a float32 disparity map of
the left image (``inf`` where unknown, 7.3 % of the pixels) with the measured convention
``x_right = x_left − disp[y, x_left]`` (the scikit-image docstring words it the other way round), the focal length,
the two principal points and the baseline. The files are read from the installed scikit-image package; this
repository ships no third-party images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CALIBRATION", "StereoCalibration", "data_dir", "disparity_agreement", "load_disparity", "paths"]


@dataclass(frozen=True)
class StereoCalibration:
    """Pinhole calibration of the rectified pair (pixels and millimetres at the bundled 741×500 resolution)."""

    focal: float = 994.978
    cx_left: float = 311.193
    cy: float = 254.877
    doffs: float = 31.086  # principal point offset: cx_right = cx_left + doffs
    baseline_mm: float = 193.001

    @property
    def cx_right(self) -> float:
        return self.cx_left + self.doffs

    def K(self, side: str = "left") -> np.ndarray:
        """3×3 intrinsics of the ``"left"`` or ``"right"`` camera."""
        cx = {"left": self.cx_left, "right": self.cx_right}[side]
        return np.array([[self.focal, 0.0, cx], [0.0, self.focal, self.cy], [0.0, 0.0, 1.0]])

    def depth_mm(self, disparity: np.ndarray) -> np.ndarray:
        """Depth ``Z = f·B / (d + doffs)`` in millimetres (``inf`` where the disparity is unknown)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isfinite(disparity), self.focal * self.baseline_mm / (disparity + self.doffs), np.inf)


CALIBRATION = StereoCalibration()


def data_dir() -> Path:
    """The data folder of the installed scikit-image (its bundled photos: the motorcycle pair, astronaut, coffee …)."""
    try:
        import skimage
    except ImportError as exc:  # pragma: no cover - scikit-image is a dependency
        raise ImportError("the motorcycle pair comes with scikit-image: `pip install scikit-image`") from exc
    return Path(os.path.dirname(skimage.__file__)) / "data"


def paths() -> dict[str, Path]:
    """``{"left", "right", "disparity"}`` file paths inside the installed scikit-image."""
    directory = data_dir()
    found = {"left": directory / "motorcycle_left.png", "right": directory / "motorcycle_right.png",
             "disparity": directory / "motorcycle_disp.npz"}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"scikit-image data files missing: {', '.join(missing)} (reinstall scikit-image)")
    return found


def load_disparity(path: str | os.PathLike[str] | None = None) -> np.ndarray:
    """The ``(500, 741)`` float32 ground-truth disparity of the left image; non-finite values become ``inf``."""
    with np.load(path or paths()["disparity"]) as data:
        disparity = np.asarray(data[data.files[0]], dtype=np.float32)
    if disparity.ndim == 3:
        disparity = disparity[..., 0]
    return np.where(np.isfinite(disparity), disparity, np.inf).astype(np.float32)


def disparity_agreement(keypoints_left: np.ndarray, keypoints_right: np.ndarray, disparity: np.ndarray,
                        tolerance: float = 3.0) -> tuple[float, int]:
    """Share of matches that agree with the ground-truth disparity within ``tolerance`` pixels.

    A match agrees when ``|x_right − (x_left − disp)| ≤ tolerance`` and ``|y_right − y_left| ≤ tolerance``, with
    the disparity read at the left keypoint's pixel. Matches whose left pixel has no ground truth are not counted.

    Returns:
        ``(share, n_valid)``: the share among the ``n_valid`` matches that have ground truth (0.0 when none).
    """
    k0 = np.asarray(keypoints_left, dtype=np.float64).reshape(-1, 2)
    k1 = np.asarray(keypoints_right, dtype=np.float64).reshape(-1, 2)
    height, width = disparity.shape
    col = np.clip(np.round(k0[:, 0]).astype(int), 0, width - 1)
    row = np.clip(np.round(k0[:, 1]).astype(int), 0, height - 1)
    disp = disparity[row, col]
    valid = np.isfinite(disp)
    if not valid.any():
        return 0.0, 0
    ok = (np.abs(k1[valid, 0] - (k0[valid, 0] - disp[valid])) <= tolerance) & (
        np.abs(k1[valid, 1] - k0[valid, 1]) <= tolerance)
    return float(ok.mean()), int(valid.sum())
