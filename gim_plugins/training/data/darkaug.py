"""GIM's Dark augmentation, written with ``kornia.augmentation``, runnable batch-wide on any device.

GIM darkens training images with an albumentations ``Compose`` (p 0.75) applied to each image with probability 0.5:

============================== ====== =================================== =====================================
albumentations op (GIM's args) p      kornia op here                      difference
============================== ====== =================================== =====================================
RandomBrightnessContrast       0.75   RandomContrast (0.5–1.3) then       none in value: ``x·α + β`` clamped
brightness −0.6…0,                    RandomBrightness (0.4–1.0), both    once at the end, as albumentations'
contrast −0.5…0.3                     unclamped, one shared gate          lookup table does
Blur 3–9                       0.1    RandomBoxBlur                       kernel size scaled to the network
                                                                          resolution (see below)
MotionBlur 3–25                0.2    RandomMotionBlur, direction 0       kornia's kernel is a centred line of
                                                                          full length at a random angle;
                                                                          albumentations draws a random segment
                                                                          inside the k×k square, which may be
                                                                          off-centre and so *shifts* the image
                                                                          by up to k/2 px against its labels.
                                                                          A centred kernel keeps labels exact.
RandomGamma 15–65              0.1    RandomGamma (0.15–0.65)             none
HueSaturationValue             0.1    :class:`RandomHueSaturationValue`   none in value (hue ±20 OpenCV units
val −100…−40 (hue ±20, sat            (a kornia intensity augmentation    = ±40°, saturation ±30/255 and value
±30 by default)                       written here)                       −100/255…−40/255, additive)
============================== ====== =================================== =====================================

Further differences, all deliberate: albumentations works on uint8 (rounding after each op), kornia on float32 in
[0, 1]; GIM darkens the full-resolution frame before resizing, we darken the network-size image, so the blur
kernels (pixels of the source frame in GIM) are scaled by the image's resize factor to blur the same share of the
picture (a kernel that would shrink below 3 px is skipped); blurs treat the zero padding as absent (normalised
convolution with the validity mask) where albumentations reflects at the picture's border.

Why parameters are drawn outside kornia: they are sampled in the data workers from each sample's seeded
``numpy.random.Generator`` (:func:`sample_dark`) and packed into a fixed-length vector that travels in the batch
(``dark0``/``dark1``). :class:`DarkAug` then applies them to a whole batch on whatever device it is on. The result is
the same on CPU and GPU, does not depend on how samples are batched, and is reproducible under a seed; kornia's own
random draws would depend on the global torch generator and the batch composition.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from kornia.augmentation import (
    RandomBoxBlur,
    RandomBrightness,
    RandomContrast,
    RandomGamma,
    RandomMotionBlur,
)
from kornia.augmentation import random_generator as rg
from kornia.augmentation._2d.intensity.base import IntensityAugmentationBase2D
from kornia.color import hsv_to_rgb, rgb_to_hsv

from gim_plugins.training.data.batch import DARK_PARAMS

__all__ = ["DARK", "DarkAug", "RandomHueSaturationValue", "apply_dark", "sample_dark"]

DARK: dict[str, Any] = {
    "p_image": 0.5,  # GIM: np.random.choice([DarkAug, None], p=[0.5, 0.5]) per image
    "p_compose": 0.75,
    "brightness_contrast": {"p": 0.75, "brightness": (-0.6, 0.0), "contrast": (-0.5, 0.3)},
    "blur": {"p": 0.1, "kernel": (3, 9)},
    "motion_blur": {"p": 0.2, "kernel": (3, 25)},
    "gamma": {"p": 0.1, "gamma": (15, 65)},  # albumentations' percent units: gamma = value / 100
    "hsv": {"p": 0.1, "hue": (-20, 20), "saturation": (-30, 30), "value": (-100, -40)},  # uint8 units
}
"""GIM's DarkAug probabilities and ranges in albumentations' units (the documentation of the original's args)."""

# Packed layout of one image's parameters (DARK_PARAMS floats; all zero: no Dark augmentation).
ON, BC, ALPHA, BETA, BLUR, BLUR_K, MOTION, MOTION_K, MOTION_ANGLE, GAMMA, GAMMA_V, HSV, HUE, SAT, VAL = range(15)


def _odd_kernel(size: int, scale: float) -> int:
    """The odd kernel size closest to ``size · scale``; 0 when it would be below 3 (no visible blur left)."""
    k = 2 * round((size * scale - 1) / 2) + 1
    return int(k) if k >= 3 else 0


def sample_dark(rng: np.random.Generator, scale: float = 1.0, conf: dict[str, Any] | None = None) -> np.ndarray:
    """Draw one image's Dark-augmentation parameters (GIM's probabilities and ranges) into a packed vector.

    Args:
        rng: the sample's generator.
        scale: network pixels per source pixel of this image (blur kernels are scaled by it).
        conf: probabilities and ranges (default :data:`DARK`).

    Returns:
        ``(DARK_PARAMS,)`` float32; all zero when the image is not darkened.
    """
    conf = DARK if conf is None else conf
    out = np.zeros(DARK_PARAMS, np.float32)
    if not (rng.random() < conf["p_image"] and rng.random() < conf["p_compose"]):
        return out
    out[ON] = 1
    bc = conf["brightness_contrast"]
    if rng.random() < bc["p"]:
        out[BC], out[ALPHA], out[BETA] = 1, 1 + rng.uniform(*bc["contrast"]), rng.uniform(*bc["brightness"])
    for flag, slot, key in ((BLUR, BLUR_K, "blur"), (MOTION, MOTION_K, "motion_blur")):
        if rng.random() < conf[key]["p"]:
            low, high = conf[key]["kernel"]
            size = int(rng.choice(np.arange(low, high + 1, 2)))
            out[flag], out[slot] = 1, _odd_kernel(size, scale)
            if key == "motion_blur":
                out[MOTION_ANGLE] = rng.uniform(0.0, 180.0)  # the centred kernel is symmetric: 180° covers all
    if rng.random() < conf["gamma"]["p"]:
        out[GAMMA], out[GAMMA_V] = 1, rng.uniform(*conf["gamma"]["gamma"]) / 100.0
    hsv = conf["hsv"]
    if rng.random() < hsv["p"]:
        out[HSV] = 1
        out[HUE] = 2.0 * rng.uniform(*hsv["hue"])  # OpenCV's uint8 hue is half-degrees: degrees here
        out[SAT], out[VAL] = rng.uniform(*hsv["saturation"]) / 255.0, rng.uniform(*hsv["value"]) / 255.0
    return out


class RandomHueSaturationValue(IntensityAugmentationBase2D):
    """Additive shifts of hue (degrees), saturation and value (both in [0, 1] units), as albumentations'
    ``HueSaturationValue``: ``h' = (h + Δh) mod 360``, ``s' = clip(s + Δs)``, ``v' = clip(v + Δv)``.

    kornia has multiplicative saturation and no value shift, hence this class. Input: ``(B, 3, H, W)`` RGB in [0, 1].
    """

    def __init__(self, hue: tuple[float, float] = (-40.0, 40.0),
                 saturation: tuple[float, float] = (-30 / 255, 30 / 255),
                 value: tuple[float, float] = (-100 / 255, -40 / 255), p: float = 1.0) -> None:
        super().__init__(p=p, same_on_batch=False, keepdim=False)
        self._param_generator = rg.PlainUniformGenerator(
            (hue, "hue_shift", None, None), (saturation, "saturation_shift", None, None),
            (value, "value_shift", None, None))

    def apply_transform(self, input: torch.Tensor, params: dict[str, torch.Tensor], flags: dict[str, Any],
                        transform: torch.Tensor | None = None) -> torch.Tensor:
        def shift(name: str) -> torch.Tensor:
            return params[name].to(input.device, input.dtype).view(-1, 1, 1)

        hsv = rgb_to_hsv(input.clamp(0.0, 1.0))
        hue = torch.remainder(hsv[:, 0] + shift("hue_shift") * (math.pi / 180.0), 2 * math.pi)
        saturation = (hsv[:, 1] + shift("saturation_shift")).clamp(0.0, 1.0)
        value = (hsv[:, 2] + shift("value_shift")).clamp(0.0, 1.0)
        return hsv_to_rgb(torch.stack([hue, saturation, value], dim=1))


class DarkAug(torch.nn.Module):
    """Apply packed Dark-augmentation parameters to a batch: ``forward(images, masks, params) -> images``.

    ``images`` ``(B, 3, H, W)`` float RGB in [0, 1] (zero padding), ``masks`` ``(B, H, W)`` bool (True on content),
    ``params`` ``(B, DARK_PARAMS)`` from :func:`sample_dark`. Rows whose parameters are all zero are returned as
    they are; the padding stays zero. Each op runs once per group of rows that need it (blurs once per kernel size).
    """

    def __init__(self) -> None:
        super().__init__()
        self.contrast = RandomContrast(contrast=(0.5, 1.3), clip_output=False, p=1.0)
        self.brightness = RandomBrightness(brightness=(0.4, 1.0), clip_output=False, p=1.0)
        self.gamma = RandomGamma(gamma=(0.15, 0.65), p=1.0)
        self.hsv = RandomHueSaturationValue(p=1.0)
        self._box: dict[int, RandomBoxBlur] = {}
        self._motion: dict[int, RandomMotionBlur] = {}

    def _box_blur(self, size: int) -> RandomBoxBlur:
        if size not in self._box:
            self._box[size] = RandomBoxBlur(kernel_size=(size, size), border_type="constant", p=1.0)
        return self._box[size]

    def _motion_blur(self, size: int) -> RandomMotionBlur:
        if size not in self._motion:
            self._motion[size] = RandomMotionBlur(kernel_size=size, angle=(0.0, 180.0), direction=(0.0, 0.0),
                                                  border_type="constant", p=1.0)
        return self._motion[size]

    @staticmethod
    def _rows(params: torch.Tensor, flag: int) -> torch.Tensor:
        return torch.nonzero(params[:, flag] > 0.5).flatten()

    def _blur(self, x: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor, op: Any,
              extra: dict[str, torch.Tensor]) -> None:
        """Normalised convolution in place on ``x[rows]``: blur(x·m) / blur(m), so the padding adds nothing."""
        stacked = torch.cat([x[rows] * weight[rows], weight[rows]], dim=1)
        blurred = op(stacked, params=extra)
        x[rows] = blurred[:, :3] / blurred[:, 3:].clamp_min(1e-6)

    def forward(self, images: torch.Tensor, masks: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        params = params.to(images.device, torch.float32)
        active = self._rows(params, ON)
        if len(active) == 0:
            return images
        x = images.clone()
        weight = masks[:, None].to(x.dtype)
        rows = self._rows(params, BC)
        if len(rows):
            out = self.contrast(x[rows], params={"contrast_factor": params[rows, ALPHA]})
            out = self.brightness(out, params={"brightness_factor": 1.0 + params[rows, BETA]})
            x[rows] = out.clamp(0.0, 1.0)
        for size in sorted({int(k) for k in params[self._rows(params, BLUR), BLUR_K].tolist()} - {0}):
            rows = torch.nonzero((params[:, BLUR] > 0.5) & (params[:, BLUR_K] == size)).flatten()
            self._blur(x, weight, rows, self._box_blur(size), {})
        for size in sorted({int(k) for k in params[self._rows(params, MOTION), MOTION_K].tolist()} - {0}):
            rows = torch.nonzero((params[:, MOTION] > 0.5) & (params[:, MOTION_K] == size)).flatten()
            extra = {"ksize_factor": torch.full((len(rows),), size, dtype=torch.int32),
                     "angle_factor": params[rows, MOTION_ANGLE],
                     "direction_factor": torch.zeros(len(rows), dtype=x.dtype, device=x.device),
                     "idx": torch.zeros(1, dtype=torch.long)}
            self._blur(x, weight, rows, self._motion_blur(size), extra)
        rows = self._rows(params, GAMMA)
        if len(rows):
            x[rows] = self.gamma(x[rows], params={"gamma_factor": params[rows, GAMMA_V],
                                                  "gain_factor": torch.ones_like(params[rows, GAMMA_V])})
        rows = self._rows(params, HSV)
        if len(rows):
            x[rows] = self.hsv(x[rows], params={"hue_shift": params[rows, HUE], "saturation_shift": params[rows, SAT],
                                                "value_shift": params[rows, VAL]})
        return x * weight


_DEFAULT: DarkAug | None = None


def apply_dark(images: torch.Tensor, masks: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """:class:`DarkAug` with a module-level instance (the ops hold no state beyond their kernel-size caches)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = DarkAug()
    return _DEFAULT(images, masks, params)
