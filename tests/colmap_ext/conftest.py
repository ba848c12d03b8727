"""Fixtures of the COLMAP adapter's tests: the rendered motorcycle scene on disk and ground-truth dense
correspondences of it."""

from __future__ import annotations

from typing import Any

import pytest
from colmap_fixtures import scene_dir, scene_views
from colmap_helpers import dense_correspondences_of

from gim_plugins.datasets import scene

__all__ = ["dense_correspondences", "dense_views", "scene_dir", "scene_views"]


@pytest.fixture(scope="session")
def dense_views(scene_views: list[scene.SceneView]) -> list[scene.SceneView]:
    """5 views (left, three renders, right): enough to show cross-version compatibility, quick to map."""
    return [*scene_views[:4], scene_views[-1]]


@pytest.fixture(scope="session")
def dense_correspondences(dense_views: list[scene.SceneView]) -> Any:
    """Merged ground-truth dense correspondences of :func:`dense_views` (3000 matches per pair)."""
    return dense_correspondences_of(dense_views, num_matches=3000)
