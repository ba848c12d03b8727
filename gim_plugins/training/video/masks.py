"""Which pixels a labeller may match, and how each labeller is given that mask.

Maskers (``masks`` option of the label step):

* ``"ade20k"`` — GIM's: CSAIL's ADE20K segmenter (:mod:`gim_plugins.models.semseg`) removes people, sky and cars.
  Class maps are cached per frame as GIM does (``segment/<vid>/<i>.npy``), so every labeller and every rerun reuses
  them. Needs the two weight files (``gim weights fetch semseg_ade20k_encoder``);
* ``"sky"`` — a classical, weight-free fallback: bright, smooth pixels connected to the top border (sky), as the
  offline prototype of the project found workable. It does not find people or cars;
* ``"none"`` — every pixel usable;
* ``"auto"`` (default) — ``"ade20k"`` when its weights are installed, else ``"none"``, saying so in one line.

How a labeller gets the mask (:func:`mask_mode`), as GIM's ``video_preprocessor.py`` passes it:

* ``"detect"`` — extractors that take a detection mask (OpenCV SIFT: GIM's SIFT labeller) get it as such;
* ``"match"`` — matchers whose ``match`` takes validity masks (GIM-LoFTR, reduced to its 1/8 grid) get them there;
* ``"multiply"`` — everything else matches the image multiplied by the mask (GIM-DKM: masked pixels become black,
  and DKM's black-pixel rule gives them zero certainty; GIM-LightGlue: GIM multiplies the grey image, which is the
  grey conversion of the multiplied colour image).

A pair whose mask is empty in either frame gets no label, as in GIM.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gim_plugins.atomic import atomic_path
from gim_plugins.errors import UserError
from gim_plugins.training.video.layout import Layout

__all__ = ["MASKERS", "Masker", "apply_mask", "make_masker", "mask_mode"]

MASKERS = ("auto", "ade20k", "sky", "none")


def mask_mode(matcher: Any) -> str:
    """``"detect"``, ``"match"`` or ``"multiply"``: how ``matcher`` is given a mask (module docstring)."""
    if getattr(matcher, "is_sparse", False) and getattr(matcher, "accepts_detection_mask", False):
        return "detect"
    if getattr(matcher, "accepts_masks", False):
        return "match"
    return "multiply"


def apply_mask(rgb: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The frame with unusable pixels set to black (``rgb`` itself when there is no mask)."""
    return rgb if mask is None else rgb * mask[..., None].astype(rgb.dtype)


class Masker:
    """Usable-pixel masks of the frames of one layout (``None`` when nothing is masked)."""

    name = "none"

    def mask(self, vid: str, index: int, rgb: np.ndarray) -> np.ndarray | None:
        """``(H, W)`` bool mask of frame ``index`` of ``vid`` (its RGB given), or ``None`` for no mask."""
        return None


class ADE20KMasker(Masker):
    """GIM's segmentation mask, class maps cached at ``segment/<vid>/<i>.npy``."""

    name = "ade20k"

    def __init__(self, layout: Layout, device: str = "cpu") -> None:
        from gim_plugins.models.semseg import SemanticSegmenter

        self.layout = layout
        self.segmenter = SemanticSegmenter(device=device)

    def class_map(self, vid: str, index: int, rgb: np.ndarray) -> np.ndarray:
        path = self.layout.segment(vid, index)
        if path.is_file():
            return np.load(path)
        classes = self.segmenter.segment(rgb)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, classes)
        return classes

    def mask(self, vid: str, index: int, rgb: np.ndarray) -> np.ndarray | None:
        from gim_plugins.models.semseg import usable_mask

        return usable_mask(self.class_map(vid, index, rgb), rgb.shape[:2])


class SkyMasker(Masker):
    """Classical sky mask: bright (HSV value ≥ ``brightness``), smooth (gradient ≤ ``smoothness``) pixels connected
    to the top border are unusable."""

    name = "sky"

    def __init__(self, brightness: int = 150, smoothness: float = 12.0) -> None:
        self.brightness = brightness
        self.smoothness = smoothness

    def mask(self, vid: str, index: int, rgb: np.ndarray) -> np.ndarray | None:
        import cv2

        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        value = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 2]
        blurred = cv2.GaussianBlur(gray, (5, 5), 0).astype(np.float32)
        gradient = cv2.magnitude(cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1))
        candidate = ((value >= self.brightness) & (gradient <= self.smoothness)).astype(np.uint8)
        count, labels = cv2.connectedComponents(candidate, connectivity=4)
        top = np.unique(labels[0][candidate[0] > 0])
        sky = np.isin(labels, top[top > 0]) if count > 1 else np.zeros(gray.shape, bool)
        return ~sky


def make_masker(mode: str, layout: Layout, device: str = "cpu") -> tuple[Masker, str]:
    """The masker for option ``masks`` and one line saying which is used and why.

    Raises:
        UserError: unknown mode, or ``"ade20k"`` without its weights.
    """
    from gim_plugins.models.semseg import segmenter_available

    if mode not in MASKERS:
        raise UserError(f"masks must be one of {', '.join(MASKERS)}, got {mode!r}")
    if mode == "auto":
        if segmenter_available():
            return ADE20KMasker(layout, device), "masks: ADE20K segmentation (person, sky, car removed), as GIM"
        return Masker(), ("masks: none — GIM's ADE20K segmenter weights are not installed (`gim weights fetch "
                          "semseg_ade20k_encoder` or `gim weights import`); masks=sky gives a classical sky mask")
    if mode == "ade20k":
        if not segmenter_available():
            raise UserError("masks=ade20k needs encoder_epoch_20.pth and decoder_epoch_20.pth: `gim weights fetch "
                            "semseg_ade20k_encoder` (or `gim weights import FILE`), or use masks=auto/sky/none")
        return ADE20KMasker(layout, device), "masks: ADE20K segmentation (person, sky, car removed), as GIM"
    if mode == "sky":
        return SkyMasker(), "masks: classical sky mask (bright smooth regions touching the top border)"
    return Masker(), "masks: none"
