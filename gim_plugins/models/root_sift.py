"""RootSIFT with mutual nearest neighbours and a ratio test: GIM's ZEB classical baseline.

As in GIM's ``trainer/lightning.py``: OpenCV SIFT with ``nfeatures = H·W // 64`` and
``contrastThreshold = 1e-5``; RootSIFT descriptors (L1-normalise, square root); a match is a mutual nearest
neighbour under the dot product whose ratio of the two best distances ``sqrt(2 − 2·sim)`` is below 0.8. The score is
the dot-product similarity. OpenCV keypoints already use the package's pixel convention (centre at integer).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from gim_plugins.conf import Bool, Conf, Float, Int
from gim_plugins.models.base import SparseMatcher
from gim_plugins.types import Features

__all__ = ["RootSIFT"]


class RootSIFT(SparseMatcher):
    """RootSIFT + mutual NN + ratio test (no learned weights)."""

    name: ClassVar[str] = "root_sift"
    default_conf: ClassVar[dict[str, Any]] = {
        "max_keypoints": None,  # None: H·W // 64 per image, as GIM's ZEB baseline
        "contrast_threshold": 1e-5,
        "ratio_threshold": 0.8,
        "mutual": True,
        "chunk_size": 4096,  # rows of the similarity matrix held at once (memory bound for large images)
        "max_image_pixels": 24_000_000,  # larger images are refused (OpenCV's SIFT needs ~80 bytes a pixel)
    }
    conf_schema: ClassVar[dict[str, Any]] = {
        "max_keypoints": Int(min=1) | None,
        "contrast_threshold": Float(min=0),
        "ratio_threshold": Float(min=0, max=1, min_open=True),
        "mutual": Bool(),
        "chunk_size": Int(min=1),
        "max_image_pixels": Int(min=1) | None,
    }
    extract_conf_keys: ClassVar[tuple[str, ...]] = ("max_keypoints", "contrast_threshold")
    accepts_detection_mask: ClassVar[bool] = True  # OpenCV's SIFT takes the mask (GIM's video labeller passes it)
    min_image_size: ClassVar[int] = 16

    def _init(self, conf: Conf) -> None:
        """Nothing to build: the options are checked by :attr:`conf_schema`."""

    def _extract(self, image: torch.Tensor) -> Features:
        return self._extract_masked(image, None)

    def _extract_masked(self, image: torch.Tensor, mask: torch.Tensor | None) -> Features:
        import cv2

        height, width = image.shape[-2:]
        rgb = (image.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        count = self.conf.max_keypoints or max(1, height * width // 64)
        sift = cv2.SIFT_create(nfeatures=int(count), contrastThreshold=float(self.conf.contrast_threshold))
        detect_mask = None if mask is None else mask.numpy().astype(np.uint8)
        keypoints, descriptors = sift.detectAndCompute(gray, detect_mask)
        if not keypoints or descriptors is None:
            return self._features(torch.zeros(0, 2), torch.zeros(0, 128), torch.zeros(0), image)
        xy = torch.tensor([kp.pt for kp in keypoints], dtype=torch.float32)
        response = torch.tensor([kp.response for kp in keypoints], dtype=torch.float32)
        desc = torch.from_numpy(descriptors.astype(np.float32))
        desc = (desc / desc.sum(dim=1, keepdim=True).clamp_min(1e-12)).sqrt()
        return self._features(xy, desc, response, image)

    def _match_features(self, features0: Features, features1: Features) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
        desc0, desc1 = features0.descriptors, features1.descriptors
        n0 = len(desc0)
        best = torch.empty(n0)
        best_idx = torch.empty(n0, dtype=torch.long)
        second = torch.full((n0,), -1.0)
        col_best = torch.full((len(desc1),), -float("inf"))
        for start in range(0, n0, self.conf.chunk_size):
            sim = desc0[start : start + self.conf.chunk_size] @ desc1.T
            top = sim.topk(min(2, sim.shape[1]), dim=1)
            best[start : start + len(sim)] = top.values[:, 0]
            best_idx[start : start + len(sim)] = top.indices[:, 0]
            if top.values.shape[1] > 1:
                second[start : start + len(sim)] = top.values[:, 1]
            col_best = torch.maximum(col_best, sim.max(dim=0).values)
        valid = torch.ones(n0, dtype=torch.bool)
        if self.conf.mutual:
            valid &= best >= col_best[best_idx]
        if len(desc1) > 1:
            dist_best = (2.0 - 2.0 * best).clamp_min(0).sqrt()
            dist_second = (2.0 - 2.0 * second).clamp_min(0).sqrt()
            valid &= dist_best < self.conf.ratio_threshold * dist_second
        idx0 = torch.nonzero(valid).squeeze(1)
        return idx0, best_idx[idx0], best[idx0]
