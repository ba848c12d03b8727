"""GIM's ZEB metrics on synthetic two-view geometry with known R, t."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from gim_plugins.zeb import metrics
from gim_plugins.zeb.metrics import (
    essential_from_pose,
    estimate_pose,
    evaluate_pair,
    pose_auc,
    pose_errors,
    relative_pose_error,
    symmetric_epipolar_distance,
)


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    return cv2.Rodrigues(np.array([rx, ry, rz], dtype=np.float64))[0]


def _two_views(seed: int = 0, n: int = 400, noise: float = 0.0):
    """Random 3D points seen by two cameras with different K; returns kpts0, kpts1, K0, K1, T_0to1."""
    rng = np.random.default_rng(seed)
    K0 = np.array([[520.0, 0, 318.0], [0, 515.0, 242.0], [0, 0, 1]])
    K1 = np.array([[610.0, 0, 330.0], [0, 600.0, 250.0], [0, 0, 1]])
    R = _rotation(0.05, -0.12, 0.03)
    t = np.array([0.4, -0.05, 0.1])
    X = np.c_[rng.uniform(-1.5, 1.5, n), rng.uniform(-1, 1, n), rng.uniform(3, 7, n)]
    x0 = (X @ K0.T)[:, :2] / X[:, 2:]
    X1 = X @ R.T + t
    x1 = (X1 @ K1.T)[:, :2] / X1[:, 2:]
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    x0 = x0 + rng.normal(0, noise, x0.shape)
    x1 = x1 + rng.normal(0, noise, x1.shape)
    return x0, x1, K0, K1, T


def test_feature_noise_free_pose_is_exact():
    x0, x1, K0, K1, T = _two_views()
    pose = estimate_pose(x0, x1, K0, K1)
    assert pose is not None
    t_err, R_err, t_err2 = relative_pose_error(T, pose.R, pose.t)
    assert R_err < 0.05 and t_err < 0.05
    assert t_err2 < 0.01 * np.linalg.norm(T[:3, 3])
    assert pose.inliers.shape == (len(x0),) and pose.inliers.mean() > 0.99
    assert pose.num_inliers == int(pose.inliers.sum())


def test_feature_evaluate_pair_noise_free_and_with_outliers():
    x0, x1, K0, K1, T = _two_views(n=300)
    clean = evaluate_pair(x0, x1, K0, K1, T)
    assert clean.R_err < 0.05 and clean.t_err < 0.05 and clean.pose_error < 0.05
    assert clean.bef_prec == 1.0 and clean.bef_num == 300 and clean.aft_prec == 1.0
    # 30 % outliers: still solved; precision before RANSAC drops, after RANSAC stays ~1
    rng = np.random.default_rng(1)
    x1_out = x1.copy()
    bad = rng.choice(300, 90, replace=False)
    x1_out[bad] = rng.uniform(0, 640, (90, 2))
    noisy = evaluate_pair(x0, x1_out, K0, K1, T)
    assert noisy.pose_error < 0.5
    assert noisy.bef_prec == pytest.approx(210 / 300, abs=0.02)
    assert noisy.aft_prec > 0.98 and noisy.aft_num <= noisy.num_inliers


def test_feature_translation_sign_is_folded():
    T = _two_views()[4]
    t_err, R_err, _ = relative_pose_error(T, T[:3, :3], -T[:3, 3])
    # T is float32 as in GIM: arccos near 1 turns its rounding into a few hundredths of a degree
    assert t_err == pytest.approx(0.0, abs=0.05) and R_err == pytest.approx(0.0, abs=0.05)
    # a 90° wrong direction and a 10° rotation error
    t_err, R_err, _ = relative_pose_error(T, _rotation(0, 0, math.radians(10)) @ T[:3, :3],
                                          np.cross(T[:3, 3], [0, 1, 0]))
    assert t_err == pytest.approx(90.0, abs=1e-3) and R_err == pytest.approx(10.0, abs=1e-3)


def test_feature_epipolar_distance():
    x0, x1, K0, K1, T = _two_views(n=50)
    d = symmetric_epipolar_distance(x0, x1, essential_from_pose(T), K0, K1)
    assert d.dtype == np.float32 and d.shape == (50,)
    assert float(d.max()) < 1e-9
    d_shifted = symmetric_epipolar_distance(x0, x1 + np.array([0, 5.0]), essential_from_pose(T), K0, K1)
    assert float(d_shifted.min()) > metrics.EPIPOLAR_THRESHOLD * 1e-3


def test_exception_failures_are_inf():
    x0, x1, K0, K1, T = _two_views(n=4)
    assert estimate_pose(x0, x1, K0, K1) is None
    result = evaluate_pair(x0, x1, K0, K1, T)
    assert math.isinf(result.R_err) and math.isinf(result.t_err) and math.isinf(result.t_err2)
    assert (result.aft_prec, result.aft_num) == (0.0, 0) and result.failed
    assert result.pose_error == metrics.FAILURE_ERROR
    empty = evaluate_pair(np.zeros((0, 2)), np.zeros((0, 2)), K0, K1, T)
    assert (empty.bef_prec, empty.bef_num, empty.num_matches) == (0.0, 0, 0)
    with pytest.raises(ValueError, match="differ in length"):
        estimate_pose(x0, x1[:3], K0, K1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        estimate_pose(x0[:, :1], x1, K0, K1)


def _analysis_error_auc(errs0, errs1, thresholds):
    """GIM's analysis.py error_auc, literally (lists, searchsorted, trapezoid)."""
    errs0, errs1 = np.array(errs0, dtype=float), np.array(errs1, dtype=float)
    errs0[np.isnan(errs0) | np.isinf(errs0)] = 180
    errs1[np.isnan(errs1) | np.isinf(errs1)] = 180
    errors = np.max(np.stack([errs0, errs1]), axis=0)
    errors = [0, *sorted(errors)]
    recall = list(np.linspace(0, 1, len(errors)))
    out = []
    for thr in thresholds:
        last_index = np.searchsorted(errors, thr)
        y = [*recall[:last_index], recall[last_index - 1]]
        x = [*errors[:last_index], thr]
        out.append(np.trapezoid(y, x) / thr)
    return out


