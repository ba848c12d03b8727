"""LightGlue's training losses as GIM's ``train-gim-glue`` branch uses them (glue-factory's NLL for posed pairs).

Video pairs: the extractor's keypoints are *replaced* by the labels, so keypoint i of image 0 corresponds to keypoint
i of image 1; descriptors are sampled from the extractor's dense map at those points, and the loss is
``−mean(diag(log_assignment[:m, :m]))`` of the last layer over the ``m`` real labels (padding points are not
supervised, and there are no negatives).

Posed pairs: the extractor's own keypoints, a ground-truth assignment from depth (mutual nearest reprojections
within 3 px are matches; points farther than 5 px from every reprojection, or with no depth and 5 px from every
epipolar line, are unmatched; the rest are ignored), glue-factory's NLL (positives and the two dustbins, balanced
0.5) with deep supervision over the 9 layers (weight ``γ^(N−i−1)``, γ = 1), plus the token-confidence loss (a BCE
per layer: does this layer's assignment already agree with the last one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE",
    "UNMATCHED",
    "assignment_weights",
    "deep_supervision_nll",
    "diagonal_nll_loss",
    "ground_truth_matches",
    "token_confidence_loss",
    "weighted_nll",
]

UNMATCHED = -1
IGNORE = -2
POSITIVE_PX = 3.0
NEGATIVE_PX = 5.0


def diagonal_nll_loss(log_assignment: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """GIM's pseudo-label loss: mean over pairs of ``−mean(diag(log_assignment[b, :m_b, :m_b]))``.

    Args:
        log_assignment: ``(B, M+1, N+1)`` of the video pairs.
        counts: ``m_b``, the number of real labels of each pair (the first ``m_b`` keypoints).
    """
    terms = [-log_assignment[b, :m, :m].diagonal().mean() for b, m in enumerate(counts) if m > 0]
    if not terms:
        return log_assignment.sum() * 0.0
    return torch.stack(terms).mean()


def ground_truth_matches(keypoints0: torch.Tensor, keypoints1: torch.Tensor, warped0: torch.Tensor,
                         visible0: torch.Tensor, has_depth0: torch.Tensor, warped1: torch.Tensor,
                         visible1: torch.Tensor, has_depth1: torch.Tensor, fundamental: torch.Tensor | None = None,
                         positive_px: float = POSITIVE_PX,
                         negative_px: float = NEGATIVE_PX) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GIM's ``spvs`` (glue-factory's ``gt_matches_from_pose_depth``) for one pair.

    Args:
        keypoints0: ``(M, 2)`` pixels of image 0; keypoints1 ``(N, 2)``.
        warped0: ``(M, 2)`` keypoints0 reprojected into image 1; visible0 ``(M,)`` bool: the reprojection is valid
            (depth, in view, depth-consistent); has_depth0 ``(M,)``: the point has depth at all.
        warped1, visible1, has_depth1: the same for image 1 → image 0.
        fundamental: ``(3, 3)`` from the camera poses (image 0 → 1), for the epipolar negatives; None skips them.
        positive_px: reprojection distance of a match (3); negative_px: of a non-match (5).

    Returns:
        ``(positive (M, N) bool, matches0 (M,), matches1 (N,))``: partner index, :data:`UNMATCHED` or
        :data:`IGNORE`.
    """
    dist0 = ((warped0[:, None] - keypoints1[None]) ** 2).sum(-1)
    dist1 = ((keypoints0[:, None] - warped1[None]) ** 2).sum(-1)
    dist = torch.maximum(dist0, dist1)
    dist = torch.where(visible0[:, None] & visible1[None], dist, torch.full_like(dist, float("inf")))
    min0, min1 = dist.min(1).indices, dist.min(0).indices
    ismin0 = torch.zeros_like(dist, dtype=torch.bool).scatter_(1, min0[:, None], True)
    ismin1 = torch.zeros_like(dist, dtype=torch.bool).scatter_(0, min1[None], True)
    positive = ismin0 & ismin1 & (dist < positive_px**2)
    negative0 = (dist0.min(1).values > negative_px**2) & has_depth0
    negative1 = (dist1.min(0).values > negative_px**2) & has_depth1
    ignore = torch.full_like(min0, IGNORE)
    matches0 = torch.where(positive.any(1), min0, ignore)
    matches1 = torch.where(positive.any(0), min1, torch.full_like(min1, IGNORE))
    matches0 = torch.where(negative0, torch.full_like(matches0, UNMATCHED), matches0)
    matches1 = torch.where(negative1, torch.full_like(matches1, UNMATCHED), matches1)
    if fundamental is not None:
        epipolar = _symmetric_epipolar(keypoints0, keypoints1, fundamental)
        both_ignored = (matches0[:, None] == IGNORE) & (matches1[None] == IGNORE)
        epipolar = torch.where(both_ignored, epipolar, torch.full_like(epipolar, float("inf")))
        far0, far1 = epipolar.min(1).values > negative_px, epipolar.min(0).values > negative_px
        matches0 = torch.where(~has_depth0 & far0, torch.full_like(matches0, UNMATCHED), matches0)
        matches1 = torch.where(~has_depth1 & far1, torch.full_like(matches1, UNMATCHED), matches1)
    return positive, matches0, matches1


