"""``match_pair(..., max_size=)``: matching downscaled copies, results in pixels of the images as given.

On the real Middlebury motorcycle pair (741×500, bundled with scikit-image) with its ground-truth disparity, using
root_sift (OpenCV SIFT, no weights): the same pair and floor as the ``gim match --max-size`` CLI test.
"""

from __future__ import annotations

import pytest
import torch

from gim_plugins import load_matcher, match_pair
from gim_plugins.datasets.motorcycle import disparity_agreement, load_disparity, paths
from gim_plugins.io import read_image, resize_max_side, scale_keypoints, to_image_tensor


@pytest.fixture(scope="module")
def motorcycle():
    return paths()


@pytest.fixture(scope="module")
def sift():
    return load_matcher("root_sift")


@pytest.fixture(scope="module")
def downscaled(sift, motorcycle):
    return match_pair(sift, motorcycle["left"], motorcycle["right"], max_size=400)


def test_feature_max_size_keeps_the_given_pixels(downscaled, motorcycle):
    assert downscaled.image_size0 == downscaled.image_size1 == (500, 741)
    assert len(downscaled) > 300
    for keypoints, (height, width) in ((downscaled.keypoints0, downscaled.image_size0),
                                       (downscaled.keypoints1, downscaled.image_size1)):
        assert bool((keypoints >= -0.5).all())
        assert bool((keypoints[:, 0] <= width - 0.5).all()) and bool((keypoints[:, 1] <= height - 0.5).all())
    assert float(downscaled.keypoints0[:, 0].max()) > 600  # beyond the 400-px copy: mapped back, not left small
    k0, k1, _ = downscaled.numpy()
    share, valid = disparity_agreement(k0, k1, load_disparity(motorcycle["disparity"]))
    assert valid > 300
    assert share > 0.85  # in original pixels, so they agree with the full-size ground truth


def test_feature_max_size_is_resize_match_and_rescale(sift, motorcycle, downscaled):
    """Exactly the numbers of resizing by hand, matching, and mapping back with the centre convention."""
    full0, full1 = (to_image_tensor(read_image(motorcycle[side])) for side in ("left", "right"))
    small0, scale0 = resize_max_side(full0, 400)
    small1, scale1 = resize_max_side(full1, 400)
    assert small0.shape[-2:] == (270, 400) and scale0 == (741 / 400, 500 / 270)
    by_hand = sift.match(small0, small1)
    assert torch.equal(downscaled.keypoints0, scale_keypoints(by_hand.keypoints0, scale0))
    assert torch.equal(downscaled.keypoints1, scale_keypoints(by_hand.keypoints1, scale1))
    assert torch.equal(downscaled.confidence, by_hand.confidence)
    assert downscaled.matcher == "root_sift" and "total" in downscaled.timing
    assert torch.equal(by_hand.rescaled(scale0, scale1, (500, 741), (500, 741)).keypoints0, downscaled.keypoints0)


def test_feature_max_size_above_the_image_changes_nothing(sift, motorcycle):
    plain = match_pair(sift, motorcycle["left"], motorcycle["right"])
    same = match_pair(sift, motorcycle["left"], motorcycle["right"], max_size=741)
    assert torch.equal(plain.keypoints0, same.keypoints0) and torch.equal(plain.keypoints1, same.keypoints1)
    by_name = match_pair("root_sift", motorcycle["left"], motorcycle["right"], max_size=741)
    assert torch.equal(by_name.keypoints0, plain.keypoints0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "400"])
def test_exception_max_size_must_be_a_positive_integer(sift, motorcycle, bad):
    with pytest.raises(ValueError, match="max_size must be a positive number of pixels"):
        match_pair(sift, motorcycle["left"], motorcycle["right"], max_size=bad)


def test_exception_max_size_below_the_matcher_minimum(sift, motorcycle):
    with pytest.raises(ValueError, match="too small"):
        match_pair(sift, motorcycle["left"], motorcycle["right"], max_size=sift.min_image_size - 1)
