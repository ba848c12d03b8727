"""Labelling: root_sift labels on real footage, no pair across a cut, GIM's filters, masks per labeller, zoom pass,
shards whose merged record equals an unsharded run's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="the video extra (PyAV) is not installed")
pytest.importorskip("scenedetect", reason="the video extra (PySceneDetect) is not installed")

from video_helpers import FAST_SIFT, sample, tree_digest

from gim_plugins.geometry import estimate_fundamental
from gim_plugins.registry import UnknownMatcherError
from gim_plugins.training.video import decode, label
from gim_plugins.training.video.layout import Layout, VideoPaths, parse_pair_file_name, read_pair_label, read_record
from gim_plugins.training.video.masks import SkyMasker, apply_mask, make_masker, mask_mode

CUTS = (30, 76, 137, 187, 242)
BIKES_RANGE = "0f:80f"  # shots [0, 30), [30, 76), [76, 80): pairs at skips 10 and 20 on both sides of a cut


@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bikes")
    decode.main({"range": BIKES_RANGE, "skips": [10, 20], "progress": False},
                VideoPaths(root, sources=(sample("bikes"),)))
    return root


@pytest.fixture(scope="module")
def labelled(decoded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled") / "out"
    shutil.copytree(decoded, root, symlinks=True)
    label.main({"labellers": ["root_sift"], "labeller_conf": FAST_SIFT, "masks": "none", "zoom": True,
                "progress": False}, VideoPaths(root))
    return root


def folders(root: Path) -> dict[str, Path]:
    return {f"{folder.name}": path for folder, _, path in Layout(root).label_dirs("bikes")}


def test_feature_root_sift_labels_real_footage(labelled: Path) -> None:
    found = folders(labelled)
    assert sorted(found) == ["WALK SIFT [R] F [S] 10", "WALK SIFT [R] F [S] 20", "WALK SIFT [R] T [S] 10",
                             "WALK SIFT [R] T [S] 20"]
    total = 0
    for name, path in found.items():
        assert path.name == f"bikes WH  640  272 RG    0    3 SP {name[-2:].strip()} 5"
        nums, idxs = read_record(path)
        pair_files = sorted(parse_pair_file_name(p.name) for p in path.glob("[[]*.npy"))
        assert sorted(map(tuple, idxs.tolist())) == pair_files and idxs.tolist() == sorted(idxs.tolist())
        for (i, j), count in zip(idxs.tolist(), nums.tolist()):
            data = np.load(path / f"{np.array([i, j])}.npy")
            assert data.dtype == np.float32 and data.shape == (count, 4) and count >= 8
            assert (data[:, [0, 2]] > -1).all() and (data[:, [0, 2]] < 640).all()
            assert (data[:, [1, 3]] > -1).all() and (data[:, [1, 3]] < 272).all()
            total += count
        if " F " in name:
            assert len(idxs) >= 3  # the static-camera shot and the pans label well
    assert total > 1000


def test_feature_no_label_crosses_a_cut(labelled: Path) -> None:
    info = json.loads(Layout(labelled).video_info("bikes").read_text())
    assert info["shots"] == [[0, 30], [30, 76], [76, 80]]
    for path in folders(labelled).values():
        for i, j in read_record(path)[1].tolist():
            assert not any(i < cut <= j for cut in CUTS), (path.name, i, j)
    skip10 = folders(labelled)["WALK SIFT [R] F [S] 10"]
    assert not (skip10 / "[20 30].npy").exists() and not (skip10 / "[70 80].npy").exists()


def test_feature_labels_pass_gims_robust_filter(labelled: Path) -> None:
    """Stored labels are the USAC_MAGSAC inliers at 0.5 px: refitting keeps nearly all of them."""
    path = folders(labelled)["WALK SIFT [R] F [S] 10"]
    for pair_file in sorted(path.glob("[[]*.npy"))[:4]:
        data = read_pair_label(pair_file)
        fit = estimate_fundamental(data[:, :2], data[:, 2:], threshold=0.5, confidence=0.999999, max_iters=100000)
        assert fit.num_inliers >= 0.9 * len(data)


def test_feature_zoom_pass_reads_the_plain_labels(labelled: Path) -> None:
    """A zoomed pair exists only where the source's plain label does; its points lie in the source's boxes."""
    found = folders(labelled)
    for skip in ("10", "20"):
        plain, zoomed = found[f"WALK SIFT [R] F [S] {skip}"], found[f"WALK SIFT [R] T [S] {skip}"]
        plain_pairs = {tuple(p) for p in read_record(plain)[1].tolist()}
        zoom_pairs = {tuple(p) for p in read_record(zoomed)[1].tolist()}
        assert zoom_pairs and zoom_pairs <= plain_pairs
        for pair in sorted(zoom_pairs)[:3]:
            name = f"{np.array(pair)}.npy"
            src, out = read_pair_label(plain / name), read_pair_label(zoomed / name)
            for k in range(4):
                assert out[:, k].min() >= np.floor(src[:, k].min()) - 1 and out[:, k].max() <= np.ceil(src[:, k].max())
    summary = json.loads(Layout(labelled).summary("bikes", "label").read_text())
    assert summary["SIFT F"]["frames_extracted"] <= 15  # each frame once: 10 pairs share 9 frames (+ repeats 0)
    assert summary["SIFT F"]["pairs"] == 10 and summary["SIFT F"]["pairs_per_second"] > 0


def test_feature_rerun_keeps_the_summary_of_the_run_that_labelled(decoded: Path, tmp_path: Path) -> None:
    """A rerun with nothing left to label changes no label file and keeps the first run's numbers in the summary."""
    root = tmp_path / "out"
    shutil.copytree(decoded, root, symlinks=True)
    conf = {"labellers": ["root_sift"], "labeller_conf": FAST_SIFT, "masks": "none", "skips": [10],
            "progress": False}
    label.main(conf, VideoPaths(root))
    summary = Layout(root).summary("bikes", "label")
    first, labels = summary.read_text(), tree_digest(root, "pseudo")
    assert json.loads(first)["SIFT F"]["processed"] > 0
    label.main(conf, VideoPaths(root))
    assert summary.read_text() == first and tree_digest(root, "pseudo") == labels


