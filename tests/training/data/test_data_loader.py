"""The training loader end to end: video, MegaDepth and ZEB pairs mixed by the balance rule into batches of the
batch format; seeded workers (same batches with 0 or 2 workers), epochs, rank shards, and the device path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from traindata_helpers import homography_pair, make_walk_tree, write_megadepth_scene

from gim_plugins.training.data import (
    MegaDepthDataset,
    MixedDataset,
    WalkDataset,
    ZebDataset,
    build_loader,
    check_batch,
    finish,
    set_epoch,
    to_device,
)

PPID = "SIFT 10 20 40 F FM 32 PM 512"


def _datasets(root, motorcycle_views, zeb_root, **conf):
    image0, image1, labels = homography_pair()
    make_walk_tree(root / "walk", {0: image0, 10: image1, 20: image1}, {(0, 10): labels, (0, 20): labels},
                   ppid=PPID)
    if not (root / "megadepth").exists():
        write_megadepth_scene(root / "megadepth", motorcycle_views)
    shared = {"augment": {"image_size": (160, 128)}, "max_labels": 256, **conf}
    return [WalkDataset(root / "walk", "clip", shared),
            MegaDepthDataset(root / "megadepth", root / "megadepth" / "scene_info" / "0000.npz",
                             {**shared, "min_overlap": 0.0, "max_overlap": 1.0}),
            ZebDataset(zeb_root, "miniscene", shared)]


def _batches(loader, epochs=(0, 1)):
    out = []
    for epoch in epochs:
        set_epoch(loader, epoch)
        out += list(loader)
    return out


def test_feature_mixed_batches_and_worker_seeding(tmp_path, motorcycle_views, zeb_root):
    datasets = _datasets(tmp_path, motorcycle_views, zeb_root)
    maxlen = {"walk": 4, "megadepth": 2, "zeb": 2}
    serial = _batches(build_loader(datasets, batch_size=2, maxlen=maxlen, seed=5))
    parallel = _batches(build_loader(datasets, batch_size=2, maxlen=maxlen, seed=5, num_workers=2))
    assert len(serial) == len(parallel) == 8
    kinds = []
    for a, b in zip(serial, parallel):
        assert check_batch(a) == {"B": 2, "H": 128, "W": 160, "L": 256}
        for key in ("image0", "image1", "labels", "H1", "depth0", "K1"):
            assert torch.equal(a[key], b[key]), key
        kinds += a["dataset"]
    assert sorted(kinds[:8]) == ["megadepth"] * 2 + ["walk"] * 4 + ["zeb"] * 2
    rows = [(batch, i) for batch in serial for i in range(2)]
    for batch, i in rows:  # flags follow the source
        kind = batch["dataset"][i]
        assert bool(batch["zs"][i]) == (kind == "walk") and bool(batch["gt"][i]) == (kind != "walk")
        assert bool(batch["has_depth"][i]) == (kind == "megadepth")
    epoch0 = torch.cat([b["labels"] for b in serial[:4]])
    epoch1 = torch.cat([b["labels"] for b in serial[4:]])
    assert not torch.equal(epoch0, epoch1)  # another epoch: another draw


def test_feature_rank_shards(tmp_path, motorcycle_views, zeb_root):
    datasets = _datasets(tmp_path, motorcycle_views, zeb_root)
    maxlen = {"walk": 4, "megadepth": 2, "zeb": 2}
    whole = build_loader(datasets, batch_size=1, maxlen=maxlen, seed=9)
    keys = sorted(whole.sampler)
    shards = [build_loader(datasets, batch_size=1, maxlen=maxlen, seed=9, rank=r, world_size=2) for r in (0, 1)]
    assert sorted(list(shards[0].sampler) + list(shards[1].sampler)) == keys
    assert len(shards[0]) == len(shards[1]) == 4
    first = next(iter(shards[1]))
    index, epoch = next(iter(shards[1].sampler))
    number, local = whole.dataset.locate(index)
    assert torch.equal(first["labels"][0], datasets[number].item(local, epoch)["labels"])


def test_feature_device_path_through_the_loader(tmp_path, motorcycle_views, zeb_root, device):
    maxlen = {"walk": 4, "megadepth": 2, "zeb": 2}
    worker = _batches(build_loader(_datasets(tmp_path, motorcycle_views, zeb_root), batch_size=4, maxlen=maxlen),
                      epochs=(3,))
    pending = _batches(build_loader(_datasets(tmp_path, motorcycle_views, zeb_root, augment_on="device"),
                                    batch_size=4, maxlen=maxlen), epochs=(3,))
    for a, b in zip(worker, pending):
        assert bool(b["pending"].all()) and not bool(a["pending"].any())
        done = finish(to_device(b, device))
        check_batch(done)
        for key in ("image0", "image1"):
            assert torch.allclose(done[key].cpu(), a[key], atol=2e-5), key
        assert torch.equal(done["mask1"].cpu(), a["mask1"]) and torch.equal(done["labels"].cpu(), a["labels"])


def test_exception_mixed_sizes(tmp_path, motorcycle_views, zeb_root):
    a = ZebDataset(zeb_root, "miniscene", {"augment": {"image_size": (160, 128)}})
    b = ZebDataset(zeb_root, "miniscene", {"augment": {"image_size": (160, 160)}})
    with pytest.raises(ValueError, match="differ in canvas or max_labels"):
        MixedDataset([a, b])
    with pytest.raises(ValueError, match="no training dataset"):
        MixedDataset([])
    with pytest.raises(ValueError, match="batch_size must be positive"):
        build_loader([a], batch_size=0)
    mixed = MixedDataset([a, a])
    assert mixed.locate(1) == (1, 0) and np.isclose(len(mixed), 2)
    with pytest.raises(IndexError):
        mixed[(2, 0)]
