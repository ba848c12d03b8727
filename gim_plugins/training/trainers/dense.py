"""The gim_dkm and gim_roma trainers: the package's DKMv3 and RoMa networks with GIM's losses.

As GIM's ``train-gim-dkm`` / ``train-gim-roma`` branches train them: the batch's images go to the encoder as they are
(RGB in [0, 1], no normalisation, no resize: the data loader made them the training size), the decoder matches image
0 against image 1 only (``RegressionMatcher.forward``, not the symmetric inference pass), the flow is detached between
strides (``Decoder(detach=True)``), and the losses of :mod:`gim_plugins.training.losses.dense` see every stride.

Label grids (``label_grid``): ``"exact"`` (default) puts each label at its exact place in the networks' own
normalised convention (pixel centres at ``(2i + 1)/W − 1``, sampled with ``align_corners=False``), so a network
trained here is consistent with the matchers that run it. ``"gim"`` reproduces GIM's ``pt_to_grid``
(``x · 2/(W − 1) − 1`` on the labels as given, sampled with ``align_corners=True``), which differs from the exact
place by up to one pixel at the far border.

Dense targets (depth rows): every cell centre of a stride's grid is warped into image 1 with depth; cells without a
valid warp have probability 0 (GIM's ``pos_mask``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from gim_plugins.training.losses import dense as D
from gim_plugins.training.losses.geometry import label_sets, pixel_to_grid, sample_label_sets, scalar, warp_points_0to1
from gim_plugins.training.trainers.base import Trainer, row_kinds

__all__ = ["DKMTrainer", "RoMaTrainer", "dense_targets"]

GRID_CONVENTIONS = ("exact", "gim")


def dense_targets(batch: Mapping[str, Any], rows: list[int], size: tuple[int, int], *, depth_tolerance: float,
                  offset: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth warp of every cell centre of an ``(h, w)`` grid over image 0, for the given batch rows.

    Returns:
        ``(warp (N, h, w, 2) normalised (align_corners=False) in image 1, prob (N, h, w) float 0/1)``.
    """
    height, width = batch["image0"].shape[-2:]
    h, w = size
    device = batch["image0"].device
    ys = (torch.arange(h, device=device) + 0.5) * height / h
    xs = (torch.arange(w, device=device) + 0.5) * width / w
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    corner = torch.stack([grid_x.flatten(), grid_y.flatten()], -1)  # corner-convention pixels of the cell centres
    warps, probs = [], []
    for b in rows:
        warped, valid = warp_points_0to1(corner - offset, batch["depth0"][b], batch["depth1"][b], batch["K0"][b],
                                         batch["K1"][b], batch["T_0to1"][b], batch["H1"][b], batch["mask1"][b],
                                         depth_tolerance=depth_tolerance)
        valid &= batch["mask0"][b][torch.round(corner[:, 1] - offset).long().clamp(0, height - 1),
                                   torch.round(corner[:, 0] - offset).long().clamp(0, width - 1)]
        warps.append(pixel_to_grid(warped + offset, (height, width), align_corners=False).view(h, w, 2))
        probs.append(valid.float().view(h, w))
    return torch.stack(warps), torch.stack(probs)


