"""GIM-LoFTR: our RGB ResNet-50 pyramid (:mod:`.loftr_backbone`) + kornia's LoFTR transformer and matching modules.

Everything after the backbone is upstream LoFTR and kornia 0.9 has it with the same parameter names and shapes
(random GIM-LoFTR weights load into kornia's modules with every non-backbone key matched): ``loftr_coarse`` (4 ×
self/cross linear-attention layers, d=256), ``CoarseMatching`` (dual softmax, temperature 0.1, mutual nearest
neighbours above a threshold, 2-cell border removal), ``FinePreprocess`` without the coarse-feature concatenation
(``fine_concat_coarse_feat=False``: no parameters), ``loftr_fine`` (1 × self/cross, d=128) and ``FineMatching`` (5×5
soft-argmax expectation, refinement in image 1 only). The module order and names make ``state_dict()`` equal
``tests/fixtures/manifests/gim_loftr.json`` key for key, in order.

The sine position encoding is a non-persistent buffer that no checkpoint holds. ``temp_bug_fix`` selects its
frequencies: GIM's ``main`` hard-codes ``False`` (the "buggy" upstream encoding) and that is what the released
``gim_loftr_50h`` weights ran with; GIM's training branch uses ``True``. The encoding covers 256 × 256 coarse cells
(2048 × 2048 px), the size the original accepts; the wrapper enforces it.

Coordinates: in the frame of the network input, coarse cell ``(i, j)`` of either image is reported at
``8 · (j, i)`` and image 1 gets the fine offset; like upstream LoFTR these are corner-convention coordinates
(pixel centres at ``x + 0.5``), the convention the ground truth used in training was written in.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from gim_plugins.models._arch.loftr_backbone import GIMResNetFPN

__all__ = ["COARSE_STRIDE", "MAX_COARSE_CELLS", "GIMLoFTRNetwork", "loftr_config"]

COARSE_STRIDE = 8
FINE_STRIDE = 2
MAX_COARSE_CELLS = 256
"""Side of the position-encoding table: GIM's original fails beyond 256 coarse cells (2048 px)."""


def loftr_config(*, temp_bug_fix: bool = False, coarse_threshold: float = 0.2, border_rm: int = 2) -> dict[str, Any]:
    """GIM's LoFTR configuration (its ``networks/loftr/config.py``) in kornia's config layout."""
    from kornia.feature.loftr.loftr import default_cfg

    cfg = copy.deepcopy(default_cfg)
    cfg["fine_concat_coarse_feat"] = False
    cfg["resnetfpn"] = {"initial_dim": 128, "block_dims": [64, 128, 196, 256, 512, 1024]}
    cfg["coarse"].update(d_model=256, d_ffn=256, nhead=8, layer_names=["self", "cross"] * 4, attention="linear",
                         temp_bug_fix=temp_bug_fix)
    cfg["match_coarse"].update(thr=coarse_threshold, border_rm=border_rm, match_type="dual_softmax",
                               dsmax_temperature=0.1, train_coarse_percent=0.2, train_pad_num_gt_min=200,
                               sparse_spvs=False)
    cfg["fine"].update(d_model=128, d_ffn=128, nhead=8, layer_names=["self", "cross"], attention="linear")
    return cfg


