"""Fixtures of the training-data tests (rendered motorcycle views are shared by the session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def motorcycle_views() -> list:
    """Three rendered views of the motorcycle scene with exact cameras and depth."""
    from gim_plugins.datasets import scene

    return scene.render_motorcycle_scene(3, include_real=False, appearance=0.5)
