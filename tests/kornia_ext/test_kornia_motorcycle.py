"""aliked_lightglue through GIMMatcher on the real Middlebury motorcycle pair, checked with kornia's own geometry.

Floors (same as the Foundation's offline-matcher test): ≥ 1000 fundamental-matrix inliers at 1 px, here with
``kornia.geometry.ransac.RANSAC("fundamental")`` (Sampson distance), and ≥ 85 % of matches within 3 px of the GT
disparity. The pair is rectified, so the ground-truth fundamental matrix is known exactly (``y1 = y0``): the
estimated model must agree with it on the matches, and the matches must satisfy it. One matcher run per module
(``GIMMatcher`` and ``load_matcher`` once each, one extraction through ``GIMLocalFeature``).
"""

from __future__ import annotations

import pytest
import torch
from kornia.feature import DescriptorMatcher, LocalFeatureMatcher
from kornia.geometry.epipolar import sampson_epipolar_distance
from kornia.geometry.ransac import RANSAC

from gim_plugins import load_matcher
from gim_plugins.datasets.motorcycle import disparity_agreement, load_disparity, paths
from gim_plugins.io import read_image
from gim_plugins.kornia_ext import GIMMatcher
from gim_plugins.matching import weights_available

INLIER_FLOOR = 1000
F_RECTIFIED = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""Ground truth up to scale: for a rectified pair, x1ᵀ F x0 = y0 − y1."""


pytestmark = pytest.mark.skipif(not weights_available("aliked_lightglue"),
                                reason="run `gim weights fetch aliked_lightglue` (make test does)")


def _tensor(path) -> torch.Tensor:
    return torch.from_numpy(read_image(path)).permute(2, 0, 1).float() / 255.0


@pytest.fixture(scope="module")
def images():
    found = paths()
    return _tensor(found["left"])[None], _tensor(found["right"])[None]


@pytest.fixture(scope="module")
def matcher():
    return GIMMatcher("aliked_lightglue")


@pytest.fixture(scope="module")
def output(matcher, images):
    with torch.inference_mode():
        return matcher({"image0": images[0], "image1": images[1]})


@pytest.fixture(scope="module")
def fit(output):
    model, inliers = RANSAC("fundamental", inl_th=1.0, seed=0)(output["keypoints0"], output["keypoints1"])
    return model, inliers


def _sampson(k0: torch.Tensor, k1: torch.Tensor, model: torch.Tensor) -> torch.Tensor:
    return sampson_epipolar_distance(k0[None], k1[None], model[None], squared=False)[0]


def test_feature_kornia_ransac_inlier_floor(output, fit):
    _, inliers = fit
    assert inliers.shape == (len(output["keypoints0"]),) and inliers.dtype == torch.bool
    assert int(inliers.sum()) >= INLIER_FLOOR, (len(inliers), int(inliers.sum()))


def test_feature_estimated_f_agrees_with_the_rectified_ground_truth(output, fit):
    model, inliers = fit
    k0, k1 = output["keypoints0"], output["keypoints1"]
    gt_error = _sampson(k0, k1, F_RECTIFIED)
    consistent = gt_error < 1.0
    assert int(consistent.sum()) >= INLIER_FLOOR
    assert float(_sampson(k0[consistent], k1[consistent], model).median()) < 0.25  # measured 0.06 px
    assert float(gt_error[inliers].median()) < 0.25  # measured 0.06 px


def test_feature_gt_disparity(output):
    share, valid = disparity_agreement(output["keypoints0"].numpy(), output["keypoints1"].numpy(), load_disparity())
    assert valid > 0.8 * len(output["keypoints0"]) and share >= 0.85, (share, valid)


def test_feature_equals_load_matcher(output, images):
    result = load_matcher("aliked_lightglue").match(images[0][0], images[1][0])
    assert len(result) >= INLIER_FLOOR
    assert torch.equal(output["keypoints0"], result.keypoints0)
    assert torch.equal(output["keypoints1"], result.keypoints1)
    assert torch.equal(output["confidence"], result.confidence)
    assert torch.equal(output["batch_indexes"], torch.zeros(len(result), dtype=torch.long))


def test_cardinality_real_pair(output):
    k0 = output["keypoints0"]
    assert k0.dtype == torch.float32 and k0.is_inference()  # made under inference_mode by the fixture
    for key in ("keypoints0", "keypoints1"):
        k = output[key]
        assert bool((k[:, 0] >= -0.5).all()) and bool((k[:, 0] <= 741 - 0.5).all())
        assert bool((k[:, 1] >= -0.5).all()) and bool((k[:, 1] <= 500 - 0.5).all())
    assert bool(((output["confidence"] > 0) & (output["confidence"] <= 1)).all())


def test_feature_extractor_half_in_kornia_local_feature_matcher(matcher, images):
    """ALIKED features through GIMLocalFeature, matched by kornia's own descriptor matcher (not LightGlue)."""
    local = matcher.local_feature()
    lafs, _, descriptors = local(torch.cat(images))
    kornia_matcher = LocalFeatureMatcher(local, DescriptorMatcher("smnn", 0.9))
    out = kornia_matcher({"image0": images[0], "image1": images[1], "lafs0": lafs[:1], "descriptors0": descriptors[:1],
                          "lafs1": lafs[1:], "descriptors1": descriptors[1:]})
    _, inliers = RANSAC("fundamental", inl_th=1.0, seed=0)(out["keypoints0"], out["keypoints1"])
    assert int(inliers.sum()) >= INLIER_FLOOR, (len(inliers), int(inliers.sum()))  # measured 1365 of 1421
