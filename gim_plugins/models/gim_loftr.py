"""gim_loftr: GIM's LoFTR (RGB ResNet-50 pyramid + LoFTR transformers), weights ``gim_loftr_50h``.

What happens to an image (as in GIM's ``demo.py`` and ``networks/loftr``):

1. Sides larger than ``max_side`` (2048 px, the reach of the position encoding; GIM's original crashes beyond it)
   are an error naming the limit, or with ``oversize="resize"`` the image is first scaled so that its long side is
   ``max_side``.
2. The image is squashed to ``(H//8·8, W//8·8)`` with bilinear interpolation, as GIM's ``preprocess`` does
   (nothing happens when both sides are already multiples of 8). RGB in [0, 1], no mean/std normalisation.
3. The network matches the two processed images. Its raw keypoints are in the corner convention of the processed
   image (pixel centres at ``x + 0.5``), in which scaling is a plain multiplication; GIM's demo and ZEB map them
   back that way. This wrapper does the same per axis, ``x · W / W_processed``, and then subtracts 0.5 to reach the
   package's convention (pixel centres at integers, :mod:`gim_plugins.types`). So our keypoints are exactly GIM's
   original-pixel keypoints minus 0.5 (``gim_keypoint_offset``).

Options: ``coarse_threshold`` (0.2) is the dual-softmax score a match needs; ``temp_bug_fix`` must be ``False`` for
the released weights and ``True`` for weights trained with GIM's training branch (it is not stored in checkpoints);
``precision="bfloat16"`` (or ``"float16"``) runs the backbone — about 85 % of the FLOPs — under autocast and keeps the
transformers and the dual-softmax matching in float32. It is a speed option whose effect on the released weights is
unmeasured: on random weights about half of the matches change (``benchmarks/loftr.py`` prints the deltas).
``fast_backbone=False`` gives up batch-norm folding and channels-last layout to reproduce the original's arithmetic
exactly.
:meth:`GIMLoFTR.match` also takes optional validity masks (True = usable pixel), reduced to the 1/8 coarse grid by
taking the top-left pixel of each 8×8 cell, as LoFTR's data loaders do; a masked cell is never matched, and border
removal is measured from the valid extent (LoFTR assumes the invalid part is bottom/right padding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from gim_plugins.conf import Bool, Choice, Conf, ConfError, Float, Int
from gim_plugins.io import ImageInput
from gim_plugins.models.base import BaseMatcher
from gim_plugins.models.state_dicts import load_strict, unprefixed_state_dict
from gim_plugins.types import MatchResult

__all__ = ["GIMLoFTR", "remap_gim_loftr"]

_PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
_PREFIXES = ("model.", "matcher.")


def remap_gim_loftr(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Turn a raw ``gim_loftr_50h`` state dict into our network's keys.

    The Lightning checkpoint stores ``model.<key>`` (the original loader also accepts ``matcher.<key>``); one leading
    prefix of either kind is stripped and unprefixed keys pass through. A whole checkpoint ``{"state_dict": …}``
    is unwrapped.
    """
    return unprefixed_state_dict(state_dict, "gim_loftr", prefixes=_PREFIXES)


