"""The ``torch.nn.Module`` wrappers that are traced into ONNX graphs, one per exported network.

Each wrapper reuses the PyTorch matcher's own modules and functions (SuperPoint's ``dense``/``suppress``/
``select_keypoints``/``sample_descriptors_legacy``, kornia's LightGlue blocks and ``filter_matches``, kornia's ALIKED,
our GIM-LoFTR network) and only fixes what a trace needs: one image or one pair (batch 1), tensors in and out, no
data-dependent Python branches. So the graphs compute what the PyTorch matchers compute, operation for operation.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ALIKEDGraph", "LightGlueGraph", "LoFTRGraph", "SuperPointGraph"]


class SuperPointGraph(nn.Module):
    """``image`` (1, 1, h, w) gray in [0, 1] → ``keypoints`` (N, 2) pixel centres of the input, ``scores`` (N,),
    ``descriptors`` (N, 256), ``dense_descriptors`` (1, 256, h/8, w/8) (to describe padding points outside)."""

    def __init__(self, superpoint: nn.Module) -> None:
        super().__init__()
        self.superpoint = superpoint

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from gim_plugins.models._arch.superpoint import sample_descriptors_legacy, select_keypoints

        sp = self.superpoint
        heat, dense = sp.dense(image)
        heat = sp.suppress(heat)
        keypoints, scores = select_keypoints(heat[0], sp.max_keypoints, sp.detection_threshold)
        return keypoints, scores, sample_descriptors_legacy(keypoints, dense), dense


class LightGlueGraph(nn.Module):
    """kornia's LightGlue with every layer (no early exit, no point pruning) for one pair.

    Inputs ``keypoints0/1`` (1, N, 2) pixels, ``descriptors0/1`` (1, N, D), ``image_size0/1`` (1, 2) ``(w, h)`` that
    normalise the keypoints; outputs ``matches`` (M, 2) index pairs and ``scores`` (M,), filtered as kornia filters
    them (mutual best, score above ``filter_threshold``).
    """

    def __init__(self, lightglue: nn.Module) -> None:
        super().__init__()
        self.lightglue = lightglue

    def forward(self, keypoints0: torch.Tensor, keypoints1: torch.Tensor, descriptors0: torch.Tensor,
                descriptors1: torch.Tensor, image_size0: torch.Tensor,
                image_size1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from kornia.feature.lightglue import filter_matches, normalize_keypoints

        lg = self.lightglue
        kpts0 = normalize_keypoints(keypoints0, image_size0)
        kpts1 = normalize_keypoints(keypoints1, image_size1)
        desc0 = lg.input_proj(descriptors0)
        desc1 = lg.input_proj(descriptors1)
        encoding0, encoding1 = lg.posenc(kpts0), lg.posenc(kpts1)
        for layer in lg.transformers:
            desc0, desc1 = layer(desc0, desc1, encoding0, encoding1)
        scores, _ = lg.log_assignment[-1](desc0, desc1)
        m0, _, mscores0, _ = filter_matches(scores, lg.conf.filter_threshold)
        valid = m0[0] > -1
        index0 = torch.where(valid)[0]
        return torch.stack([index0, m0[0][valid]], -1), mscores0[0][valid]


class ALIKEDGraph(nn.Module):
    """kornia's ALIKED on ``image`` (1, 3, H, W) RGB in [0, 1] → ``keypoints`` (N, 2) pixels, ``descriptors``
    (N, 128), ``scores`` (N,). Its deformable convolutions are kornia's pure-PyTorch ones (gathers and bilinear
    weights), so they export as standard operators."""

    def __init__(self, aliked: nn.Module) -> None:
        super().__init__()
        self.aliked = aliked

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.aliked(image)[0]
        return features.keypoints, features.descriptors, features.keypoint_scores


class LoFTRGraph(nn.Module):
    """GIM-LoFTR on one pair of fixed size: ``image0``/``image1`` (1, 3, h, w) RGB in [0, 1] and ``mask0``/``mask1``
    (1, h/8, w/8) bool coarse-cell validity → ``keypoints0``/``keypoints1`` (M, 2) corner-convention pixels of the
    inputs and ``confidence`` (M,)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image0: torch.Tensor, image1: torch.Tensor, mask0: torch.Tensor,
                mask1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.network(image0, image1, mask0, mask1)
        return out["keypoints0"], out["keypoints1"], out["confidence"]
