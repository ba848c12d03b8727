"""Fixtures of the reconstruction pipeline's tests: the rendered motorcycle scene (8 views, and the full 14 for the
slow tests) and the ground-truth dense matcher ``gt_dense``.

The scene fixtures and the test helpers (skip markers, ``GroundTruthDense``) are shared with the COLMAP adapter's
tests and live in ``tests/colmap_ext``, which is put on ``sys.path`` here (as pytest does for that folder's own
modules).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

COLMAP_TESTS = Path(__file__).resolve().parents[1] / "colmap_ext"
if str(COLMAP_TESTS) not in sys.path:
    sys.path.insert(0, str(COLMAP_TESTS))

from colmap_fixtures import scene_dir, scene_views  # noqa: E402
from colmap_helpers import GroundTruthDense  # noqa: E402

from gim_plugins.datasets import scene  # noqa: E402
from gim_plugins.registry import register_matcher, unregister_matcher  # noqa: E402

__all__ = ["COLMAP_TESTS", "gt_dense", "scene14_dir", "scene14_views", "scene_dir", "scene_views"]


@pytest.fixture(scope="session")
def scene14_views() -> list[scene.SceneView]:
    """The full 14-view scene: left, 12 renders, right."""
    return scene.render_motorcycle_scene(12, seed=0)


@pytest.fixture(scope="session")
def scene14_dir(tmp_path_factory: pytest.TempPathFactory, scene14_views: list[scene.SceneView]) -> Path:
    out = tmp_path_factory.mktemp("scene14") / "images"
    scene.write_scene(scene14_views, out)
    return out


@pytest.fixture
def gt_dense(scene_views: list[scene.SceneView], scene14_views: list[scene.SceneView]) -> Any:
    """``gt_dense`` registered as a matcher for the duration of a test."""
    GroundTruthDense.register_views(scene_views)
    GroundTruthDense.register_views(scene14_views)
    register_matcher("gt_dense", GroundTruthDense, overwrite=True)
    yield GroundTruthDense
    unregister_matcher("gt_dense")

