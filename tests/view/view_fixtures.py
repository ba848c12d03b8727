"""A small reconstruction folder for the view's tests (fixture ``recon_dir``, registered by this folder's conftest),
made without running SfM: the motorcycle scene's exact model
(4 views: the two real photos and two renders) as COLMAP text files, a dense cloud sampled from the true surface
coloured by the left photo, a ZEB report and ``gim video walk`` pictures at their known places."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

RECONSTRUCT_TESTS = Path(__file__).resolve().parents[1] / "reconstruct"
if str(RECONSTRUCT_TESTS) not in sys.path:
    sys.path.insert(0, str(RECONSTRUCT_TESTS))

from dense_helpers import write_truth_model  # noqa: E402

from gim_plugins.colmap_ext.ply import PointCloud, write_ply  # noqa: E402
from gim_plugins.datasets import scene  # noqa: E402

__all__ = ["DENSE_POINTS", "recon_dir"]

DENSE_POINTS = 60_000


def surface_cloud(count: int, seed: int = 0) -> PointCloud:
    """``count`` points of the true surface with the left photo's colours."""
    source = scene.source_points(1)
    pick = np.random.default_rng(seed).choice(source.points.shape[1], count, replace=False)
    xyz = source.points[:, pick].T
    uv, _ = source.camera.project(xyz)
    height, width = source.image.shape[:2]
    cols = np.clip(np.rint(uv[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.rint(uv[:, 1]).astype(int), 0, height - 1)
    return PointCloud(xyz, source.image[rows, cols])


@pytest.fixture(scope="session")
def recon_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    views = scene.render_motorcycle_scene(2, seed=0)
    out = tmp_path_factory.mktemp("view") / "recon"
    write_truth_model(views, out / "sparse" / "0", num_points=2000)
    write_ply(out / "dense" / "fused.ply", surface_cloud(DENSE_POINTS))
    (out / "zeb" / "plots").mkdir(parents=True)
    (out / "zeb" / "report.md").write_text("# ZEB\n")
    import cv2

    cv2.imwrite(str(out / "zeb" / "plots" / "auc_curves.png"), np.full((20, 30, 3), 200, np.uint8))
    for vid in ("v1", "v2"):
        (out / "walk" / vid).mkdir(parents=True)
        cv2.imwrite(str(out / "walk" / vid / "000001.png"), np.full((20, 30, 3), 90, np.uint8))
    return out
