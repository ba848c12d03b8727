"""One request of the page: the library's counts on the example pair, downscaling, the robust models, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from gim_plugins.app.cache import MatcherCache
from gim_plugins.app.run import run_match
from gim_plugins.errors import UserError
from gim_plugins.matching import load_matcher

STAGES = {"decode", "load", "match", "robust fit", "drawing"}


def test_feature_example_pair_has_the_library_counts(library_counts):
    """The motorcycle pair with aliked_lightglue gives what `gim demo --matcher aliked_lightglue` gives."""
    from gim_plugins.datasets.motorcycle import paths

    files = paths()
    cache = MatcherCache()
    result = run_match(cache, files["left"], files["right"], matcher="aliked_lightglue")
    assert (result.num_matches, result.num_inliers) == library_counts
    assert set(result.timing) == STAGES and result.timing["load"] > 0
    assert result.match_picture.shape == (2 * 500 + 2, 2 * 741 + 2, 3)
    assert result.warp_picture.shape == (500, 3 * 741 + 4, 3)
    assert result.image_size0 == result.image_size1 == (500, 741)
    assert result.model is not None and result.model.shape == (3, 3)
    assert "aliked_lightglue=" in result.weights and result.notes == []


def test_feature_downscale_maps_keypoints_to_original_pixels(test_matchers, image_pair):
    cache = MatcherCache()
    result = run_match(cache, *image_pair, matcher="app_test_grid", max_side=100)
    assert result.notes == ["image0 downscaled from 300×200 to 100×67 px for matching",
                            "image1 downscaled from 300×200 to 100×67 px for matching"]
    # what the matcher saw: a grid on the 100×67 image; what the page reports: the same points in 300×200 pixels
    small = load_matcher("app_test_grid").match(np.zeros((67, 100, 3), np.uint8), np.zeros((67, 100, 3), np.uint8))
    sx, sy = 300 / 100, 200 / 67
    expected0 = (small.keypoints0.numpy() + 0.5) * [sx, sy] - 0.5
    np.testing.assert_allclose(result.keypoints0, expected0, rtol=0, atol=1e-4)
    np.testing.assert_allclose(result.keypoints1 - result.keypoints0, np.tile([2.0 * sx, 0.0], (len(expected0), 1)),
                               atol=1e-3)
    assert result.image_size0 == (200, 300)
    assert result.match_picture.shape == (2 * 67 + 2, 2 * 100 + 2, 3)  # pictures at the matched size
    assert result.timing["load"] > 0
    again = run_match(cache, *image_pair, matcher="app_test_grid", max_side=1000)
    assert again.notes == [] and again.timing["load"] == 0.0  # cached; no downscaling below the maximum side


def test_feature_homography_model_counts_its_own_inliers(test_matchers, image_pair):
    result = run_match(MatcherCache(), *image_pair, matcher="app_test_grid", options={"dx": 3.0, "dy": -1.0},
                       robust="homography", threshold=0.5)
    assert result.num_inliers == result.num_matches > 100
    # the homography maps image 1 into image 0 (GIM's warp direction): a translation by (-3, +1)
    np.testing.assert_allclose(result.model / result.model[2, 2], [[1, 0, -3], [0, 1, 1], [0, 0, 1]], atol=1e-6)
    assert (result.robust, result.threshold) == ("homography", 0.5)


def test_exception_refusals_happen_before_loading_or_decoding(test_matchers, image_pair, tmp_path, monkeypatch):
    calls = []
    cache = MatcherCache(loader=lambda *a, **k: calls.append(a))
    import gim_plugins.io

    monkeypatch.setattr(gim_plugins.io, "read_image", lambda *a: calls.append("decoded"))
    with pytest.raises(UserError, match="unknown robust model"):
        run_match(cache, *image_pair, matcher="app_test_grid", robust="affine")
    with pytest.raises(UserError, match="image1 is missing"):
        run_match(cache, image_pair[0], None, matcher="app_test_grid")
    huge = tmp_path / "huge.png"
    huge.write_bytes(image_pair[0].read_bytes())
    with pytest.raises(UserError, match=r"image0 is 300×200 px \(0.06 MP\), above the page's limit of 0.05 MP"):
        run_match(cache, huge, image_pair[1], matcher="app_test_grid", max_pixels=50_000)
    with pytest.raises(UserError, match="unknown device"):
        run_match(cache, *image_pair, matcher="app_test_grid", device="gpu")
    assert calls == []
