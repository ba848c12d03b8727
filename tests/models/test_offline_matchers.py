"""The two matchers with real offline weights, on the real Middlebury motorcycle pair (skimage) with GT disparity.

Floors: aliked_lightglue ≥ 1000 fundamental-matrix inliers (USAC_MAGSAC, 1 px) and ≥ 85 % of matches within 3 px of
the GT disparity; root_sift ≥ 700 inliers; an unrelated pair (motorcycle vs astronaut) ≤ 40 inliers for both.
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from gim_plugins import FeatureCache, load_matcher
from gim_plugins.datasets.motorcycle import disparity_agreement, load_disparity, paths
from gim_plugins.matching import weights_available
from gim_plugins.types import Features

needs_aliked = pytest.mark.skipif(not weights_available("aliked_lightglue"),
                                  reason="run `gim weights fetch aliked_lightglue` (make test does)")

FLOORS = {"aliked_lightglue": 1000, "root_sift": 700}


@pytest.fixture(scope="module")
def motorcycle():
    return paths()


@pytest.fixture(scope="module", params=["root_sift", pytest.param("aliked_lightglue", marks=needs_aliked)])
def matcher(request):
    return load_matcher(request.param)


@pytest.fixture(scope="module")
def stereo_result(matcher, motorcycle):
    return matcher.match(motorcycle["left"], motorcycle["right"])


def test_feature_motorcycle_inlier_floor(matcher, stereo_result):
    fit = stereo_result.fundamental(threshold=1.0)
    assert fit.num_inliers >= FLOORS[matcher.name], (len(stereo_result), fit.num_inliers)


def test_feature_motorcycle_gt_disparity(matcher, stereo_result):
    k0, k1, _ = stereo_result.numpy()
    share, valid = disparity_agreement(k0, k1, load_disparity())
    assert valid > 0.8 * len(stereo_result)
    floor = 0.85 if matcher.name == "aliked_lightglue" else 0.9
    assert share >= floor, share


def test_feature_unrelated_pair_has_few_inliers(matcher, motorcycle):
    result = matcher.match(motorcycle["left"], skimage.data.astronaut())
    assert result.fundamental(threshold=1.0).num_inliers <= 40


def test_cardinality_result_contract(matcher, stereo_result):
    assert stereo_result.matcher == matcher.name
    assert stereo_result.image_size0 == (500, 741) and stereo_result.image_size1 == (500, 741)
    k0, k1, conf = stereo_result.numpy()
    assert k0.dtype == np.float32 and k0.shape == k1.shape == (len(conf), 2)
    for k in (k0, k1):
        assert (k[:, 0] >= -0.5).all() and (k[:, 0] <= 741 - 0.5).all()
        assert (k[:, 1] >= -0.5).all() and (k[:, 1] <= 500 - 0.5).all()
    assert np.isfinite(conf).all()
    assert {"total", "extract", "match"} <= set(stereo_result.timing)


def test_feature_same_result_for_every_input_form(matcher, motorcycle, stereo_result):
    from gim_plugins.io import read_image

    left = read_image(motorcycle["left"])
    as_tensor = torch.from_numpy(left).permute(2, 0, 1)  # uint8 CHW
    result = matcher.match(as_tensor, motorcycle["right"])
    assert torch.equal(result.keypoints0, stereo_result.keypoints0)
    assert torch.equal(result.keypoints1, stereo_result.keypoints1)


def test_feature_extract_once_through_the_cache(matcher, motorcycle, tmp_path, stereo_result):
    cache = FeatureCache(matcher, tmp_path / "feats.h5")
    right = cache.get("right", motorcycle["right"])
    assert isinstance(right, Features) and right.extractor == matcher.name
    result = cache.match("left", "right", motorcycle["left"])
    again = cache.match("right", "left")
    assert cache.num_extracted == 2
    assert torch.equal(result.keypoints0, stereo_result.keypoints0)
    assert len(again) > 0.9 * len(result)
    # a new cache on the same file reads, it does not extract
    reread = FeatureCache(matcher, tmp_path / "feats.h5")
    assert sorted(reread.keys()) == ["left", "right"]
    assert torch.equal(reread.get("left").keypoints, cache.get("left").keypoints)
    assert reread.num_extracted == 0


def test_exception_cache_refuses_features_of_another_configuration(matcher, tmp_path, motorcycle):
    FeatureCache(matcher, tmp_path / "feats.h5").get("left", motorcycle["left"])
    other = load_matcher("root_sift", max_keypoints=100) if matcher.name == "root_sift" else load_matcher(
        "aliked_lightglue", max_keypoints=512)
    with pytest.raises(ValueError, match="another extractor or configuration"):
        FeatureCache(other, tmp_path / "feats.h5")
    assert FeatureCache(other, tmp_path / "feats.h5", overwrite=True).num_extracted == 0


def test_exception_features_of_another_matcher(matcher, motorcycle):
    foreign = Features(torch.zeros(3, 2), torch.zeros(3, 4), torch.zeros(3), (10, 10), "someone_else")
    with pytest.raises(ValueError, match="someone_else"):
        matcher.match_features(foreign, foreign)


def test_feature_empty_features_give_an_empty_result(matcher):
    dim = 128
    empty = Features(torch.zeros(0, 2), torch.zeros(0, dim), torch.zeros(0), (50, 60), matcher.name)
    result = matcher.match_features(empty, empty)
    assert len(result) == 0 and result.image_size0 == (50, 60)


def test_feature_flat_image_gives_no_matches_not_an_error():
    matcher = load_matcher("root_sift")
    result = matcher.match(np.full((64, 64, 3), 128, np.uint8), np.full((64, 64, 3), 128, np.uint8))
    assert len(result) == 0


def test_exception_aliked_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("GIM_WEIGHTS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="gim weights fetch aliked_lightglue"):
        load_matcher("aliked_lightglue")
    random = load_matcher("aliked_lightglue", pretrained=False)
    assert random.weights_id == "random"


def test_exception_root_sift_conf():
    with pytest.raises(ValueError, match="max_keypoints"):
        load_matcher("root_sift", max_keypoints=0)
    with pytest.raises(KeyError, match="ratio_threshold"):
        load_matcher("root_sift", ratio=0.7)
