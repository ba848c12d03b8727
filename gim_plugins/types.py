"""The result types every matcher returns, and the one pixel convention of the package.

Pixel convention (stated once, used everywhere inside ``gim_plugins``):
    A keypoint ``(x, y)`` is in pixels of the image **as it was given** to the matcher (never of an internal resized
    or padded copy), with the **centre of the top-left pixel at (0, 0)**. The pixel in column ``i`` and row ``j``
    covers ``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``. This is the convention of OpenCV keypoints, hloc, kornia's
    ALIKED/DISK and cvg's LightGlue.

    Conversions happen only at the edges: COLMAP (corner at 0) gets ``x + 0.5`` (``gim_plugins.colmap_ext``); GIM's
    original DKM/RoMa/SuperPoint outputs get ``- 0.5`` inside their wrappers. Those use the corner convention (the
    centre of the top-left pixel at (0.5, 0.5)): DKM and RoMa map their ``align_corners=False`` grid to pixels with
    ``(x_n + 1) / 2 · W``, and GIM's SuperPoint adds 0.5 to its integer detections. Resizing maps a point back with
    ``(x + 0.5) · s - 0.5`` here (as hloc does), where plain ``x · s`` is exact only in the corner convention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from gim_plugins.geometry import GeometryFit

__all__ = ["PIXEL_CONVENTION", "Features", "MatchResult"]

PIXEL_CONVENTION = "centre-at-integer"
"""Name of the package's pixel convention: the centre of the top-left pixel is (0, 0)."""


def _as_float_tensor(value: Any, name: str, ndim: int, last: int | None = None) -> torch.Tensor:
    import torch

    tensor = torch.as_tensor(value)
    if tensor.ndim != ndim or (last is not None and tensor.shape[-1] != last):
        shape = "(N, 2)" if last == 2 else ("(N,)" if ndim == 1 else f"(N, {last or 'D'})")
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(tensor.shape)}")
    return tensor.detach().to(device="cpu", dtype=torch.float32).contiguous()


