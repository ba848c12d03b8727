"""WalkDataset over ZeroMatch labels, ours and GIM's layout: frame colour, reached frames, bad pairs, label scaling,
giving up after retries (recorded in bad_pairs.txt, a substitute drawn), and labels on the same content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from traindata_helpers import decode, homography_pair, make_walk_tree

from gim_plugins.training.data.batch import check_sample
from gim_plugins.training.data.walk import WalkDataset, find_ppid, walk_datasets

PPID = "SIFT 10 20 40 F FM 32 PM 512"
CONF = {"augment": {"image_size": (240, 192), "dark": False}, "max_labels": 1024}


def _tree(root, style="ours", label_factor=1.0):
    image0, image1, labels = homography_pair()
    frames = {0: image0, 10: image1, 20: image0, 30: image1}
    files = {(0, 40): labels, (10, 20): labels[:10], (20, 30): labels}
    # the pair file named after its target (0, 40) holds the frames actually reached, (0, 10), in row 0
    reached = {(0, 40): (0, 10), (10, 20): (10, 20), (20, 30): (20, 30)}
    make_walk_tree(root, frames, {}, style=style, ppid=PPID, bad=[(20, 30)],
                   label_size=(round(240 * label_factor), round(200 * label_factor)))
    from gim_plugins.training.video.layout import Layout

    layout = Layout(root)
    for target, label in files.items():
        a, b = reached[target]
        np.save(layout.propagated_file(PPID, "clip", *target),
                np.concatenate([[[a, b, a, b]], label * label_factor]).astype(np.float32))
    return root


@pytest.mark.parametrize("style", ["ours", "gim"])
def test_feature_pairs_frames_and_colour(tmp_path, style):
    root = _tree(tmp_path / style, style)
    dataset = WalkDataset(root, "clip", CONF)
    assert dataset.pairs == [(0, 40), (10, 20)]  # (20, 30) is in bad_pairs.txt
    assert dataset.swapped == (style == "gim")
    labels, f0, f1 = dataset.labels(0)
    assert (f0, f1) == (0, 10) and labels.shape[1] == 4
    sample = dataset[0]
    check_sample(sample)
    assert sample["pair"] == ("0", "10") and sample["dataset"] == "walk" and sample["scene"] == "clip"
    assert bool(sample["zs"]) and not bool(sample["gt"]) and not bool(sample["has_depth"])
    assert torch.equal(sample["K0"], torch.eye(3)) and torch.equal(sample["T_0to1"], torch.eye(4))
    n = int(sample["num_labels"])
    assert n >= 64
    points = sample["labels"][:n].numpy().astype(np.float64)
    error = np.abs(decode(sample["image0"].numpy(), points[:, :2]) - decode(sample["image1"].numpy(), points[:, 2:]))
    # 8-bit frames quantise the coded coordinates (±0.5 px per resampling): within 1 px
    assert np.percentile(error.max(axis=1), 99) < 1.0


def test_feature_both_layouts_give_the_same_items(tmp_path):
    ours = WalkDataset(_tree(tmp_path / "ours", "ours"), "clip", CONF)
    gim = WalkDataset(_tree(tmp_path / "gim", "gim"), "clip", CONF)
    a, b = ours.item(0, epoch=3), gim.item(0, epoch=3)
    for key in ("image0", "image1", "labels", "H1", "mask1"):
        assert torch.equal(a[key], b[key]), key


def test_feature_labels_scaled_to_the_frames(tmp_path):
    """Labels made on 2× larger video frames are scaled by frame_size / label_size."""
    plain = WalkDataset(_tree(tmp_path / "plain"), "clip", CONF)
    scaled = WalkDataset(_tree(tmp_path / "scaled", label_factor=2.0), "clip", CONF)
    assert scaled.label_size == (480, 400)
    a, b = plain.item(0, 1), scaled.item(0, 1)
    assert torch.allclose(a["labels"], b["labels"], atol=1e-3)


def test_exception_gives_up_records_and_substitutes(tmp_path):
    root = _tree(tmp_path)
    dataset = WalkDataset(root, "clip", CONF)
    sample = dataset.item(1, epoch=0)  # (10, 20) has 10 labels: never 64, 30 retries, then given up
    assert sample is not None and sample["pair"] == ("0", "10")  # a substitute of the same video
    bad = (root / "propagate" / PPID / "clip" / "bad_pairs.txt").read_text().split("\n")
    assert "10 20" in bad and "20 30" in bad
    assert WalkDataset(root, "clip", CONF).pairs == [(0, 40)]  # a new dataset skips it
    for epoch in (1, 2):  # given up again in later epochs: recorded once per process
        assert dataset.item(1, epoch=epoch) is not None
    lines = (root / "propagate" / PPID / "clip" / "bad_pairs.txt").read_text().split("\n")
    assert lines.count("10 20") == 1
    quiet = WalkDataset(_tree(tmp_path / "quiet"), "clip", {**CONF, "record_bad_pairs": False, "substitutes": 0})
    assert quiet.item(1, 0) is None
    assert "10 20" not in (tmp_path / "quiet" / "propagate" / PPID / "clip" / "bad_pairs.txt").read_text()


def test_exception_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="gim video propagate"):
        find_ppid(tmp_path)
    root = _tree(tmp_path / "a")
    (root / "propagate" / "other ppid").mkdir()
    with pytest.raises(ValueError, match="choose one with ppid"):
        WalkDataset(root, "clip", CONF)
    assert len(WalkDataset(root, "clip", {**CONF, "ppid": PPID})) == 2
    with pytest.raises(FileNotFoundError, match="no propagated labels for video 'nope'"):
        WalkDataset(root, "nope", {**CONF, "ppid": PPID})
    with pytest.raises(KeyError, match="unknown option 'max_label'"):
        WalkDataset(root, "clip", {"max_label": 3, "ppid": PPID})
    datasets = walk_datasets(root, conf={**CONF, "ppid": PPID})
    assert [d.scene for d in datasets] == ["clip"]


def test_smoke_deterministic_per_epoch(tmp_path):
    dataset = WalkDataset(_tree(tmp_path), "clip", {**CONF, "augment": {"image_size": (240, 192)}})
    a, b, c = dataset[(0, 5)], dataset[(0, 5)], dataset[(0, 6)]
    assert torch.equal(a["image1"], b["image1"]) and torch.equal(a["labels"], b["labels"])
    assert not torch.equal(a["labels"], c["labels"])
    dataset.set_epoch(5)
    assert torch.equal(dataset[0]["labels"], a["labels"])


def test_cardinality_max_pairs(tmp_path):
    """GIM's MAX_SAMPLES: a seeded draw with repeats (RandomState(3407).randint), repeats collapsed."""
    root = _tree(tmp_path)
    all_pairs = [(0, 40), (10, 20), (20, 30)]
    drawn = {all_pairs[i] for i in np.random.RandomState(3407).randint(3, size=2)}
    limited = WalkDataset(root, "clip", {**CONF, "max_pairs": 2})
    assert set(limited.pairs) == drawn - {(20, 30)}
    assert WalkDataset(root, "clip", {**CONF, "max_pairs": 2}).pairs == limited.pairs
    assert len(WalkDataset(root, "clip", {**CONF, "max_pairs": 10}).pairs) == 2  # more than present: all
