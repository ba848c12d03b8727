"""The gim_lightglue and aliked_lightglue trainers: a frozen extractor + kornia's LightGlue, GIM's recipe.

GIM's ``train-gim-glue`` branch: SuperPoint is frozen (``trainable: False``, not in the optimiser) and only LightGlue
learns. On video rows the keypoints are replaced by the labels (the first ``max_keypoints``; padded to exactly
``max_keypoints`` with random points inside the labels' box, as GIM's ``pad_and_stack(mode="random_c")``), their
descriptors sampled from the extractor's dense map; on depth rows the extractor detects its own keypoints and the
ground-truth assignment comes from depth. LightGlue runs all 9 layers (no early exit), with gradient checkpointing
as GIM (``checkpointed: True``); losses in :mod:`gim_plugins.training.losses.lightglue`. Per batch, GIM's mix:
``mean over video rows · N_video / B + mean over depth rows · N_depth / B``.

``aliked_lightglue`` follows the same recipe with kornia's ALIKED-n16 (frozen) as the extractor, LightGlue starting
from the offline weights: descriptors at the labels come from ALIKED's descriptor head (its deformable sampling of the
dense feature map at the given points).

Coordinates: SuperPoint descriptors are sampled at the labels in the package convention (GIM samples at the integer
detection pixels, the same convention) and LightGlue gets ``+0.5`` (GIM's SuperPoint reports corner-convention
keypoints); ALIKED uses the package convention throughout. LightGlue normalises keypoints with the picture size before
padding (``size0``/``size1``), as GIM's ``resize0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.utils.checkpoint
from torch import nn

from gim_plugins.training.losses import lightglue as LG
from gim_plugins.training.losses.geometry import scalar, warp_points_0to1, warp_points_1to0
from gim_plugins.training.trainers.base import Trainer, row_kinds

__all__ = ["ALIKEDLightGlueTrainer", "LightGlueTrainer", "pad_points"]

DEPTH_KEYS = ("depth0", "depth1", "K0", "K1", "T_0to1", "H1", "mask0", "mask1")


def pad_points(points: torch.Tensor, count: int, fallback: tuple[float, float],
               generator: torch.Generator | None) -> torch.Tensor:
    """``points`` ``(n, 2)`` padded to ``count`` with uniform random points in their per-axis range (GIM's
    ``random_c``; ``[0, fallback]`` without points), or cut to the first ``count``."""
    if len(points) >= count:
        return points[:count]
    missing = count - len(points)
    if len(points):
        low, high = points.min(0).values.cpu(), points.max(0).values.cpu()
    else:
        low, high = torch.zeros(2), torch.tensor(fallback)
    extra = torch.rand(missing, 2, generator=generator) * (high - low) + low
    return torch.cat([points, extra.to(points)])


def _fundamental(row: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Image 0 → ``image1`` (post-``H1``) fundamental matrix in package-convention pixels."""
    T = row["T_0to1"]
    t = T[:3, 3]
    skew = torch.zeros(3, 3, dtype=T.dtype, device=T.device)
    skew[0, 1], skew[0, 2], skew[1, 0], skew[1, 2], skew[2, 0], skew[2, 1] = -t[2], t[1], t[2], -t[0], -t[1], t[0]
    essential = skew @ T[:3, :3]
    inv = torch.linalg.inv
    return inv(row["H1"]).T @ inv(row["K1"]).T @ essential @ inv(row["K0"])


