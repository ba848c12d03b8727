"""Helpers for the kornia integration tests: synthetic textured pairs and checkpoints, a small dense matcher.

``ShiftMatcher`` is a real (if modest) dense matcher, registered at run time as ``test_shift``: it finds the integer
translation between two images by exhaustive search and returns a grid of correspondences under it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from gim_plugins.conf import Conf
from gim_plugins.models.base import BaseMatcher
from gim_plugins.types import MatchResult

SHIFT = (5, 3)
"""(dx, dy) of the synthetic pairs: image1(x + dx, y + dy) = image0(x, y)."""


def textured(height: int, width: int, seed: int, channels: int = 3) -> torch.Tensor:
    """A ``(channels, H, W)`` float32 image in [0, 1]: smooth random blobs plus fine texture (corners for SIFT)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, height // 8 + 1, width // 8 + 1, generator=generator)
    smooth = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    fine = torch.rand(channels, height, width, generator=generator)
    return (0.75 * smooth + 0.25 * fine).clamp(0, 1)


def shifted_pair(size0: tuple[int, int], size1: tuple[int, int] | None = None, seed: int = 0,
                 channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Two crops of one larger image, ``(C, *size0)`` and ``(C, *size1)``, offset by :data:`SHIFT`."""
    dx, dy = SHIFT
    (h0, w0), (h1, w1) = size0, size1 or size0
    big = textured(max(h0 + dy, h1), max(w0 + dx, w1), seed, channels)
    return big[:, dy:dy + h0, dx:dx + w0].contiguous(), big[:, :h1, :w1].contiguous()


class ShiftMatcher(BaseMatcher):
    """Dense test matcher: the global integer translation (exhaustive search), sampled on a grid of image 0."""

    name: ClassVar[str] = "test_shift"
    default_conf: ClassVar[dict[str, Any]] = {"radius": 6, "stride": 4}
    min_image_size: ClassVar[int] = 16

    def _init(self, conf: Conf) -> None:
        self.register_buffer("gray_weights", torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1))

    def _gray(self, image: torch.Tensor) -> torch.Tensor:
        return (image.to(self.device) * self.gray_weights).sum(0)

    def _shift(self, g0: torch.Tensor, g1: torch.Tensor) -> tuple[int, int]:
        radius = self.conf.radius
        best, best_cost = (0, 0), float("inf")
        height, width = min(g0.shape[0], g1.shape[0]), min(g0.shape[1], g1.shape[1])
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                y0, y1 = max(0, -dy), min(height, height - dy)
                x0, x1 = max(0, -dx), min(width, width - dx)
                cost = float((g0[y0:y1, x0:x1] - g1[y0 + dy:y1 + dy, x0 + dx:x1 + dx]).abs().mean())
                if cost < best_cost:
                    best, best_cost = (dx, dy), cost
        return best

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        g0, g1 = self._gray(image0), self._gray(image1)
        dx, dy = self._shift(g0, g1)
        ys, xs = torch.meshgrid(torch.arange(0, g0.shape[0], self.conf.stride),
                                torch.arange(0, g0.shape[1], self.conf.stride), indexing="ij")
        k0 = torch.stack([xs.flatten(), ys.flatten()], 1)
        k1 = k0 + torch.tensor([dx, dy])
        keep = (k1[:, 0] >= 0) & (k1[:, 0] < g1.shape[1]) & (k1[:, 1] >= 0) & (k1[:, 1] < g1.shape[0])
        k0, k1 = k0[keep], k1[keep]
        diff = (g0.cpu()[k0[:, 1], k0[:, 0]] - g1.cpu()[k1[:, 1], k1[:, 0]]).abs()
        return self._result(k0.float(), k1.float(), torch.exp(-10 * diff), image0, image1)


MANIFESTS = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"


def synthetic_checkpoint(manifest: str, prefix: str = "", seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """``{"state_dict": …}`` with the keys (``prefix`` prepended), shapes and dtypes of a manifest in
    ``tests/fixtures/manifests``; random but sane values (batch-norm variances positive, counters zero)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape, dtype in json.loads((MANIFESTS / f"{manifest}.json").read_text()):
        if dtype == "int64":
            value = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=generator) + 0.5
        else:
            value = (torch.rand(shape, generator=generator) - 0.5) * 0.2
        state[prefix + key] = value
    return {"state_dict": state}