class _DenseTrainer(Trainer):
    """What DKM and RoMa share: label grids, row selection, the loss mix of GIM (mean over supervision kinds)."""

    backbone_key: ClassVar[str | None] = "encoder"

    def _check_conf(self) -> None:
        if self.conf.label_grid not in GRID_CONVENTIONS:
            raise ValueError(f"{self.matcher}: label_grid must be one of {GRID_CONVENTIONS}, got "
                             f"{self.conf.label_grid!r}")

    def _label_grids(self, batch: Mapping[str, Any], rows: torch.Tensor, order: list[int],
                     generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """``(b_ids, grid0, grid1, align_corners)`` of the (sampled) labels of ``rows``; ``b_ids`` index ``order``."""
        size = tuple(batch["image0"].shape[-2:])
        sets = sample_label_sets(label_sets(batch["labels"], batch["num_labels"], rows), self.conf.max_labels,
                                 generator)
        picked = torch.nonzero(rows).flatten().tolist()
        labels = torch.cat(sets)
        b_ids = torch.cat([torch.full((len(s),), order.index(b), dtype=torch.long, device=labels.device)
                           for b, s in zip(picked, sets)])
        gim = self.conf.label_grid == "gim"
        p0, p1 = labels[:, :2], labels[:, 2:]
        if not gim:
            p0, p1 = self.corner(p0), self.corner(p1)
        grid0 = pixel_to_grid(p0, size, align_corners=gim)
        grid1 = pixel_to_grid(p1, size, align_corners=gim)
        return b_ids, grid0, grid1, gim

    def forward(self, batch: Mapping[str, Any],  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        label_rows, dense_rows = row_kinds(batch)
        active = label_rows | dense_rows
        if not bool(active.any()):
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0, \
                {"skipped_rows": float(len(active))}
        order = torch.nonzero(active).flatten().tolist()
        flows, certainties, extras = self.decode(batch["image0"][order], batch["image1"][order])
        losses, scalars = [], {"skipped_rows": float(len(active) - len(order))}
        if bool(dense_rows.any()):
            rows = [order.index(b) for b in torch.nonzero(dense_rows).flatten().tolist()]
            targets = {s: dense_targets(batch, [order[r] for r in rows], tuple(f.shape[-2:]),
                                        depth_tolerance=self.conf.depth_tolerance, offset=self.corner_offset)
                       for s, f in flows.items()}
            loss, extra = self.dense_loss({s: f[rows] for s, f in flows.items()},
                                          {s: c[rows] for s, c in certainties.items()}, targets,
                                          {k: v[rows] for k, v in extras.items()})
            losses.append(loss)
            scalars.update(extra, gt_loss=scalar(loss))
        if bool(label_rows.any()):
            b_ids, grid0, grid1, align = self._label_grids(batch, label_rows, order, generator)
            loss, extra = self.label_loss(flows, certainties, extras, b_ids, grid0, grid1, align)
            losses.append(loss)
            scalars.update(extra, zs_loss=scalar(loss))
        return torch.stack(losses).mean(), scalars

    # implemented per network
    def decode(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[dict[int, torch.Tensor],
                                                                           dict[int, torch.Tensor],
                                                                           dict[str, torch.Tensor]]:
        raise NotImplementedError

    def dense_loss(self, flows: dict[int, torch.Tensor], certainties: dict[int, torch.Tensor],
                   targets: dict[int, tuple[torch.Tensor, torch.Tensor]],
                   extras: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def label_loss(self, flows: dict[int, torch.Tensor], certainties: dict[int, torch.Tensor],
                   extras: dict[str, torch.Tensor], b_ids: torch.Tensor, grid0: torch.Tensor, grid1: torch.Tensor,
                   align_corners: bool) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class DKMTrainer(_DenseTrainer):
    """GIM-DKM (DKMv3) + ``DepthRegressionLoss`` (GIM's video variant and the standard DKM loss)."""

    matcher: ClassVar[str] = "gim_dkm"
    default_conf: ClassVar[dict[str, Any]] = {
        "max_labels": 2048,  # labels sampled per video pair (GIM: sample_num = 2048)
        "label_grid": "exact",  # or "gim" (see the module docstring)
        "faithful_gp": True,  # the original GP's behaviour above 2000 conditioning cells (GIM trained with it)
        "depth_tolerance": 0.2,
        "ce_weight": D.DKM_CE_WEIGHT,
        "local_dist": D.DKM_LOCAL_DIST,
        "backbone_weights": None,  # torchvision's resnet50-0676ba61.pth (GIM's start); None: PyTorch's init
    }
    backbone_file: ClassVar[str] = "resnet50-0676ba61.pth"

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf)
        self._check_conf()
        from gim_plugins.models._arch.dkm import DKMv3

        self.net = DKMv3()
        if self.conf.backbone_weights is not None:
            self.init_backbone(self.conf.backbone_weights)

    def backbone_module(self) -> nn.Module:
        return self.net.encoder.net

    def backbone_key_map(self, key: str) -> str | None:
        return None if key.startswith("fc.") else key

    def decode(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[dict[int, torch.Tensor],
                                                                           dict[int, torch.Tensor],
                                                                           dict[str, torch.Tensor]]:
        images = torch.cat([image0, image1])
        feats = self.net.encoder(images)
        feats[1] = images
        out = self.net.decoder(feats, faithful_gp=bool(self.conf.faithful_gp), keep=(32, 16, 8, 4, 2, 1),
                               queries=len(image0), detach=True)
        return {s: out[s][0] for s in out}, {s: out[s][1] for s in out}, {}

    def dense_loss(self, flows: dict[int, torch.Tensor], certainties: dict[int, torch.Tensor],
                   targets: dict[int, tuple[torch.Tensor, torch.Tensor]],
                   extras: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return D.dkm_dense_loss(flows, certainties, targets, ce_weight=self.conf.ce_weight,
                                local_dist=self.conf.local_dist)

    def label_loss(self, flows: dict[int, torch.Tensor], certainties: dict[int, torch.Tensor],
                   extras: dict[str, torch.Tensor], b_ids: torch.Tensor, grid0: torch.Tensor, grid1: torch.Tensor,
                   align_corners: bool) -> tuple[torch.Tensor, dict[str, float]]:
        return D.dkm_zeroshot_loss(flows, certainties, b_ids, grid0, grid1, align_corners=align_corners,
                                   ce_weight=self.conf.ce_weight)

    def matcher_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"model.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}

    def load_matcher_weights(self, state_dict: Mapping[str, Any]) -> None:
        from gim_plugins.models.gim_dkm import remap_gim_dkm
        from gim_plugins.models.state_dicts import load_strict

        load_strict(self.net, remap_gim_dkm(state_dict), "gim_dkm (DKMv3)")

    def matcher_conf(self) -> dict[str, Any]:
        return {"faithful_gp": bool(self.conf.faithful_gp)}


class RoMaTrainer(_DenseTrainer):
    """GIM-RoMa + ``RobustLosses`` (GIM's video variant and the standard RoMa loss); DINOv2 stays frozen."""

    matcher: ClassVar[str] = "gim_roma"
    default_conf: ClassVar[dict[str, Any]] = {
        "max_labels": 2048,
        "label_grid": "exact",
        "depth_tolerance": 0.05,  # RoMa's relative_depth_error_threshold
        "ce_weight": D.ROMA_CE_WEIGHT,
        "alpha": D.ROMA_ALPHA,
        "c": D.ROMA_C,
        "dinov2_weights": "dinov2_vitl14",  # weight name or file of the frozen DINOv2 ViT-L/14; None: random (tests)
        "backbone_weights": None,  # torchvision's vgg19_bn-c79401a0.pth (GIM's start); None: PyTorch's init
    }
    backbone_file: ClassVar[str] = "vgg19_bn-c79401a0.pth"

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf)
        self._check_conf()
        from gim_plugins.models._arch.roma import RoMa

        self.net = RoMa()
        if self.conf.dinov2_weights is not None:
            from gim_plugins import weights as registry

            path = registry.resolve_weights("dinov2_vitl14", None if self.conf.dinov2_weights == "dinov2_vitl14"
                                            else str(self.conf.dinov2_weights))
            self.net.load_dinov2(registry.load_state_dict_file(path))
        for p in self.net.encoder.dinov2.parameters():
            p.requires_grad_(False)
        if self.conf.backbone_weights is not None:
            self.init_backbone(self.conf.backbone_weights)

    def backbone_module(self) -> nn.Module:
        return self.net.encoder.cnn

    def backbone_key_map(self, key: str) -> str | None:
        # torchvision's vgg19_bn().features[:40] (up to the fourth pooling) are our layers; the rest is unused
        head, _, rest = key.partition(".")
        index, _, name = rest.partition(".")
        if head != "features" or not index.isdigit() or int(index) >= len(self.net.encoder.cnn.layers):
            return None
        return f"layers.{index}.{name}"

    def decode(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[dict[int, torch.Tensor],
                                                                           dict[int, torch.Tensor],
                                                                           dict[str, torch.Tensor]]:
        feats = self.net.encoder(torch.cat([image0, image1]), coarse=True)
        coarse: dict[str, torch.Tensor] = {}
        out = self.net.decoder(feats, keep=(16, 8, 4, 2, 1), queries=len(image0), detach=True, coarse=coarse)
        return {s: out[s][0] for s in out}, {s: out[s][1] for s in out}, coarse

    def dense_loss(self, flows: dict[int, torch.Tensor], certainties: dict[int, torch.Tensor],
                   targets: dict[int, tuple[torch.Tensor, torch.Tensor]],
                   extras: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        return D.roma_dense_loss(flows, certainties, targets, extras.get("gm_cls"), extras.get("gm_certainty"),
                                 ce_weight=self.conf.ce_weight, alpha=self.conf.alpha, c=self.conf.c)

    def label_loss(self, flows: dict[int, torch.Tensor], certainties: dict[int, torch.Tensor],
                   extras: dict[str, torch.Tensor], b_ids: torch.Tensor, grid0: torch.Tensor, grid1: torch.Tensor,
                   align_corners: bool) -> tuple[torch.Tensor, dict[str, float]]:
        return D.roma_zeroshot_loss(flows, extras.get("gm_cls"), b_ids, grid0, grid1, align_corners=align_corners,
                                    alpha=self.conf.alpha, c=self.conf.c)

    def matcher_state_dict(self) -> dict[str, torch.Tensor]:
        return {f"model.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}

    def load_matcher_weights(self, state_dict: Mapping[str, Any]) -> None:
        from gim_plugins.models.gim_roma import remap_gim_roma
        from gim_plugins.models.state_dicts import load_strict

        load_strict(self.net, remap_gim_roma(state_dict), "gim_roma (RoMa)")

    def validation_weights(self) -> Any:
        dinov2 = {k: v.detach().clone() for k, v in self.net.encoder.dinov2.state_dict().items()}
        return {"gim_roma_100h": self.matcher_state_dict(), "dinov2_vitl14": dinov2}