def test_feature_sharded_labels_equal_unsharded(decoded: Path, labelled: Path, tmp_path: Path) -> None:
    """Two independent shard jobs: the second to finish merges; files equal the unsharded run's plain pass."""
    root = tmp_path / "out"
    shutil.copytree(decoded, root, symlinks=True)
    conf = {"labellers": ["root_sift"], "labeller_conf": FAST_SIFT, "masks": "none", "progress": False}
    label.main({**conf, "shard": (1, 2)}, VideoPaths(root))
    first = folders(root)["WALK SIFT [R] F [S] 10"]
    assert not (first / "nums.npy").exists()  # shard 0 has not finished: nothing merged yet
    label.main({**conf, "shard": (0, 2)}, VideoPaths(root))
    plain = {k: v for k, v in tree_digest(labelled, "pseudo").items() if "[R] F" in k}
    assert tree_digest(root, "pseudo") == plain


def test_feature_filters_and_masks() -> None:
    lab = label._Labeller("root_sift", label.merge_conf(label.default_conf, {"static_filter": True}), "cpu")
    rng = np.random.default_rng(0)
    moving = rng.uniform(0, 200, (60, 2)).astype(np.float32)
    static = rng.uniform(0, 200, (40, 2)).astype(np.float32)
    k0 = np.concatenate([moving, static])
    k1 = np.concatenate([moving + np.float32([5, 1]), static + 0.3])
    kept = lab.filter(k0, k1)
    assert kept is not None and len(kept) == 60 and np.allclose(kept[:, 2:] - kept[:, :2], [5, 1])
    assert lab.filter(k0[:7], k1[:7]) is None  # fewer than 8 matches
    assert mask_mode(lab.matcher) == "detect"
    mask = np.zeros((96, 128), bool)
    mask[:, 64:] = True
    image = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    features = lab.matcher.extract(image, mask=mask)
    assert len(features) > 0 and (features.keypoints[:, 0] >= 63).all()
    assert (apply_mask(image, mask)[:, :64] == 0).all() and (apply_mask(image, mask)[:, 64:] == image[:, 64:]).all()

    class Dense:
        is_sparse, accepts_masks = False, True

    assert mask_mode(Dense()) == "match" and mask_mode(object()) == "multiply"


def test_feature_sky_mask_and_mask_choice(tmp_path: Path) -> None:
    image = np.zeros((60, 80, 3), np.uint8)
    image[:20] = 235  # a bright, smooth band touching the top: sky
    image[20:] = (np.random.default_rng(1).random((40, 80, 3)) * 120).astype(np.uint8)
    image[45:50, 30:40] = 240  # bright but not connected to the top: kept
    usable = SkyMasker().mask("v", 0, image)
    assert usable is not None and not usable[:15].any() and usable[25:].mean() > 0.95
    masker, line = make_masker("auto", Layout(tmp_path))
    assert masker.name == "none" and "not installed" in line  # GIM's segmenter weights are not here offline


def test_exception_labellers_and_options(decoded: Path) -> None:
    names, line = label.choose_labellers(None)
    assert names == ["root_sift", "aliked_lightglue"] and "offline set" in line  # no GIM weights offline
    with pytest.raises(UnknownMatcherError, match="unknown matcher 'sift'"):
        label.choose_labellers(["sift"])
    with pytest.raises(label.UserError, match="zoom_source 'gim_dkm'"):
        label.main({"labellers": ["root_sift"], "zoom": True, "zoom_source": "gim_dkm", "progress": False},
                   VideoPaths(decoded))
    with pytest.raises(label.UserError, match="not decoded yet"):
        label.main({"labellers": ["root_sift"], "progress": False}, VideoPaths(decoded, videos=("nope",)))
