"""gim_plugins in the real hloc: confs and models seen by hloc's API and CLI, hloc's h5 layouts, pixel convention.

Skipped when hloc is not importable (it is not on PyPI; CI has none). To run: install an hloc source snapshot with
``pip install --no-deps <hloc checkout>`` plus what hloc imports (``tqdm plotly gdown scipy pycolmap``); torchvision
is optional (gim_plugins.hloc_ext.torchvision_compat stands in for the one call hloc's dense path makes).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

pytest.importorskip("hloc", reason="hloc is not installed (pip install --no-deps <hloc source tree>)")
pytest.importorskip("pycolmap", reason="hloc's modules import pycolmap")

import cv2
import h5py
from hloc import extract_features, match_dense, match_features
from hloc import extractors as hloc_extractors
from hloc import matchers as hloc_matchers
from hloc.utils.base_model import dynamic_load
from hloc.utils.io import get_keypoints, get_matches

from gim_plugins import _bootstrap, h5io
from gim_plugins.conf import Conf, ConfError
from gim_plugins.models.base import BaseMatcher
from gim_plugins.registry import register_matcher, unregister_matcher
from gim_plugins.types import MatchResult

if not _bootstrap.installed():
    pytest.skip("gim_plugins.pth is not active in this interpreter (pip install -e . or GIM_PLUGINS_NO_HOOKS is set)",
                allow_module_level=True)

GIM_DENSE = ("gim_dkm", "gim_loftr", "gim_roma")
GIM_SPARSE = ("gim_lightglue", "aliked_lightglue")
GIM_EXTRACTORS = ("gim_superpoint", "aliked_n16")


# ------------------------------------------------------------------------------------------------------- fixtures


class StarMatcher(BaseMatcher):
    """A dense test matcher with exactly known answers: every non-zero pixel of a star field is one keypoint.

    Each star has a unique grey value, so stars are matched by value and a keypoint is the star pixel's own index
    (centre-at-integer convention by construction). Records what it was given.
    """

    name: ClassVar[str] = "test_hloc_stars"
    calls: ClassVar[list[tuple[tuple[int, int], tuple[int, int]]]] = []

    def _init(self, conf: Conf) -> None:
        pass

    @staticmethod
    def _stars(image: torch.Tensor) -> dict[int, tuple[float, float]]:
        gray = image[0].numpy()
        ys, xs = np.nonzero(gray > 0)
        return {round(float(gray[y, x]) * 255): (float(x), float(y)) for y, x in zip(ys, xs)}

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        type(self).calls.append((tuple(image0.shape[-2:]), tuple(image1.shape[-2:])))
        stars0, stars1 = self._stars(image0), self._stars(image1)
        common = sorted(set(stars0) & set(stars1))
        k0 = torch.tensor([stars0[v] for v in common], dtype=torch.float32).reshape(-1, 2)
        k1 = torch.tensor([stars1[v] for v in common], dtype=torch.float32).reshape(-1, 2)
        return self._result(k0, k1, torch.tensor(common, dtype=torch.float32) / 255, image0, image1)


@pytest.fixture
def stars() -> Any:
    register_matcher(StarMatcher.name, StarMatcher, overwrite=True)
    StarMatcher.calls.clear()
    yield StarMatcher
    unregister_matcher(StarMatcher.name)


def star_field(height: int, width: int, count: int, seed: int = 0) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """uint8 image with ``count`` 2×2 stars of unique grey values at even (x, y); returns {value: (x, y) corner}."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width), np.uint8)
    values = rng.permutation(np.arange(16, 256))[:count]
    corners: dict[int, tuple[int, int]] = {}
    taken = np.zeros((height // 4, width // 4), bool)  # one star per 4×4 block: stars never touch
    for value in values:
        for _ in range(100):
            by, bx = rng.integers(0, height // 4), rng.integers(0, width // 4)
            if not taken[by, bx]:
                taken[by, bx] = True
                break
        y, x = 4 * by, 4 * bx
        image[y:y + 2, x:x + 2] = value
        corners[int(value)] = (int(x), int(y))
    return image, corners


def hloc_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != _bootstrap.ENV_DISABLE})


# ---------------------------------------------------------------------------------------------------- visibility


def test_smoke_hloc_cli_lists_gim_confs() -> None:
    """``python -m hloc.<step> --help`` lists the registered confs (runpy path, not an import)."""
    expected = {"hloc.match_dense": GIM_DENSE, "hloc.match_features": GIM_SPARSE,
                "hloc.extract_features": GIM_EXTRACTORS}
    procs = {module: hloc_cli(module, "--help") for module in expected}
    for module, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        choices = out[out.index("--conf {") + len("--conf {"):].split("}")[0].split(",")
        assert set(expected[module]) <= set(choices), (module, choices)
        assert {"loftr", "superpoint+lightglue", "superpoint_aachen"} & set(choices)  # hloc's own confs stay


def test_feature_hloc_api_sees_confs_and_models() -> None:
    for name in GIM_DENSE:
        conf = match_dense.confs[name]
        assert conf["model"]["name"] == name and conf["max_error"] == 2 and conf["cell_size"] == 8
        assert conf["preprocessing"]["grayscale"] is False
        cls = dynamic_load(hloc_matchers, name)
        assert cls.__module__ == f"hloc.matchers.{name}" and cls.matcher_name == name
    assert match_dense.confs["gim_dkm"]["preprocessing"]["dfactor"] == 1
    assert match_dense.confs["gim_loftr"]["preprocessing"]["dfactor"] == 8
    assert match_dense.confs["loftr"]["model"]["name"] == "loftr"  # built-ins untouched
    for name in GIM_SPARSE:
        assert match_features.confs[name]["model"]["name"] == name
        assert dynamic_load(hloc_matchers, name).matcher_name == name
    for name in GIM_EXTRACTORS:
        assert extract_features.confs[name]["model"]["name"] == name
        assert dynamic_load(hloc_extractors, name).__module__ == f"hloc.extractors.{name}"
    from gim_plugins.registry import list_matchers

    assert ("gim_roma" in match_dense.confs) == ("gim_roma" in list_matchers())  # no placeholder conf


def test_feature_confs_are_copies() -> None:
    """hloc code that mutates a conf must not change the registered one."""
    from gim_plugins.hloc_ext import confs

    match_dense.confs["gim_dkm"]["model"]["mutated"] = True
    assert "mutated" not in confs.GIM_DKM["model"]
    del match_dense.confs["gim_dkm"]["model"]["mutated"]


# ------------------------------------------------------------------------------------------------- dense adapter


def test_feature_dense_pixel_convention_is_exact(tmp_path: Path, stars: Any) -> None:
    """Known translation between two crops, through hloc's resize (×1/2) and rescale: keypoints come out exact.

    A 2×2 star whose top-left pixel is (x, y) has its centre at (x + 0.5, y + 0.5) in the original image; hloc halves
    the image (cv2 area), the star becomes the single pixel (x/2, y/2), the adapter returns it unchanged, and
    ``(k + 0.5)·2 − 0.5`` must map it back to exactly (x + 0.5, y + 0.5). A −0.5 or +0.5 slip anywhere shows.
    """
    big, corners = star_field(192 + 24, 256 + 32, 150)
    shifts = {"a.png": (0, 0), "b.png": (10, 6), "c.png": (32, 24)}  # (tx, ty), even: stars stay on the 2×2 grid
    (tmp_path / "images").mkdir()
    for name, (tx, ty) in shifts.items():
        cv2.imwrite(str(tmp_path / "images" / name), big[ty:ty + 192, tx:tx + 256])
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a.png b.png\na.png c.png\nb.png c.png\n")
    conf = {"output": "matches-stars", "model": {"name": "gim_plugins_dense", "matcher": StarMatcher.name},
            "preprocessing": {"grayscale": True, "resize_max": 128, "dfactor": 8}, "max_error": 2, "cell_size": 8}
    features, matches = match_dense.main(conf, pairs, tmp_path / "images", export_dir=tmp_path)

    assert stars.calls and all(call == ((96, 128), (96, 128)) for call in stars.calls)  # hloc resized ×1/2
    with h5py.File(matches, "r") as fd:
        for (name0, name1) in (("a.png", "b.png"), ("a.png", "c.png"), ("b.png", "c.png")):
            group = fd[name0][name1]
            k0, k1, scores = group["keypoints0"][()], group["keypoints1"][()], group["scores"][()]
            assert k0.dtype == k1.dtype == scores.dtype == np.float32 and len(k0) > 20
            (tx0, ty0), (tx1, ty1) = shifts[name0], shifts[name1]
            for p0, p1, score in zip(k0, k1, scores):
                x, y = corners[round(float(score) * 255)]
                assert tuple(p0) == (x - tx0 + 0.5, y - ty0 + 0.5)
                assert tuple(p1) == (x - tx1 + 0.5, y - ty1 + 0.5)
            assert group["matches0"].dtype == np.int32
    # hloc's aggregation: one keypoint per 8-px cell on a 2-px grid, and matches assigned within max_error
    for name0, name1 in (("a.png", "b.png"), ("a.png", "c.png")):
        idx, _ = get_matches(matches, name0, name1)
        kp0, kp1 = get_keypoints(features, name0), get_keypoints(features, name1)
        delta = kp0[idx[:, 0]] - kp1[idx[:, 1]]
        tx, ty = np.subtract(shifts[name1], shifts[name0])
        assert len(idx) > 20 and np.all(np.abs(delta - (tx, ty)) <= 2.0)
        # gim_plugins.h5io reads hloc's dense files the same way (pair found reversed, too)
        ours, _ = h5io.read_matches(matches, name0, name1)
        np.testing.assert_array_equal(ours, idx)
        np.testing.assert_array_equal(h5io.read_matches(matches, name1, name0)[0], idx[:, ::-1])
        np.testing.assert_array_equal(h5io.read_keypoints(features, name0), kp0)
        k0, k1, _ = h5io.read_dense_matches(matches, name1, name0)
        with h5py.File(matches, "r") as fd:
            np.testing.assert_array_equal(k0, fd[name0][name1]["keypoints1"][()])


class RecordingMatcher(BaseMatcher):
    """Returns each image's bottom-right corner (score 0.9), origin (0.1) and (1, 1) (0.5); records the input sizes."""

    name: ClassVar[str] = "test_hloc_recorder"
    calls: ClassVar[list[tuple[tuple[int, int], tuple[int, int]]]] = []

    def _init(self, conf: Conf) -> None:
        pass

    def _match(self, image0: torch.Tensor, image1: torch.Tensor) -> MatchResult:
        type(self).calls.append((tuple(image0.shape[-2:]), tuple(image1.shape[-2:])))
        h0, w0 = image0.shape[-2:]
        h1, w1 = image1.shape[-2:]
        k0 = torch.tensor([[w0 - 1.0, h0 - 1.0], [0.0, 0.0], [1.0, 1.0]])
        k1 = torch.tensor([[w1 - 1.0, h1 - 1.0], [0.0, 0.0], [1.0, 1.0]])
        return self._result(k0, k1, torch.tensor([0.9, 0.1, 0.5]), image0, image1)


@pytest.mark.parametrize("swap", [True, False])
def test_feature_dense_swap_refines_in_image0(swap: bool) -> None:
    """With ``swap`` the network sees hloc's image1 first; either way the outputs belong to hloc's images."""
    register_matcher(RecordingMatcher.name, RecordingMatcher, overwrite=True)
    RecordingMatcher.calls.clear()
    try:
        model = dynamic_load(hloc_matchers, "gim_plugins_dense")(
            {"name": "gim_plugins_dense", "matcher": RecordingMatcher.name, "swap": swap, "max_num_matches": 2})
        out = model({"image0": torch.rand(1, 3, 40, 60), "image1": torch.rand(1, 3, 30, 20)})
    finally:
        unregister_matcher(RecordingMatcher.name)
    assert RecordingMatcher.calls == ([((30, 20), (40, 60))] if swap else [((40, 60), (30, 20))])
    assert set(out) == {"keypoints0", "keypoints1", "scores"}
    assert out["scores"].tolist() == pytest.approx([0.9, 0.5])  # top-2 of 3, no batch dimension
    assert out["keypoints0"].tolist() == [[59.0, 39.0], [1.0, 1.0]]  # hloc's image0 is 60×40
    assert out["keypoints1"].tolist() == [[19.0, 29.0], [1.0, 1.0]]  # hloc's image1 is 20×30


def test_exception_adapter_conf_errors() -> None:
    dense = dynamic_load(hloc_matchers, "gim_plugins_dense")
    with pytest.raises(ConfError, match=r"hloc adapter options: .*swap"):
        dense({"name": "gim_plugins_dense", "matcher": "root_sift", "not_an_option": 1})
    with pytest.raises(ValueError, match="needs 'matcher'"):
        dynamic_load(hloc_extractors, "gim_plugins_features")({"name": None})
    register_matcher(StarMatcher.name, StarMatcher, overwrite=True)
    try:
        with pytest.raises(ValueError, match="is dense"):
            dynamic_load(hloc_extractors, "gim_plugins_features")({"name": "x", "matcher": StarMatcher.name})
    finally:
        unregister_matcher(StarMatcher.name)


# ------------------------------------------------------------------------------------------------ sparse adapters


@pytest.fixture(scope="module")
def aliked_weights() -> None:
    from gim_plugins.matching import weights_available

    if not weights_available("aliked_lightglue"):
        pytest.skip("aliked_lightglue weights missing: run `gim weights fetch aliked_lightglue`")


def test_feature_sparse_extract_and_match_motorcycle(tmp_path: Path, aliked_weights: None) -> None:
    """aliked_n16 + aliked_lightglue through hloc: h5 layout, rescaling convention, agreement with GT disparity."""
    from gim_plugins.datasets import motorcycle
    from gim_plugins.io import read_image
    from gim_plugins.matching import load_matcher

    images = tmp_path / "images"
    images.mkdir()
    for side in ("left", "right"):
        (images / f"{side}.png").write_bytes(motorcycle.paths()[side].read_bytes())
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("left.png right.png\n")
    conf = {**extract_features.confs["aliked_n16"], "preprocessing": {"grayscale": False, "resize_max": 512}}
    features = extract_features.main(conf, images, export_dir=tmp_path, as_half=False)
    matches = match_features.main(match_features.confs["aliked_lightglue"], pairs, conf["output"],
                                  export_dir=tmp_path)

    with h5py.File(features, "r") as fd:
        group = fd["left.png"]
        assert set(group) == {"keypoints", "descriptors", "scores", "image_size"}
        n = group["keypoints"].shape[0]
        assert group["keypoints"].shape == (n, 2) and group["descriptors"].shape == (128, n)
        assert group["scores"].shape == (n,) and group["image_size"][()].tolist() == [741, 500]
    with h5py.File(matches, "r") as fd:
        group = fd["left.png"]["right.png"]
        assert group["matches0"].dtype == np.int16 and group["matching_scores0"].dtype == np.float16
        assert group["matches0"].shape == (n,)

    # hloc resized 741×500 → 512×345 (cv2 area) and mapped keypoints back with (k + 0.5)·s − 0.5: do the same by hand
    matcher = load_matcher("aliked_lightglue")
    left = read_image(images / "left.png")
    small = cv2.resize(left.astype(np.float32), (512, 345), interpolation=cv2.INTER_AREA)
    direct = matcher.extract(torch.from_numpy(small / 255.0).permute(2, 0, 1).float().clamp(0, 1)).keypoints.numpy()
    scale = np.array([741 / 512, 500 / 345], np.float32)
    expected = (direct + 0.5) * scale - 0.5
    np.testing.assert_allclose(get_keypoints(features, "left.png"), expected, atol=1e-3)

    idx, scores = get_matches(matches, "left.png", "right.png")
    kp0, kp1 = get_keypoints(features, "left.png"), get_keypoints(features, "right.png")
    ours, our_scores = h5io.read_matches(matches, "left.png", "right.png")  # gim_plugins.h5io agrees with hloc
    np.testing.assert_array_equal(ours, idx)
    np.testing.assert_allclose(our_scores, scores)
    np.testing.assert_array_equal(h5io.read_keypoints(features, "right.png"), kp1)
    share, count = motorcycle.disparity_agreement(kp0[idx[:, 0]], kp1[idx[:, 1]], motorcycle.load_disparity())
    assert len(idx) > 500 and share > 0.8, (len(idx), share, count)


def test_smoke_gim_hloc_self_test(capsys: pytest.CaptureFixture[str]) -> None:
    from gim_plugins.cli import main

    assert main(["hloc"]) == 0
    out = capsys.readouterr().out
    assert "finder installed" in out
    assert "python -m hloc.match_dense --conf: gim_dkm, gim_loftr" in out
    assert "python -m hloc.match_features --conf: aliked_lightglue, gim_lightglue" in out


def test_feature_h5io_files_are_read_by_hloc(tmp_path: Path) -> None:
    """Files written by gim_plugins.h5io load through hloc's own readers and match_features' dataset."""
    from hloc.match_features import FeaturePairsDataset

    rng = np.random.default_rng(0)
    features, matches = tmp_path / "feats.h5", tmp_path / "matches.h5"
    kps = {"a/x.png": rng.uniform(0, 100, (50, 2)), "b.png": rng.uniform(0, 100, (40, 2))}
    with h5io.atomic_h5(features) as handle:
        for name, kp in kps.items():
            h5io.write_features(handle, name, kp, descriptors=rng.normal(size=(len(kp), 8)),
                                scores=rng.uniform(size=len(kp)), image_size=(120, 160), uncertainty=1.5)
    pairs = np.array([[0, 3], [5, 1], [7, 39]])
    with h5io.atomic_h5(matches) as handle:
        h5io.write_matches(handle, "a/x.png", "b.png", pairs, 50, scores=[0.9, 0.8, 0.7])
    keypoints, uncertainty = get_keypoints(features, "a/x.png", return_uncertainty=True)
    np.testing.assert_allclose(keypoints, kps["a/x.png"], atol=0.05)  # float16 storage
    assert uncertainty == 1.5
    idx, scores = get_matches(matches, "b.png", "a/x.png")  # reversed query, flipped by hloc
    np.testing.assert_array_equal(idx, pairs[:, ::-1])
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.7], atol=1e-3)
    item = FeaturePairsDataset([("a/x.png", "b.png")], features, features)[0]
    assert item["descriptors0"].shape == (8, 50) and item["keypoints1"].shape == (40, 2)
    assert item["image0"].shape == (1, 120, 160)  # hloc derives the dummy image from (W, H) image_size


