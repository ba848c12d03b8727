"""GIM-DKM's and GIM-RoMa's training losses (branches ``train-gim-dkm`` and ``train-gim-roma``: ``modules/loss.py``).

Both networks predict, at every stride ``s`` of their decoder, a flow (where each pixel of image 0 lands in image 1,
normalised coordinates) and a certainty logit.

DKM (``DepthRegressionLoss(ce_weight=0.01)``):
    * video pairs: at every stride, the mean end-point error (normalised coordinates) between the flow sampled at the
      label in image 0 and the label in image 1, over all labels of all video pairs; the strides' means are summed.
      The certainty's BCE against 1 is computed for the logs but not added (as GIM).
    * posed pairs: the standard DKM loss: per stride, the mean end-point error to the depth-warped ground truth over
      the pixels that have one, plus 0.01 × the certainty's BCE against that validity; at strides ≤ 8 only pixels
      the previous stride already put within ``2/512 · 4 · s`` count ("local" loss).

RoMa (``RobustLosses(ce_weight=0.01, local_dist={1: 4, 2: 4, 4: 8, 8: 8}, local_largest_scale=8, alpha=0.5,
c=1e-4)``):
    * video pairs: per stride the robust regression ``cs^α ((x/cs)² + 1)^(α/2)`` (``cs = c · s``) of the label
      end-point errors, plus at the coarse stride the cross-entropy of the anchor classifier (sampled at the labels)
      against the anchor nearest to each label in image 1.
    * posed pairs: the same two terms densely over the ground-truth pixels (probability > 0.99), each with its
      certainty BCE weighted 0.01, with RoMa's local masks (``local_dist``).

The sampling grids and targets are built by the trainers (:mod:`gim_plugins.training.trainers`); these functions take
tensors only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from gim_plugins.training.losses.geometry import scalar

__all__ = [
    "DKM_CE_WEIGHT",
    "ROMA_ALPHA",
    "ROMA_C",
    "ROMA_LOCAL_DIST",
    "anchor_targets",
    "dkm_dense_loss",
    "dkm_zeroshot_loss",
    "robust_regression",
    "roma_dense_loss",
    "roma_zeroshot_loss",
    "sample_at",
]

DKM_CE_WEIGHT = 0.01
DKM_LOCAL_DIST = 4.0
LOCAL_LARGEST_SCALE = 8
ROMA_CE_WEIGHT = 0.01
ROMA_LOCAL_DIST = {1: 4.0, 2: 4.0, 4: 8.0, 8: 8.0}
ROMA_ALPHA = 0.5
ROMA_C = 1e-4


def sample_at(maps: torch.Tensor, b_ids: torch.Tensor, grid: torch.Tensor, *, align_corners: bool) -> torch.Tensor:
    """Bilinear samples ``(n, C)`` of ``maps`` ``(Q, C, h, w)``: label i read from map ``b_ids[i]`` at ``grid[i]``.

    Args:
        maps: per-pair maps (flows, logits…).
        b_ids: ``(n,)`` which map each label belongs to.
        grid: ``(n, 2)`` positions in [-1, 1].
        align_corners: the ``grid_sample`` convention of ``grid``.
    """
    out = maps.new_empty(len(b_ids), maps.shape[1])
    for b in torch.unique(b_ids).tolist():
        rows = b_ids == b
        sampled = F.grid_sample(maps[b : b + 1], grid[rows].view(1, 1, -1, 2).to(maps.dtype), mode="bilinear",
                                align_corners=align_corners)
        out[rows] = sampled[0, :, 0].t()
    return out


def _finite(x: torch.Tensor) -> torch.Tensor:
    """GIM zeroes NaN and inf errors (``gd[isnan(gd)] = 0``) before averaging."""
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def dkm_zeroshot_loss(flows: Mapping[int, torch.Tensor], certainties: Mapping[int, torch.Tensor],
                      b_ids: torch.Tensor, grid0: torch.Tensor, grid1: torch.Tensor, *, align_corners: bool,
                      ce_weight: float = DKM_CE_WEIGHT) -> tuple[torch.Tensor, dict[str, float]]:
    """DKM's video loss: Σ over strides of the mean label end-point error.

    Args:
        flows: ``{stride: (Q, 2, h, w)}`` normalised flow of the video pairs (A → B).
        certainties: ``{stride: (Q, 1, h, w)}`` certainty logits (logged only).
        b_ids: ``(n,)`` pair of each label; grid0 ``(n, 2)`` label in image 0, grid1 ``(n, 2)`` in image 1, both
            normalised in the flow's convention.
        align_corners: the convention of ``grid0`` for sampling.
        ce_weight: weight of the (logged, not added) certainty BCE.

    Returns:
        ``(loss, scalars)``.
    """
    total = grid0.new_zeros(())
    scalars: dict[str, float] = {}
    for scale, flow in flows.items():
        error = _finite((sample_at(flow, b_ids, grid0, align_corners=align_corners) - grid1).norm(dim=-1))
        total = total + error.mean()
        with torch.no_grad():
            logit = sample_at(certainties[scale], b_ids, grid0, align_corners=align_corners)[:, 0]
            ce = _finite(F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit), reduction="none"))
        scalars[f"zs_epe_{scale}"] = scalar(error.mean())
        scalars[f"zs_ce_{scale}"] = scalar(ce_weight * ce.mean())
    return total, scalars


def dkm_dense_loss(flows: Mapping[int, torch.Tensor], certainties: Mapping[int, torch.Tensor],
                   targets: Mapping[int, tuple[torch.Tensor, torch.Tensor]], *, ce_weight: float = DKM_CE_WEIGHT,
                   local_dist: float = DKM_LOCAL_DIST,
                   local_largest_scale: int = LOCAL_LARGEST_SCALE) -> tuple[torch.Tensor, dict[str, float]]:
    """DKM's ground-truth loss (``DepthRegressionLoss`` with ``local_loss=True``), summed over strides.

    Args:
        flows: ``{stride: (N, 2, h, w)}``, strides from coarse to fine.
        certainties: ``{stride: (N, 1, h, w)}`` logits.
        targets: ``{stride: (warp (N, h, w, 2) normalised, valid (N, h, w) float 0/1)}``.
        ce_weight: weight of the certainty BCE (0.01).
        local_dist: strides ≤ ``local_largest_scale`` keep pixels whose previous error < ``2/512 · local_dist · s``.
        local_largest_scale: 8.
    """
    total = next(iter(flows.values())).new_zeros(())
    previous = None
    scalars: dict[str, float] = {}
    for scale, flow in flows.items():
        warp, prob = targets[scale]
        h, w = warp.shape[1:3]
        error = (flow.permute(0, 2, 3, 1) - warp).norm(dim=-1)
        if scale <= local_largest_scale and previous is not None:
            near = F.interpolate(previous[:, None], size=(h, w), mode="nearest")[:, 0] < 2 / 512 * local_dist * scale
            prob = prob * near
        ce = _finite(F.binary_cross_entropy_with_logits(certainties[scale][:, 0], prob, reduction="none"))
        ce = ce.mean(dim=(1, 2))
        positive = prob > 0
        depth = _finite(error[positive]).mean() if bool(positive.any()) else (error * 0.0).mean()
        total = total + ce_weight * ce.mean() + depth
        scalars[f"gt_epe_{scale}"] = scalar(depth)
        scalars[f"gt_ce_{scale}"] = scalar(ce.mean())
        previous = error.detach()
    return total, scalars


def robust_regression(error: torch.Tensor, scale: int, alpha: float = ROMA_ALPHA, c: float = ROMA_C) -> torch.Tensor:
    """RoMa's robust loss of end-point errors: ``cs^α · ((x / cs)² + 1)^(α/2)`` with ``cs = c · scale``."""
    cs = c * scale
    return cs**alpha * ((error / cs) ** 2 + 1) ** (alpha / 2)


