"""The rendered motorcycle scene as fixtures, shared by the COLMAP adapter's tests (this folder's conftest) and the
reconstruction pipeline's tests (``tests/reconstruct/conftest.py``), which import them from here."""

from __future__ import annotations

from pathlib import Path

import pytest

from gim_plugins.datasets import scene

__all__ = ["scene_dir", "scene_views"]


@pytest.fixture(scope="session")
def scene_views() -> list[scene.SceneView]:
    """8 views of the motorcycle scene: left, 6 renders, right (the default suite's size)."""
    return scene.render_motorcycle_scene(6, seed=0)


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory: pytest.TempPathFactory, scene_views: list[scene.SceneView]) -> Path:
    out = tmp_path_factory.mktemp("scene8") / "images"
    scene.write_scene(scene_views, out)
    return out
