"""Fixtures of the COLMAP tests: the rendered motorcycle scene on disk and the ground-truth dense matcher."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from colmap_helpers import GroundTruthDense, dense_correspondences_of

from gim_plugins.datasets import scene
from gim_plugins.registry import register_matcher, unregister_matcher


@pytest.fixture(scope="session")
def scene_views() -> list[scene.SceneView]:
    """8 views of the motorcycle scene: left, 6 renders, right (the default suite's size)."""
    return scene.render_motorcycle_scene(6, seed=0)


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory: pytest.TempPathFactory, scene_views: list[scene.SceneView]) -> Path:
    out = tmp_path_factory.mktemp("scene8") / "images"
    scene.write_scene(scene_views, out)
    return out


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


@pytest.fixture(scope="session")
def dense_views(scene_views: list[scene.SceneView]) -> list[scene.SceneView]:
    """5 views (left, three renders, right): enough to show cross-version compatibility, quick to map."""
    return [*scene_views[:4], scene_views[-1]]


@pytest.fixture(scope="session")
def dense_correspondences(dense_views: list[scene.SceneView]) -> Any:
    """Merged ground-truth dense correspondences of :func:`dense_views` (3000 matches per pair)."""
    return dense_correspondences_of(dense_views, num_matches=3000)
