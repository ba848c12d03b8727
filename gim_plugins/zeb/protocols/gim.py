"""GIM's ZEB protocol (``--protocol gim``, the default), constant for constant as GIM's evaluation code.

* **Pairs**: every pair file of the subset in GIM's order (``[scene] + tokens``); ``max_pairs`` keeps the first N.
* **Images** (:func:`prepare_image`): as GIM's ``read_images`` per subset — long side resized above the subset's
  ``max_size`` (``round``-ed; 9999 for most subsets, i.e. never), then both sides floored to multiples of 8 with a
  bilinear ``cv2.resize`` (also when nothing changes, a copy, as GIM). ETH3D and KITTI are resized to 1600 / 1240 px
  and zero-padded bottom-right to a fixed canvas (1072×1600, 384×1240) without flooring.
* **Keypoints** (:func:`to_gim_coordinates`): the matcher's keypoints plus its keypoint offset, times the factor of
  its rescale rule (:mod:`gim_plugins.zeb.treatment`), in float32 as GIM, so the reproduction is exact up to float32
  rounding of that arithmetic. ``K`` is the pair file's.
* **Pose**: RANSAC at 0.5 px over ``mean(fx0, fy1, fx0, fy1)`` (GIM's indexing); see :mod:`gim_plugins.zeb.metrics`.
* **AUC**: not rounded; the report's mean is the unweighted mean over subsets (GIM's ``zeb.xlsx``).

Its dumps carry no version suffix: they are GIM's format, readable by GIM's ``analysis.py``, and GIM's committed dumps
are reported alongside.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from gim_plugins.zeb.dataset import DIVISOR, Pair, Subset, ZebImage, read_color
from gim_plugins.zeb.metrics import RANSAC_PIXEL_THRESHOLD
from gim_plugins.zeb.protocols import Protocol
from gim_plugins.zeb.treatment import RESCALE_RULES, Treatment, gim_treatment

if TYPE_CHECKING:
    from gim_plugins.models.base import BaseMatcher

__all__ = ["PROTOCOL", "GIMProtocol", "load_image", "prepare_image", "select_pairs", "to_gim_coordinates"]


def select_pairs(pairs: Sequence[Pair], max_pairs: int | None) -> list[Pair]:
    """The first ``max_pairs`` pairs in GIM's order (all when ``None``)."""
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be positive, got {max_pairs}")
    return list(pairs if max_pairs is None else pairs[:max_pairs])


def _resized_wh(width: int, height: int, max_size: int) -> tuple[int, int]:
    if max(width, height) <= max_size:
        return width, height
    factor = max_size / max(height, width)
    return round(width * factor), round(height * factor)


def prepare_image(image: np.ndarray, subset: Subset) -> ZebImage:
    """Resize (and pad) an ``(H, W, 3)`` uint8 RGB image exactly as GIM's ``read_images`` for ``subset``.

    Raises:
        ValueError: an ETH3D/KITTI image that does not fit the padded canvas after resizing (GIM would crash).
    """
    import cv2

    height, width = image.shape[:2]
    w_new, h_new = _resized_wh(width, height, subset.max_size)
    canvas = subset.canvas_size
    if canvas is None:
        w_new, h_new = max(w_new // DIVISOR, 1) * DIVISOR, max(h_new // DIVISOR, 1) * DIVISOR
    resized = cv2.resize(image, (w_new, h_new))  # bilinear, also when the size is unchanged (a copy), as GIM
    scale = np.array([width / w_new, height / h_new], dtype=np.float32)
    if canvas is not None:
        if h_new > canvas[0] or w_new > canvas[1]:
            raise ValueError(f"{subset.key}: a {width}×{height} image resized to {w_new}×{h_new} does not fit GIM's "
                             f"{canvas[1]}×{canvas[0]} canvas (the subset's images are {subset.pad_aspect}:1)")
        padded = np.zeros((*canvas, 3), dtype=resized.dtype)
        padded[:h_new, :w_new] = resized
        resized = padded
    return ZebImage(np.ascontiguousarray(resized), (height, width), (h_new, w_new), scale)


def load_image(path: str | os.PathLike[str], subset: Subset) -> ZebImage:
    """Read an image file (``cv2.IMREAD_COLOR`` → RGB, as GIM) and prepare it for ``subset``."""
    return prepare_image(read_color(Path(path)), subset)


def to_gim_coordinates(keypoints: np.ndarray, image: ZebImage, offset: float, rule: str | None) -> np.ndarray:
    """Map ``(N, 2)`` keypoints of the prepared image (package convention) to GIM's original-image coordinates:
    ``(k + offset) · factor`` in float32, with ``factor`` the resize scale (``"scale"``) or ``(W_orig / W_canvas,
    H_orig / H_canvas)`` (``"canvas"``)."""
    points = np.asarray(keypoints, dtype=np.float32) + np.float32(offset)
    if rule == "scale":
        factor = image.scale
    elif rule == "canvas":
        (height, width), (canvas_h, canvas_w) = image.original_size, image.canvas_size
        factor = np.array([width / canvas_w, height / canvas_h], dtype=np.float32)
    else:
        raise ValueError(f"rescale rule must be one of {RESCALE_RULES}, got {rule!r}")
    return points * factor


class GIMProtocol(Protocol):
    """GIM's protocol (module docstring)."""

    name: ClassVar[str] = "gim"
    ransac_threshold: ClassVar[float] = RANSAC_PIXEL_THRESHOLD
    focal_rule: ClassVar[str] = "gim"

    def check_options(self, rescale: str | None) -> None:
        if rescale is not None and rescale not in RESCALE_RULES:
            raise ValueError(f"rescale must be one of {RESCALE_RULES}, got {rescale!r}")

    def treatment(self, cls: type[BaseMatcher], rescale: str | None) -> Treatment:
        return gim_treatment(cls, rescale)

    def select_pairs(self, pairs: Sequence[Pair], data_dir: Path, subset: Subset, max_pairs: int | None) -> list[Pair]:
        return select_pairs(pairs, max_pairs)

    def load_image(self, path: str | os.PathLike[str], subset: Subset) -> ZebImage:
        return load_image(path, subset)

    def keypoints(self, keypoints: np.ndarray, image: ZebImage, treatment: Treatment) -> np.ndarray:
        return to_gim_coordinates(keypoints, image, treatment.keypoint_offset, treatment.rescale)


PROTOCOL = GIMProtocol()