def _finite_mean(x: torch.Tensor) -> torch.Tensor:
    keep = torch.isfinite(x)
    return x[keep].mean() if bool(keep.any()) else x.new_zeros(())


def anchor_targets(points: torch.Tensor, classes: int) -> torch.Tensor:
    """Index of the anchor nearest to each normalised point ``(..., 2)`` on RoMa's ``√classes²`` anchor grid.

    Anchors sit at pixel centres of a ``R × R`` grid (``linspace(−1 + 1/R, 1 − 1/R, R)``), flat index ``row · R +
    col``; distances are Euclidean (GIM: ``(G − x2).norm().min().indices``).
    """
    res = round(math.sqrt(classes))
    axis = torch.linspace(-1 + 1 / res, 1 - 1 / res, res, device=points.device, dtype=points.dtype)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    anchors = torch.stack((xs, ys), dim=-1).reshape(classes, 2)
    flat = points.reshape(-1, 2)
    index = torch.cdist(flat, anchors).argmin(dim=1)
    return index.reshape(points.shape[:-1])


def roma_zeroshot_loss(flows: Mapping[int, torch.Tensor], gm_cls: torch.Tensor | None, b_ids: torch.Tensor,
                       grid0: torch.Tensor, grid1: torch.Tensor, *, align_corners: bool, alpha: float = ROMA_ALPHA,
                       c: float = ROMA_C) -> tuple[torch.Tensor, dict[str, float]]:
    """RoMa's video loss (GIM's ``gim_regression_loss`` + ``gim_cls_loss``), summed over strides.

    Args:
        flows: ``{stride: (Q, 2, h, w)}`` of the video pairs.
        gm_cls: ``(Q, R², h, w)`` anchor logits of the coarse stride (None: no classification term).
        b_ids, grid0, grid1: labels as in :func:`dkm_zeroshot_loss`.
        align_corners: sampling convention of ``grid0``.
        alpha, c: the robust loss's shape (0.5, 1e-4).
    """
    total = grid0.new_zeros(())
    scalars: dict[str, float] = {}
    coarsest = max(flows)
    for scale, flow in flows.items():
        error = (sample_at(flow, b_ids, grid0, align_corners=align_corners) - grid1).norm(dim=-1)
        regression = _finite_mean(robust_regression(error[torch.isfinite(error)], scale, alpha, c))
        total = total + regression
        scalars[f"zs_reg_{scale}"] = scalar(regression)
        if scale == coarsest and gm_cls is not None:
            logits = sample_at(gm_cls, b_ids, grid0, align_corners=align_corners)
            cls = F.cross_entropy(logits, anchor_targets(grid1, gm_cls.shape[1]))
            total = total + cls
            scalars[f"zs_cls_{scale}"] = scalar(cls)
    return total, scalars