class LightGlueTrainer(Trainer):
    """GIM's SuperPoint (frozen) + LightGlue."""

    matcher: ClassVar[str] = "gim_lightglue"
    find_unused_parameters: ClassVar[bool] = True  # video-only batches leave the token-confidence heads unused
    descriptor_dim: ClassVar[int] = 256
    keypoint_offset: ClassVar[float] = 0.5
    default_conf: ClassVar[dict[str, Any]] = {
        "max_keypoints": 2048,
        "nms_radius": 3,
        "detection_threshold": 0.0,
        "remove_borders": 4,
        "checkpointed": True,  # gradient checkpointing of the transformer layers (GIM: True)
        "gamma": 1.0,  # deep-supervision weight base
        "nll_balancing": 0.5,
        "depth_tolerance": 0.2,
        "positive_px": LG.POSITIVE_PX,
        "negative_px": LG.NEGATIVE_PX,
        "extractor_weights": "gim_lightglue_100h",  # SuperPoint: GIM's file (its superpoint.* half) or a plain file
    }

    def __init__(self, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf)
        import kornia.feature as KF

        self.extractor = self._build_extractor()
        for p in self.extractor.parameters():
            p.requires_grad_(False)
        flash = torch.backends.cuda.flash_sdp_enabled()
        self.lightglue = KF.LightGlue(features=None, input_dim=self.descriptor_dim, descriptor_dim=256, n_layers=9,
                                      num_heads=4, flash=False, mp=False, depth_confidence=-1, width_confidence=-1,
                                      filter_threshold=0.1)
        torch.backends.cuda.enable_flash_sdp(flash)
        if self.conf.extractor_weights is not None:
            self._load_extractor(str(self.conf.extractor_weights))

    # ------------------------------------------------------------------------------------------- extractor side

    def _build_extractor(self) -> nn.Module:
        from gim_plugins.models._arch.superpoint import SuperPoint

        conf = self.conf
        return SuperPoint(max_keypoints=conf.max_keypoints, detection_threshold=conf.detection_threshold,
                          nms_radius=conf.nms_radius, remove_borders=conf.remove_borders, force_num_keypoints=True)

    def _load_extractor(self, source: str) -> None:
        from gim_plugins import weights as registry
        from gim_plugins.models.gim_lightglue import remap_gim_lightglue
        from gim_plugins.models.state_dicts import load_strict

        path = registry.resolve_weights(source if source in registry.WEIGHTS else "gim_lightglue_100h",
                                        None if source in registry.WEIGHTS else source)
        state_dict = registry.load_state_dict_file(path)
        if any(k.startswith("superpoint.") for k in state_dict):
            state_dict = remap_gim_lightglue(state_dict)[0]
        load_strict(self.extractor, state_dict, "SuperPoint")

    def frozen_modules(self) -> list[nn.Module]:
        return [self.extractor]

    def dense_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The extractor's dense descriptor maps of ``(B, 3, H, W)`` images."""
        return self.extractor.dense(images)[1]

    def describe(self, dense: torch.Tensor, points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Descriptors ``(n, D)`` of one image's dense map ``(1, ...)`` at package-convention ``points``."""
        from gim_plugins.models._arch.superpoint import sample_descriptors_legacy

        return sample_descriptors_legacy(points, dense)

    def detect(self, images: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(keypoints (B, K, 2) package convention, descriptors (B, K, D))`` detected by the extractor."""
        outputs = self.extractor(images, generator=generator)
        return torch.stack([o.keypoints for o in outputs]), torch.stack([o.descriptors for o in outputs])

    # ------------------------------------------------------------------------------------------------ weights

    def matcher_state_dict(self) -> dict[str, torch.Tensor]:
        from gim_plugins.models.state_dicts import LIGHTGLUE_DERIVED

        out = {f"superpoint.{k}": v.detach().clone() for k, v in self.extractor.state_dict().items()}
        out.update({f"model.{k}": v.detach().clone() for k, v in self.lightglue.state_dict().items()
                    if k not in LIGHTGLUE_DERIVED})
        return out

    def load_matcher_weights(self, state_dict: Mapping[str, Any]) -> None:
        from gim_plugins.models.gim_lightglue import remap_gim_lightglue
        from gim_plugins.models.state_dicts import LIGHTGLUE_DERIVED, fit_state_dict

        inner = state_dict.get("state_dict", state_dict)
        if any(k.startswith(("superpoint.", "model.")) for k in inner):
            superpoint, lightglue = remap_gim_lightglue(inner)
            superpoint = fit_state_dict(self.extractor, superpoint, "gim_lightglue (superpoint.*)")
            self.extractor.load_state_dict(superpoint, strict=True)
        else:  # a LightGlue-only file (e.g. the official superpoint_lightglue.pth)
            from gim_plugins.models.aliked_lightglue import remap_aliked_lightglue

            lightglue = remap_aliked_lightglue(inner)
        lightglue = fit_state_dict(self.lightglue, lightglue, f"{self.matcher} (LightGlue)", derived=LIGHTGLUE_DERIVED)
        self.lightglue.load_state_dict(lightglue, strict=True)

    def validation_weights(self) -> Any:
        return self.matcher_state_dict()

    # ------------------------------------------------------------------------------------------------ forward

    def _layers(self, kpts0: torch.Tensor, kpts1: torch.Tensor, desc0: torch.Tensor, desc1: torch.Tensor,
                size0: torch.Tensor, size1: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """LightGlue's descriptors after each of its layers (training: all layers, no early exit or pruning)."""
        from kornia.feature.lightglue import normalize_keypoints

        lg = self.lightglue
        d0, d1 = lg.input_proj(desc0.detach()), lg.input_proj(desc1.detach())
        e0 = lg.posenc(normalize_keypoints(kpts0, size0))
        e1 = lg.posenc(normalize_keypoints(kpts1, size1))
        out = []
        for layer in lg.transformers:
            if self.conf.checkpointed and self.training:
                d0, d1 = torch.utils.checkpoint.checkpoint(layer, d0, d1, e0, e1, use_reentrant=False)
            else:
                d0, d1 = layer(d0, d1, e0, e1)
            out.append((d0, d1))
        return out

    def forward(self, batch: Mapping[str, Any],  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        label_rows, dense_rows = row_kinds(batch)
        total_rows = len(label_rows)
        scalars = {"skipped_rows": float(total_rows - int((label_rows | dense_rows).sum()))}
        terms = []
        if bool(label_rows.any()):
            loss, count = self._label_loss(batch, label_rows, generator)
            terms.append(loss * count / total_rows)
            scalars["zs_loss"] = scalar(loss)
        if bool(dense_rows.any()):
            loss, count, extra = self._dense_loss(batch, dense_rows, generator)
            terms.append(loss * count / total_rows)
            scalars.update(extra, gt_loss=scalar(loss))
        if not terms:
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0, scalars
        return torch.stack(terms).sum(), scalars

    def _sizes(self, batch: Mapping[str, Any], index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["size0"][index][:, [1, 0]], batch["size1"][index][:, [1, 0]]

    def _label_loss(self, batch: Mapping[str, Any], rows: torch.Tensor,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, int]:
        index = torch.nonzero(rows).flatten()
        limit = self.conf.max_keypoints
        images0, images1 = batch["image0"][index], batch["image1"][index]
        with torch.no_grad():
            dense0, dense1 = self.dense_maps(images0), self.dense_maps(images1)
        kpts, descs, counts = ([], []), ([], []), []
        for k, b in enumerate(index.tolist()):
            labels = batch["labels"][b, : min(int(batch["num_labels"][b]), limit)]
            counts.append(len(labels))
            for side, (dense, points) in enumerate(((dense0, labels[:, :2]), (dense1, labels[:, 2:]))):
                height, width = (int(v) for v in batch[f"size{side}"][b])
                padded = pad_points(points, limit, (float(min(height, width)),) * 2, generator)
                with torch.no_grad():
                    descs[side].append(self.describe(dense[k : k + 1], padded, (height, width)))
                kpts[side].append(padded + self.keypoint_offset)
        size0, size1 = self._sizes(batch, index)
        layers = self._layers(torch.stack(kpts[0]), torch.stack(kpts[1]), torch.stack(descs[0]),
                              torch.stack(descs[1]), size0, size1)
        final, _ = self.lightglue.log_assignment[-1](*layers[-1])
        return LG.diagonal_nll_loss(final, counts), len(index)

    def _dense_loss(self, batch: Mapping[str, Any], rows: torch.Tensor,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, int, dict[str, float]]:
        conf = self.conf
        index = torch.nonzero(rows).flatten()
        with torch.no_grad():
            kpts0, desc0 = self.detect(batch["image0"][index], generator)
            kpts1, desc1 = self.detect(batch["image1"][index], generator)
        weights = []
        for k, b in enumerate(index.tolist()):
            row = {key: batch[key][b] for key in DEPTH_KEYS}
            args = (row["depth0"], row["depth1"], row["K0"], row["K1"], row["T_0to1"], row["H1"])
            warped0, visible0 = warp_points_0to1(kpts0[k], *args, row["mask1"], depth_tolerance=conf.depth_tolerance)
            warped1, visible1 = warp_points_1to0(kpts1[k], *args, row["mask0"], depth_tolerance=conf.depth_tolerance)
            has0 = _has_depth(row["depth0"], kpts0[k])
            has1 = _has_depth(row["depth1"], _pre_homography(row["H1"], kpts1[k]))
            positive, m0, m1 = LG.ground_truth_matches(kpts0[k], kpts1[k], warped0, visible0, has0, warped1,
                                                       visible1, has1, _fundamental(row), conf.positive_px,
                                                       conf.negative_px)
            weights.append(LG.assignment_weights(positive, m0, m1))
        size0, size1 = self._sizes(batch, index)
        layers = self._layers(kpts0 + self.keypoint_offset, kpts1 + self.keypoint_offset, desc0, desc1, size0, size1)
        log_assignments = [self.lightglue.log_assignment[i](*pair)[0] for i, pair in enumerate(layers)]
        weight = torch.stack(weights)
        nll = LG.deep_supervision_nll(log_assignments, weight, conf.gamma, conf.nll_balancing)
        confidence = torch.zeros_like(nll)
        for i in range(len(layers) - 1):
            token = self.lightglue.token_confidence[i].token[0]
            d0, d1 = layers[i]
            confidence = confidence + LG.token_confidence_loss(token(d0.detach()).squeeze(-1),
                                                               token(d1.detach()).squeeze(-1),
                                                               log_assignments[i], log_assignments[-1])
        confidence = confidence / (len(layers) - 1)
        extra = {"gt_nll": scalar(nll.mean()), "gt_confidence": scalar(confidence.mean()),
                 "gt_matchable": float((weight[:, :-1, :-1].sum((1, 2))).mean())}
        return (nll + confidence).mean(), len(index), extra


def _has_depth(depth: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    h, w = depth.shape
    finite = torch.isfinite(points).all(1)
    index = torch.round(torch.where(finite[:, None], points, torch.zeros_like(points))).long()
    inside = finite & (index[:, 0] >= 0) & (index[:, 0] < w) & (index[:, 1] >= 0) & (index[:, 1] < h)
    index = torch.where(inside[:, None], index, torch.zeros_like(index))
    return inside & (depth[index[:, 1], index[:, 0]] > 0)


def _pre_homography(H: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], 1) @ torch.linalg.inv(H).T
    return homogeneous[:, :2] / homogeneous[:, 2:]


class ALIKEDLightGlueTrainer(LightGlueTrainer):
    """ALIKED-n16 (frozen) + LightGlue, starting from the offline ``aliked_lightglue`` weights."""

    matcher: ClassVar[str] = "aliked_lightglue"
    descriptor_dim: ClassVar[int] = 128
    keypoint_offset: ClassVar[float] = 0.0
    default_conf: ClassVar[dict[str, Any]] = {
        **LightGlueTrainer.default_conf,
        "nms_radius": 2,
        "extractor_weights": "aliked_n16",
    }

    def _build_extractor(self) -> nn.Module:
        import kornia.feature as KF

        conf = self.conf
        return KF.ALIKED(model_name="aliked-n16", max_num_keypoints=conf.max_keypoints,
                         detection_threshold=conf.detection_threshold, nms_radius=conf.nms_radius)

    def _load_extractor(self, source: str) -> None:
        from gim_plugins import weights as registry
        from gim_plugins.models.state_dicts import ALIKED_DERIVED, load_strict

        path = registry.resolve_weights("aliked_n16", None if source == "aliked_n16" else source)
        load_strict(self.extractor, registry.load_state_dict_file(path), "aliked_n16", derived=ALIKED_DERIVED)

    def dense_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor.extract_dense_map(images)[0]

    def describe(self, dense: torch.Tensor, points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = dense.shape[-2:]
        normalised = points / points.new_tensor([w - 1, h - 1]) * 2 - 1
        return self.extractor.desc_head(dense, [normalised])[0][0]

    def detect(self, images: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.extractor(images)
        dense = self.dense_maps(images)
        kpts, descs = [], []
        limit = self.conf.max_keypoints
        for k, feats in enumerate(features):
            points, desc = feats.keypoints, feats.descriptors
            if len(points) < limit:
                extra = pad_points(points, limit, (float(min(images.shape[-2:])),) * 2, generator)[len(points):]
                points = torch.cat([points, extra])
                desc = torch.cat([desc, self.describe(dense[k : k + 1], extra, tuple(images.shape[-2:]))])
            kpts.append(points[:limit])
            descs.append(desc[:limit])
        return torch.stack(kpts), torch.stack(descs)

    def matcher_state_dict(self) -> dict[str, torch.Tensor]:
        from gim_plugins.models.state_dicts import LIGHTGLUE_DERIVED

        return {k: v.detach().clone() for k, v in self.lightglue.state_dict().items() if k not in LIGHTGLUE_DERIVED}

    def load_matcher_weights(self, state_dict: Mapping[str, Any]) -> None:
        from gim_plugins.models.aliked_lightglue import remap_aliked_lightglue
        from gim_plugins.models.state_dicts import LIGHTGLUE_DERIVED, fit_state_dict

        inner = state_dict.get("state_dict", state_dict)
        lightglue = fit_state_dict(self.lightglue, remap_aliked_lightglue(inner), "aliked_lightglue",
                                   derived=LIGHTGLUE_DERIVED)
        self.lightglue.load_state_dict(lightglue, strict=True)

    def validation_weights(self) -> Any:
        return {"aliked_lightglue": self.matcher_state_dict(),
                "aliked_n16": {k: v.detach().clone() for k, v in self.extractor.state_dict().items()}}