class GIMLoFTRNetwork(nn.Module):
    """The GIM-LoFTR network: two RGB images (multiples of 8 px, ≤ 2048 px a side) → coarse-to-fine matches.

    Args:
        temp_bug_fix: position-encoding variant (``False`` for the released weights, see the module docstring).
        coarse_threshold: dual-softmax confidence a coarse match must exceed (GIM: 0.2).
        border_rm: coarse cells removed at each image border (GIM: 2).
        fast_backbone: fold batch norms and use channels-last at inference (see :class:`GIMResNetFPN`).
    """

    def __init__(self, *, temp_bug_fix: bool = False, coarse_threshold: float = 0.2, border_rm: int = 2,
                 fast_backbone: bool = True) -> None:
        super().__init__()
        from kornia.feature.loftr.loftr_module import FinePreprocess, LocalFeatureTransformer
        from kornia.feature.loftr.utils.coarse_matching import CoarseMatching
        from kornia.feature.loftr.utils.fine_matching import FineMatching
        from kornia.feature.loftr.utils.position_encoding import PositionEncodingSine

        cfg = loftr_config(temp_bug_fix=temp_bug_fix, coarse_threshold=coarse_threshold, border_rm=border_rm)
        self.config = cfg
        self.backbone = GIMResNetFPN(fast=fast_backbone)
        self.pos_encoding = PositionEncodingSine(cfg["coarse"]["d_model"], max_shape=(MAX_COARSE_CELLS,) * 2,
                                                 temp_bug_fix=temp_bug_fix)
        self.loftr_coarse = LocalFeatureTransformer(cfg["coarse"])
        self.coarse_matching = CoarseMatching(cfg["match_coarse"])
        self.fine_preprocess = FinePreprocess(cfg)
        self.loftr_fine = LocalFeatureTransformer(cfg["fine"])
        self.fine_matching = FineMatching()
        self.backbone_dtype: torch.dtype | None = None
        """Autocast dtype of the backbone (``None``: float32). Transformers and matching always run in float32."""

    def forward(self, color0: torch.Tensor, color1: torch.Tensor, mask0: torch.Tensor | None = None,
                mask1: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Match two batches of RGB images.

        Args:
            color0: ``(N, 3, H0, W0)`` in [0, 1], no mean/std normalisation; H0, W0 multiples of 8.
            color1: ``(N, 3, H1, W1)``.
            mask0: optional ``(N, H0/8, W0/8)`` coarse-cell validity (True/1 = usable), e.g. for padding.
            mask1: optional ``(N, H1/8, W1/8)``; a missing one of the two counts as all valid.

        Returns:
            ``keypoints0``, ``keypoints1`` ``(M, 2)`` (corner-convention pixels of the inputs), ``confidence``
            ``(M,)`` (coarse dual-softmax score), ``batch_indexes`` ``(M,)``, ``expec_f`` ``(M, 3)``.
        """
        self._check_inputs(color0, color1)
        if color0.shape == color1.shape:
            coarse, fine = self._backbone(torch.cat([color0, color1]))
            (feat_c0, feat_c1), (feat_f0, feat_f1) = coarse.chunk(2), fine.chunk(2)
        else:
            feat_c0, feat_f0 = self._backbone(color0)
            feat_c1, feat_f1 = self._backbone(color1)
        data: dict[str, Any] = {
            "bs": color0.shape[0], "stride_c": COARSE_STRIDE, "stride_f": FINE_STRIDE,
            "hw0_i": color0.shape[2:], "hw1_i": color1.shape[2:],
            "hw0_c": feat_c0.shape[2:], "hw1_c": feat_c1.shape[2:],
            "hw0_f": feat_f0.shape[2:], "hw1_f": feat_f1.shape[2:],
        }
        seq0 = self.pos_encoding(feat_c0).flatten(2).transpose(1, 2).contiguous()
        seq1 = self.pos_encoding(feat_c1).flatten(2).transpose(1, 2).contiguous()
        flat0 = flat1 = None
        if mask0 is not None or mask1 is not None:
            mask0 = self._coarse_mask(mask0, feat_c0)
            mask1 = self._coarse_mask(mask1, feat_c1)
            data.update(mask0=mask0, mask1=mask1)
            flat0, flat1 = mask0.flatten(-2), mask1.flatten(-2)
        seq0, seq1 = self.loftr_coarse(seq0, seq1, flat0, flat1)
        self.coarse_matching(seq0, seq1, data, mask_c0=flat0, mask_c1=flat1)
        win0, win1 = self.fine_preprocess(feat_f0, feat_f1, seq0, seq1, data)
        num_matches = win0.shape[0]
        exporting = torch.onnx.is_in_onnx_export()
        if exporting:
            # A traced graph keeps no branch, and with no coarse match (M = 0) the fine stage's reshapes would infer a
            # size from an empty tensor, which ONNX Runtime rejects. One extra all-zero window keeps M + 1 ≥ 1; windows
            # are independent in the fine transformer and the fine matching, and the extra row is dropped below.
            win0 = torch.cat([win0, win0.new_zeros((1, *win0.shape[1:]))])
            win1 = torch.cat([win1, win1.new_zeros((1, *win1.shape[1:]))])
            win0, win1 = self.loftr_fine(win0, win1)
        elif num_matches != 0:
            win0, win1 = self.loftr_fine(win0, win1)
        self.fine_matching(win0, win1, data)
        if exporting:
            # kornia cuts the fine offsets to ``len(mconf)``, a constant in a traced graph: cut them to M here instead.
            window = int(self.fine_matching.W)  # the fine window's side (5), a constant of the configuration
            data["mkpts1_f"] = data["mkpts1_c"] + data["expec_f"][:num_matches, :2] * (window // 2) * FINE_STRIDE
        return {"keypoints0": data["mkpts0_f"], "keypoints1": data["mkpts1_f"], "confidence": data["mconf"],
                "batch_indexes": data["m_bids"], "expec_f": data["expec_f"][:num_matches]}

    def _backbone(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.backbone_dtype is None:
            return self.backbone(images)
        with torch.autocast(images.device.type, dtype=self.backbone_dtype):
            coarse, fine = self.backbone(images)
        return coarse.float(), fine.float()

    @staticmethod
    def _check_inputs(color0: torch.Tensor, color1: torch.Tensor) -> None:
        for name, image in (("color0", color0), ("color1", color1)):
            if image.ndim != 4 or image.shape[1] != 3:
                raise ValueError(f"{name}: expected (N, 3, H, W) RGB, got {tuple(image.shape)}")
            h, w = image.shape[-2:]
            if h % COARSE_STRIDE or w % COARSE_STRIDE:
                raise ValueError(f"{name}: height and width must be multiples of {COARSE_STRIDE}, got {h}×{w}")
            limit = COARSE_STRIDE * MAX_COARSE_CELLS
            if max(h, w) > limit:
                raise ValueError(f"{name}: {h}×{w} exceeds GIM-LoFTR's {limit} px per side (position encoding)")
        if color0.shape[0] != color1.shape[0]:
            raise ValueError(f"batch sizes differ: {color0.shape[0]} and {color1.shape[0]}")

    @staticmethod
    def _coarse_mask(mask: torch.Tensor | None, feat: torch.Tensor) -> torch.Tensor:
        n, _, h, w = feat.shape
        if mask is None:
            return torch.ones(n, h, w, dtype=torch.bool, device=feat.device)
        if tuple(mask.shape) != (n, h, w):
            raise ValueError(f"coarse mask: expected shape {(n, h, w)}, got {tuple(mask.shape)}")
        return mask.to(device=feat.device, dtype=torch.bool)
