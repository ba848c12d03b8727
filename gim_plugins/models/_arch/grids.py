"""Coordinate grids, resizing, autocast control and the black-pixel mask shared by the DKM and RoMa networks.

Both networks express positions as normalised coordinates in [-1, 1] at pixel centres (``align_corners=False``) and
resize feature maps bilinearly with that same convention; these helpers are the one definition of both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

__all__ = ["BLACK_THRESHOLD", "black_mask", "no_autocast", "normalized_grid", "resize"]

BLACK_THRESHOLD = 1.0 / 32.0
"""Pixels below this in all three channels get zero certainty (GIM's padding / semantic-mask exclusion)."""


def normalized_grid(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(2, h, w)`` pixel-centre coordinates in [-1, 1] (``align_corners=False``), channel 0 = x, 1 = y."""
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=device)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y))


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size`` (``align_corners=False``: pixel centres stay aligned)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@contextlib.contextmanager
def no_autocast() -> Iterator[None]:
    """Leave any surrounding autocast region (the GP's kernel inverse must stay in float32)."""
    if torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda"):
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            yield
    else:
        yield


def black_mask(image: torch.Tensor, size: tuple[int, int], threshold: float) -> torch.Tensor:
    """``(h, w)`` mask of near-black pixels of a ``(1, 3, H, W)`` image, nearest-resized to ``size``.

    Equal to thresholding at full resolution and resizing the mask with ``F.interpolate(mode="nearest")`` (as GIM
    does), but only the pixels nearest-neighbour resizing selects are read, so a large image costs no full-size mask.
    """
    _, _, height, width = image.shape
    rows = _nearest_indices(height, size[0], image.device)
    cols = _nearest_indices(width, size[1], image.device)
    pixels = image[0][:, rows][:, :, cols]
    return (pixels < threshold).all(dim=0)


def _nearest_indices(length: int, out_length: int, device: torch.device) -> torch.Tensor:
    """Source indices that 2-D ``F.interpolate(mode="nearest")`` reads along one axis, computed by that same kernel
    (on a float32 ``(length, 1)`` index image, exact below 2²⁴ px; the 1-D kernel rounds differently)."""
    source = torch.arange(length, dtype=torch.float32, device=device)[None, None, :, None]
    return F.interpolate(source, size=(out_length, 1), mode="nearest")[0, 0, :, 0].long()
