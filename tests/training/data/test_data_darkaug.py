"""GIM's Dark augmentation with kornia: GIM's probabilities and ranges, each op's values against hand-computed
(albumentations-equivalent) ones, no geometric shift, padding kept zero, batch-wide on any device."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gim_plugins.training.data import darkaug as dk
from gim_plugins.training.data.batch import DARK_PARAMS


def _params(**slots: float) -> torch.Tensor:
    vector = np.zeros(DARK_PARAMS, np.float32)
    vector[dk.ON] = 1
    for name, value in slots.items():
        vector[getattr(dk, name)] = value
    return torch.from_numpy(vector)[None]


def _image(seed: int = 0, size: tuple[int, int] = (48, 64)) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.uniform(0, 1, (*size, 3)).astype(np.float32), (0, 0), 1.5)
    return torch.from_numpy(image).permute(2, 0, 1)[None].clamp(0, 1)


def _full_mask(image: torch.Tensor) -> torch.Tensor:
    return torch.ones(image.shape[0], *image.shape[2:], dtype=torch.bool)


def test_feature_gim_probabilities_and_ranges():
    rng = np.random.default_rng(0)
    draws = np.stack([dk.sample_dark(rng, scale=1.0) for _ in range(20000)])
    on = draws[:, dk.ON] > 0
    assert abs(on.mean() - 0.5 * 0.75) < 0.015  # p 0.5 per image × Compose p 0.75
    active = draws[on]
    for flag, p in ((dk.BC, 0.75), (dk.BLUR, 0.1), (dk.MOTION, 0.2), (dk.GAMMA, 0.1), (dk.HSV, 0.1)):
        assert abs((active[:, flag] > 0).mean() - p) < 0.02, flag
    bc = active[active[:, dk.BC] > 0]
    assert bc[:, dk.ALPHA].min() >= 0.5 and bc[:, dk.ALPHA].max() <= 1.3  # contrast −0.5…0.3
    assert bc[:, dk.BETA].min() >= -0.6 and bc[:, dk.BETA].max() <= 0.0  # brightness −0.6…0
    assert set(np.unique(active[active[:, dk.BLUR] > 0, dk.BLUR_K])) == {3, 5, 7, 9}
    assert set(np.unique(active[active[:, dk.MOTION] > 0, dk.MOTION_K])) == set(range(3, 26, 2))
    gamma = active[active[:, dk.GAMMA] > 0, dk.GAMMA_V]
    assert gamma.min() >= 0.15 and gamma.max() <= 0.65
    hsv = active[active[:, dk.HSV] > 0]
    assert np.abs(hsv[:, dk.HUE]).max() <= 40.0 and np.abs(hsv[:, dk.SAT]).max() <= 30 / 255 + 1e-6
    assert hsv[:, dk.VAL].min() >= -100 / 255 - 1e-6 and hsv[:, dk.VAL].max() <= -40 / 255 + 1e-6
    assert not draws[~on].any()  # no Dark augmentation: all zero


def test_feature_kernel_sizes_follow_the_resize():
    rng = np.random.default_rng(1)
    draws = np.stack([dk.sample_dark(rng, scale=0.5) for _ in range(20000)])
    motion = draws[draws[:, dk.MOTION] > 0, dk.MOTION_K]
    assert set(np.unique(motion)) <= {0, 3, 5, 7, 9, 11, 13} and motion.max() == 13  # 25 px at half size: 13
    blur = draws[draws[:, dk.BLUR] > 0, dk.BLUR_K]
    assert set(np.unique(blur)) == {0, 3, 5}  # 3 px at half size is below 3: skipped


def test_feature_brightness_contrast_values():
    image = _image()
    out = dk.apply_dark(image, _full_mask(image), _params(BC=1, ALPHA=1.25, BETA=-0.3))
    expected = (image * 1.25 - 0.3).clamp(0, 1)  # albumentations: one lookup table, clamped once
    assert torch.allclose(out, expected, atol=1e-6)


def test_feature_gamma_values():
    image = _image()
    out = dk.apply_dark(image, _full_mask(image), _params(GAMMA=1, GAMMA_V=0.4))
    assert torch.allclose(out, image.clamp(0, 1) ** 0.4, atol=1e-5)


def test_feature_hue_saturation_value_against_opencv():
    image = _image(3)
    out = dk.apply_dark(image, _full_mask(image), _params(HSV=1, HUE=30.0, SAT=0.05, VAL=-0.25))
    rgb = image[0].permute(1, 2, 0).numpy()
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # float: H in degrees, S and V in [0, 1]
    hsv[..., 0] = np.mod(hsv[..., 0] + 30.0, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] + 0.05, 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] - 0.25, 0, 1)
    expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    assert np.abs(out[0].permute(1, 2, 0).numpy() - expected).max() < 2e-3


@pytest.mark.parametrize("op", ["BLUR", "MOTION"])
def test_feature_blurs_do_not_move_content(op):
    """A bright dot keeps its centre of mass (an off-centre kernel would shift the image against its labels)."""
    image = torch.zeros(1, 3, 65, 65)
    image[:, :, 32, 32] = 1.0
    slots = {"BLUR": {"BLUR": 1, "BLUR_K": 7}, "MOTION": {"MOTION": 1, "MOTION_K": 15, "MOTION_ANGLE": 33.0}}[op]
    out = dk.apply_dark(image, _full_mask(image), _params(**slots))[0, 0]
    assert float(out.max()) < 0.5  # it did blur
    ys, xs = torch.meshgrid(torch.arange(65.0), torch.arange(65.0), indexing="ij")
    total = out.sum()
    assert abs(float((out * xs).sum() / total) - 32) < 0.05 and abs(float((out * ys).sum() / total) - 32) < 0.05


def test_feature_padding_stays_zero_and_is_not_blurred_in():
    image = _image(4, (40, 56))
    image[..., 30:, :] = 0
    image[..., :, 44:] = 0
    mask = torch.zeros(1, 40, 56, dtype=torch.bool)
    mask[:, :30, :44] = True
    params = _params(BC=1, ALPHA=1.0, BETA=0.0, BLUR=1, BLUR_K=9)
    out = dk.apply_dark(image, mask, params)
    assert float(out[:, :, ~mask[0]].abs().max()) == 0.0
    flat = torch.full((1, 3, 40, 56), 0.6) * mask[:, None]  # a flat picture stays flat up to its border
    blurred = dk.apply_dark(flat, mask, _params(BLUR=1, BLUR_K=9))
    assert torch.allclose(blurred[:, :, mask[0]], torch.tensor(0.6), atol=1e-5)


def test_cardinality_rows_and_identity():
    images = torch.cat([_image(s) for s in range(4)])
    params = torch.zeros(4, DARK_PARAMS)
    params[1] = _params(GAMMA=1, GAMMA_V=0.3)[0]
    params[3] = _params(BC=1, ALPHA=0.7, BETA=-0.1, MOTION=1, MOTION_K=5, MOTION_ANGLE=80.0)[0]
    out = dk.apply_dark(images, _full_mask(images), params)
    assert out.shape == images.shape
    assert torch.equal(out[0], images[0]) and torch.equal(out[2], images[2])  # all-zero rows untouched
    assert not torch.allclose(out[1], images[1]) and not torch.allclose(out[3], images[3])
    assert torch.equal(dk.apply_dark(images, _full_mask(images), torch.zeros(4, DARK_PARAMS)), images)


def test_smoke_device(device):
    images = torch.cat([_image(s) for s in range(3)])
    rng = np.random.default_rng(5)
    params = torch.from_numpy(np.stack([dk.sample_dark(rng) for _ in range(3)]))
    params[:, dk.ON] = 1
    params[:, dk.BC] = 1
    cpu = dk.apply_dark(images, _full_mask(images), params)
    there = dk.apply_dark(images.to(device), _full_mask(images).to(device), params.to(device))
    assert there.device.type == torch.device(device).type
    assert torch.allclose(there.cpu(), cpu, atol=1e-5)
