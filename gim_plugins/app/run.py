"""One request of the page: two image files in; counts, stage times, keypoints and the two pictures out.

It follows ``gim match``: decode with :func:`gim_plugins.io.read_image`, optionally downscale to a maximum side
(keypoints mapped back to the original pixels), match, fit the robust model with USAC_MAGSAC, and draw the match
and warp pictures of :mod:`gim_plugins.viz`. With the same matcher, options and threshold, the counts are those of
``gim match`` on the same files.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.app.cache import MatcherCache
from gim_plugins.app.core import DEFAULT_MAX_PIXELS, WARP_THRESHOLD, check_device, check_request, probe_image
from gim_plugins.conf import merge_conf, to_plain
from gim_plugins.registry import get_matcher_class

__all__ = ["AppResult", "run_match"]


@dataclass
class AppResult:
    """One request's output.

    Keypoints are in pixels of the images as uploaded (the package's centre-at-integer convention), whatever
    downscaling was applied for matching. ``model`` is the fitted 3×3 matrix (``None`` when no model could be fitted).
    ``timing`` holds seconds per stage: ``decode``, ``load`` (0 when the matcher was cached), ``match``,
    ``robust fit``, ``drawing``.
    """

    matcher: str
    keypoints0: np.ndarray
    keypoints1: np.ndarray
    confidence: np.ndarray
    inliers: np.ndarray
    robust: str
    threshold: float
    model: np.ndarray | None
    image_size0: tuple[int, int]
    image_size1: tuple[int, int]
    match_picture: np.ndarray
    warp_picture: np.ndarray
    timing: dict[str, float]
    conf: dict[str, Any] = field(default_factory=dict)
    weights: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def num_matches(self) -> int:
        """Number of matches."""
        return len(self.keypoints0)

    @property
    def num_inliers(self) -> int:
        """Number of matches consistent with the fitted model."""
        return int(np.count_nonzero(self.inliers))


def _to_small(matrix: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """The affine map from original to downscaled pixels (centre convention: ``x / s + (0.5 / s - 0.5)``)."""
    sx, sy = scale
    return np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]]) @ matrix


def run_match(
    cache: MatcherCache,
    image0: str | Path | None,
    image1: str | Path | None,
    *,
    matcher: str,
    options: Mapping[str, Any] | None = None,
    weights: str | None = None,
    device: str = "cpu",
    robust: str = "fundamental",
    threshold: float = 1.0,
    max_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> AppResult:
    """Match two image files as ``gim match`` does and draw its two pictures.

    Args:
        cache: where the matcher is taken from (built on first use).
        image0: the first image file.
        image1: the second image file.
        matcher: a registered matcher name.
        options: the matcher's options as :func:`parse_options` returns them.
        weights: a checkpoint file or weight name (``None``: the matcher's registered weights).
        device: ``cpu`` or ``cuda:N``.
        robust: ``"fundamental"`` or ``"homography"``: the model whose inliers are counted.
        threshold: its inlier threshold in pixels (the warp picture uses a homography at 8 px when ``robust`` is F).
        max_side: downscale images whose long side is larger before matching (``None``: match at full size).
        max_pixels: refuse images with more pixels (checked from the header, before decoding).

    Raises:
        UserError: bad options or inputs, missing weights (``FileNotFoundError`` naming the ``gim weights`` command).
    """
    from gim_plugins.io import read_image, resize_max_side, to_image_tensor
    from gim_plugins.viz import draw_matches, draw_warp

    cls = get_matcher_class(matcher)
    threshold, max_side = check_request(robust, threshold, max_side, cls.min_image_size)
    device = check_device(device)
    merge_conf(cls.default_conf, options, owner=f"matcher {matcher!r}")
    sizes = [probe_image(path, label, max_pixels) for path, label in ((image0, "image0"), (image1, "image1"))]
    timing: dict[str, float] = {}
    notes: list[str] = []

    start = time.perf_counter()
    full = [to_image_tensor(read_image(path), label, cls.min_image_size)  # paths checked by probe_image
            for path, label in ((image0, "image0"), (image1, "image1"))]
    small, scales = zip(*(resize_max_side(im, max_side) for im in full))
    for label, (width, height), im in zip(("image0", "image1"), sizes, small):
        if tuple(im.shape[-2:]) != (height, width):
            notes.append(f"{label} downscaled from {width}×{height} to {im.shape[-1]}×{im.shape[-2]} px for matching")
    timing["decode"] = time.perf_counter() - start

    start = time.perf_counter()
    loads = cache.loads
    model = cache.get(matcher, options, weights, device)
    timing["load"] = time.perf_counter() - start if cache.loads != loads else 0.0

    start = time.perf_counter()
    result = model.match(small[0], small[1])
    timing["match"] = time.perf_counter() - start
    k0_small, k1_small, confidence = (a.copy() for a in result.numpy())
    resized = scales != ((1.0, 1.0), (1.0, 1.0))
    # mapped back exactly as match_pair(max_size=) does; unscaled keypoints stay bit-identical to the matcher's
    if resized:
        k0, k1, _ = result.rescaled(scales[0], scales[1], tuple(full[0].shape[-2:]), tuple(full[1].shape[-2:])).numpy()
    else:
        k0, k1 = k0_small, k1_small

    from gim_plugins.geometry import estimate_fundamental, estimate_homography

    start = time.perf_counter()
    if robust == "fundamental":
        fit = estimate_fundamental(k0, k1, threshold=threshold)
        warp = estimate_homography(k1, k0, threshold=WARP_THRESHOLD).model
    else:
        fit = estimate_homography(k1, k0, threshold=threshold)
        warp = fit.model
    timing["robust fit"] = time.perf_counter() - start

    start = time.perf_counter()
    if warp is not None and resized:
        warp = _to_small(warp, scales[0]) @ np.linalg.inv(_to_small(np.eye(3), scales[1]))
    match_picture = draw_matches(small[0].numpy(), small[1].numpy(), k0_small, k1_small, fit.inliers)
    warp_picture = draw_warp(small[0].numpy(), small[1].numpy(), warp)
    timing["drawing"] = time.perf_counter() - start

    return AppResult(
        matcher=model.name or matcher, keypoints0=k0, keypoints1=k1, confidence=confidence, inliers=fit.inliers,
        robust=robust, threshold=threshold, model=fit.model, image_size0=(sizes[0][1], sizes[0][0]),
        image_size1=(sizes[1][1], sizes[1][0]), match_picture=match_picture, warp_picture=warp_picture,
        timing=timing, conf=to_plain(model.conf), weights=str(getattr(model, "weights_id", "")), notes=notes,
    )