def _symmetric_epipolar(points0: torch.Tensor, points1: torch.Tensor, F_: torch.Tensor) -> torch.Tensor:
    """``(M, N)`` mean of the two point-to-epipolar-line distances in pixels (glue-factory's)."""
    p0 = torch.cat([points0, torch.ones_like(points0[:, :1])], 1)
    p1 = torch.cat([points1, torch.ones_like(points1[:, :1])], 1)
    lines1 = p0 @ F_.T  # (M, 3) epipolar lines in image 1
    lines0 = p1 @ F_  # (N, 3) in image 0
    algebraic = (p1 @ lines1.T).T.abs()  # (M, N): p1_nᵀ F p0_m
    d1 = algebraic / (lines1[:, :1] ** 2 + lines1[:, 1:2] ** 2 + 1e-15).sqrt()
    d0 = algebraic / (lines0[None, :, 0] ** 2 + lines0[None, :, 1] ** 2 + 1e-15).sqrt()
    return (d0 + d1) / 2


def assignment_weights(positive: torch.Tensor, matches0: torch.Tensor, matches1: torch.Tensor) -> torch.Tensor:
    """glue-factory's NLL weights ``(M+1, N+1)``: positives, and the dustbins of the unmatched points."""
    m, n = positive.shape
    weights = positive.new_zeros((m + 1, n + 1), dtype=torch.float32)
    weights[:m, :n] = positive.float()
    weights[:m, -1] = (matches0 == UNMATCHED).float()
    weights[-1, :n] = (matches1 == UNMATCHED).float()
    return weights


def weighted_nll(log_assignment: torch.Tensor, weights: torch.Tensor, balancing: float = 0.5) -> torch.Tensor:
    """glue-factory's ``NLLLoss`` ``(B,)``: ``balancing · nll_pos + (1 − balancing) · nll_neg``.

    ``nll_pos`` is the mean −log-assignment over positives, ``nll_neg`` over the two dustbins' unmatched entries
    (counts clamped to ≥ 1).
    """
    m, n = log_assignment.shape[-2] - 1, log_assignment.shape[-1] - 1
    scored = log_assignment * weights
    num_pos = weights[:, :m, :n].sum((-1, -2)).clamp(min=1.0)
    num_neg = weights[:, :m, -1].sum(-1).clamp(min=1.0) + weights[:, -1, :n].sum(-1).clamp(min=1.0)
    nll_pos = -scored[:, :m, :n].sum((-1, -2)) / num_pos
    nll_neg = -(scored[:, :m, -1].sum(-1) + scored[:, -1, :n].sum(-1)) / num_neg
    return balancing * nll_pos + (1 - balancing) * nll_neg


def token_confidence_loss(logits0: torch.Tensor, logits1: torch.Tensor, layer: torch.Tensor,
                          final: torch.Tensor) -> torch.Tensor:
    """LightGlue's token-confidence loss ``(B,)``: BCE of each point's confidence logit against "this layer's
    best partner is already the last layer's" (rows for image 0, columns for image 1; dustbins excluded as
    candidates' owners but included as partners, as glue-factory)."""
    layer, final = layer.detach(), final.detach()
    correct0 = final[:, :-1, :].max(-1).indices == layer[:, :-1, :].max(-1).indices
    correct1 = final[:, :, :-1].max(-2).indices == layer[:, :, :-1].max(-2).indices
    loss0 = F.binary_cross_entropy_with_logits(logits0, correct0.float(), reduction="none").mean(-1)
    loss1 = F.binary_cross_entropy_with_logits(logits1, correct1.float(), reduction="none").mean(-1)
    return (loss0 + loss1) / 2


def deep_supervision_nll(log_assignments: list[torch.Tensor], weights: torch.Tensor, gamma: float = 1.0,
                         balancing: float = 0.5) -> torch.Tensor:
    """glue-factory's LightGlue loss over layers ``(B,)``: ``(nll_last + Σ_i w_i nll_i) / (1 + Σ_i w_i)``.

    ``w_i = γ^(N−i−1)`` for the layers ``i < N − 1`` (γ > 0; γ = 0 gives ``w_i = i + 1``).
    """
    count = len(log_assignments)
    total = weighted_nll(log_assignments[-1], weights, balancing)
    sum_weights = 1.0
    for index, layer in enumerate(log_assignments[:-1]):
        weight = gamma ** (count - index - 1) if gamma > 0 else index + 1
        total = total + weight * weighted_nll(layer, weights, balancing)
        sum_weights += weight
    return total / sum_weights
