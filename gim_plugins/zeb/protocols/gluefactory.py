"""cvg/glue-factory's ZEB protocol (``--protocol gluefactory``), which gives other numbers than GIM's on the same data.

What glue-factory's ZEB evaluation (``gluefactory/eval/zeb.py`` with ``gluefactory/datasets/zeb.py`` and the
``ImagePreprocessor`` of ``gluefactory/utils/image.py``, read at commit 2d17e3b) does differently from GIM, reproduced
from reading that code (docs/zeb.md compares the two side by side):

* **Pairs**: at most 200 pair files per subset folder, drawn by :func:`select_pairs_gluefactory` with glue-factory's
  seed (:func:`gluefactory_seed`); ``max_pairs`` sets that cap instead of taking the first pairs.
* **Images**: every image's long side resized to 1024 px (kornia, bilinear, antialiased; upsampled too; no ÷8, no
  padding), for every subset alike (:func:`prepare_image_gluefactory`).
* **Keypoints** stay in the resized image, in glue-factory's corner convention (ours ``+ 0.5``, whatever the
  matcher: its extractors report the centre of the top-left pixel at (0.5, 0.5)); ``K`` is scaled instead
  (``Camera.scale``, :func:`gluefactory_camera`). No rescale rule and no padding masks apply.
* **Pose**: OpenCV RANSAC for ``E`` at 1.0 px over ``mean(fx0, fy0, fx1, fy1)`` of the scaled cameras, confidence
  0.99999, the same ``recoverPose`` selection and the same error definitions.
* **AUC** rounded to 4 decimals; glue-factory's summary pools all pairs of the run instead of averaging subsets
  (the report shows both, in this protocol's own tables).

Dumps and stores carry the version suffix ``+gluefactory`` (``vanilla+gluefactory``), so they never mix with a
GIM-protocol run of the same matcher.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from gim_plugins.zeb.dataset import Pair, Subset, ZebImage, read_color
from gim_plugins.zeb.protocols import Protocol
from gim_plugins.zeb.treatment import Treatment

if TYPE_CHECKING:
    from gim_plugins.models.base import BaseMatcher

__all__ = [
    "GLUEFACTORY_MAX_PER_SCENE",
    "GLUEFACTORY_RESIZE",
    "PROTOCOL",
    "GlueFactoryProtocol",
    "gluefactory_camera",
    "gluefactory_seed",
    "gluefactory_size",
    "load_image_gluefactory",
    "prepare_image_gluefactory",
    "select_pairs_gluefactory",
]

GLUEFACTORY_MAX_PER_SCENE = 200
"""glue-factory's ``max_per_scene``: at most this many pair files per subset folder."""

GLUEFACTORY_RESIZE = 1024
"""glue-factory's ``preprocessing.resize`` with ``side="long"``: every image's long side becomes this (also when it
was shorter: images are upsampled too)."""

GLUEFACTORY_RANSAC_THRESHOLD = 1.0
"""Pixels of the resized image: ``eval.ransac_th`` of glue-factory's ZEB pipeline."""

GLUEFACTORY_KEYPOINT_OFFSET = 0.5
"""glue-factory's extractors report corner-convention pixels (the centre of the top-left pixel at (0.5, 0.5))."""


def gluefactory_seed(root: str | os.PathLike[str], subset: Subset) -> int:
    """The ``RandomState`` seed glue-factory uses for a subset folder: its position in the sorted names of everything
    in the ZEB folder (``enumerate(sorted(root.glob("*")))`` with the default ``scene_list=None``), so it depends on
    which folders (and files) sit next to it.

    Raises:
        FileNotFoundError: the subset folder is not in ``root``.
    """
    names = sorted(os.listdir(root))
    if subset.folder not in names:
        raise FileNotFoundError(f"ZEB subset folder not found: {Path(root) / subset.folder}")
    return names.index(subset.folder)


def select_pairs_gluefactory(pairs: Sequence[Pair], seed: int,
                             max_per_scene: int = GLUEFACTORY_MAX_PER_SCENE) -> list[Pair]:
    """glue-factory's subsampling of one subset: with more than ``max_per_scene`` pair files, sort them by file stem
    and draw ``max_per_scene`` without replacement with ``np.random.RandomState(seed).choice`` (the draw's order is
    kept); otherwise all of them (sorted by stem here; glue-factory keeps the file system's order, which changes
    nothing in the metrics).
    """
    if max_per_scene < 1:
        raise ValueError(f"max_per_scene must be positive, got {max_per_scene}")
    ordered = sorted(pairs, key=lambda pair: Path(pair.file).stem)
    if len(ordered) <= max_per_scene:
        return ordered
    # choice over a list draws indices exactly as choice(len(list)): permutation(n)[:k] of the legacy generator
    chosen = np.random.RandomState(seed).choice(len(ordered), max_per_scene, replace=False)
    return [ordered[int(i)] for i in chosen]


def gluefactory_size(height: int, width: int, side: int = GLUEFACTORY_RESIZE) -> tuple[int, int]:
    """``(h, w)`` after glue-factory's ``ImagePreprocessor.get_new_image_size`` with ``side="long"``: the long side
    becomes ``side`` and the other ``int(...)``-truncates (a square image counts as landscape); no ÷8 rounding."""
    aspect = width / height
    if aspect < 1.0:
        return side, int(side * aspect)
    return int(side / aspect), side


