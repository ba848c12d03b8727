"""GIM's ZEB metrics: relative pose by OpenCV RANSAC, angular errors, epipolar precision and the AUC.

Pure numpy + OpenCV, constant for constant as GIM's ``tools/metrics.py`` (``compute_pose_errors``,
``estimate_pose``, ``relative_pose_error``, ``symmetric_epipolar_distance``), ``trainer/lightning.py``
(``test_epoch_end``: the per-pair columns) and ``analysis.py`` (``error_auc``) of the original code:

* Pose: fewer than 5 matches fail. Keypoints are normalised with each image's ``K`` (``(x − c) / f``), the RANSAC
  threshold is ``0.5 / mean(fx0, fy1, fx0, fy1)``, ``cv2.findEssentialMat(..., np.eye(3), RANSAC, prob=0.99999)``;
  every 3×3 block of ``E`` goes through ``cv2.recoverPose(..., distanceThresh=1e9, mask=mask)`` and the block with
  strictly the most inliers wins. ``recoverPose`` writes its cheirality mask into ``mask`` in place, so each block
  starts from the previous block's output mask, and the reported inliers are the winner's output mask. GIM relies on
  that in-place write implicitly; here it is explicit, which gives the same numbers and does not depend on OpenCV
  keeping its in-place behaviour.
* Errors in degrees: ``t_err = min(∠(t, t_gt), 180 − ∠)``; ``R_err = arccos((tr(Rᵀ R_gt) − 1) / 2)``;
  ``t_err2 = ‖t·|t_gt|/|t| − t_gt‖`` (the translation error at the ground-truth scale, in the units of ``T_0to1``).
  A failure is ``inf`` in all three.
* Epipolar precision: squared symmetric epipolar distance in normalised coordinates with ``E_gt = [t_gt]× R_gt``
  below ``5e-4``; ``Bef`` over all matches, ``Aft`` over the pose inliers (0 / 0 for failures).
* AUC: the pose error of a pair is ``max(R_err, t_err)`` (NaN/inf → 180); SuperGlue-style trapezoid AUC of the
  recall curve up to 5°, 10°, 20°.

GIM computes in float32 wherever its tensors were float32 (keypoints, ``K``, ``T_0to1``, the epipolar distance);
so do these functions, so that borderline RANSAC decisions and threshold comparisons come out the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "AUC_THRESHOLDS",
    "EPIPOLAR_THRESHOLD",
    "FAILURE_ERROR",
    "FOCAL_RULES",
    "MIN_MATCHES",
    "RANSAC_CONFIDENCE",
    "RANSAC_PIXEL_THRESHOLD",
    "RECOVER_POSE_DISTANCE",
    "PairMetrics",
    "PoseEstimate",
    "cross_product_matrix",
    "essential_from_pose",
    "estimate_pose",
    "evaluate_pair",
    "pose_auc",
    "pose_errors",
    "relative_pose_error",
    "symmetric_epipolar_distance",
]

MIN_MATCHES = 5
"""Fewer matches than this is a pose failure (the 5-point solver's minimum)."""

RANSAC_PIXEL_THRESHOLD = 0.5
"""Pixels; hard-coded in GIM's ``compute_pose_errors`` (its ``--ransac_threshold`` flag is ignored)."""

RANSAC_CONFIDENCE = 0.99999
"""``prob`` of ``cv2.findEssentialMat``."""

RECOVER_POSE_DISTANCE = 1e9
"""``distanceThresh`` of ``cv2.recoverPose``: points farther than this count as at infinity."""

EPIPOLAR_THRESHOLD = 5e-4
"""A match is correct when its squared symmetric epipolar distance (normalised coordinates) is below this."""

FAILURE_ERROR = 180.0
"""What a failed pose (inf) or NaN error counts as in the AUC."""

AUC_THRESHOLDS = (5.0, 10.0, 20.0)
"""Degrees. GIM's ``analysis.py`` prints only 5°; 10° and 20° use the same formula."""


@dataclass(frozen=True)
class PoseEstimate:
    """A relative pose from :func:`estimate_pose`.

    Attributes:
        R: ``(3, 3)`` float64 rotation, camera 0 → camera 1.
        t: ``(3,)`` float64 unit translation direction.
        inliers: ``(N,)`` bool, the winning block's ``recoverPose`` output mask (RANSAC inliers in front of both
            cameras).
        num_inliers: what ``recoverPose`` returned for the winner.
    """

    R: np.ndarray
    t: np.ndarray
    inliers: np.ndarray
    num_inliers: int


def _normalise(keypoints: np.ndarray, K: np.ndarray) -> np.ndarray:
    # GIM: (kpts - K[[0, 1], [2, 2]][None]) / K[[0, 1], [0, 1]][None], in the dtype of the inputs (float32)
    return (keypoints - K[[0, 1], [2, 2]][None]) / K[[0, 1], [0, 1]][None]


FOCAL_RULES = ("gim", "all")


def _mean_focal(K0: np.ndarray, K1: np.ndarray, rule: str) -> float:
    if rule == "gim":
        return float(np.mean([K0[0, 0], K1[1, 1], K0[0, 0], K1[1, 1]]))
    if rule == "all":
        return float(np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]]))
    raise ValueError(f"focal_rule must be one of {FOCAL_RULES}, got {rule!r}")


