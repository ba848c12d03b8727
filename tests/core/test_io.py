from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gim_plugins.io import read_image, resize_max_side, rgb_to_gray, scale_keypoints, to_image_tensor


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def _write(path, array_rgb_or_gray):
    array = array_rgb_or_gray
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), array)
    return path


def test_feature_png_roundtrip_rgb(tmp_path, rgb):
    path = _write(tmp_path / "a.png", rgb)
    assert np.array_equal(read_image(path), rgb)
    tensor = to_image_tensor(path)
    assert tensor.shape == (3, 40, 60) and tensor.dtype == torch.float32
    assert torch.allclose(tensor, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


def test_feature_rgba_drops_alpha(tmp_path, rgb):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    path = _write(tmp_path / "rgba.png", rgba)
    assert read_image(path).shape == (40, 60, 4)
    assert torch.allclose(to_image_tensor(path), to_image_tensor(rgb))


def test_feature_16bit_png_scaled(tmp_path):
    gray16 = (np.arange(40 * 60, dtype=np.uint32).reshape(40, 60) * 27).astype(np.uint16)
    path = _write(tmp_path / "g16.png", gray16)
    assert read_image(path).dtype == np.uint16
    tensor = to_image_tensor(path)
    assert tensor.shape == (3, 40, 60)
    assert torch.allclose(tensor[0], torch.from_numpy(gray16.astype(np.float32) / 65535.0))
    assert float(tensor.max()) <= 1.0


def test_feature_gray_is_replicated_and_gray_roundtrip_is_exact(tmp_path, rgb):
    gray = rgb[:, :, 0]
    tensor = to_image_tensor(_write(tmp_path / "g.png", gray))
    assert torch.equal(tensor[0], tensor[1]) and torch.equal(tensor[1], tensor[2])
    assert torch.allclose(rgb_to_gray(tensor)[0], tensor[0], atol=1e-6)


@pytest.mark.parametrize(
    "image",
    [torch.rand(3, 20, 30), torch.rand(1, 3, 20, 30), torch.rand(20, 30), torch.randint(0, 255, (3, 20, 30),
                                                                                        dtype=torch.uint8),
     np.random.rand(20, 30).astype(np.float32), np.zeros((20, 30, 1), np.uint8)],
)
def test_cardinality_accepted_forms(image):
    tensor = to_image_tensor(image)
    assert tensor.shape == (3, 20, 30) and tensor.dtype == torch.float32
    assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0


def test_exception_missing_and_non_image(tmp_path):
    with pytest.raises(FileNotFoundError):
        to_image_tensor(tmp_path / "missing.png")
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="cannot decode"):
        to_image_tensor(bad)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"is empty \(0 bytes\)"):
        read_image(empty)


@pytest.mark.parametrize(
    ("image", "match"),
    [(np.zeros((5, 5, 2), np.uint8), "H×W"), (torch.rand(2, 3, 5, 5), "batch"), (torch.rand(5, 5, 5), "C in"),
     (torch.rand(3, 5, 5) * 3, r"\[0, 1\]"), (np.zeros((5, 5), np.int32), "dtype"),
     (torch.full((3, 5, 5), float("nan")), "NaN"), (object(), "expected a path")],
)
def test_exception_bad_arrays(image, match):
    with pytest.raises(ValueError, match=match):
        to_image_tensor(image)


def test_exception_too_small(tmp_path):
    path = _write(tmp_path / "one.png", np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ValueError, match="too small"):
        to_image_tensor(path, min_size=8)
    assert to_image_tensor(path).shape == (3, 1, 1)


def test_feature_resize_max_side_and_keypoint_scaling():
    image = torch.rand(3, 100, 200)
    small, scale = resize_max_side(image, 50)
    assert small.shape == (3, 25, 50) and scale == (4.0, 4.0)
    same, unit = resize_max_side(image, 400)
    assert same is image and unit == (1.0, 1.0)
    # the centre of resized pixel (0, 0) covers original pixels 0..3, whose centre is 1.5
    assert torch.allclose(scale_keypoints(torch.tensor([[0.0, 0.0], [49.0, 24.0]]), scale),
                          torch.tensor([[1.5, 1.5], [197.5, 97.5]]))