def test_feature_auc_matches_analysis_py():
    rng = np.random.default_rng(3)
    R = rng.exponential(6.0, 500)
    t = rng.exponential(8.0, 500)
    R[::17] = np.inf
    t[::23] = np.nan
    expected = _analysis_error_auc(R, t, [5.0, 10.0, 20.0])
    assert pose_auc(pose_errors(R, t)) == pytest.approx(expected, abs=1e-12)


def test_cardinality_auc_hand_computed():
    # errors 1, 3, 100: recall steps 1/3 at 1°, 2/3 at 3°; AUC@5 = area under the step-trapezoid curve / 5
    auc5, auc10 = pose_auc([1.0, 3.0, 100.0], [5.0, 10.0])
    area5 = 0.5 * 1 * (1 / 3) + 0.5 * 2 * (1 / 3 + 2 / 3) + 2 * (2 / 3)
    assert auc5 == pytest.approx(area5 / 5)
    assert auc10 == pytest.approx((area5 + 5 * 2 / 3) / 10)
    assert pose_auc([0.0, 0.0]) == pytest.approx([1.0, 1.0, 1.0])
    assert pose_auc([np.inf]) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="at least one"):
        pose_auc([])
    with pytest.raises(ValueError, match="positive"):
        pose_auc([1.0], [0.0])


def _gim_estimate_pose(kpts0, kpts1, K0, K1, thresh, conf=0.99999):
    """GIM's tools/metrics.py estimate_pose, transcribed literally (it relies on recoverPose writing ``mask``)."""
    if len(kpts0) < 5:
        return None
    kpts0 = (kpts0 - K0[[0, 1], [2, 2]][None]) / K0[[0, 1], [0, 1]][None]
    kpts1 = (kpts1 - K1[[0, 1], [2, 2]][None]) / K1[[0, 1], [0, 1]][None]
    ransac_thr = thresh / np.mean([K0[0, 0], K1[1, 1], K0[0, 0], K1[1, 1]])
    E, mask = cv2.findEssentialMat(kpts0, kpts1, np.eye(3), threshold=ransac_thr, prob=conf, method=cv2.RANSAC)
    if E is None:
        return None
    best_num_inliers = 0
    ret = None
    for _E in np.split(E, len(E) / 3):
        n, R, t, _ = cv2.recoverPose(_E, kpts0, kpts1, np.eye(3), 1e9, mask=mask)
        if n > best_num_inliers:
            ret = (R, t[:, 0], mask.ravel() > 0)
            best_num_inliers = n
    return ret


@pytest.mark.parametrize("seed", range(3))
def test_feature_parity_with_gim_estimate_pose(seed):
    """Same R, t and inlier mask as GIM's code, in float32 as GIM feeds it, on noisy data with outliers and with
    points behind the cameras (so the cheirality mask written by recoverPose matters)."""
    x0, x1, K0, K1, _ = _two_views(seed=seed, n=250, noise=0.7)
    rng = np.random.default_rng(seed + 100)
    x1[:40] = rng.uniform(0, 640, (40, 2))
    x1[40:60] = 2 * x0[40:60] - x1[40:60]  # mirrored flow: inconsistent depth sign
    k0, k1 = x0.astype(np.float32), x1.astype(np.float32)
    K0f, K1f = K0.astype(np.float32), K1.astype(np.float32)
    ours = estimate_pose(k0, k1, K0f, K1f)
    gim = _gim_estimate_pose(k0, k1, K0f, K1f, 0.5)
    assert (ours is None) == (gim is None)
    if gim is not None:
        np.testing.assert_array_equal(ours.R, gim[0])
        np.testing.assert_array_equal(ours.t, gim[1])
        np.testing.assert_array_equal(ours.inliers, gim[2])
