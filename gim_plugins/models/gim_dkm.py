"""GIM-DKM: DKMv3 trained by GIM on 100 h of internet video (ZEB mean AUC@5 51.2), as a dense matcher.

Inference follows GIM's ``networks/dkm`` exactly: RGB in [0, 1] without ImageNet normalisation, centred zero padding to
the network's aspect (demo/hloc), a coarse pass at ``h×w``, a refinement pass at ``upsample_res``, zero certainty on
near-black pixels, symmetric matching and balanced sampling of ``num_samples`` matches. Two configurations of the same
matcher are named in :data:`PRESETS`: ``gim_dkm-demo`` (the default: GIM's ``demo.py``) and ``gim_dkm-zeb`` (GIM's
ZEB evaluation), plus ``gim_dkm-hloc`` (GIM's reconstruction wrapper).

Keypoints are returned in the package convention (pixels of the images as given, centre of the top-left pixel at
(0, 0)): GIM's corner-convention coordinates minus 0.5 (``gim_keypoint_offset`` restores them). GIM's ``demo.py``
first squashes each image to a multiple of 8 px and reports keypoints in that frame; we match the image as given and
report its pixels (the network resizes to ``h×w`` either way).

Memory (CPU, float32, GIM defaults): ≈0.3 GB of weights, plus about 2–3 GB of activations in the 1152×1536 pass
whatever the input size, plus 12 bytes per input pixel (float32 RGB) and as much again for the padded copy. Inputs
above ``max_image_pixels`` are refused before any of that is allocated on the network side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from gim_plugins.conf import Bool, Choice, Conf, Float, Int, Seq
from gim_plugins.models._arch.dkm import DKMv3
from gim_plugins.models._arch.grids import BLACK_THRESHOLD
from gim_plugins.models.dense_warp import WarpSamplingMatcher
from gim_plugins.models.state_dicts import load_strict, unprefixed_state_dict

__all__ = ["GIMDKM", "PRESETS", "remap_gim_dkm"]

WEIGHT_NAME = "gim_dkm_100h"
FC_PREFIX = "encoder.net.fc."
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}

PRESETS: dict[str, dict[str, Any]] = {
    # demo.py / the HuggingFace Space: pad to 4:3, 672×896 + 1152×1536, 5000 samples, in-image filter.
    "gim_dkm-demo": {"h": 672, "w": 896, "pad_to_aspect": True, "upsample": True, "upsample_res": (1152, 1536),
                     "num_samples": 5000, "bounds_filter": True, "drop_zero_confidence": False},
    # trainer/lightning.py (ZEB): no padding, 660×880 + 1152×1536, 5000 samples, keep confidence > 0 only.
    "gim_dkm-zeb": {"h": 660, "w": 880, "pad_to_aspect": False, "upsample": True, "upsample_res": (1152, 1536),
                    "num_samples": 5000, "bounds_filter": False, "drop_zero_confidence": True},
    # hloc/matchers/dkm.py (reconstruction): as the demo, 8192 samples, confidence > 0, in-image filter.
    "gim_dkm-hloc": {"h": 672, "w": 896, "pad_to_aspect": True, "upsample": True, "upsample_res": (1152, 1536),
                     "num_samples": 8192, "bounds_filter": True, "drop_zero_confidence": True},
}
"""Named GIM configurations: ``load_matcher("gim_dkm", **PRESETS["gim_dkm-zeb"])``."""


def remap_gim_dkm(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """GIM-DKM checkpoint → state dict of :class:`~gim_plugins.models._arch.dkm.DKMv3` (pure; input untouched).

    Accepts the Lightning layout ``{"state_dict": {"model.<key>": tensor}}`` and a plain state dict, with or without
    the ``model.`` prefix (the first one is stripped, as GIM does). ``encoder.net.fc.*`` (torchvision's classifier,
    unused) is dropped. Everything else is kept: the strict load reports what does not fit.

    Raises:
        ValueError: the input is not a mapping of tensors, or two keys collide after stripping the prefix.
    """
    return unprefixed_state_dict(checkpoint, "gim_dkm", drop=(FC_PREFIX,))


class GIMDKM(WarpSamplingMatcher):
    """GIM's DKMv3 dense matcher (``gim_dkm``); options in :attr:`default_conf`, named setups in :data:`PRESETS`."""

    name: ClassVar[str] = "gim_dkm"
    default_conf: ClassVar[dict[str, Any]] = {
        **PRESETS["gim_dkm-demo"],
        "sample_thresh": 0.05,  # certainty above which all matches weigh the same in the first draw
        "black_threshold": BLACK_THRESHOLD,  # None: no near-black masking
        "faithful_gp": True,  # keep the original GP's sigma_noise slice behaviour (the weights were trained with it)
        "precision": "fp32",  # "fp32", "bf16" (encoder, DFN, refiners in bf16 autocast; GP fp32) or "auto"
        "seed": None,  # int: every match() draws its samples from a generator seeded with it (reproducible)
        "kde_chunk": 2048,  # rows of the sampling KDE computed at once
        "max_image_pixels": 64_000_000,  # larger inputs are refused (memory: see the module docstring)
    }
    conf_schema: ClassVar[dict[str, Any]] = {
        "h": Int(min=32, max=4096), "w": Int(min=32, max=4096), "pad_to_aspect": Bool(), "upsample": Bool(),
        "upsample_res": Seq(Int(min=32, max=8192), length=2), "num_samples": Int(min=1),
        "bounds_filter": Bool(), "drop_zero_confidence": Bool(), "sample_thresh": Float(min=0, max=1),
        "black_threshold": Float(min=0, max=1) | None, "faithful_gp": Bool(), "precision": Choice(*PRECISIONS, "auto"),
        "seed": Int(min=0) | None, "kde_chunk": Int(min=1), "max_image_pixels": Int(min=1) | None,
    }
    weight_names: ClassVar[tuple[str, ...]] = (WEIGHT_NAME,)
    min_image_size: ClassVar[int] = 32
    gim_keypoint_offset: ClassVar[float] = 0.5
    precisions: ClassVar[Mapping[str, torch.dtype]] = PRECISIONS  # and "auto": bf16 where native, else fp32

    def _init(self, conf: Conf) -> None:
        for key in ("h", "w"):
            if not isinstance(conf[key], int) or conf[key] < 32:
                raise ValueError(f"gim_dkm: {key} must be an int ≥ 32 (one stride-32 cell), got {conf[key]!r}")
        self._check_sampling_conf(conf)
        if conf.precision not in (*PRECISIONS, "auto"):
            raise ValueError(f"gim_dkm: precision must be auto or one of {', '.join(PRECISIONS)}, got "
                             f"{conf.precision!r}")
        self.net = DKMv3()

    def _load_state_dicts(self, state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        load_strict(self.net, remap_gim_dkm(state_dicts[WEIGHT_NAME]), "gim_dkm (DKMv3)")

    # ------------------------------------------------------------------------------------------------- matching

    def dense(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GIM's ``model.match``: the dense warp and certainty of two ``(1, 3, H, W)`` (already padded) images."""
        conf = self.conf
        return self.net.dense_match(
            image0, image1, size=(conf.h, conf.w), upsample_res=tuple(conf.upsample_res) if conf.upsample else None,
            faithful_gp=conf.faithful_gp, black_threshold=conf.black_threshold, dtype=self.compute_dtype())

    def dense_canvases(self, coarse: torch.Tensor, fine: torch.Tensor | None,
                       black: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on the canvases of P pairs at once (batched matching, see :mod:`.dense_warp`)."""
        return self.net.dense_match_canvases(coarse, fine, black, faithful_gp=self.conf.faithful_gp,
                                             dtype=self.compute_dtype())
