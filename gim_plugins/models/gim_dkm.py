"""GIM-DKM: DKMv3 trained by GIM on 100 h of internet video (ZEB mean AUC@5 51.2), as a dense matcher.

Inference follows GIM exactly (gim-spec.md §3): RGB in [0, 1] without ImageNet normalisation, centred zero padding to
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

import time
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from gim_plugins.conf import Conf
from gim_plugins.models._arch.dkm import BLACK_THRESHOLD, DKMv3
from gim_plugins.models._arch.dkm_sampling import balanced_sample
from gim_plugins.models.base import BaseMatcher
from gim_plugins.types import MatchResult

__all__ = ["GIMDKM", "PRESETS", "matches_to_keypoints", "padding_to_aspect", "remap_gim_dkm"]

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
    if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], Mapping):
        checkpoint = checkpoint["state_dict"]
    out: dict[str, torch.Tensor] = {}
    for raw_key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"gim_dkm checkpoint: {raw_key!r} is a {type(value).__name__}, not a tensor")
        key = raw_key.removeprefix("model.")
        if key.startswith(FC_PREFIX):
            continue
        if key in out:
            raise ValueError(f"gim_dkm checkpoint: both {key!r} and 'model.{key}' are present")
        out[key] = value
    return out


def padding_to_aspect(height: int, width: int, h: int, w: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` zero padding that centres an image in the aspect ``w:h`` (GIM's
    ``tools.get_padding_size``, same integer arithmetic)."""
    aspect = w / h
    new_width = max(width, int(height * aspect))
    new_height = max(height, int(width / aspect))
    pad_h, pad_w = new_height - height, new_width - width
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