def _as_points(keypoints: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(keypoints, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name}: expected an (N, 2) array, got shape {points.shape}")
    return points


def _as_matrix(matrix: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    array = np.asarray(matrix, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")
    return array


def estimate_pose(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    K0: np.ndarray,
    K1: np.ndarray,
    threshold: float = RANSAC_PIXEL_THRESHOLD,
    confidence: float = RANSAC_CONFIDENCE,
    focal_rule: str = "gim",
) -> PoseEstimate | None:
    """GIM's ``estimate_pose``: essential matrix by OpenCV RANSAC, then ``recoverPose`` selection.

    Args:
        kpts0: ``(N, 2)`` matched keypoints in image 0, in the pixel coordinates ``K0`` refers to (cast to float32).
        kpts1: ``(N, 2)`` the matching keypoints in image 1.
        K0: ``(3, 3)`` intrinsics of image 0 (cast to float32, as GIM parses them).
        K1: ``(3, 3)`` intrinsics of image 1.
        threshold: RANSAC threshold in pixels, divided by the mean focal length (see ``focal_rule``).
        confidence: RANSAC ``prob``.
        focal_rule: ``"gim"``: ``mean(fx0, fy1, fx0, fy1)`` (GIM's indexing); ``"all"``: ``mean(fx0, fy0, fx1,
            fy1)`` (glue-factory's ``OpenCVRelativePoseEstimator``). The selection among the ``E`` blocks is the same
            in both.

    Returns:
        The pose, or ``None`` for a failure (fewer than 5 matches, no ``E``, no block with inliers, or an OpenCV
        error on degenerate input, where GIM would have crashed).
    """
    import cv2

    points0, points1 = _as_points(kpts0, "kpts0"), _as_points(kpts1, "kpts1")
    if len(points0) != len(points1):
        raise ValueError(f"kpts0 and kpts1 differ in length: {len(points0)} vs {len(points1)}")
    K0, K1 = _as_matrix(K0, (3, 3), "K0"), _as_matrix(K1, (3, 3), "K1")
    if len(points0) < MIN_MATCHES:
        return None
    norm0, norm1 = _normalise(points0, K0), _normalise(points1, K1)
    ransac_thr = threshold / _mean_focal(K0, K1, focal_rule)
    try:
        E, mask = cv2.findEssentialMat(norm0, norm1, np.eye(3), threshold=float(ransac_thr), prob=confidence,
                                       method=cv2.RANSAC)
    except cv2.error:
        return None
    if E is None or mask is None:
        return None
    best: PoseEstimate | None = None
    for block in np.split(E, len(E) // 3):
        n, R, t, mask = cv2.recoverPose(block, norm0, norm1, np.eye(3), RECOVER_POSE_DISTANCE, mask=mask)[:4]
        if n > (best.num_inliers if best is not None else 0):
            best = PoseEstimate(R, t[:, 0], mask.ravel() > 0, int(n))
    return best


def relative_pose_error(T_0to1: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """``(t_err, R_err, t_err2)`` of an estimate against the ground truth (degrees, degrees, units of ``T``).

    ``t_err`` folds the sign ambiguity of ``E`` (``min(θ, 180 − θ)``); ``t_err2`` compares ``t`` rescaled to the
    ground-truth norm with ``t_gt``.
    """
    T = _as_matrix(T_0to1, (4, 4), "T_0to1")
    t = np.asarray(t, dtype=np.float64).reshape(3)
    R = np.asarray(R, dtype=np.float64).reshape(3, 3)
    t_gt = T[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.linalg.norm(t) * np.linalg.norm(t_gt)
        t_err = np.rad2deg(np.arccos(np.clip(np.dot(t, t_gt) / n, -1.0, 1.0)))
        t_err = np.minimum(t_err, 180 - t_err)
        r = np.linalg.norm(t_gt) / np.linalg.norm(t)
        t_err2 = np.linalg.norm(t * r - t_gt)
    R_gt = T[:3, :3]
    cos = np.clip((np.trace(np.dot(R.T, R_gt)) - 1) / 2, -1.0, 1.0)
    R_err = np.rad2deg(np.abs(np.arccos(cos)))
    return float(t_err), float(R_err), float(t_err2)


def cross_product_matrix(v: np.ndarray) -> np.ndarray:
    """``[v]×``: the ``(3, 3)`` matrix with ``[v]× @ w == v × w`` (same dtype as ``v``)."""
    x, y, z = np.asarray(v).reshape(3)
    zero = np.zeros((), dtype=np.asarray(v).dtype)
    return np.array([[zero, -z, y], [z, zero, -x], [-y, x, zero]], dtype=np.asarray(v).dtype)


def essential_from_pose(T_0to1: np.ndarray) -> np.ndarray:
    """``E = [t]× R`` of a ``(4, 4)`` camera-0 → camera-1 transform, in float32 as GIM computes it."""
    T = _as_matrix(T_0to1, (4, 4), "T_0to1")
    return cross_product_matrix(T[:3, 3]) @ T[:3, :3]


def symmetric_epipolar_distance(kpts0: np.ndarray, kpts1: np.ndarray, E: np.ndarray, K0: np.ndarray,
                                K1: np.ndarray) -> np.ndarray:
    """``(N,)`` squared symmetric epipolar distances in normalised image coordinates (float32).

    ``d = (x̂1ᵀ E x̂0)² · (1 / ((E x̂0)₁² + (E x̂0)₂²) + 1 / ((Eᵀ x̂1)₁² + (Eᵀ x̂1)₂²))``.
    """
    points0, points1 = _as_points(kpts0, "kpts0"), _as_points(kpts1, "kpts1")
    E = _as_matrix(E, (3, 3), "E")
    K0, K1 = _as_matrix(K0, (3, 3), "K0"), _as_matrix(K1, (3, 3), "K1")
    ones = np.ones((len(points0), 1), dtype=np.float32)
    h0 = np.concatenate([_normalise(points0, K0), ones], axis=1)
    h1 = np.concatenate([_normalise(points1, K1), ones], axis=1)
    Ep0 = h0 @ E.T
    p1Ep0 = np.sum(h1 * Ep0, axis=-1)
    Etp1 = h1 @ E
    with np.errstate(divide="ignore", invalid="ignore"):
        return p1Ep0**2 * (1.0 / (Ep0[:, 0] ** 2 + Ep0[:, 1] ** 2) + 1.0 / (Etp1[:, 0] ** 2 + Etp1[:, 1] ** 2))


@dataclass(frozen=True)
class PairMetrics:
    """The numbers of one dump row (besides identifier and covisibilities), with GIM's meanings.

    Attributes:
        R_err: rotation error in degrees (``inf`` on failure).
        t_err: translation direction error in degrees, sign-folded (``inf`` on failure).
        t_err2: translation error at ground-truth scale (``inf`` on failure).
        bef_prec: share of all matches with epipolar distance below :data:`EPIPOLAR_THRESHOLD`.
        bef_num: how many matches that is.
        aft_prec: the same share among the pose inliers (0.0 on failure).
        aft_num: how many inliers that is (0 on failure).
        num_matches: matches given to the pose solver.
        num_inliers: pose inliers (0 on failure).
    """

    R_err: float
    t_err: float
    t_err2: float
    bef_prec: float
    bef_num: int
    aft_prec: float
    aft_num: int
    num_matches: int
    num_inliers: int

    @property
    def failed(self) -> bool:
        return not np.isfinite(self.R_err)

    @property
    def pose_error(self) -> float:
        """``max(R_err, t_err)`` with failures counted as :data:`FAILURE_ERROR`."""
        return float(pose_errors([self.R_err], [self.t_err])[0])


def _share(correct: np.ndarray) -> tuple[float, int]:
    # GIM: mean = lambda x: sum(x) / max(len(x), 1); the count is sum(x)
    count = int(np.count_nonzero(correct))
    return count / max(len(correct), 1), count


def evaluate_pair(kpts0: np.ndarray, kpts1: np.ndarray, K0: np.ndarray, K1: np.ndarray, T_0to1: np.ndarray, *,
                  threshold: float = RANSAC_PIXEL_THRESHOLD, focal_rule: str = "gim") -> PairMetrics:
    """Everything GIM writes for one pair: pose errors and epipolar precision before and after RANSAC.

    Args:
        kpts0: ``(N, 2)`` matches in image 0 in GIM's coordinates (pixels of the original image, as ``K0``).
        kpts1: ``(N, 2)`` matches in image 1.
        K0: ``(3, 3)`` intrinsics of image 0.
        K1: ``(3, 3)`` intrinsics of image 1.
        T_0to1: ``(4, 4)`` ground-truth transform camera 0 → camera 1.
        threshold: RANSAC threshold in pixels (GIM: 0.5; glue-factory: 1.0 in the resized image).
        focal_rule: which focal lengths normalise the threshold (:func:`estimate_pose`).
    """
    points0, points1 = _as_points(kpts0, "kpts0"), _as_points(kpts1, "kpts1")
    epi = symmetric_epipolar_distance(points0, points1, essential_from_pose(T_0to1), K0, K1)
    bef_prec, bef_num = _share(epi < EPIPOLAR_THRESHOLD)
    pose = estimate_pose(points0, points1, K0, K1, threshold, focal_rule=focal_rule)
    if pose is None:
        inf = float("inf")
        return PairMetrics(inf, inf, inf, bef_prec, bef_num, 0.0, 0, len(points0), 0)
    t_err, R_err, t_err2 = relative_pose_error(T_0to1, pose.R, pose.t)
    aft_prec, aft_num = _share(epi[pose.inliers] < EPIPOLAR_THRESHOLD)
    return PairMetrics(R_err, t_err, t_err2, bef_prec, bef_num, aft_prec, aft_num, len(points0), pose.num_inliers)


def pose_errors(R_errs: Sequence[float] | np.ndarray, t_errs: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per-pair ``max(R_err, t_err)``; NaN and inf count as :data:`FAILURE_ERROR` (``analysis.py``)."""
    R = np.asarray(R_errs, dtype=np.float64).copy()
    t = np.asarray(t_errs, dtype=np.float64).copy()
    if R.shape != t.shape:
        raise ValueError(f"R_errs and t_errs differ in shape: {R.shape} vs {t.shape}")
    for errs in (R, t):
        errs[~np.isfinite(errs)] = FAILURE_ERROR
    return np.max(np.stack([R, t]), axis=0) if R.size else R


def pose_auc(errors: Iterable[float], thresholds: Iterable[float] = AUC_THRESHOLDS,
             decimals: int | None = None) -> list[float]:
    """SuperGlue-style AUC of the recall-vs-error curve, as GIM's ``analysis.py: error_auc`` (fractions, not %).

    ``errors = [0] + sorted(errors)`` against ``recall = linspace(0, 1, n + 1)``; for each threshold ``τ`` the
    points with error below ``τ`` plus the closing point ``(τ, last recall)`` are integrated with the trapezoid rule
    and divided by ``τ``. Non-finite errors count as :data:`FAILURE_ERROR`.

    glue-factory's ``cal_error_auc`` (``AUCMetric``) is the same curve and the same trapezoid (``recall = [0, 1/n, …,
    1]``, the same closing point; it keeps ``inf`` where this uses 180°, which lies above every threshold either way)
    and rounds each AUC to 4 decimals: ``decimals=4``.

    Raises:
        ValueError: no errors, or a threshold that is not positive.
    """
    values = np.asarray(list(errors), dtype=np.float64)
    if values.size == 0:
        raise ValueError("pose_auc needs at least one error")
    values[~np.isfinite(values)] = FAILURE_ERROR
    curve = np.concatenate([[0.0], np.sort(values)])
    recall = np.linspace(0.0, 1.0, len(curve))
    aucs = []
    for threshold in thresholds:
        threshold = float(threshold)
        if threshold <= 0:
            raise ValueError(f"AUC thresholds must be positive, got {threshold}")
        last = int(np.searchsorted(curve, threshold))
        y = np.concatenate([recall[:last], [recall[last - 1]]])
        x = np.concatenate([curve[:last], [threshold]])
        auc = float(np.trapezoid(y, x) / threshold)
        aucs.append(auc if decimals is None else float(np.round(auc, decimals)))  # numpy rounding, as upstream
    return aucs
