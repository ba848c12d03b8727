"""Fixtures of the training-data tests (rendered motorcycle views are shared by the session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def motorcycle_views() -> list:
    """Three rendered views of the motorcycle scene with exact cameras and depth."""
    from gim_plugins.datasets import scene

    return scene.render_motorcycle_scene(3, include_real=False, appearance=0.5)


@pytest.fixture(scope="session")
def zeb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ZEB folder holding one MiniScene pair: the real Middlebury motorcycle pair with its calibration."""
    from gim_plugins.datasets import motorcycle

    root = tmp_path_factory.mktemp("zeb")
    folder = root / "miniscene"
    folder.mkdir()
    paths = motorcycle.paths()
    shutil.copy(paths["left"], folder / "motorcycle-left.png")
    shutil.copy(paths["right"], folder / "motorcycle-right.png")
    calibration = motorcycle.CALIBRATION
    T = np.eye(4)
    T[0, 3] = -calibration.baseline_mm / 1000.0  # the right camera sits baseline metres to the right
    numbers = [0.9, 0.9, *calibration.K("left").ravel(), *calibration.K("right").ravel(), *T.ravel()]
    line = " ".join(["left", "right", *(repr(float(v)) for v in numbers)])
    (folder / "motorcycle-left-right.txt").write_text(line + "\n")
    return root