def matches_to_keypoints(
    matches: torch.Tensor, confidence: torch.Tensor, padded_sizes: tuple[Any, Any], pads: tuple[Any, Any],
    sizes: tuple[Any, Any], *, bounds_filter: bool, drop_zero_confidence: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GIM's conversion of sampled normalised matches to pixel keypoints (corner convention, as GIM reports them).

    ``x = W_pad · (x_n + 1) / 2 − pad_left`` (same for y), then optionally GIM's filters: confidence > 0 (hloc, ZEB)
    and ``0 < x ≤ W − 1``, ``0 < y ≤ H − 1`` in both images (demo, hloc).

    Args:
        matches: ``(K, 4)`` normalised ``(x_A, y_A, x_B, y_B)``.
        confidence: ``(K,)``.
        padded_sizes: ``(H, W)`` of the two padded images the network saw.
        pads: ``(left, top)`` padding of each image.
        sizes: ``(H, W)`` of each image before padding.
        bounds_filter: apply the in-image filter.
        drop_zero_confidence: drop matches with zero confidence.

    Returns:
        ``(keypoints0, keypoints1, confidence)``, keypoints in GIM's corner convention.
    """
    keypoints = []
    for (h, w), (left, top), offset in zip(padded_sizes, pads, (0, 2)):
        xy = torch.stack((w * (matches[:, offset] + 1) / 2, h * (matches[:, offset + 1] + 1) / 2), dim=-1)
        keypoints.append(xy - xy.new_tensor((left, top)))
    keep = torch.ones(len(confidence), dtype=torch.bool, device=confidence.device)
    if drop_zero_confidence:
        keep &= confidence > 0
    if bounds_filter:
        for xy, (h, w) in zip(keypoints, sizes):
            keep &= (xy[:, 0] > 0) & (xy[:, 1] > 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] <= h - 1)
    return keypoints[0][keep], keypoints[1][keep], confidence[keep]


def _describe_keys(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown}, … ({len(keys)} in all)" if len(keys) > limit else shown


class GIMDKM(BaseMatcher):
    """GIM's DKMv3 dense matcher (``gim_dkm``); options in :attr:`default_conf`, named setups in :data:`PRESETS`."""

    name: ClassVar[str] = "gim_dkm"
    default_conf: ClassVar[dict[str, Any]] = {
        **PRESETS["gim_dkm-demo"],
        "sample_thresh": 0.05,  # certainty above which all matches weigh the same in the first draw
        "black_threshold": BLACK_THRESHOLD,  # None: no near-black masking
        "faithful_gp": True,  # keep the original GP's sigma_noise slice behaviour (the weights were trained with it)
        "precision": "fp32",  # "fp32" or "bf16" (encoder, DFN and refiners in bfloat16 autocast; GP in fp32)
        "seed": None,  # int: every match() draws its samples from a generator seeded with it (reproducible)
        "kde_chunk": 2048,  # rows of the sampling KDE computed at once
        "max_image_pixels": 64_000_000,  # larger inputs are refused (memory: see the module docstring)
    }
    weight_names: ClassVar[tuple[str, ...]] = (WEIGHT_NAME,)
    min_image_size: ClassVar[int] = 32
    gim_keypoint_offset: ClassVar[float] = 0.5
    zeb_rescale: ClassVar[str] = "canvas"
    """GIM's ZEB maps DKM's normalised coordinates over the whole input canvas to the original size (see zeb)."""

    def _init(self, conf: Conf) -> None:
        for key in ("h", "w"):
            if not isinstance(conf[key], int) or conf[key] < 32:
                raise ValueError(f"gim_dkm: {key} must be an int ≥ 32 (one stride-32 cell), got {conf[key]!r}")
        if conf.upsample and (len(conf.upsample_res) != 2 or min(conf.upsample_res) < 32):
            raise ValueError(f"gim_dkm: upsample_res must be (h, w) with both ≥ 32, got {conf.upsample_res!r}")
        if not isinstance(conf.num_samples, int) or conf.num_samples <= 0:
            raise ValueError(f"gim_dkm: num_samples must be a positive int, got {conf.num_samples!r}")
        if conf.precision not in PRECISIONS:
            raise ValueError(f"gim_dkm: precision must be one of {', '.join(PRECISIONS)}, got {conf.precision!r}")
        if conf.max_image_pixels is not None and conf.max_image_pixels <= 0:
            raise ValueError(f"gim_dkm: max_image_pixels must be positive or None, got {conf.max_image_pixels!r}")
        self.net = DKMv3()

    def _load_state_dicts(self, state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        state_dict = remap_gim_dkm(state_dicts[WEIGHT_NAME])
        expected = self.net.state_dict()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        wrong = [f"{k} {tuple(state_dict[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
                 if k in state_dict and state_dict[k].shape != v.shape]
        if missing or unexpected or wrong:
            parts = [f"missing keys: {_describe_keys(missing)}" if missing else "",
                     f"unexpected keys: {_describe_keys(unexpected)}" if unexpected else "",
                     f"wrong shapes: {_describe_keys(wrong)}" if wrong else ""]
            raise ValueError("checkpoint does not fit gim_dkm (DKMv3); " + "; ".join(p for p in parts if p))
        self.net.load_state_dict(state_dict, strict=True)

    # ------------------------------------------------------------------------------------------------- matching

    def _check_size(self, image: torch.Tensor, label: str) -> None:
        limit = self.conf.max_image_pixels
        height, width = image.shape[-2:]
        if limit is not None and height * width > limit:
            raise ValueError(
                f"{label}: {width}×{height} px ({height * width / 1e6:.1f} MP) exceeds gim_dkm's max_image_pixels "
                f"= {limit / 1e6:.1f} MP (about {28 * height * width / 2**30:.1f} GiB for the float input and its "
                f"padded copy). Downscale it (the network sees {self.conf.w}×{self.conf.h} and "
                f"{self.conf.upsample_res[1]}×{self.conf.upsample_res[0]} px anyway) or raise max_image_pixels."
            )

    def _pad(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Centre-pad a ``(1, 3, H, W)`` image to the network aspect when configured; returns it and (left, top)."""
        if not self.conf.pad_to_aspect:
            return image, (0, 0)
        left, right, top, bottom = padding_to_aspect(*image.shape[-2:], self.conf.h, self.conf.w)
        if left == right == top == bottom == 0:
            return image, (0, 0)
        return F.pad(image, (left, right, top, bottom)), (left, top)

    def dense(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GIM's ``model.match``: the dense warp and certainty of two ``(1, 3, H, W)`` (already padded) images."""
        conf = self.conf
        return self.net.dense_match(
            image0, image1, size=(conf.h, conf.w), upsample_res=tuple(conf.upsample_res) if conf.upsample else None,
            faithful_gp=conf.faithful_gp, black_threshold=conf.black_threshold, dtype=PRECISIONS[conf.precision])

    def sample(self, warp: torch.Tensor, certainty: torch.Tensor,
               num: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """GIM's ``model.sample``: balanced sampling of ``num`` (default ``num_samples``) matches.

        With ``seed`` set, the draws come from a generator seeded with it (the same stream as
        ``torch.manual_seed(seed)`` on the CPU), so a call is reproducible.
        """
        generator = None
        if self.conf.seed is not None:
            generator = torch.Generator(device=warp.device).manual_seed(int(self.conf.seed))
        return balanced_sample(warp, certainty, num or self.conf.num_samples, threshold=self.conf.sample_thresh,
                               generator=generator, chunk=self.conf.kde_chunk)

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        self._check_size(image0, "image0")
        self._check_size(image1, "image1")
        device = self.device
        start = time.perf_counter()
        padded0, (left0, top0) = self._pad(image0.to(device)[None])
        padded1, (left1, top1) = self._pad(image1.to(device)[None])
        padded_sizes = (padded0.shape[-2:], padded1.shape[-2:])
        warp, certainty = self.dense(padded0, padded1)
        del padded0, padded1
        dense_done = time.perf_counter()
        matches, confidence = self.sample(warp, certainty)
        del warp, certainty
        sampled = time.perf_counter()
        k0, k1, confidence = matches_to_keypoints(
            matches, confidence, padded_sizes, ((left0, top0), (left1, top1)), (image0.shape[-2:], image1.shape[-2:]),
            bounds_filter=self.conf.bounds_filter, drop_zero_confidence=self.conf.drop_zero_confidence)
        result = self._result((k0 - self.gim_keypoint_offset).cpu(), (k1 - self.gim_keypoint_offset).cpu(),
                              confidence.float().cpu(), image0, image1)
        return result.with_timing(dense=dense_done - start, sample=sampled - dense_done)