def roma_dense_loss(flows: Mapping[int, torch.Tensor], certainties: Mapping[int, torch.Tensor],
                    targets: Mapping[int, tuple[torch.Tensor, torch.Tensor]], gm_cls: torch.Tensor | None = None,
                    gm_certainty: torch.Tensor | None = None, *, ce_weight: float = ROMA_CE_WEIGHT,
                    local_dist: Mapping[int, float] = ROMA_LOCAL_DIST, local_largest_scale: int = LOCAL_LARGEST_SCALE,
                    alpha: float = ROMA_ALPHA, c: float = ROMA_C) -> tuple[torch.Tensor, dict[str, float]]:
    """RoMa's ground-truth loss (``RobustLosses.forward`` on ``gt`` pairs), summed over strides.

    Args:
        flows: ``{stride: (N, 2, h, w)}`` from coarse to fine; certainties ``{stride: (N, 1, h, w)}`` logits.
        targets: ``{stride: (warp (N, h, w, 2), prob (N, h, w))}``.
        gm_cls: ``(N, R², h, w)`` anchor logits at the coarsest stride; gm_certainty ``(N, 1, h, w)`` its logits.
        ce_weight, local_dist, local_largest_scale, alpha, c: RoMa's settings as GIM trains them.
    """
    total = next(iter(flows.values())).new_zeros(())
    previous = None
    scalars: dict[str, float] = {}
    coarsest = max(flows)
    for scale, flow in flows.items():
        warp, prob = targets[scale]
        h, w = warp.shape[1:3]
        if scale <= local_largest_scale and previous is not None:
            near = F.interpolate(previous[:, None], size=(h, w), mode="nearest-exact")[:, 0]
            prob = prob * (near < 2 / 512 * local_dist[scale] * scale)
        good = prob > 0.99
        if scale == coarsest and gm_cls is not None and gm_certainty is not None:
            certainty_loss = F.binary_cross_entropy_with_logits(gm_certainty[:, 0], prob)
            cls = F.cross_entropy(gm_cls, anchor_targets(warp, gm_cls.shape[1]), reduction="none")[good]
            cls_loss = cls.mean() if bool(good.any()) else certainty_loss * 0.0
            gm_loss = ce_weight * certainty_loss + cls_loss
            total = total + gm_loss
            scalars[f"gt_gm_{scale}"] = scalar(gm_loss)
        error = (flow.permute(0, 2, 3, 1) - warp).norm(dim=-1)
        logits = certainties[scale][:, 0]
        finite = torch.isfinite(logits)
        ce = F.binary_cross_entropy_with_logits(logits[finite], prob[finite]) if bool(finite.any()) else 0.0
        regression = _finite_mean(robust_regression(error[good], scale, alpha, c)) if bool(good.any()) else 0.0
        reg_loss = ce_weight * ce + regression
        total = total + reg_loss
        scalars[f"gt_reg_{scale}"] = scalar(reg_loss)
        previous = error.detach()
    return total, scalars
