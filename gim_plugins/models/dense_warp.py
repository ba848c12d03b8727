"""What GIM's two dense-warp matchers (``gim_dkm``, ``gim_roma``) share around their networks.

Both follow the same recipe in GIM's code (``demo.py``, ``trainer/lightning.py``): centre-pad each image to the
network's aspect, ``model.match`` for a dense warp and certainty, ``model.sample`` for balanced matches, then
normalised coordinates → pixels with GIM's filters. :class:`WarpSamplingMatcher` is that recipe once; a subclass
supplies the network (:meth:`WarpSamplingMatcher.dense` and :meth:`~WarpSamplingMatcher.dense_canvases`) and its
options.

Batching: both networks resize every input to one fixed canvas (``h×w``, then ``upsample_res``), so the canvases of
P pairs stack into one forward pass. A pair is split into CPU work (:meth:`~WarpSamplingMatcher.prepare_pair`:
decode, pad, resize to the canvases, near-black mask; thread-safe, so background workers can run it, with pinned
memory when the network is on CUDA) and network work (:meth:`~WarpSamplingMatcher.match_prepared`: one forward pass
for the whole batch, then sampling per pair with the pair's own seeded generator). Each pair's result equals its
unbatched result within float rounding: the batch items never mix (the GP's per-pair inverse, per-item refiners and
batch norm in eval mode). ``match(image0, image1)`` is the batch of one. :mod:`gim_plugins.models.batching` chooses
the batch size and runs the workers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from gim_plugins.conf import Conf
from gim_plugins.io import ImageInput, to_image_tensor
from gim_plugins.models._arch.dkm import canvases
from gim_plugins.models._arch.dkm_sampling import balanced_sample
from gim_plugins.models.base import BaseMatcher
from gim_plugins.types import MatchResult

__all__ = ["PreparedPair", "WarpSamplingMatcher", "matches_to_keypoints", "padding_to_aspect"]


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


class WarpSamplingMatcher(BaseMatcher):
    """A matcher whose network gives a dense warp and certainty that GIM's balanced sampler turns into matches.

    The subclass's conf must have ``h``, ``w``, ``pad_to_aspect``, ``upsample_res``, ``num_samples``,
    ``sample_thresh``, ``seed``, ``kde_chunk``, ``bounds_filter``, ``drop_zero_confidence`` and
    ``max_image_pixels``; it implements :meth:`dense`. Keypoints come back in the package convention (GIM's
    corner-convention coordinates − ``gim_keypoint_offset``).
    """

    gim_keypoint_offset: ClassVar[float] = 0.5
    normalised_output: ClassVar[bool] = True  # the warp of GIM's ``model.match`` is in [-1, 1] over the input
    kde_dtype: ClassVar[torch.dtype | None] = None
    """dtype of the sampling KDE (``None``: the warp's); GIM's RoMa computes it in float16."""

    def _check_sampling_conf(self, conf: Conf) -> None:
        """Validate the shared options ``upsample_res``, ``num_samples`` and ``max_image_pixels`` (from ``_init``)."""
        if conf.upsample and (len(conf.upsample_res) != 2 or min(conf.upsample_res) < 32):
            raise ValueError(f"{self.name}: upsample_res must be (h, w) with both ≥ 32, got {conf.upsample_res!r}")
        if not isinstance(conf.num_samples, int) or conf.num_samples <= 0:
            raise ValueError(f"{self.name}: num_samples must be a positive int, got {conf.num_samples!r}")
        if conf.max_image_pixels is not None and conf.max_image_pixels <= 0:
            raise ValueError(f"{self.name}: max_image_pixels must be positive or None, got {conf.max_image_pixels!r}")

    def dense(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GIM's ``model.match``: the dense warp and certainty of two ``(1, 3, H, W)`` (already padded) images."""
        raise NotImplementedError

    def _check_size(self, image: torch.Tensor, label: str) -> None:
        limit = self.conf.max_image_pixels
        height, width = image.shape[-2:]
        if limit is not None and height * width > limit:
            raise ValueError(
                f"{label}: {width}×{height} px ({height * width / 1e6:.1f} MP) exceeds {self.name}'s "
                f"max_image_pixels = {limit / 1e6:.1f} MP (about {28 * height * width / 2**30:.1f} GiB for the float "
                f"input and its padded copy). Downscale it (the network sees {self.conf.w}×{self.conf.h} and "
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
                               generator=generator, chunk=self.conf.kde_chunk, kde_dtype=self.kde_dtype)

    # ------------------------------------------------------------------------------------------ batched matching

    supports_batching: ClassVar[bool] = True

    def dense_canvases(self, coarse: torch.Tensor, fine: torch.Tensor | None,
                       black: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on the canvases of P pairs (``[A_1 … A_P; B_1 … B_P]``, see
        :func:`gim_plugins.models._arch.dkm.canvases`): ``(P, H_o, 2·W_o, 4)`` warps and ``(P, H_o, 2·W_o)``
        certainties."""
        raise NotImplementedError

    def _canvas_args(self) -> tuple[tuple[int, int], tuple[int, int] | None, float | None]:
        conf = self.conf
        return ((conf.h, conf.w), tuple(conf.upsample_res) if conf.upsample else None,
                conf.get("black_threshold"))

    def _prepare(self, image0: torch.Tensor, image1: torch.Tensor) -> PreparedPair:
        self._check_size(image0, "image0")
        self._check_size(image1, "image1")
        padded0, pad0 = self._pad(image0[None])
        padded1, pad1 = self._pad(image1[None])
        size, upsample_res, black_threshold = self._canvas_args()
        coarse, fine, black = canvases(padded0, padded1, size, upsample_res, black_threshold)
        return PreparedPair(coarse, fine, black, (tuple(padded0.shape[-2:]), tuple(padded1.shape[-2:])),
                            (pad0, pad1), (tuple(image0.shape[-2:]), tuple(image1.shape[-2:])))

    def prepare_pair(self, image0: ImageInput, image1: ImageInput) -> PreparedPair:
        """The CPU work of matching one pair: decode, pad, resize to the network's canvases, near-black mask.

        Thread-safe and independent of the network, so background workers run it while the network matches the
        previous batch (on CUDA :meth:`match_prepared` then assembles the batch in pinned memory and copies it
        asynchronously).
        """
        im0 = to_image_tensor(image0, "image0", self.min_image_size)
        im1 = to_image_tensor(image1, "image1", self.min_image_size)
        with torch.inference_mode():
            return self._prepare(im0, im1)

    def match_prepared(self, prepared: Sequence[Any]) -> list[MatchResult]:
        """Match the pairs of :meth:`prepare_pair` in one forward pass; one result per pair, in order.

        Every result equals ``match`` of that pair alone within float rounding; ``timing`` holds the pair's share of
        the batch's network time (``dense``), its own sampling time and the batch size (``batch``).
        """
        if not prepared:
            return []
        device = self.device
        start = time.perf_counter()
        with torch.inference_mode():
            coarse = _stack([p.coarse for p in prepared], device)
            fine = None if prepared[0].fine is None else _stack([p.fine for p in prepared], device)
            black = None if prepared[0].black is None else _stack([p.black for p in prepared], device)
            warps, certainties = self.dense_canvases(coarse, fine, black)
            del coarse, fine, black
            dense_seconds = (time.perf_counter() - start) / len(prepared)
            results = [self._sample_result(pair, warp, certainty, dense_seconds)
                       for pair, warp, certainty in zip(prepared, warps, certainties)]
        return [r.with_timing(total=r.timing["dense"] + r.timing["sample"], batch=float(len(prepared)))
                for r in results]

    def _sample_result(self, pair: PreparedPair, warp: torch.Tensor, certainty: torch.Tensor,
                       dense_seconds: float) -> MatchResult:
        start = time.perf_counter()
        if not bool(torch.isfinite(certainty).all()):
            raise RuntimeError(f"{self.name} produced non-finite certainties (NaN/inf): the weights do not come from "
                               "a trained network or overflow float32; check the weight files")
        matches, confidence = self.sample(warp, certainty)
        k0, k1, confidence = matches_to_keypoints(
            matches, confidence, pair.padded_sizes, pair.pads, pair.sizes,
            bounds_filter=self.conf.bounds_filter, drop_zero_confidence=self.conf.drop_zero_confidence)
        result = MatchResult((k0 - self.gim_keypoint_offset).cpu(), (k1 - self.gim_keypoint_offset).cpu(),
                             confidence.float().cpu(), pair.sizes[0], pair.sizes[1], self.name)
        sampled = time.perf_counter() - start
        return result.with_timing(dense=dense_seconds, sample=sampled)

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        self._check_size(image0, "image0")
        self._check_size(image1, "image1")
        device = self.device
        start = time.perf_counter()
        padded0, pad0 = self._pad(image0.to(device)[None])
        padded1, pad1 = self._pad(image1.to(device)[None])
        pair = PreparedPair(None, None, None, (padded0.shape[-2:], padded1.shape[-2:]), (pad0, pad1),
                            (tuple(image0.shape[-2:]), tuple(image1.shape[-2:])))
        warp, certainty = self.dense(padded0, padded1)
        del padded0, padded1
        return self._sample_result(pair, warp, certainty, time.perf_counter() - start)


@dataclass(frozen=True, eq=False)
class PreparedPair:
    """A pair ready for the network (:meth:`WarpSamplingMatcher.prepare_pair`).

    Attributes:
        coarse: ``(2, 3, h, w)`` both padded images resized to the coarse canvas.
        fine: ``(2, 3, H_o, W_o)`` the same at ``upsample_res``, or ``None`` without the refinement pass.
        black: ``(2, H_o, W_o)`` bool near-black pixels, or ``None`` without ``black_threshold``.
        padded_sizes: ``(H, W)`` of each padded image.
        pads: ``(left, top)`` padding of each image.
        sizes: ``(H, W)`` of each image as given.
    """

    coarse: torch.Tensor | None
    fine: torch.Tensor | None
    black: torch.Tensor | None
    padded_sizes: tuple[Any, Any]
    pads: tuple[tuple[int, int], tuple[int, int]]
    sizes: tuple[Any, Any]


def _stack(parts: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """``[A_1 … A_P; B_1 … B_P]`` on ``device`` from per-pair ``(2, …)`` tensors; for CUDA the batch is assembled
    in pinned memory (torch's caching host allocator) and copied asynchronously."""
    items = [p[0:1] for p in parts] + [p[1:2] for p in parts]
    if device.type != "cuda" or parts[0].device.type != "cpu":
        return torch.cat(items).to(device)
    shape = (len(items), *parts[0].shape[1:])
    batch = torch.empty(shape, dtype=parts[0].dtype, pin_memory=True)
    torch.cat(items, out=batch)
    return batch.to(device, non_blocking=True)
