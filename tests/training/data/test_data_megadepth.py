"""MegaDepth in the D2-Net scene-info format, built from the rendered motorcycle scene (exact K, poses, depth):
pair selection by overlap, and sampled correspondences that reproject exactly under the renderer's cameras."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from traindata_helpers import write_megadepth_scene

from gim_plugins.training.data.augment import transform
from gim_plugins.training.data.batch import check_sample
from gim_plugins.training.data.megadepth import (
    MegaDepthDataset,
    depth_correspondences,
    megadepth_datasets,
    select_pairs,
)

CONF = {"augment": {"image_size": (320, 224)}, "max_labels": 512, "min_overlap": 0.01, "max_overlap": 1.0}


@pytest.fixture(scope="module")
def megadepth_root(tmp_path_factory, motorcycle_views):
    root = tmp_path_factory.mktemp("megadepth")
    write_megadepth_scene(root, motorcycle_views)
    return root


def test_smoke_scene_file_and_pairs(megadepth_root):
    dataset = MegaDepthDataset(megadepth_root, megadepth_root / "scene_info" / "0000.npz", CONF)
    overlap = dataset.overlap
    edges = np.concatenate((np.arange(0.01, 1.0, 0.1), [1.0]))
    same_bin = {(i, j) for i in range(3) for j in range(i + 1, 3)
                if np.searchsorted(edges, overlap[i, j], "left") == np.searchsorted(edges, overlap[j, i], "left")}
    # GIM keeps a pair only when both directions' overlaps fall in the same 0.1-wide bin
    assert set(dataset.pairs) == same_bin and (0, 1) in same_bin
    assert megadepth_datasets(megadepth_root, conf=CONF)[0].scene == "0000"
    narrow = MegaDepthDataset(megadepth_root, megadepth_root / "scene_info" / "0000.npz",
                              {**CONF, "min_overlap": 0.99})
    assert len(narrow) == 0


def test_feature_correspondences_reproject_exactly(megadepth_root, motorcycle_views):
    """Labels mapped back to the original pixels land where the renderer's exact cameras and depth send them."""
    dataset = MegaDepthDataset(megadepth_root, megadepth_root / "scene_info" / "0000.npz", CONF)
    for index in range(len(dataset)):
        for epoch in range(3):
            sample = dataset.item(index, epoch)
            check_sample(sample)
            assert bool(sample["gt"]) and bool(sample["has_depth"]) and not bool(sample["zs"])
            i, j = dataset.pairs[index]
            view0, view1 = motorcycle_views[i], motorcycle_views[j]
            n = int(sample["num_labels"])
            assert n > 100
            points = sample["labels"][:n].numpy().astype(np.float64)
            source0 = transform(sample["source0"].numpy().astype(np.float64), points[:, :2])
            pre1 = transform(np.linalg.inv(sample["H1"].numpy().astype(np.float64)), points[:, 2:])
            source1 = transform(sample["source1"].numpy().astype(np.float64), pre1)
            pixel = np.rint(source0).astype(int)
            assert np.abs(source0 - pixel).max() < 2e-3  # image-0 labels sit on source pixel centres
            depth = view0.depth[pixel[:, 1], pixel[:, 0]]
            expected, _ = view1.project(view0.backproject(pixel, depth))
            assert np.abs(expected - source1).max() < 5e-3
            # K and T in the batch describe the same geometry in network pixels
            K0, K1 = sample["K0"].numpy().astype(np.float64), sample["K1"].numpy().astype(np.float64)
            T = sample["T_0to1"].numpy().astype(np.float64)
            rays = np.linalg.inv(K0) @ np.c_[points[:, :2], np.ones(n)].T * depth
            cam1 = T[:3, :3] @ rays + T[:3, 3:]
            net1 = transform(sample["H1"].numpy().astype(np.float64) @ K1, (cam1[:2] / cam1[2]).T)
            assert np.abs(net1 - points[:, 2:]).max() < 0.02
            # depth0 on the network grid equals the source depth at each label's pixel (nearest)
            grid = np.rint(points[:, :2]).astype(int)
            net_depth = sample["depth0"].numpy()[grid[:, 1], grid[:, 0]]
            assert np.mean(np.isclose(net_depth, depth, rtol=0.05)) > 0.9


