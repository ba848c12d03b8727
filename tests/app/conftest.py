"""Fixtures of the matcher page's tests: cheap registered test matchers, image files, the library's example counts."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch

from gim_plugins import registry
from gim_plugins.errors import InputError
from gim_plugins.models.base import BaseMatcher


class GridMatcher(BaseMatcher):
    """Matches a grid of points of image 0 to the same points moved by ``(dx, dy)`` in image 1 (a translation)."""

    name: ClassVar[str] = "app_test_grid"
    default_conf: ClassVar[dict] = {"dx": 2.0, "dy": 0.0, "step": 8, "flag": True, "mode": "grid", "extra": None,
                                    "size": (4, 4)}
    min_image_size: ClassVar[int] = 16

    def _init(self, conf):
        if conf.step <= 0:
            raise InputError(f"step must be positive, got {conf.step}")  # a user error, as the package's own checks
        self.scale = torch.nn.Parameter(torch.ones(1))

    def _match(self, image0, image1):
        h, w = image0.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(4, h - 4, self.conf.step), torch.arange(4, w - 4, self.conf.step),
                                indexing="ij")
        k0 = torch.stack([xs.flatten(), ys.flatten()], 1).float()
        k1 = k0 + torch.tensor([self.conf.dx, self.conf.dy])
        return self._result(k0, k1, torch.linspace(0.1, 1.0, len(k0)), image0, image1)


class NestedMatcher(GridMatcher):
    """A grid matcher whose options are nested, as a plugin's may be."""

    name: ClassVar[str] = "app_test_nested"
    default_conf: ClassVar[dict] = {"grid": {"step": 8, "offset": 0.5}, "dx": 2.0, "dy": 0.0}


class NeedsWeightsMatcher(GridMatcher):
    """A grid matcher that declares a registered weight file (missing in the tests' empty weight directories)."""

    name: ClassVar[str] = "app_test_weights"
    weight_names: ClassVar[tuple[str, ...]] = ("gim_lightglue_100h",)


@pytest.fixture
def test_matchers():
    """Register the test matchers for one test."""
    for cls in (GridMatcher, NestedMatcher, NeedsWeightsMatcher):
        registry.register_matcher(cls.name, cls, overwrite=True)
    yield
    for cls in (GridMatcher, NestedMatcher, NeedsWeightsMatcher):
        registry.unregister_matcher(cls.name)


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    """Point the weight search directories at an empty folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GIM_WEIGHTS_DIR", raising=False)


@pytest.fixture
def image_pair(tmp_path) -> tuple[Path, Path]:
    """Two 300×200 random RGB PNG files."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(2):
        path = tmp_path / f"random{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
        out.append(path)
    return out[0], out[1]


@pytest.fixture(scope="session")
def library_counts() -> tuple[int, int]:
    """(matches, inliers) of ``gim demo --matcher aliked_lightglue`` computed with the library itself.

    ``gim demo`` reads the motorcycle pair, matches it with ``load_matcher(...)`` and fits F at 1 px with USAC_MAGSAC.
    """
    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.matching import load_matcher, weights_available

    if not weights_available("aliked_lightglue"):
        pytest.skip("aliked_lightglue weights are not installed (`gim weights fetch aliked_lightglue`)")
    files = paths()
    result = load_matcher("aliked_lightglue").match(files["left"], files["right"])
    return len(result), result.fundamental(threshold=1.0).num_inliers
