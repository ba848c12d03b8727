"""GIM-RoMa: RoMa trained by GIM on 100 h of internet video, as a dense matcher.

Inference follows GIM's ``networks/roma`` and ``demo.py``: RGB in [0, 1] without ImageNet normalisation, centred
zero padding to a square (``get_padding_size(img, 672, 672)`` in ``demo.py``), a coarse pass at 672×672, a refinement
pass at 1344×1344, zero certainty on near-black pixels, symmetric matching and balanced sampling of 5000 matches (with
the KDE in float16, as the original). Named setups in :data:`PRESETS`: ``gim_roma-demo`` (the default) and
``gim_roma-zeb`` (GIM's ZEB evaluation: no padding, keep confidence > 0).

Two weight files: ``gim_roma_100h`` (GIM's checkpoint, DINOv2 excluded) and ``dinov2_vitl14`` (Meta's
``dinov2_vitl14_pretrain.pth``, frozen, never inside the GIM file). Pass them as
``weights={"gim_roma_100h": ..., "dinov2_vitl14": ...}``, or set ``dinov2_weights`` in the conf, or put both in the
weights cache (``gim weights fetch dinov2_vitl14``). Nothing is downloaded at construction.

Keypoints are in the package convention (centre of the top-left pixel at (0, 0)): GIM's corner-convention
coordinates minus 0.5.

Memory (CPU, float32, GIM defaults): ≈1.7 GB of weights (DINOv2 1.2 GB), plus a few GB of activations in the
1344×1344 pass whatever the input size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from gim_plugins.conf import Bool, Choice, Conf, Float, Int, PathText, Seq
from gim_plugins.models._arch.dinov2 import PATCH_SIZE, Attention
from gim_plugins.models._arch.grids import BLACK_THRESHOLD
from gim_plugins.models._arch.roma import RoMa
from gim_plugins.models.base import WeightsArg
from gim_plugins.models.dense_warp import WarpSamplingMatcher
from gim_plugins.models.state_dicts import fit_state_dict, unprefixed_state_dict

__all__ = ["DINOV2_NAME", "PRECISIONS", "PRESETS", "WEIGHT_NAME", "GIMRoMa", "remap_gim_roma"]

WEIGHT_NAME = "gim_roma_100h"
DINOV2_NAME = "dinov2_vitl14"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}

PRESETS: dict[str, dict[str, Any]] = {
    # demo.py: pad to a square, 672² + 1344², 5000 samples, in-image filter.
    "gim_roma-demo": {"h": 672, "w": 672, "pad_to_aspect": True, "upsample": True, "upsample_res": (1344, 1344),
                      "num_samples": 5000, "bounds_filter": True, "drop_zero_confidence": False},
    # trainer/lightning.py (ZEB): no padding, 672² + 1344², 5000 samples, keep confidence > 0 only.
    "gim_roma-zeb": {"h": 672, "w": 672, "pad_to_aspect": False, "upsample": True, "upsample_res": (1344, 1344),
                     "num_samples": 5000, "bounds_filter": False, "drop_zero_confidence": True},
}
"""Named GIM configurations: ``load_matcher("gim_roma", **PRESETS["gim_roma-zeb"])``."""


def remap_gim_roma(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """GIM-RoMa checkpoint → state dict of :class:`~gim_plugins.models._arch.roma.RoMa` (pure; input untouched).

    Accepts the Lightning layout ``{"state_dict": {"model.<key>": tensor}}`` and a plain state dict, with or without
    the ``model.`` prefix (stripped once, as GIM does). Nothing is dropped: the strict load reports what does not fit.

    Raises:
        ValueError: the input is not a mapping of tensors, or two keys collide after stripping the prefix.
    """
    return unprefixed_state_dict(checkpoint, "gim_roma")


class GIMRoMa(WarpSamplingMatcher):
    """GIM's RoMa dense matcher (``gim_roma``); options in :attr:`default_conf`, named setups in :data:`PRESETS`."""

    name: ClassVar[str] = "gim_roma"
    default_conf: ClassVar[dict[str, Any]] = {
        **PRESETS["gim_roma-demo"],
        "sample_thresh": 0.05,  # certainty above which all matches weigh the same in the first draw
        "black_threshold": BLACK_THRESHOLD,  # None: no near-black masking
        "dinov2_weights": None,  # path of dinov2_vitl14_pretrain.pth (None: weights= or the weights cache)
        "fused_attention": False,  # True: scaled_dot_product_attention (GPU memory/speed; rounding differs)
        "precision": "fp32",  # "fp32", "bf16" (DINOv2, VGG, decoder, refiners in bf16 autocast; GP fp32) or "auto"
        "seed": None,  # int: every match() draws its samples from a generator seeded with it (reproducible)
        "kde_chunk": 2048,  # rows of the sampling KDE computed at once
        "max_image_pixels": 64_000_000,  # larger inputs are refused
    }
    conf_schema: ClassVar[dict[str, Any]] = {
        "h": Int(min=28, max=4096), "w": Int(min=28, max=4096), "pad_to_aspect": Bool(), "upsample": Bool(),
        "upsample_res": Seq(Int(min=32, max=8192), length=2), "num_samples": Int(min=1),
        "bounds_filter": Bool(), "drop_zero_confidence": Bool(), "sample_thresh": Float(min=0, max=1),
        "black_threshold": Float(min=0, max=1) | None, "dinov2_weights": PathText() | None,
        "fused_attention": Bool(), "seed": Int(min=0) | None, "kde_chunk": Int(min=1),
        "max_image_pixels": Int(min=1) | None, "precision": Choice(*PRECISIONS, "auto"),
    }
    weight_names: ClassVar[tuple[str, ...]] = (WEIGHT_NAME, DINOV2_NAME)
    min_image_size: ClassVar[int] = 32
    gim_keypoint_offset: ClassVar[float] = 0.5
    kde_dtype: ClassVar[torch.dtype | None] = torch.float16  # GIM's RoMa samples with a half-precision KDE
    precisions: ClassVar[Mapping[str, torch.dtype]] = PRECISIONS  # and "auto": bf16 where native, else fp32

    def _init(self, conf: Conf) -> None:
        for key in ("h", "w"):
            if not isinstance(conf[key], int) or conf[key] < 2 * PATCH_SIZE or conf[key] % PATCH_SIZE:
                raise ValueError(f"gim_roma: {key} must be a multiple of {PATCH_SIZE} (DINOv2's patch) ≥ "
                                 f"{2 * PATCH_SIZE}, got {conf[key]!r}")
        self._check_sampling_conf(conf)
        if conf.precision not in (*PRECISIONS, "auto"):
            raise ValueError(f"gim_roma: precision must be auto or one of {', '.join(PRECISIONS)}, got "
                             f"{conf.precision!r}")
        self.net = RoMa()
        for module in (*self.net.modules(), *self.net.encoder.dinov2.modules()):
            if isinstance(module, Attention):
                module.fused = bool(conf.fused_attention)

    def _weight_sources(self, weights: WeightsArg) -> dict[str, Any]:
        sources = super()._weight_sources(weights)
        if self.conf.dinov2_weights is not None and sources.get(DINOV2_NAME) is None:
            sources[DINOV2_NAME] = os.fspath(self.conf.dinov2_weights)
        return sources

    def _load_state_dicts(self, state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        state_dict = remap_gim_roma(state_dicts[WEIGHT_NAME])
        # The network's own keys never start like DINOv2's (it is hidden from RoMa's state_dict()).
        hint = (" (DINOv2 tensors belong in the separate dinov2_vitl14 file)"
                if any(k.startswith(("encoder.dinov2", "blocks.", "pos_embed")) for k in state_dict) else "")
        gim = fit_state_dict(self.net, state_dict, "gim_roma (RoMa)", hint=hint)
        dinov2 = self.net.fit_dinov2(state_dicts[DINOV2_NAME])  # both checked before anything is loaded
        self.net.load_state_dict(gim, strict=True)
        self.net.encoder.dinov2.load_state_dict(dinov2, strict=True)

    # ------------------------------------------------------------------------------------------------- matching

    def dense(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GIM's ``model.match``: the dense warp and certainty of two ``(1, 3, H, W)`` (already padded) images."""
        conf = self.conf
        return self.net.dense_match(image0, image1, size=(conf.h, conf.w),
                                    upsample_res=tuple(conf.upsample_res) if conf.upsample else None,
                                    black_threshold=conf.black_threshold, dtype=self.compute_dtype())

    def dense_canvases(self, coarse: torch.Tensor, fine: torch.Tensor | None,
                       black: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on the canvases of P pairs at once (batched matching, see :mod:`.dense_warp`)."""
        return self.net.dense_match_canvases(coarse, fine, black, dtype=self.compute_dtype())
