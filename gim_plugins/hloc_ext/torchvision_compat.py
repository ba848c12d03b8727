"""A torch-only stand-in for the one torchvision call hloc's dense matching makes.

``hloc.match_dense`` imports ``torchvision.transforms.functional as F`` only for ``F.resize(image, size=(h, w))`` on a
float ``(C, H, W)`` tensor (flooring both sides to a multiple of ``dfactor``). torchvision cannot be installed beside
every torch build (CPU-only builds of torch have no matching torchvision wheel on some indexes), so this package
declares this module as that import's fallback (entry-point group ``hloc.match_dense.import_fallbacks``): when the
import fails, the host hooks (:mod:`gim_plugins._host_hooks`) point hloc's ``F`` here. :func:`resize` reproduces
torchvision's tensor path (``transforms.functional.resize`` → ``_functional_tensor.resize``, torchvision ≥ 0.17): the
input is returned unchanged when it already has the requested size, otherwise it is resampled with
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["resize"]


def resize(img: torch.Tensor, size: Sequence[int] | int, interpolation: object = "bilinear",
           max_size: int | None = None, antialias: bool | None = True) -> torch.Tensor:
    """Resize a ``(..., H, W)`` tensor to ``size = (h, w)`` like ``torchvision.transforms.functional.resize``.

    Only what hloc uses is supported: an explicit ``(h, w)``, bilinear or bicubic interpolation, tensors.

    Raises:
        TypeError: a non-tensor input (torchvision would use PIL here).
        ValueError: a single-int size or ``max_size`` (torchvision's shorter-side mode, unused by hloc).
    """
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"resize: expected a torch.Tensor, got {type(img).__name__} (install torchvision for PIL)")
    if isinstance(size, int) or len(size) != 2 or max_size is not None:
        raise ValueError("resize: only an explicit (height, width) is supported without torchvision")
    mode = str(getattr(interpolation, "value", interpolation))
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"resize: interpolation {mode!r} is not supported without torchvision")
    height, width = int(size[0]), int(size[1])
    if tuple(img.shape[-2:]) == (height, width):
        return img
    shape = img.shape
    batch = img.reshape(-1, *shape[-3:]) if img.ndim >= 3 else img[None, None]
    out_dtype = batch.dtype
    work = batch if batch.dtype in (torch.float32, torch.float64) else batch.float()
    out = F.interpolate(work, size=(height, width), mode=mode, align_corners=False, antialias=bool(antialias))
    if out_dtype != out.dtype:
        if not out_dtype.is_floating_point:
            out = out.round().clamp(torch.iinfo(out_dtype).min, torch.iinfo(out_dtype).max)
        out = out.to(out_dtype)
    return out.reshape(*shape[:-2], height, width)