def test_feature_depth_correspondences_match_the_scene_ground_truth(motorcycle_views):
    """Every pixel with depth, projected and checked against image 1's depth: the same correspondences as the
    scene's own ground truth (occluded and out-of-view pixels rejected)."""
    from gim_plugins.datasets import scene

    view0, view1 = motorcycle_views[0], motorcycle_views[2]
    R, t = scene.relative_pose(view0, view1)
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    depth0 = np.where(np.isfinite(view0.depth), view0.depth, 0)
    depth1 = np.where(np.isfinite(view1.depth), view1.depth, 0)
    labels = depth_correspondences(depth0, depth1, view0.K, view1.K, T, np.random.default_rng(0), 10 ** 7, 0.01)
    k0, k1 = scene.correspondences(view0, view1, tolerance=0.01)
    ours = {(int(u), int(v)): (a, b) for u, v, a, b in labels}
    truth = {(int(u), int(v)): (a, b) for (u, v), (a, b) in zip(k0, k1)}
    common = set(ours) & set(truth)
    assert len(set(ours) ^ set(truth)) < 0.005 * len(truth)
    assert max(abs(ours[k][0] - truth[k][0]) + abs(ours[k][1] - truth[k][1]) for k in common) < 1e-6
    rejected = (np.isfinite(view0.depth)).sum() - len(labels)
    assert rejected > 0.1 * len(labels)  # occlusions and the border are really rejected


def test_feature_gim_pair_selection():
    rng = np.random.default_rng(0)
    overlap = rng.uniform(-0.2, 0.9, (60, 60))
    pairs = select_pairs(overlap, 0.01, 0.7, max_pairs=70, seed=3407)
    assert len(pairs) == len(set(pairs)) and all(i < j for i, j in pairs)
    edges = np.concatenate((np.arange(0.01, 0.7, 0.1), [0.7]))
    quota = [10] * 7  # 70 pairs over 7 bins
    for (lo, hi), q in zip(itertools.pairwise(edges), quota):
        inside = [(i, j) for i, j in pairs if lo < overlap[i, j] <= hi and lo < overlap[j, i] <= hi]
        assert len(inside) <= q
    for i, j in pairs:  # both directions in one bin, inside (0.01, 0.7]
        assert 0.01 < overlap[i, j] <= 0.7 and 0.01 < overlap[j, i] <= 0.7
    assert pairs == select_pairs(overlap, 0.01, 0.7, max_pairs=70, seed=3407)
    assert random.Random(3407).random() == random.Random(3407).random()  # the seeded draw GIM uses
    everything = select_pairs(overlap, 0.01, 0.7, max_pairs=10 ** 6)
    assert set(pairs) <= set(everything)


def test_exception_bad_scene_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="scene file not found"):
        MegaDepthDataset(tmp_path, tmp_path / "x.npz")
    np.savez(tmp_path / "bad.npz", overlap_matrix=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="not a D2-Net scene-info file"):
        MegaDepthDataset(tmp_path, tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="no D2-Net scene files"):
        megadepth_datasets(tmp_path)


def test_smoke_pixel_centre_option(megadepth_root, motorcycle_views):
    """The scene file stores COLMAP-convention intrinsics; the dataset gives package-convention ones."""
    dataset = MegaDepthDataset(megadepth_root, megadepth_root / "scene_info" / "0000.npz", CONF)
    K, pose = dataset.camera(1)
    assert np.allclose(K, motorcycle_views[1].K) and np.allclose(pose[:3, :3], motorcycle_views[1].R)
    assert torch.is_tensor(dataset.item(0, 0)["depth1"])


def test_feature_gim_scene_folder_found(tmp_path, motorcycle_views):
    """GIM keeps the scene files in ``output/`` (D2-Net: ``scene_info/``): both are found without ``npz_dir``."""
    write_megadepth_scene(tmp_path, motorcycle_views)
    (tmp_path / "scene_info").rename(tmp_path / "output")
    found = megadepth_datasets(tmp_path, conf=CONF)
    assert [d.scene for d in found] == ["0000"] and found[0].pairs
    assert [d.scene for d in megadepth_datasets(tmp_path, conf=CONF, npz_dir="output")] == ["0000"]
    with pytest.raises(FileNotFoundError, match="no D2-Net scene files"):
        megadepth_datasets(tmp_path, conf=CONF, npz_dir="scene_info")
