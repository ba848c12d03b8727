"""Helpers of the COLMAP tests: skip markers and a ground-truth dense matcher.

``GroundTruthDense`` stands in for a dense matcher (DKM/RoMa/LoFTR) so that the track-building path is tested
without any other branch's weights: for a pair it samples random sub-pixel points of image 0 that are visible in
image 1, maps them through the renderer's exact depth and poses, adds Gaussian noise and a share of outliers, and
returns them as a ``MatchResult`` — pair-specific points, exactly the property that breaks SfM with dense matchers.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import signal
import zlib
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from gim_plugins.colmap_ext import _pycolmap
from gim_plugins.conf import Conf
from gim_plugins.datasets import scene
from gim_plugins.models.base import BaseMatcher
from gim_plugins.types import MatchResult

requires_pycolmap = pytest.mark.skipif(
    not _pycolmap.available(),
    reason="pycolmap >= 4.2 is not installed")
requires_colmap = pytest.mark.skipif(shutil.which("colmap") is None, reason="the colmap program is not on PATH")


def _digest(image: torch.Tensor) -> str:
    pixels = (image.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()


class GroundTruthDense(BaseMatcher):
    """Dense-matcher stand-in driven by the scene's ground truth (views are registered in ``views``)."""

    name: ClassVar[str] = "gt_dense"
    default_conf: ClassVar[dict[str, Any]] = {"num_matches": 3000, "noise": 0.5, "outliers": 0.05, "seed": 0}
    views: ClassVar[dict[str, scene.SceneView]] = {}
    calls: ClassVar[int] = 0

    @classmethod
    def register_views(cls, views: list[scene.SceneView]) -> None:
        for view in views:
            cls.views[_digest(torch.from_numpy(view.image.copy()).permute(2, 0, 1).float() / 255.0)] = view

    def _init(self, conf: Conf) -> None:
        pass

    def _view(self, image: torch.Tensor) -> scene.SceneView:
        try:
            return self.views[_digest(image)]
        except KeyError:
            raise ValueError("gt_dense only matches registered scene views") from None

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        kill_after = os.environ.get("GIM_TEST_KILL_AFTER")  # simulate a run killed in the middle of matching
        if kill_after is not None:
            type(self).calls += 1
            if type(self).calls >= int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)
        view0, view1 = self._view(image0), self._view(image1)
        assert view0.depth is not None and view1.depth is not None
        rng = np.random.default_rng([self.conf.seed, zlib.crc32(view0.name.encode()), zlib.crc32(view1.name.encode())])
        rows, cols = np.nonzero(np.isfinite(view0.depth))
        pick = rng.choice(len(rows), min(len(rows), 4 * self.conf.num_matches), replace=False)
        rows, cols = rows[pick], cols[pick]
        k0 = np.stack([cols, rows], 1) + rng.uniform(-0.5, 0.5, (len(rows), 2))  # continuous, like a dense warp
        k1, z1 = view1.project(view0.backproject(k0, view0.depth[rows, cols]))
        height, width = view1.size
        with np.errstate(invalid="ignore"):
            inside = (k1[:, 0] > -0.5) & (k1[:, 0] < width - 0.5) & (k1[:, 1] > -0.5) & (k1[:, 1] < height - 0.5)
        col1 = np.clip(np.rint(np.nan_to_num(k1[:, 0])).astype(int), 0, width - 1)
        row1 = np.clip(np.rint(np.nan_to_num(k1[:, 1])).astype(int), 0, height - 1)
        with np.errstate(invalid="ignore"):
            visible = np.flatnonzero(inside & (np.abs(view1.depth[row1, col1] - z1) < 0.01 * z1))
        keep = visible[: self.conf.num_matches]
        k0, k1 = k0[keep], k1[keep] + rng.normal(0.0, self.conf.noise, (len(keep), 2))
        outlier = rng.random(len(k1)) < self.conf.outliers
        k1[outlier] = rng.uniform([0, 0], [width - 1, height - 1], (int(outlier.sum()), 2))
        k1 = np.clip(k1, [-0.5, -0.5], [width - 0.5, height - 0.5])
        scores = rng.uniform(0.5, 1.0, len(k0))
        return self._result(torch.from_numpy(k0).float(), torch.from_numpy(k1).float(),
                            torch.from_numpy(scores).float(), image0, image1)


def dense_raw(views: list[scene.SceneView], **conf: Any) -> dict[tuple[str, str], Any]:
    """Exhaustive ground-truth dense matches ``{(name0, name1): (k0, k1, scores)}`` of ``views``."""
    GroundTruthDense.register_views(views)
    matcher = GroundTruthDense(conf)
    return {(v0.name, v1.name): matcher.match(v0.image, v1.image).numpy()
            for v0, v1 in itertools.combinations(views, 2)}


def dense_correspondences_of(views: list[scene.SceneView], tracks_conf: Any = None, **conf: Any) -> Any:
    """Exhaustive ground-truth dense matches of ``views`` merged into tracks (no pipeline, no files)."""
    from gim_plugins.colmap_ext.tracks import build_correspondences

    return build_correspondences(dense_raw(views, **conf), {v.name: v.size for v in views}, tracks_conf)
