"""ZEB-format pair folders as posed training data: pose-only rows (K, T, H1; no depth, no labels) whose geometry in
network pixels agrees with the real Middlebury pair's ground-truth disparity."""

from __future__ import annotations

import numpy as np
import pytest

from gim_plugins.datasets import motorcycle
from gim_plugins.training.data.augment import transform
from gim_plugins.training.data.batch import check_sample
from gim_plugins.training.data.zeb import ZebDataset, zeb_datasets

CONF = {"augment": {"image_size": (320, 224)}, "max_labels": 64}


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])


def test_feature_pose_only_rows_with_exact_geometry(zeb_root):
    dataset = ZebDataset(zeb_root, "MiniScene", CONF)
    assert len(dataset) == 1 and dataset.scene == "miniscene"
    disparity = motorcycle.load_disparity()
    rows, cols = np.nonzero(np.isfinite(disparity))
    left = np.stack([cols, rows], 1).astype(np.float64)
    right = left - np.stack([disparity[rows, cols], np.zeros(len(rows))], 1)
    for epoch in range(4):
        sample = dataset.item(0, epoch)
        check_sample(sample)
        assert bool(sample["gt"]) and not bool(sample["has_depth"]) and not bool(sample["zs"])
        assert int(sample["num_labels"]) == 0 and not bool(sample["labels"].any())
        assert not bool(sample["depth0"].any())
        K0, K1 = sample["K0"].numpy().astype(np.float64), sample["K1"].numpy().astype(np.float64)
        T, H1 = sample["T_0to1"].numpy().astype(np.float64), sample["H1"].numpy().astype(np.float64)
        F = np.linalg.inv(H1 @ K1).T @ _skew(T[:3, 3]) @ T[:3, :3] @ np.linalg.inv(K0)
        net0 = transform(np.linalg.inv(sample["source0"].numpy().astype(np.float64)), left)
        net1 = transform(H1 @ np.linalg.inv(sample["source1"].numpy().astype(np.float64)), right)
        line = np.c_[net0, np.ones(len(net0))] @ F.T
        distance = np.abs((np.c_[net1, np.ones(len(net1))] * line).sum(1)) / np.linalg.norm(line[:, :2], axis=1)
        assert np.median(distance) < 0.05 and np.percentile(distance, 99) < 0.5  # the GT disparity is sub-pixel


def test_smoke_all_subsets(zeb_root):
    datasets = zeb_datasets(zeb_root, conf=CONF)
    assert [d.kind for d in datasets] == ["zeb"] and datasets[0].pairs[0].name1 == "right"
    with pytest.raises(KeyError, match="unknown ZEB subset"):
        ZebDataset(zeb_root, "nothing", CONF)
