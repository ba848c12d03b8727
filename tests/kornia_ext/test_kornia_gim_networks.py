"""GIMMatcher over the GIM networks, loaded from synthetic checkpoints built from the manifests (tiny inputs, CPU).

Official GIM weights are not available offline: each checkpoint here has the real file's keys, shapes and dtypes
(``tests/fixtures/manifests``) with random values, is written to disk and loaded through ``weights=PATH`` exactly as a
downloaded one would be. Options keep the random networks cheap and productive (a threshold of 0 so that random
scores still give matches; DKM seeded, since it samples its matches). A network not on this branch is skipped.
"""

from __future__ import annotations

import pytest
import torch
from kornia.feature import DescriptorMatcher, LocalFeatureMatcher
from kornia_helpers import MANIFESTS, shifted_pair, synthetic_checkpoint

from gim_plugins import list_matchers, load_matcher
from gim_plugins.kornia_ext import GIMLocalFeature, GIMMatcher

NETWORKS = {
    # name: (manifest, key prefix in the released file, registry weight name, options)
    "gim_loftr": ("gim_loftr", "model.", "gim_loftr_50h", {"coarse_threshold": 0.0}),
    "gim_lightglue": ("gim_lightglue_checkpoint_layout", "", "gim_lightglue_100h",
                      {"max_keypoints": 128, "filter_threshold": 0.0}),
    "gim_dkm": ("gim_dkm", "model.", "gim_dkm_100h", {"h": 96, "w": 128, "upsample": False, "num_samples": 200,
                                                       "seed": 0}),
}
OUTPUT_KEYS = ("keypoints0", "keypoints1", "confidence", "batch_indexes")
SIZES = ((64, 96), (72, 88))


def _available(name: str) -> bool:
    return name in list_matchers() and (MANIFESTS / f"{NETWORKS[name][0]}.json").is_file()


@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.skipif(
    not _available(name), reason=f"{name} is not on this branch yet")) for name in NETWORKS])
def name(request):
    return request.param


@pytest.fixture(scope="module")
def checkpoint(name, tmp_path_factory):
    manifest, prefix, weight, _ = NETWORKS[name]
    path = tmp_path_factory.mktemp(name) / f"{weight}.ckpt"
    torch.save(synthetic_checkpoint(manifest, prefix, seed=1), path)
    return path


@pytest.fixture(scope="module")
def matcher(name, checkpoint):
    return GIMMatcher(name, weights=checkpoint, **NETWORKS[name][3])


@pytest.fixture(scope="module")
def data():
    pairs = [shifted_pair(*SIZES, seed=seed) for seed in (0, 1)]
    return {"image0": torch.stack([p[0] for p in pairs]), "image1": torch.stack([p[1] for p in pairs])}


@pytest.fixture(scope="module")
def output(matcher, data):
    return matcher(data)


def _rows(out, b):
    keep = out["batch_indexes"] == b
    return out["keypoints0"][keep], out["keypoints1"][keep], out["confidence"][keep]


def test_smoke_synthetic_checkpoint(name, matcher, checkpoint, output):
    assert matcher.name == name and checkpoint.name in matcher.matcher.weights_id
    assert set(output) == set(OUTPUT_KEYS)
    assert output["keypoints0"].dtype == torch.float32 and output["batch_indexes"].dtype == torch.int64
    assert set(output["batch_indexes"].tolist()) == {0, 1}  # both pairs matched something


def test_cardinality(output):
    for b in (0, 1):
        k0, k1, conf = _rows(output, b)
        for k, (h, w) in ((k0, SIZES[0]), (k1, SIZES[1])):
            assert bool((k >= -0.5).all()) and bool((k[:, 0] <= w - 0.5).all()) and bool((k[:, 1] <= h - 0.5).all())
        assert bool(torch.isfinite(conf).all())


def test_batch_equals_load_matcher_per_pair(name, checkpoint, data, output):
    reference = load_matcher(name, weights=checkpoint, **NETWORKS[name][3])
    for b in (0, 1):
        result = reference.match(data["image0"][b], data["image1"][b])
        k0, k1, conf = _rows(output, b)
        assert torch.equal(k0, result.keypoints0) and torch.equal(k1, result.keypoints1)
        assert torch.equal(conf, result.confidence)


def test_gray_input(matcher, data):
    gray = {k: v.mean(1, keepdim=True)[:1] for k, v in data.items()}
    out = matcher(gray)
    result = matcher.matcher.match(gray["image0"][0].expand(3, -1, -1), gray["image1"][0].expand(3, -1, -1))
    assert torch.equal(out["keypoints0"], result.keypoints0) and torch.equal(out["confidence"], result.confidence)


def test_dtype_half_input(matcher, data):
    half = {k: v[:1].half() for k, v in data.items()}
    out = matcher(half)
    result = matcher.matcher.match(half["image0"][0].float(), half["image1"][0].float())
    assert out["keypoints0"].dtype == torch.float32 and torch.equal(out["keypoints0"], result.keypoints0)


def test_ignore_mask(matcher, data):
    mask0 = torch.ones(2, *SIZES[0])
    mask0[:, :, : SIZES[0][1] // 2] = 0  # not padding: the matcher sees the image, matches on the left are dropped
    out = matcher({**data, "mask0": mask0})
    assert len(out["keypoints0"]) > 0 and bool((out["keypoints0"][:, 0].round() >= SIZES[0][1] // 2).all())


def test_padding_mask_equals_the_unpadded_pair(matcher, data):
    height, width = SIZES[1]
    padded = torch.zeros(2, 3, height + 16, width + 24)
    padded[:, :, :height, :width] = data["image1"]
    mask1 = torch.zeros(2, height + 16, width + 24)
    mask1[:, :height, :width] = 1
    out = matcher({"image0": data["image0"], "image1": padded, "mask1": mask1})
    unpadded = matcher(data)
    assert all(torch.equal(out[key], unpadded[key]) for key in OUTPUT_KEYS)


def test_exception_dtype_cast_names_the_precision_option(name, matcher):
    precision = "precision" in type(matcher.matcher).default_conf
    with pytest.raises(TypeError, match="'precision' option" if precision else "keeps its network in float32"):
        matcher.half()


def test_exception_default_weights_missing(name, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("GIM_WEIGHTS_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=f"gim weights (fetch|import).*{NETWORKS[name][2]}"):
        GIMMatcher(name, **NETWORKS[name][3])


def test_feature_extractor_half(name, matcher, data):
    if not matcher.is_sparse:
        with pytest.raises(TypeError, match="dense matcher"):
            matcher.local_feature()
        return
    local = matcher.local_feature()
    lafs, responses, descriptors = local(data["image0"])
    assert lafs.shape[:2] == responses.shape == descriptors.shape[:2] and descriptors.shape[-1] == 256
    out = LocalFeatureMatcher(GIMLocalFeature(matcher.matcher), DescriptorMatcher("mnn"))(data)
    assert len(out["keypoints0"]) > 0
