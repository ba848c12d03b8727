"""hloc feature extractors that run the extractor half of sparse ``gim_plugins`` matchers (``extract_features``).

hloc finds them through the entry-point group ``hloc.extractors``. Model conf as in :mod:`.matchers`: ``matcher``
(the ``gim_plugins`` sparse matcher whose extractor runs; default from the class), ``weights``, ``pretrained``, and
any option of that matcher.

Output, per hloc's ``extract_features``: ``keypoints`` (1, N, 2) in pixels of the image hloc passed (centre of the
top-left pixel at (0, 0); hloc rescales them to the original image with ``(k + 0.5)·s − 0.5``), ``descriptors``
(1, D, N) and ``scores`` (1, N). ``match_features`` hands them back as ``keypoints0``, ``descriptors0``, ...
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from hloc.utils.base_model import BaseModel

from gim_plugins.hloc_ext.matchers import build_matcher, unit_range

__all__ = ["ALIKEDN16Extractor", "FeatureExtractor", "GIMSuperPointExtractor"]


class FeatureExtractor(BaseModel):
    """hloc extractor: ``{"image": (1, C, H, W)}`` → ``keypoints``, ``descriptors``, ``scores``."""

    matcher_name: ClassVar[str | None] = None
    default_conf: ClassVar[dict[str, Any]] = {  # type: ignore[misc]  # hloc declares a plain dict
        "name": None, "matcher": None, "weights": None, "pretrained": True,
    }
    required_inputs: ClassVar[list[str]] = ["image"]  # type: ignore[misc]

    def _init(self, conf: dict[str, Any]) -> None:
        self.net = build_matcher(conf, self.matcher_name, sparse=True)

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = data["image"]
        if image.ndim != 4 or image.shape[0] != 1:
            raise ValueError(f"image: hloc passes one (1, C, H, W) image, got {tuple(image.shape)}")
        features = self.net.extract(unit_range(image[0]))
        device = image.device
        return {
            "keypoints": features.keypoints[None].to(device),
            "descriptors": features.descriptors.transpose(0, 1)[None].to(device),
            "scores": features.scores[None].to(device),
        }


class GIMSuperPointExtractor(FeatureExtractor):
    """``gim_superpoint``: the SuperPoint of ``gim_lightglue`` (match with the ``gim_lightglue`` matcher)."""

    matcher_name = "gim_lightglue"


class ALIKEDN16Extractor(FeatureExtractor):
    """``aliked_n16``: the ALIKED-n16 of ``aliked_lightglue`` (match with the ``aliked_lightglue`` matcher)."""

    matcher_name = "aliked_lightglue"
