"""The gim_loftr trainer: GIM-LoFTR (:class:`~gim_plugins.models._arch.loftr.GIMLoFTRNetwork`) with GIM's losses.

GIM's ``train-gim-loftr`` branch, on the package's network: RGB in [0, 1], the coarse transformer over both images
(padding cells masked), then per row of the batch

* video / label rows: :func:`~gim_plugins.training.losses.loftr.zeroshot_diagonal_confidence` + focal loss, and the
  fine windows at the labels (:func:`~gim_plugins.training.losses.loftr.zeroshot_fine_targets`);
* depth rows: the dual-softmax confidence matrix, the ground-truth coarse matches from depth (mutual nearest cells
  after warping both grids, both warps valid), the positive focal loss, and — as LoFTR trains its fine level — the
  predicted coarse matches (confidence > 0.2, mutual, 2 cells from the border) mixed with ground-truth matches
  (30 % of the candidates, at least 100 from the ground truth), whose fine targets come from the depth warp.

``loss = mean(coarse losses) + mean(fine losses)`` over the supervision kinds present, as GIM. The position encoding
uses ``temp_bug_fix`` (True on GIM's training branch; the released ``gim_loftr_50h`` ran with False; the
checkpoint records it through :meth:`LoFTRTrainer.matcher_conf` and ``load_matcher`` applies it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gim_plugins.training.losses import loftr as L
from gim_plugins.training.losses.geometry import (
    label_sets,
    sample_label_sets,
    scalar,
    warp_points_0to1,
    warp_points_1to0,
)
from gim_plugins.training.trainers.base import Trainer, row_kinds

__all__ = ["LoFTRTrainer", "coarse_ground_truth", "select_fine_matches"]

STRIDE_C, STRIDE_F = 8, 2


def coarse_ground_truth(row: Mapping[str, torch.Tensor], coarse_size: tuple[int, int], *, depth_tolerance: float,
                        offset: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LoFTR's coarse supervision for one depth pair: mutual nearest coarse cells after warping both grids.

    Cell ``(i, j)`` stands for corner-convention pixel ``8 · (j, i)``. Each grid is warped into the other image with
    depth; a cell pair is a match when the round trip returns to the start, both warps are valid (depth, in view,
    depth-consistent) and both cells are real content.

    Args:
        row: one pair's ``depth0, depth1, K0, K1, T_0to1, H1, mask0, mask1`` (batch-format shapes without B).
        coarse_size: ``(h, w)`` of the coarse grid (both images share the canvas).
        depth_tolerance: relative depth agreement (0.2).
        offset: network convention − package convention (0.5).

    Returns:
        ``(matches (L, S) bool, warped0 (L, 2) corner pixels of each image-0 cell in image 1, valid0 (L,))``.
    """
    h, w = coarse_size
    ys, xs = torch.meshgrid(torch.arange(h, device=row["depth0"].device),
                            torch.arange(w, device=row["depth0"].device), indexing="ij")
    cells = torch.stack([xs.flatten(), ys.flatten()], -1).float()
    pixels = cells * STRIDE_C - offset
    args = (row["depth0"], row["depth1"], row["K0"], row["K1"], row["T_0to1"], row["H1"])
    warped0, valid0 = warp_points_0to1(pixels, *args, row["mask1"], depth_tolerance=depth_tolerance)
    warped1, valid1 = warp_points_1to0(pixels, *args, row["mask0"], depth_tolerance=depth_tolerance)
    warped0, warped1 = warped0 + offset, warped1 + offset
    valid0 &= row["mask0"][::STRIDE_C, ::STRIDE_C].flatten()
    valid1 &= row["mask1"][::STRIDE_C, ::STRIDE_C].flatten()

    def nearest(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        c = torch.round(points / STRIDE_C).long()
        inside = (c[:, 0] >= 0) & (c[:, 0] < w) & (c[:, 1] >= 0) & (c[:, 1] < h) & valid
        return torch.where(inside, c[:, 0] + c[:, 1] * w, torch.full_like(c[:, 0], -1))

    index1, index0 = nearest(warped0, valid0), nearest(warped1, valid1)
    start = torch.arange(h * w, device=index1.device)
    back = torch.where(index1 >= 0, index0[index1.clamp_min(0)], torch.full_like(index1, -1))
    correct = (back == start) & (index1 >= 0)
    correct[0] = False  # GIM ignores the top-left cell (where invalid points used to land)
    matches = torch.zeros(h * w, h * w, dtype=torch.bool, device=index1.device)
    rows = torch.nonzero(correct).flatten()
    matches[rows, index1[rows]] = True
    return matches, warped0, valid0


def _border_mask(mask: torch.Tensor, border: int) -> torch.Tensor:
    """``(h, w)`` cells at least ``border`` cells inside the valid extent of a coarse validity mask."""
    keep = torch.zeros_like(mask)
    rows = int(mask.sum(0).max())
    cols = int(mask.sum(1).max())
    if rows > 2 * border and cols > 2 * border:
        keep[border : rows - border, border : cols - border] = True
    return keep & mask


def select_fine_matches(conf: torch.Tensor, gt_ids: torch.Tensor, masks0: torch.Tensor, masks1: torch.Tensor, *,
                        threshold: float, border: int, percent: float, pad_min: int,
                        generator: torch.Generator | None) -> torch.Tensor:
    """LoFTR's training selection of coarse matches for the fine level (``CoarseMatching.get_coarse_match``).

    Predictions (confidence > ``threshold``, mutual maxima, ``border`` cells from the valid extent) are kept up to
    ``int(percent · Σ min(valid cells))`` minus ``pad_min``, drawn at random beyond that; ground-truth matches pad the
    set to that size, at least ``pad_min`` (half the size when it is smaller).

    Args:
        conf: ``(N, L, S)`` dual-softmax confidence.
        gt_ids: ``(K, 3)`` ground-truth ``(b, i, j)``.
        masks0: ``(N, h, w)`` coarse validity of image 0; masks1 likewise.
        generator: the random draws' source.

    Returns:
        ``(M, 3)`` selected ``(b, i, j)``: predictions first, then ground truth.
    """
    with torch.no_grad():
        border0 = torch.stack([_border_mask(m, border) for m in masks0]).flatten(1)
        border1 = torch.stack([_border_mask(m, border) for m in masks1]).flatten(1)
        keep = (conf > threshold) & border0[:, :, None] & border1[:, None, :]
        keep &= conf == conf.max(dim=2, keepdim=True).values
        keep &= conf == conf.max(dim=1, keepdim=True).values
        predicted = torch.nonzero(keep)
        candidates = int(torch.minimum(masks0.flatten(1).sum(1), masks1.flatten(1).sum(1)).sum())
        wanted = int(candidates * percent)
        pad = pad_min if pad_min < wanted else wanted // 2
        if len(predicted) > wanted - pad:
            draw = torch.randint(len(predicted), (max(wanted - pad, 0),), generator=generator)
            predicted = predicted[draw.to(predicted.device)]
        parts = [predicted]
        if len(gt_ids):
            count = max(wanted - len(predicted), pad)
            draw = torch.randint(len(gt_ids), (count,), generator=generator)
            parts.append(gt_ids[draw.to(gt_ids.device)])
        selected = torch.cat(parts)
    if len(selected) == 0:
        selected = torch.zeros(1, 3, dtype=torch.long, device=conf.device)  # GIM keeps one dummy window
    return selected


def _windows(fine: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, L, size², C)``: the ``size × size`` fine windows centred on every coarse cell (LoFTR's unfold)."""
    n, c = fine.shape[:2]
    unfolded = F.unfold(fine, kernel_size=size, stride=STRIDE_C // STRIDE_F, padding=size // 2)
    return unfolded.view(n, c, size * size, -1).permute(0, 3, 2, 1)


class LoFTRTrainer(Trainer):
    """GIM-LoFTR + GIM's video and depth losses."""

    matcher: ClassVar[str] = "gim_loftr"
    backbone_key: ClassVar[str | None] = "encode"
    default_conf: ClassVar[dict[str, Any]] = {
        "temp_bug_fix": True,  # GIM's training branch; the matcher must use the same value
        "max_labels": 2048,  # TRAIN_ZEROSHOT_NUM: labels sampled per video pair
        "fine_window": 5,  # FINE_WINDOW_SIZE
        "coarse_threshold": 0.2,  # MATCH_COARSE.THR (fine-level selection of depth pairs)
        "border_rm": 2,
        "train_coarse_percent": 0.3,  # TRAIN_COARSE_PERCENT
        "train_pad_num_gt_min": 100,  # TRAIN_PAD_NUM_GT_MIN
        "depth_tolerance": 0.2,  # relative depth agreement of a ground-truth warp
        "fine_correct_threshold": 1.0,  # FINE_CORRECT_THR
        "backbone_weights": None,  # torchvision's resnet50-0676ba61.pth (GIM's start); None: PyTorch's init
    }
    backbone_file: ClassVar[str] = "resnet50-0676ba61.pth"

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf)
        from gim_plugins.models._arch.loftr import GIMLoFTRNetwork

        self.net = GIMLoFTRNetwork(temp_bug_fix=bool(self.conf.temp_bug_fix), fast_backbone=False)
        if self.conf.backbone_weights is not None:
            self.init_backbone(self.conf.backbone_weights)

    def backbone_module(self) -> nn.Module:
        return self.net.backbone.encode

    def backbone_key_map(self, key: str) -> str | None:
        return None if key.startswith(("layer4.", "fc.")) else key  # the encoder stops after layer3

    # ------------------------------------------------------------------------------------------------ weights

    def matcher_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"model.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}

    def load_matcher_weights(self, state_dict: Mapping[str, Any]) -> None:
        from gim_plugins.models.gim_loftr import remap_gim_loftr
        from gim_plugins.models.state_dicts import load_strict

        load_strict(self.net, remap_gim_loftr(state_dict), "gim_loftr")

    def matcher_conf(self) -> dict[str, Any]:
        return {"temp_bug_fix": bool(self.conf.temp_bug_fix)}

    # ------------------------------------------------------------------------------------------------ forward

    def forward(self, batch: Mapping[str, Any],  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        label_rows, dense_rows = row_kinds(batch)
        net = self.net
        coarse, fine = net.backbone(torch.cat([batch["image0"], batch["image1"]]))
        (c0, c1), (f0, f1) = coarse.chunk(2), fine.chunk(2)
        n, _, h, w = c0.shape
        masks0 = batch["mask0"][:, ::STRIDE_C, ::STRIDE_C]
        masks1 = batch["mask1"][:, ::STRIDE_C, ::STRIDE_C]
        seq0 = net.pos_encoding(c0).flatten(2).transpose(1, 2)
        seq1 = net.pos_encoding(c1).flatten(2).transpose(1, 2)
        seq0, seq1 = net.loftr_coarse(seq0, seq1, masks0.flatten(1), masks1.flatten(1))
        windows0, windows1 = _windows(f0, self.conf.fine_window), _windows(f1, self.conf.fine_window)
        coarse_losses, fine_inputs, scalars = [], [], {}
        if bool(label_rows.any()):
            loss, inputs = self._label_rows(batch, label_rows, seq0, seq1, windows0, windows1, (h, w), generator)
            coarse_losses.append(loss)
            fine_inputs.append(inputs)
            scalars["zs_coarse"] = scalar(loss)
        if bool(dense_rows.any()):
            loss, inputs = self._dense_rows(batch, dense_rows, seq0, seq1, windows0, windows1, (h, w), generator)
            coarse_losses.append(loss)
            fine_inputs.append(inputs)
            scalars["gt_coarse"] = scalar(loss)
        if not coarse_losses:
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0, {"skipped_rows": float(n)}
        fine_losses = self._fine_losses(fine_inputs, scalars)
        total = torch.stack(coarse_losses).mean() + torch.stack(fine_losses).mean()
        scalars["skipped_rows"] = float(n - int((label_rows | dense_rows).sum()))
        return total, scalars

    def _label_rows(self, batch: Mapping[str, Any], rows: torch.Tensor, seq0: torch.Tensor, seq1: torch.Tensor,
                    windows0: torch.Tensor, windows1: torch.Tensor, size: tuple[int, int],
                    generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, Any]]:
        h, w = size
        sets = sample_label_sets(label_sets(batch["labels"], batch["num_labels"], rows), self.conf.max_labels,
                                 generator)
        confidences, win0, win1, offsets, targets = [], [], [], [], []
        for b, labels in zip(torch.nonzero(rows).flatten().tolist(), sets):
            p0, p1 = self.corner(labels[:, :2]), self.corner(labels[:, 2:])
            grid0 = seq0[b].t().reshape(-1, h, w)
            grid1 = seq1[b].t().reshape(-1, h, w)
            confidences.append(L.zeroshot_diagonal_confidence(grid0, grid1, p0, p1,
                                                              batch["mask0"][b, ::STRIDE_C, ::STRIDE_C],
                                                              batch["mask1"][b, ::STRIDE_C, ::STRIDE_C]))
            fine = L.zeroshot_fine_targets(p0, p1, (h, w), (h, w), radius=self.conf.fine_window // 2)
            win0.append(windows0[b, fine["cell0"]])
            win1.append(windows1[b, fine["cell1"]])
            offsets.append(fine["offset0"])
            targets.append(fine["target"])
        inputs = {"windows0": torch.cat(win0), "windows1": torch.cat(win1), "offset0": torch.cat(offsets),
                  "target": torch.cat(targets), "name": "zs_fine"}
        return L.focal_diagonal_loss(confidences), inputs

    def _dense_rows(self, batch: Mapping[str, Any], rows: torch.Tensor, seq0: torch.Tensor, seq1: torch.Tensor,
                    windows0: torch.Tensor, windows1: torch.Tensor, size: tuple[int, int],
                    generator: torch.Generator | None) -> tuple[torch.Tensor, dict[str, Any]]:
        conf_ = self.conf
        index = torch.nonzero(rows).flatten()
        masks0 = batch["mask0"][index, ::STRIDE_C, ::STRIDE_C]
        masks1 = batch["mask1"][index, ::STRIDE_C, ::STRIDE_C]
        channels = seq0.shape[-1]
        sim = torch.einsum("nlc,nsc->nls", seq0[index], seq1[index]) / (channels * L.TEMPERATURE)
        valid = masks0.flatten(1)[:, :, None] & masks1.flatten(1)[:, None, :]
        sim = sim.masked_fill(~valid, L.MASKED)
        conf = F.softmax(sim, 1) * F.softmax(sim, 2)
        truths, warps, warp_valid = [], [], []
        for b in index.tolist():
            row = {k: batch[k][b] for k in ("depth0", "depth1", "K0", "K1", "T_0to1", "H1", "mask0", "mask1")}
            matches, warped, ok = coarse_ground_truth(row, size, depth_tolerance=conf_.depth_tolerance,
                                                      offset=self.corner_offset)
            truths.append(matches)
            warps.append(warped)
            warp_valid.append(ok)
        truth = torch.stack(truths)
        loss = L.coarse_focal_positive_loss(conf, truth, valid.float())
        selected = select_fine_matches(conf, torch.nonzero(truth), masks0, masks1,
                                       threshold=conf_.coarse_threshold, border=conf_.border_rm,
                                       percent=conf_.train_coarse_percent, pad_min=conf_.train_pad_num_gt_min,
                                       generator=generator)
        b, i, j = selected.unbind(1)
        w = size[1]
        cell1 = torch.stack([j % w, torch.div(j, w, rounding_mode="floor")], -1).float() * STRIDE_C
        target = (torch.stack(warps)[b, i] - cell1) / STRIDE_F / (conf_.fine_window // 2)
        target = torch.where(torch.stack(warp_valid)[b, i][:, None], target, torch.full_like(target, float("inf")))
        inputs = {"windows0": windows0[index[b], i], "windows1": windows1[index[b], j], "offset0": None,
                  "target": target, "name": "gt_fine"}
        return loss, inputs

    def _fine_losses(self, groups: list[dict[str, Any]], scalars: dict[str, float]) -> list[torch.Tensor]:
        win0 = torch.cat([g["windows0"] for g in groups])
        win1 = torch.cat([g["windows1"] for g in groups])
        if len(win0):
            win0, win1 = self.net.loftr_fine(win0, win1)
        losses, start = [], 0
        for group in groups:
            count = len(group["windows0"])
            if count == 0:
                loss = win0.sum() * 0.0
            else:
                expectation = L.fine_expectation(win0[start : start + count], win1[start : start + count],
                                                 group["offset0"])
                loss = L.l2_with_std_loss(expectation, group["target"], self.conf.fine_correct_threshold)
            losses.append(loss)
            scalars[group["name"]] = scalar(loss)
            start += count
        return losses