def prepare_image_gluefactory(image: np.ndarray, side: int = GLUEFACTORY_RESIZE) -> ZebImage:
    """Resize an ``(H, W, 3)`` uint8 RGB image as glue-factory's ZEB loader: ``/ 255`` to float32, then
    ``kornia.geometry.transform.resize`` (bilinear, ``antialias=True``, ``align_corners=None``) to
    :func:`gluefactory_size`. The result keeps float32 values (no re-quantisation to uint8), clipped to [0, 1] against
    rounding at the borders of the range. ``scale`` is GIM's ``[W / w, H / h]``; glue-factory's own scales are its
    inverse ``[w / W, h / H]`` (float32), by which it multiplies ``fx, fy, cx, cy`` (:func:`gluefactory_camera`).
    """
    import torch
    from kornia.geometry.transform import resize

    height, width = image.shape[:2]
    size = gluefactory_size(height, width, side)
    tensor = torch.tensor(np.ascontiguousarray(image).transpose(2, 0, 1) / 255.0, dtype=torch.float)
    resized = resize(tensor, size, interpolation="bilinear", align_corners=None, side="long", antialias=True)
    array = resized.clamp(0.0, 1.0).permute(1, 2, 0).contiguous().numpy()
    scale = np.array([width / size[1], height / size[0]], dtype=np.float32)
    return ZebImage(array, (height, width), size, scale)


def gluefactory_camera(K: np.ndarray, image: ZebImage) -> np.ndarray:
    """``K`` of the resized image as glue-factory's ``Camera.scale``: ``fx, cx`` times ``w / W`` and ``fy, cy`` times
    ``h / H`` (float32; no half-pixel shift of the principal point)."""
    (height, width), (h_new, w_new) = image.original_size, image.resized_size
    scales = np.array([w_new / width, h_new / height], dtype=np.float32)
    scaled = np.asarray(K, dtype=np.float32).copy()
    scaled[0, [0, 2]] *= scales[0]
    scaled[1, [1, 2]] *= scales[1]
    return scaled


def load_image_gluefactory(path: str | os.PathLike[str], side: int = GLUEFACTORY_RESIZE) -> ZebImage:
    """Read an image file (``cv2.IMREAD_COLOR`` → RGB, as glue-factory's ``read_image``) and resize it."""
    return prepare_image_gluefactory(read_color(Path(path)), side)


class GlueFactoryProtocol(Protocol):
    """glue-factory's protocol (module docstring)."""

    name: ClassVar[str] = "gluefactory"
    version_suffix: ClassVar[str] = "+gluefactory"
    ransac_threshold: ClassVar[float] = GLUEFACTORY_RANSAC_THRESHOLD
    focal_rule: ClassVar[str] = "all"
    auc_decimals: ClassVar[int | None] = 4
    pooled_summary: ClassVar[bool] = True
    report_note: ClassVar[str] = (
        "glue-factory's protocol (`--protocol gluefactory`: ≤ 200 pairs per subset, long side 1024 px, RANSAC 1.0 px; "
        "not comparable with GIM's numbers). All pairs = glue-factory's summary, the AUC pooled over all pairs of the "
        "subsets present.\n")

    def check_options(self, rescale: str | None) -> None:
        if rescale is not None:
            raise ValueError("--rescale applies to GIM's protocol only (glue-factory keeps keypoints in the resized "
                             "image)")

    def treatment(self, cls: type[BaseMatcher], rescale: str | None) -> Treatment:
        return Treatment(GLUEFACTORY_KEYPOINT_OFFSET, None, False)  # whatever the matcher: resized-image pixels

    def select_pairs(self, pairs: Sequence[Pair], data_dir: Path, subset: Subset, max_pairs: int | None) -> list[Pair]:
        cap = max_pairs or GLUEFACTORY_MAX_PER_SCENE
        return select_pairs_gluefactory(pairs, gluefactory_seed(data_dir, subset), cap)

    def load_image(self, path: str | os.PathLike[str], subset: Subset) -> ZebImage:
        return load_image_gluefactory(path)

    def keypoints(self, keypoints: np.ndarray, image: ZebImage, treatment: Treatment) -> np.ndarray:
        return np.asarray(keypoints).astype(np.float32) + np.float32(treatment.keypoint_offset)

    def camera(self, K: np.ndarray, image: ZebImage) -> np.ndarray:
        return gluefactory_camera(K, image)

    def fingerprint(self, treatment: Treatment) -> dict[str, Any]:
        return {**super().fingerprint(treatment), "gluefactory": {
            "resize": GLUEFACTORY_RESIZE, "ransac_th": GLUEFACTORY_RANSAC_THRESHOLD, "focal_rule": self.focal_rule,
            "auc_decimals": self.auc_decimals}}

    def software_versions(self) -> dict[str, str]:
        import kornia

        return {"kornia": kornia.__version__}


PROTOCOL = GlueFactoryProtocol()