class GIMLoFTR(BaseMatcher):
    """GIM-LoFTR, dense-to-sparse: coarse 1/8-grid matches refined to sub-pixel in image 1."""

    name: ClassVar[str] = "gim_loftr"
    default_conf: ClassVar[dict[str, Any]] = {
        "coarse_threshold": 0.2,  # dual-softmax confidence a coarse match must exceed
        "temp_bug_fix": False,  # position-encoding variant: False for the released gim_loftr_50h weights
        "max_side": 2048,  # longest accepted processed side (≤ 2048: the position encoding's reach)
        "oversize": "error",  # "error" or "resize" (downscale to max_side) for larger images
        "precision": "float32",  # or "bfloat16" / "float16" (the backbone under autocast), "auto" (bf16 if native)
        "fast_backbone": True,  # fold batch norms, channels-last (False: the original's exact arithmetic)
        "max_image_pixels": 64_000_000,  # larger inputs are refused before they are converted
    }
    conf_schema: ClassVar[dict[str, Any]] = {
        "coarse_threshold": Float(min=0, max=1, max_open=True),
        "temp_bug_fix": Bool(),
        "max_side": Int(min=32, max=2048),
        "oversize": Choice("error", "resize"),
        "precision": Choice(*_PRECISIONS, "auto"),
        "fast_backbone": Bool(),
        "max_image_pixels": Int(min=1) | None,
    }
    weight_names: ClassVar[tuple[str, ...]] = ("gim_loftr_50h",)
    min_image_size: ClassVar[int] = 32
    gim_keypoint_offset: ClassVar[float] = 0.5
    accepts_masks: ClassVar[bool] = True  # match(mask0=, mask1=): see the module docstring
    precisions: ClassVar[Mapping[str, torch.dtype]] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                                         "float16": torch.float16}

    def _init(self, conf: Conf) -> None:
        from gim_plugins.models._arch.loftr import COARSE_STRIDE, MAX_COARSE_CELLS, GIMLoFTRNetwork

        limit = COARSE_STRIDE * MAX_COARSE_CELLS
        if not self.min_image_size <= conf.max_side <= limit:
            raise ConfError(f"gim_loftr: max_side must be in [{self.min_image_size}, {limit}], got {conf.max_side}")
        if conf.oversize not in ("error", "resize"):
            raise ConfError(f"gim_loftr: oversize must be 'error' or 'resize', got {conf.oversize!r}")
        if conf.precision not in (*_PRECISIONS, "auto"):
            raise ConfError(f"gim_loftr: precision must be auto or one of {', '.join(_PRECISIONS)}, got "
                            f"{conf.precision!r}")
        if not 0.0 <= conf.coarse_threshold < 1.0:
            raise ConfError(f"gim_loftr: coarse_threshold must be in [0, 1), got {conf.coarse_threshold}")
        self.net = GIMLoFTRNetwork(temp_bug_fix=bool(conf.temp_bug_fix), coarse_threshold=conf.coarse_threshold,
                                   fast_backbone=bool(conf.fast_backbone))
        self.net.backbone_dtype = _PRECISIONS.get(conf.precision)  # "auto": resolved per match for the device

    def _load_state_dicts(self, state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        load_strict(self.net, remap_gim_loftr(state_dicts["gim_loftr_50h"]), "gim_loftr_50h")

    # ------------------------------------------------------------------------------------------------- matching

    def match(self, image0: ImageInput, image1: ImageInput, *, mask0: Any = None, mask1: Any = None) -> MatchResult:
        """Match two images; optional ``mask0``/``mask1`` (``H×W`` bool, True = usable) exclude regions.

        See :meth:`BaseMatcher.match` for the accepted image forms; keypoints are in pixels of the images as given.
        """
        if mask0 is None and mask1 is None:
            return super().match(image0, image1)
        import time

        im0 = self._image_tensor(image0, "image0")
        im1 = self._image_tensor(image1, "image1")
        m0 = _as_mask(mask0, im0, "mask0")
        m1 = _as_mask(mask1, im1, "mask1")
        start = time.perf_counter()
        with torch.inference_mode():
            result = self._match_masked(im0, im1, m0, m1)
        return result.with_timing(total=time.perf_counter() - start)

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        return self._match_masked(image0, image1, None, None)

    def _match_masked(self, image0: torch.Tensor, image1: torch.Tensor, mask0: torch.Tensor | None,
                      mask1: torch.Tensor | None) -> MatchResult:
        color0, scale0 = self.preprocess(image0, "image0")
        color1, scale1 = self.preprocess(image1, "image1")
        coarse0 = self._coarse_mask(mask0, color0) if mask0 is not None or mask1 is not None else None
        coarse1 = self._coarse_mask(mask1, color1) if coarse0 is not None else None
        if self.conf.precision == "auto":
            dtype = self.compute_dtype()
            self.net.backbone_dtype = None if dtype == torch.float32 else dtype
        out = self._network(color0, color1, coarse0, coarse1)
        k0 = out["keypoints0"].float().cpu() * scale0 - 0.5
        k1 = out["keypoints1"].float().cpu() * scale1 - 0.5
        return self._result(k0, k1, out["confidence"].float().cpu(), image0, image1)

    def preprocess(self, image: torch.Tensor, name: str = "image") -> tuple[torch.Tensor, torch.Tensor]:
        """``(3, H, W)`` → the network input ``(1, 3, h, w)`` on the device and the per-axis factors ``(W/w, H/h)``.

        ``h, w`` are multiples of 8 (GIM's squash, after the ``max_side`` rule); multiplying corner-convention
        keypoints of the network input by the factors gives corner-convention keypoints of the image.
        """
        height, width = image.shape[-2:]
        h, w = self.network_size(int(height), int(width), name)
        batch = image[None].to(self.device)
        if (h, w) != (height, width):
            batch = F.interpolate(batch, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return batch, torch.tensor([width / w, height / h], dtype=torch.float32)

    def network_size(self, height: int, width: int, name: str = "image") -> tuple[int, int]:
        """``(h, w)`` the network runs at for an image of ``height × width`` (multiples of 8, ``max_side`` rule)."""
        h, w = height // 8 * 8, width // 8 * 8
        if max(h, w) > self.conf.max_side:
            if self.conf.oversize == "error":
                raise ValueError(f"{name}: {height}×{width} px is larger than gim_loftr accepts ({self.conf.max_side} "
                                 f"px per side after rounding down to multiples of 8); downscale it, or build the "
                                 f"matcher with oversize='resize'")
            factor = self.conf.max_side / max(height, width)
            h = int(height * factor) // 8 * 8
            w = int(width * factor) // 8 * 8
        return h, w

    def _network(self, color0: torch.Tensor, color1: torch.Tensor, mask0: torch.Tensor | None,
                 mask1: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The network call (another backend, the ONNX Runtime matcher of gim_plugins.export, replaces only this)."""
        return self.net(color0, color1, mask0, mask1)

    @staticmethod
    def _coarse_mask(mask: torch.Tensor | None, color: torch.Tensor) -> torch.Tensor:
        h, w = color.shape[-2:]
        if mask is None:
            return torch.ones(1, h // 8, w // 8, dtype=torch.bool, device=color.device)
        resized = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest")[0]
        return (resized[:, ::8, ::8] > 0.5).to(color.device)


def _as_mask(mask: Any, image: torch.Tensor, name: str) -> torch.Tensor | None:
    """A user mask → ``(H, W)`` bool CPU tensor of the image's size (``None`` stays ``None``)."""
    if mask is None:
        return None
    tensor = torch.as_tensor(mask).detach().cpu()
    if tensor.ndim == 3 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tuple(tensor.shape) != tuple(image.shape[-2:]):
        raise ValueError(f"{name}: expected an H×W mask of the image's size {tuple(image.shape[-2:])}, "
                         f"got {tuple(tensor.shape)}")
    return tensor.bool() if tensor.dtype == torch.bool else tensor > 0
