from __future__ import annotations

import numpy as np
import pytest
import torch

from gim_plugins.geometry import estimate_fundamental, estimate_homography
from gim_plugins.types import Features, MatchResult


def _result(n=10):
    k0 = torch.rand(n, 2, dtype=torch.float64) * 100
    return MatchResult(k0, k0 + 1, torch.linspace(0, 1, n), (120, 160), (120, 161), "m")


def test_cardinality_and_dtypes():
    result = _result()
    assert len(result) == 10
    for tensor in (result.keypoints0, result.keypoints1, result.confidence):
        assert tensor.dtype == torch.float32 and tensor.device.type == "cpu"
    k0, _, conf = result.numpy()
    assert k0.shape == (10, 2) and conf.shape == (10,) and k0.dtype == np.float32


def test_feature_select_and_empty():
    result = _result()
    subset = result.select(result.confidence > 0.5)
    assert len(subset) == 5 and subset.image_size1 == (120, 161)
    empty = MatchResult.empty((4, 5), (6, 7))
    assert len(empty) == 0 and empty.keypoints0.shape == (0, 2)
    assert estimate_fundamental(empty.keypoints0, empty.keypoints1).num_inliers == 0


@pytest.mark.parametrize(
    ("k0", "k1", "conf"),
    [(torch.zeros(3, 3), torch.zeros(3, 2), torch.zeros(3)), (torch.zeros(3, 2), torch.zeros(2, 2), torch.zeros(3)),
     (torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 1))],
)
def test_exception_shapes(k0, k1, conf):
    with pytest.raises(ValueError):
        MatchResult(k0, k1, conf, (1, 1), (1, 1))


def test_exception_sizes_and_frozen():
    with pytest.raises(ValueError):
        MatchResult(torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0), (0, 5), (5, 5))
    result = _result()
    with pytest.raises(AttributeError):
        result.matcher = "x"  # type: ignore[misc]


def test_exception_features_lengths():
    with pytest.raises(ValueError):
        Features(torch.zeros(4, 2), torch.zeros(3, 8), torch.zeros(4), (10, 10))
    feats = Features(torch.zeros(4, 2), torch.zeros(4, 8), torch.zeros(4), (10, 10), "x")
    assert len(feats) == 4


def test_feature_geometry_recovers_exact_models():
    rng = np.random.default_rng(0)
    # a homography: inliers exact, 30 % gross outliers
    H = np.array([[1.1, 0.05, 12.0], [-0.03, 0.95, -7.0], [1e-4, -2e-4, 1.0]])
    src = rng.uniform(0, 500, (200, 2))
    dst_h = np.c_[src, np.ones(200)] @ H.T
    dst = dst_h[:, :2] / dst_h[:, 2:]
    dst[:60] = rng.uniform(0, 500, (60, 2))
    fit = estimate_homography(src, dst, threshold=1.0)
    assert fit.inliers[60:].all() and fit.inliers[:60].sum() <= 2
    assert np.allclose(fit.model / fit.model[2, 2], H, atol=1e-6)
    # a calibrated two-view geometry: x1ᵀ F x0 = 0 for the inliers
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    angle = 0.1
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([1.0, 0.1, 0.05])
    X = np.c_[rng.uniform(-2, 2, (300, 2)), rng.uniform(4, 8, 300)]
    x0 = X @ K.T
    x0 = x0[:, :2] / x0[:, 2:]
    x1 = (X @ R.T + t) @ K.T
    x1 = x1[:, :2] / x1[:, 2:]
    x1[:50] += rng.uniform(20, 60, (50, 2))
    fit = estimate_fundamental(x0, x1, threshold=0.5)
    assert fit.model is not None and fit.inliers[50:].mean() > 0.99 and fit.inliers[:50].mean() < 0.1
    residual = np.abs(np.einsum("ni,ij,nj->n", np.c_[x1, np.ones(300)], fit.model, np.c_[x0, np.ones(300)]))
    assert np.median(residual[50:]) < 1e-3


def test_exception_geometry_bad_shapes_and_too_few_points():
    with pytest.raises(ValueError):
        estimate_fundamental(np.zeros((10, 3)), np.zeros((10, 3)))
    with pytest.raises(ValueError):
        estimate_fundamental(np.zeros((10, 2)), np.zeros((9, 2)))
    fit = estimate_fundamental(np.zeros((5, 2)), np.zeros((5, 2)))
    assert fit.model is None and fit.inliers.shape == (5,) and not fit.inliers.any()


def test_feature_rescaled_maps_centres_back():
    result = MatchResult(torch.tensor([[0.0, 0.0], [49.0, 24.0]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
                         torch.tensor([0.5, 0.25]), (25, 50), (10, 10), "m", {"total": 1.0})
    back = result.rescaled((4.0, 4.0), (1.0, 2.0), (100, 200), (20, 10))
    # the centre of resized pixel (0, 0) covers original pixels 0..3, whose centre is 1.5
    assert torch.equal(back.keypoints0, torch.tensor([[1.5, 1.5], [197.5, 97.5]]))
    assert torch.equal(back.keypoints1, torch.tensor([[1.0, 4.5], [3.0, 8.5]]))
    assert back.image_size0 == (100, 200) and back.image_size1 == (20, 10)
    assert torch.equal(back.confidence, result.confidence) and back.matcher == "m" and back.timing == {"total": 1.0}
    assert torch.equal(result.keypoints0, torch.tensor([[0.0, 0.0], [49.0, 24.0]]))  # the original is unchanged
