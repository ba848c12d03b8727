"""Correspondences between two images for dense triangulation, from any registered matcher.

* Dense-warp matchers (``gim_dkm``, ``gim_roma``: every :class:`~gim_plugins.models.dense_warp.WarpSamplingMatcher`)
  give a warp and a certainty for every pixel of their output grid, in both directions. Their own ``match`` draws
  only ``num_samples`` (5000) of them with a kernel density estimate that grows with the square of the number drawn;
  here the warp itself is read instead: every grid cell with a certainty of at least ``min_certainty``, at most
  ``max_matches`` of them (a seeded random subset), mapped to pixels exactly as the matcher maps its samples.
* Sparse matchers (``aliked_lightglue``, ``root_sift``, ``gim_lightglue``) match cached per-image features, each
  image extracted once: the reconstruction's ``features.h5`` when it holds this matcher's features (same
  configuration), else ``dense/features.h5``. What they give is *sparse-derived*: a few
  thousand points per pair, on the detector's keypoints.
* Any other matcher (``gim_loftr``, plug-ins) is called through its ``match``.

Keypoints come back in the package pixel convention (centre of the top-left pixel at (0, 0)).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PairMatcher"]


class PairMatcher:
    """Matches image pairs by name for the dense step.

    Args:
        matcher: a loaded matcher (:func:`gim_plugins.matching.load_matcher`).
        image_dir: the folder the names are relative to.
        feature_files: HDF5 feature caches of sparse matchers: the first existing one that holds this matcher's
            features is used, else the last one (created, or replaced if it holds another configuration's).
        max_matches: dense warps: the most correspondences kept per pair.
        min_certainty: dense warps: the least certainty kept.
        seed: dense warps: seed of the subset drawn when more than ``max_matches`` cells pass.
    """

    def __init__(self, matcher: Any, image_dir: Path, feature_files: Sequence[Path], *, max_matches: int,
                 min_certainty: float, seed: int = 0) -> None:
        from gim_plugins.models.dense_warp import WarpSamplingMatcher

        self.matcher = matcher
        self.image_dir = Path(image_dir)
        self.max_matches = int(max_matches)
        self.min_certainty = float(min_certainty)
        self.seed = int(seed)
        self.kind = ("sparse" if matcher.is_sparse else
                     "dense-warp" if isinstance(matcher, WarpSamplingMatcher) else "matcher")
        self._cache = None
        if self.kind == "sparse":
            from gim_plugins.features import FeatureCache

            *shared, own = feature_files
            for path in shared:
                if not Path(path).is_file():
                    continue
                try:
                    self._cache = FeatureCache(matcher, path)
                    return
                except (ValueError, OSError):  # another configuration's features, or unreadable: not ours to touch
                    continue
            self._cache = FeatureCache(matcher, own, overwrite=True)

    def __call__(self, name0: str, name1: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(k0 (N, 2), k1 (N, 2), confidence (N,))`` float64 pixels of the two images, package convention."""
        path0, path1 = self.image_dir / name0, self.image_dir / name1
        if self._cache is not None:
            result = self._cache.match(name0, name1, path0, path1)
        elif self.kind == "dense-warp":
            return self._warp(path0, path1)
        else:
            result = self.matcher.match(path0, path1)
        k0, k1, confidence = result.numpy()
        return k0.astype(np.float64), k1.astype(np.float64), confidence.astype(np.float64)

    def _warp(self, path0: Path, path1: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The matcher's dense warp (both directions), filtered by certainty and subsampled."""
        import torch
        import torch.nn.functional as F

        from gim_plugins.io import to_image_tensor
        from gim_plugins.models.dense_warp import matches_to_keypoints, padding_to_aspect

        matcher, conf = self.matcher, self.matcher.conf
        images = [to_image_tensor(p, f"image{i}", matcher.min_image_size) for i, p in enumerate((path0, path1))]
        padded, pads = [], []
        for image in images:
            batch = image.to(matcher.device)[None]
            left, right, top, bottom = (padding_to_aspect(*image.shape[-2:], conf.h, conf.w) if conf.pad_to_aspect
                                        else (0, 0, 0, 0))
            padded.append(F.pad(batch, (left, right, top, bottom)) if left or right or top or bottom else batch)
            pads.append((left, top))
        with torch.inference_mode():
            warp, certainty = matcher.dense(padded[0], padded[1])
        matches, certainty = warp.reshape(-1, 4).float().cpu(), certainty.reshape(-1).float().cpu()
        keep = torch.isfinite(certainty) & (certainty >= self.min_certainty)
        k0, k1, confidence = matches_to_keypoints(
            matches[keep], certainty[keep], (padded[0].shape[-2:], padded[1].shape[-2:]), tuple(pads),
            (images[0].shape[-2:], images[1].shape[-2:]), bounds_filter=True, drop_zero_confidence=True)
        if len(k0) > self.max_matches:  # inside both images first, then the subset: max_matches when there are
            generator = torch.Generator().manual_seed(self.seed)
            pick = torch.randperm(len(k0), generator=generator)[: self.max_matches]
            k0, k1, confidence = k0[pick], k1[pick], confidence[pick]
        offset = matcher.gim_keypoint_offset
        return ((k0 - offset).double().numpy(), (k1 - offset).double().numpy(), confidence.double().numpy())
