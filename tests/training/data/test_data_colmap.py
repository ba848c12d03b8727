"""COLMAP models as posed training data: a model written by the project's writer (exact poses of the rendered
motorcycle scene) gives correspondences from its 3D-point tracks that agree with the model's poses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from traindata_helpers import observed_model_from_views

from gim_plugins.colmap_ext.observations import read_observed_model, write_text_model
from gim_plugins.training.data.augment import transform
from gim_plugins.training.data.batch import check_sample
from gim_plugins.training.data.colmap import ColmapDataset

CONF = {"augment": {"image_size": (320, 224)}, "max_labels": 1024}


@pytest.fixture(scope="module")
def colmap_model(tmp_path_factory, motorcycle_views):
    root = tmp_path_factory.mktemp("colmap")
    model, world = observed_model_from_views(motorcycle_views, root / "images")
    write_text_model(model, root / "sparse" / "0")
    return root, world


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def test_feature_track_correspondences_agree_with_the_model(colmap_model, motorcycle_views):
    root, world = colmap_model
    dataset = ColmapDataset(root / "sparse" / "0", root / "images", CONF)
    assert dataset.pairs == [(1, 2), (1, 3), (2, 3)] and dataset.scene.endswith("/sparse/0")
    model = read_observed_model(root / "sparse" / "0")
    for index, (id0, id1) in enumerate(dataset.pairs):
        sample = dataset.item(index, epoch=index)
        check_sample(sample)
        assert bool(sample["gt"]) and not bool(sample["has_depth"]) and not bool(sample["zs"])
        n = int(sample["num_labels"])
        assert n >= 64
        points = sample["labels"][:n].numpy().astype(np.float64)
        # epipolar constraint in network pixels from the batch's K0, K1, T_0to1 and H1
        K0, K1 = sample["K0"].numpy().astype(np.float64), sample["K1"].numpy().astype(np.float64)
        T = sample["T_0to1"].numpy().astype(np.float64)
        H1 = sample["H1"].numpy().astype(np.float64)
        F = np.linalg.inv(H1 @ K1).T @ _skew(T[:3, 3]) @ T[:3, :3] @ np.linalg.inv(K0)
        x0, x1 = np.c_[points[:, :2], np.ones(n)], np.c_[points[:, 2:], np.ones(n)]
        line = x0 @ F.T
        distance = np.abs((x1 * line).sum(1)) / np.linalg.norm(line[:, :2], axis=1)
        assert distance.max() < 1e-2
        # back in the original pixels, every label is the projection of one of the model's 3D points in both views
        src0 = transform(sample["source0"].numpy().astype(np.float64), points[:, :2])
        src1 = transform(sample["source1"].numpy().astype(np.float64), transform(np.linalg.inv(H1), points[:, 2:]))
        view0, view1 = motorcycle_views[id0 - 1], motorcycle_views[id1 - 1]
        uv0, _ = view0.project(world)
        nearest = np.argmin(np.linalg.norm(uv0[None] - src0[:, None], axis=2), axis=1)
        assert np.abs(uv0[nearest] - src0).max() < 1e-3
        uv1, _ = view1.project(world[nearest])
        assert np.abs(uv1 - src1).max() < 1e-3
        assert len(model.correspondences(id0, id1)) >= n


def test_feature_non_pinhole_cameras_give_labels_only(tmp_path, motorcycle_views):
    model, _ = observed_model_from_views(motorcycle_views[:2], tmp_path / "images", points=300)
    for cid, (_, width, height, params) in model.cameras.items():
        model.cameras[cid] = ("SIMPLE_RADIAL", width, height, np.array([params[0], params[2], params[3], 0.01]))
    write_text_model(model, tmp_path / "model")
    sample = ColmapDataset(tmp_path / "model", tmp_path / "images", CONF).item(0, 0)
    assert not bool(sample["gt"]) and int(sample["num_labels"]) >= 64


def test_exception_inputs(tmp_path, colmap_model):
    root, _ = colmap_model
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ColmapDataset(root / "sparse" / "0", tmp_path / "missing", CONF)
    with pytest.raises(FileNotFoundError, match="no COLMAP model"):
        ColmapDataset(tmp_path, root / "images", CONF)
    strict = ColmapDataset(root / "sparse" / "0", root / "images", {**CONF, "min_shared": 10 ** 6})
    assert len(strict) == 0
    small = tmp_path / "small"
    small.mkdir()
    import cv2

    for name in ("render_00.png", "render_01.png"):
        cv2.imwrite(str(small / name), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="pass the image folder the model was made from"):
        ColmapDataset(root / "sparse" / "0", small, CONF).item(0, 0)


@pytest.mark.slow
def test_feature_model_from_gim_reconstruct(tmp_path, motorcycle_views):
    """``gim reconstruct`` (ground-truth dense matches with noise and outliers, pycolmap's mapper, binary + text
    model): its tracks give labels that agree with its own estimated poses within the mapper's error."""
    import sys

    from gim_plugins.colmap_ext import _pycolmap

    if not _pycolmap.available():
        pytest.skip("pycolmap >= 4.2 is not installed")
    colmap_tests = Path(__file__).resolve().parents[2] / "colmap_ext"
    sys.path.insert(0, str(colmap_tests))
    try:
        from colmap_helpers import GroundTruthDense  # the reconstruction tests' ground-truth dense matcher
    finally:
        sys.path.remove(str(colmap_tests))
    from gim_plugins import reconstruct
    from gim_plugins.datasets import scene
    from gim_plugins.registry import register_matcher, unregister_matcher

    views = scene.render_motorcycle_scene(4, include_real=False, appearance=0.5)
    images = tmp_path / "images"
    scene.write_scene(views, images)
    GroundTruthDense.register_views(views)
    register_matcher("gt_dense", GroundTruthDense, overwrite=True)
    try:
        reconstruct.main({"matcher": "gt_dense", "progress": False}, {"images": images, "out": tmp_path / "out"})
    finally:
        unregister_matcher("gt_dense")
    dataset = ColmapDataset(tmp_path / "out" / "sparse" / "0", images, CONF)
    assert len(dataset) >= 3
    for index in range(len(dataset)):
        sample = dataset.item(index, 0)
        n = int(sample["num_labels"])
        points = sample["labels"][:n].numpy().astype(np.float64)
        K0, K1 = sample["K0"].numpy().astype(np.float64), sample["K1"].numpy().astype(np.float64)
        T = sample["T_0to1"].numpy().astype(np.float64)
        F = np.linalg.inv(sample["H1"].numpy().astype(np.float64) @ K1).T @ _skew(T[:3, 3]) @ T[:3, :3]
        F = F @ np.linalg.inv(K0)
        line = np.c_[points[:, :2], np.ones(n)] @ F.T
        distance = np.abs((np.c_[points[:, 2:], np.ones(n)] * line).sum(1)) / np.linalg.norm(line[:, :2], axis=1)
        assert n >= 64 and np.percentile(distance, 99) < 3.0