def _check_size(size: Any, name: str) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"{name}: expected a positive (H, W), got {tuple(size)}")
    return h, w


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Correspondences between two images.

    Attributes:
        keypoints0: ``(N, 2)`` float32 CPU tensor, ``x, y`` in pixels of image 0 as given (centre of the top-left
            pixel at (0, 0)).
        keypoints1: ``(N, 2)`` float32, the matching points in image 1; row ``i`` matches row ``i`` of keypoints0.
        confidence: ``(N,)`` float32, the matcher's own score (certainty, dual-softmax or assignment probability).
        image_size0: ``(H, W)`` of image 0 as given.
        image_size1: ``(H, W)`` of image 1 as given.
        matcher: registry name of the matcher that produced the result.
        timing: seconds spent per stage (``"total"`` always present when produced by ``match``).
    """

    keypoints0: torch.Tensor
    keypoints1: torch.Tensor
    confidence: torch.Tensor
    image_size0: tuple[int, int]
    image_size1: tuple[int, int]
    matcher: str = ""
    timing: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k0 = _as_float_tensor(self.keypoints0, "keypoints0", 2, 2)
        k1 = _as_float_tensor(self.keypoints1, "keypoints1", 2, 2)
        conf = _as_float_tensor(self.confidence, "confidence", 1)
        if not (len(k0) == len(k1) == len(conf)):
            raise ValueError(
                f"keypoints0, keypoints1 and confidence must have the same length, got {len(k0)}, {len(k1)}, "
                f"{len(conf)}"
            )
        object.__setattr__(self, "keypoints0", k0)
        object.__setattr__(self, "keypoints1", k1)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "image_size0", _check_size(self.image_size0, "image_size0"))
        object.__setattr__(self, "image_size1", _check_size(self.image_size1, "image_size1"))
        object.__setattr__(self, "timing", dict(self.timing))

    def __len__(self) -> int:
        return int(self.keypoints0.shape[0])

    def __repr__(self) -> str:
        total = self.timing.get("total")
        timing = f", {total:.2f} s" if total is not None else ""
        return (
            f"MatchResult({len(self)} matches, matcher={self.matcher!r}, image_size0={self.image_size0}, "
            f"image_size1={self.image_size1}{timing})"
        )

    @classmethod
    def empty(cls, image_size0: tuple[int, int], image_size1: tuple[int, int], matcher: str = "") -> MatchResult:
        """A result with zero matches (typed empty tensors, never ``None``)."""
        import torch

        return cls(torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0), image_size0, image_size1, matcher)

    def numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keypoints0, keypoints1, confidence)`` as float32 numpy arrays."""
        return self.keypoints0.numpy(), self.keypoints1.numpy(), self.confidence.numpy()

    def select(self, mask: Any) -> MatchResult:
        """The subset of matches selected by a boolean mask or an index array."""
        import torch

        index = torch.as_tensor(mask)
        if index.dtype == torch.bool and index.shape != (len(self),):
            raise ValueError(f"mask: expected shape ({len(self)},), got {tuple(index.shape)}")
        return MatchResult(
            self.keypoints0[index],
            self.keypoints1[index],
            self.confidence[index],
            self.image_size0,
            self.image_size1,
            self.matcher,
            self.timing,
        )

    def with_timing(self, **timing: float) -> MatchResult:
        """A copy with ``timing`` entries added or replaced."""
        return MatchResult(
            self.keypoints0,
            self.keypoints1,
            self.confidence,
            self.image_size0,
            self.image_size1,
            self.matcher,
            {**self.timing, **timing},
        )

    def rescaled(self, scale0: tuple[float, float], scale1: tuple[float, float], image_size0: tuple[int, int],
                 image_size1: tuple[int, int]) -> MatchResult:
        """The result mapped from resized images back to the images they were resized from.

        Pixel edges scale, pixel centres do not: with the centre of the top-left pixel at (0, 0), a point ``x`` of a
        resized image is ``(x + 0.5) * s - 0.5`` in the original, where ``s`` is original size / resized size
        (:func:`gim_plugins.io.scale_keypoints`, the inverse of :func:`gim_plugins.io.resize_max_side`).

        Args:
            scale0: ``(sx, sy)`` from pixels of the resized image 0 to pixels of the original.
            scale1: ``(sx, sy)`` for image 1.
            image_size0: ``(H, W)`` of the original image 0 (the new ``image_size0``).
            image_size1: ``(H, W)`` of the original image 1.

        Returns:
            A result with the same matches, confidence, matcher and timing, in pixels of the original images.
        """
        from gim_plugins.io import scale_keypoints

        return MatchResult(
            scale_keypoints(self.keypoints0, scale0),
            scale_keypoints(self.keypoints1, scale1),
            self.confidence,
            image_size0,
            image_size1,
            self.matcher,
            self.timing,
        )

    def fundamental(self, threshold: float = 1.0, **kwargs: Any) -> GeometryFit:
        """Fit a fundamental matrix with OpenCV's USAC_MAGSAC; see :func:`gim_plugins.geometry.estimate_fundamental`."""
        from gim_plugins.geometry import estimate_fundamental

        return estimate_fundamental(self.keypoints0, self.keypoints1, threshold=threshold, **kwargs)

    def homography(self, threshold: float = 8.0, **kwargs: Any) -> GeometryFit:
        """Fit the homography mapping image 1 into image 0 (GIM's demo direction) with USAC_MAGSAC."""
        from gim_plugins.geometry import estimate_homography

        return estimate_homography(self.keypoints1, self.keypoints0, threshold=threshold, **kwargs)


@dataclass(frozen=True, eq=False)
class Features:
    """Local features of one image, for matchers that extract per image (the sparse half of a matcher).

    Attributes:
        keypoints: ``(N, 2)`` float32, pixels of the image as given, centre of the top-left pixel at (0, 0).
        descriptors: ``(N, D)`` float32.
        scores: ``(N,)`` float32 detection scores (ones for detectors that have none).
        image_size: ``(H, W)`` of the image as given.
        extractor: registry name of the matcher whose extractor produced the features; a matcher refuses features
            of another extractor.
    """

    keypoints: torch.Tensor
    descriptors: torch.Tensor
    scores: torch.Tensor
    image_size: tuple[int, int]
    extractor: str = ""

    def __post_init__(self) -> None:
        kp = _as_float_tensor(self.keypoints, "keypoints", 2, 2)
        desc = _as_float_tensor(self.descriptors, "descriptors", 2)
        scores = _as_float_tensor(self.scores, "scores", 1)
        if not (len(kp) == len(desc) == len(scores)):
            raise ValueError(
                f"keypoints, descriptors and scores must have the same length, got {len(kp)}, {len(desc)}, "
                f"{len(scores)}"
            )
        object.__setattr__(self, "keypoints", kp)
        object.__setattr__(self, "descriptors", desc)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "image_size", _check_size(self.image_size, "image_size"))

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    def __repr__(self) -> str:
        dim = self.descriptors.shape[1] if self.descriptors.ndim == 2 else 0
        return f"Features({len(self)} keypoints, dim={dim}, extractor={self.extractor!r}, image_size={self.image_size})"