# -------------------------------------------------------------------------------------- gim_loftr, synthetic weights


def synthetic_checkpoint(matcher: str, manifest: str, prefix: str, path: Path) -> Path:
    """A checkpoint of random tensors in GIM's raw layout, from ``tests/fixtures/manifests/<manifest>.json``.

    Skips when the matcher is not registered or its manifest is absent (both land with the networks' work).
    """
    import json

    from gim_plugins.registry import list_matchers

    if matcher not in list_matchers():
        pytest.skip(f"the {matcher} matcher is not registered (it lands with its network's work)")
    source = Path(__file__).resolve().parents[1] / "fixtures" / "manifests" / f"{manifest}.json"
    if not source.is_file():
        pytest.skip(f"{source} is missing")
    generator = torch.Generator().manual_seed(0)
    state = {}
    for key, shape, dtype in json.loads(source.read_text()):
        if dtype == "int64":
            value = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=generator) + 0.5  # batch-norm variances must be positive
        else:
            value = (torch.rand(shape, generator=generator) - 0.5) * 0.2
        state[prefix + key] = value
    torch.save({"state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def loftr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gim_loftr_50h.ckpt``: random tensors with the raw keys ``model.<key>``."""
    path = tmp_path_factory.mktemp("weights") / "gim_loftr_50h.ckpt"
    return synthetic_checkpoint("gim_loftr", "gim_loftr", "model.", path)


@pytest.fixture(scope="module")
def lightglue_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gim_lightglue_100h.ckpt``: random tensors with the raw keys ``superpoint.*`` + ``model.*``."""
    path = tmp_path_factory.mktemp("weights") / "gim_lightglue_100h.ckpt"
    return synthetic_checkpoint("gim_lightglue", "gim_lightglue_checkpoint_layout", "", path)


@pytest.fixture(scope="module")
def dkm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gim_dkm_100h.ckpt``: random tensors with the raw keys ``model.<key>``."""
    path = tmp_path_factory.mktemp("weights") / "gim_dkm_100h.ckpt"
    return synthetic_checkpoint("gim_dkm", "gim_dkm", "model.", path)


def small_pair(directory: Path) -> Path:
    """The motorcycle pair cut to 320×240 crops in ``directory``; returns the pairs file."""
    from gim_plugins.datasets import motorcycle

    directory.mkdir(parents=True, exist_ok=True)
    for side in ("left", "right"):
        image = cv2.imread(str(motorcycle.paths()[side]))
        cv2.imwrite(str(directory / f"{side}.png"), image[130:370, 200:520])
    pairs = directory.parent / "pairs.txt"
    pairs.write_text("left.png right.png\n")
    return pairs


def test_feature_gim_loftr_match_dense_writes_valid_h5(tmp_path: Path, loftr_checkpoint: Path) -> None:
    """hloc.match_dense with the registered gim_loftr conf, a synthetic checkpoint and a matcher option."""
    import copy

    pairs = small_pair(tmp_path / "images")
    conf = copy.deepcopy(match_dense.confs["gim_loftr"])
    conf["model"].update(weights=str(loftr_checkpoint), coarse_threshold=0.0)  # random weights: keep every match
    features, matches = match_dense.main(conf, pairs, tmp_path / "images", export_dir=tmp_path)
    with h5py.File(matches, "r") as fd:
        group = fd["left.png"]["right.png"]
        k0, k1, scores = group["keypoints0"][()], group["keypoints1"][()], group["scores"][()]
        assert k0.dtype == k1.dtype == scores.dtype == np.float32
        assert k0.shape == k1.shape == (len(scores), 2) and len(scores) > 50
        for k in (k0, k1):
            assert np.all((k >= -0.5) & (k <= np.array([320, 240]) - 0.5))
        assert group["matches0"].dtype == np.int32 and group["matching_scores0"].dtype == np.float16
    with h5py.File(features, "r") as fd:
        assert set(fd["left.png"]) == {"keypoints", "score"} and fd["left.png"]["keypoints"].dtype == np.float32
    idx, _ = get_matches(matches, "left.png", "right.png")
    assert len(idx) > 0
    assert idx[:, 0].max() < len(get_keypoints(features, "left.png"))
    assert idx[:, 1].max() < len(get_keypoints(features, "right.png"))


@pytest.mark.slow  # DKM's sampling needs ≈4 GB even at this size: run under the heavy-job lock
def test_feature_gim_dkm_match_dense_writes_valid_h5(tmp_path: Path, dkm_checkpoint: Path) -> None:
    """hloc.match_dense with the registered gim_dkm conf (GIM's settings) at a small internal resolution."""
    import copy

    pairs = small_pair(tmp_path / "images")
    conf = copy.deepcopy(match_dense.confs["gim_dkm"])
    conf["model"].update(weights=str(dkm_checkpoint), h=224, w=288, upsample=False, num_samples=2000, seed=0)
    features, matches = match_dense.main(conf, pairs, tmp_path / "images", export_dir=tmp_path)
    with h5py.File(matches, "r") as fd:
        group = fd["left.png"]["right.png"]
        k0, k1, scores = group["keypoints0"][()], group["keypoints1"][()], group["scores"][()]
        assert k0.dtype == np.float32 and k0.shape == k1.shape == (len(scores), 2) and len(scores) > 100
        for k in (k0, k1):  # centre convention: inside [-0.5, size - 0.5]
            assert np.all((k >= -0.5) & (k <= np.array([320, 240]) - 0.5))
    idx, _ = get_matches(matches, "left.png", "right.png")
    assert len(idx) > 0 and idx[:, 0].max() < len(get_keypoints(features, "left.png"))


def test_feature_gim_roma_match_dense_writes_valid_h5(tmp_path: Path) -> None:
    """hloc.match_dense with the registered gim_roma conf (GIM's settings) at a small internal resolution, random
    weights (``pretrained=False``: a random DINOv2 file would be 1.2 GB)."""
    import copy

    pairs = small_pair(tmp_path / "images")
    conf = copy.deepcopy(match_dense.confs["gim_roma"])
    conf["model"].update(pretrained=False, h=112, w=112, upsample=False, num_samples=1000, seed=0)
    torch.manual_seed(0)
    features, matches = match_dense.main(conf, pairs, tmp_path / "images", export_dir=tmp_path)
    with h5py.File(matches, "r") as fd:
        group = fd["left.png"]["right.png"]
        k0, k1, scores = group["keypoints0"][()], group["keypoints1"][()], group["scores"][()]
        assert k0.dtype == np.float32 and k0.shape == k1.shape == (len(scores), 2) and len(scores) > 100
        for k in (k0, k1):  # centre convention, GIM's in-image filter: inside (-0.5, size - 1.5]
            assert np.all((k > -0.5) & (k <= np.array([320, 240]) - 1.5))
    idx, _ = get_matches(matches, "left.png", "right.png")
    assert len(idx) > 0 and idx[:, 0].max() < len(get_keypoints(features, "left.png"))


def three_pairs(directory: Path) -> list[tuple[str, str]]:
    """The motorcycle crops of :func:`small_pair` plus a third crop (shifted, smaller), as three pairs."""
    small_pair(directory)
    from gim_plugins.datasets import motorcycle

    image = cv2.imread(str(motorcycle.paths()["left"]))
    cv2.imwrite(str(directory / "third.png"), image[150:370, 230:510])
    return [("left.png", "right.png"), ("right.png", "third.png"), ("left.png", "third.png")]


def read_dense_matches(path: Path) -> dict[str, dict[str, np.ndarray]]:
    with h5py.File(path, "r") as fd:
        out = {}
        fd.visititems(lambda name, item: out.setdefault(name.rpartition("/")[0], {}).__setitem__(
            name.rpartition("/")[2], item[()]) if isinstance(item, h5py.Dataset) else None)
    return out


def test_feature_match_dense_batched_equals_hloc_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``batch_size`` in the gim_roma conf: hloc's ``match_dense`` runs 3 pairs in one forward pass and writes what
    hloc's own pair-by-pair loop writes (including the flip of a pair whose image0 is an existing reference)."""
    import copy

    from gim_plugins.registry import get_matcher_class

    pairs = three_pairs(tmp_path / "images")
    conf = copy.deepcopy(match_dense.confs["gim_roma"])
    conf["model"].update(pretrained=False, h=112, w=112, upsample=False, num_samples=800, seed=0)
    batches: list[int] = []
    roma = get_matcher_class("gim_roma")
    original_prepared = roma.match_prepared
    monkeypatch.setattr(roma, "match_prepared", lambda self, prepared: (
        batches.append(len(prepared)), original_prepared(self, prepared))[1])
    assert hasattr(match_dense.match_dense, "__wrapped__"), "the hloc.match_dense.wrappers entry point is not active"

    def run(batch_size: int | None, out: Path) -> dict[str, dict[str, np.ndarray]]:
        conf["model"]["batch_size"] = batch_size
        torch.manual_seed(0)  # random weights: the same in both runs
        match_dense.match_dense(conf, pairs, tmp_path / "images", out, existing_refs=["right.png"])
        return read_dense_matches(out)

    single = run(None, tmp_path / "single.h5")  # the CPU without batch_size: hloc's own loop
    assert batches == []
    batched = run(3, tmp_path / "batched.h5")
    assert batches == [3]
    assert set(single) == set(batched) == {"left.png/right.png", "right.png/third.png", "left.png/third.png"}
    for pair in single:
        assert set(single[pair]) == set(batched[pair]) == {"keypoints0", "keypoints1", "scores"}
        assert len(single[pair]["scores"]) > 100
        for key in single[pair]:
            assert batched[pair][key].dtype == single[pair][key].dtype
            np.testing.assert_allclose(batched[pair][key], single[pair][key], atol=1e-3, err_msg=f"{pair} {key}")
    # the flipped pair (image0 is a reference) keeps hloc's sides: keypoints0 lie in right.png (320×240)
    k0 = batched["right.png/third.png"]["keypoints0"]
    assert np.all((k0 > -0.5) & (k0 <= np.array([320, 240]) - 0.5))


def test_exception_match_dense_batch_size_must_be_positive(tmp_path: Path) -> None:
    import copy

    conf = copy.deepcopy(match_dense.confs["gim_roma"])
    conf["model"].update(pretrained=False, h=112, w=112, batch_size=0)
    with pytest.raises(ConfError, match="batch_size must be a positive integer"):
        dynamic_load(hloc_matchers, conf["model"]["name"])(conf["model"])


def test_smoke_gim_loftr_hloc_cli(tmp_path: Path, loftr_checkpoint: Path) -> None:
    """``python -m hloc.match_dense --conf gim_loftr`` end to end, weights found through ``$GIM_WEIGHTS_DIR``."""
    pairs = small_pair(tmp_path / "images")
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k != _bootstrap.ENV_DISABLE}
    env["GIM_WEIGHTS_DIR"] = str(loftr_checkpoint.parent)
    env["GIM_WEIGHTS_ALLOW_MISMATCH"] = "1"  # a synthetic stand-in under the official name (a warning, not a refusal)
    proc = subprocess.run([sys.executable, "-m", "hloc.match_dense", "--conf", "gim_loftr", "--pairs", str(pairs),
                           "--image_dir", str(tmp_path / "images"), "--export_dir", str(out),
                           "--matches", str(out / "matches.h5"), "--features", "feats_"],
                          capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with h5py.File(out / "matches.h5", "r") as fd:
        group = fd["left.png"]["right.png"]
        assert {"keypoints0", "keypoints1", "scores", "matches0", "matching_scores0"} <= set(group)
    assert (out / "feats_matches-gim_loftr.h5").is_file()


def test_feature_gim_superpoint_gim_lightglue_through_hloc(tmp_path: Path, lightglue_checkpoint: Path) -> None:
    """extract_features(gim_superpoint) + match_features(gim_lightglue) on a synthetic checkpoint: hloc's layouts,
    and keypoints passed through unchanged (GIM's own SuperPoint reports them +0.5 px)."""
    from gim_plugins.matching import load_matcher

    pairs = small_pair(tmp_path / "images")
    conf = {**extract_features.confs["gim_superpoint"],
            "model": {"name": "gim_superpoint", "weights": str(lightglue_checkpoint)}}
    features = extract_features.main(conf, tmp_path / "images", export_dir=tmp_path, as_half=False)
    matcher_conf = {**match_features.confs["gim_lightglue"],
                    "model": {"name": "gim_lightglue", "weights": str(lightglue_checkpoint)}}
    matches = match_features.main(matcher_conf, pairs, conf["output"], export_dir=tmp_path)
    with h5py.File(features, "r") as fd:
        group = fd["left.png"]
        assert group["keypoints"].shape == (2048, 2) and group["descriptors"].shape == (256, 2048)
        assert group["image_size"][()].tolist() == [320, 240]
    with h5py.File(matches, "r") as fd:
        assert fd["left.png"]["right.png"]["matches0"].shape == (2048,)
    direct = load_matcher("gim_lightglue", weights=str(lightglue_checkpoint))
    gray = cv2.imread(str(tmp_path / "images" / "left.png"), cv2.IMREAD_GRAYSCALE)  # as hloc reads it
    expected = direct.extract(gray).keypoints.numpy()
    ours = get_keypoints(features, "left.png")
    # random weights give many equal scores, whose order top-k does not fix: compare the sets of positions
    np.testing.assert_allclose(ours[np.lexsort(ours.T)], expected[np.lexsort(expected.T)], atol=1e-4)
    idx, _ = get_matches(matches, "left.png", "right.png")
    assert idx.size == 0 or (idx.max() < 2048 and idx.min() >= 0)


# ------------------------------------------------------------------------------------------------- reconstruction


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity ``(s, R, t)`` minimising ``|| s·R·source + t − target ||`` over (N, 3) point sets."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    u, d, vt = np.linalg.svd(xt.T @ xs / len(source))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / xs.var(0).sum())
    return scale, rotation, mu_t - scale * rotation @ mu_s


def pose_errors(model: Any, views: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Camera-centre errors (metres, after a similarity alignment) and relative-rotation errors (degrees, all pairs).

    Rotations are compared pairwise (``R_j R_iᵀ``), which needs no alignment: aligning by camera centres alone would
    add a rotation error of the order of centre error / camera spread (≈1° here) to every camera.
    """
    by_name = {view.name: view for view in views}
    names = sorted(image.name for image in model.images.values())
    poses = {image.name: image.cam_from_world() for image in model.images.values()}
    rotations = {name: poses[name].rotation.matrix() for name in names}
    estimated = np.array([-rotations[n].T @ np.asarray(poses[n].translation) for n in names])
    truth = np.array([by_name[n].center for n in names])
    scale, align, shift = umeyama(estimated, truth)
    centre_errors = np.linalg.norm(scale * estimated @ align.T + shift - truth, axis=1)
    rotation_errors = []
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            relative_est = rotations[second] @ rotations[first].T
            relative_gt = by_name[second].R @ by_name[first].R.T
            cos = (np.trace(relative_gt.T @ relative_est) - 1) / 2
            rotation_errors.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return centre_errors, np.array(rotation_errors)


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    scene = pytest.importorskip("gim_plugins.datasets.scene", reason="the rendered scene comes with the colmap work")
    views = scene.render_motorcycle_scene(num_views=6, seed=0, include_real=True, with_depth=False)
    directory = tmp_path_factory.mktemp("scene")
    scene.write_scene(views, directory)
    return directory, views


def reconstruct(tmp_path: Path, images: Path, pairs: Path, features: Path, matches: Path, views: list[Any]) -> Any:
    from hloc import reconstruction

    model = reconstruction.main(tmp_path / "sfm", images, pairs, features, matches,
                                image_list=[view.name for view in views])
    assert model is not None, "hloc reconstruction produced no model"
    centre, rotation = pose_errors(model, views)
    extent = np.ptp(np.array([view.center for view in views]), axis=0).max()
    print(f"registered {model.num_reg_images()}/{len(views)} images, {model.num_points3D()} points, "
          f"reprojection {model.compute_mean_reprojection_error():.2f} px; camera centres: median "
          f"{np.median(centre) * 1000:.1f} mm, max {centre.max() * 1000:.1f} mm (camera spread {extent:.2f} m); "
          f"relative rotations: median {np.median(rotation):.2f}°, max {rotation.max():.2f}°")
    return model, centre, rotation, extent


@pytest.mark.slow
def test_feature_reconstruction_sparse_aliked(tmp_path: Path, scene_dir: tuple[Path, list[Any]],
                                              aliked_weights: None) -> None:
    """hloc extract_features(aliked_n16) + match_features(aliked_lightglue) + reconstruction registers every image."""
    from hloc import pairs_from_exhaustive

    images, views = scene_dir
    pairs = tmp_path / "pairs.txt"
    pairs_from_exhaustive.main(pairs, image_list=[view.name for view in views])
    conf = extract_features.confs["aliked_n16"]
    features = extract_features.main(conf, images, export_dir=tmp_path, image_list=[view.name for view in views])
    matches = match_features.main(match_features.confs["aliked_lightglue"], pairs, conf["output"],
                                  export_dir=tmp_path)
    model, centre, rotation, extent = reconstruct(tmp_path, images, pairs, features, matches, views)
    assert model.num_reg_images() == len(views)
    assert np.median(centre) < 0.03 * extent and np.median(rotation) < 1.0


@pytest.mark.slow
def test_feature_reconstruction_dense_path(tmp_path: Path, scene_dir: tuple[Path, list[Any]],
                                           aliked_weights: None) -> None:
    """hloc match_dense (GIM's dense settings, a real learned matcher) + reconstruction registers every image."""
    from hloc import pairs_from_exhaustive

    images, views = scene_dir
    pairs = tmp_path / "pairs.txt"
    pairs_from_exhaustive.main(pairs, image_list=[view.name for view in views])
    conf = {**match_dense.confs["gim_dkm"], "output": "matches-dense-aliked",
            "model": {"name": "gim_plugins_dense", "matcher": "aliked_lightglue"}}
    features, matches = match_dense.main(conf, pairs, images, export_dir=tmp_path)
    model, centre, rotation, extent = reconstruct(tmp_path, images, pairs, features, matches, views)
    assert model.num_reg_images() == len(views)
    assert np.median(centre) < 0.03 * extent and np.median(rotation) < 1.0
