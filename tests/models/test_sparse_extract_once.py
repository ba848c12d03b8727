"""Both sparse matchers extract each image exactly once when matching all pairs through a FeatureCache."""

from __future__ import annotations

import itertools

import h5py
import pytest
import torch
from _ll_synthetic import one_thread

from gim_plugins import FeatureCache, load_matcher
from gim_plugins.models.base import SparseMatcher

NUM_IMAGES = 4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    yield from one_thread()


@pytest.fixture(scope="module", params=["gim_lightglue", "aliked_lightglue"])
def counted(request) -> tuple[SparseMatcher, list[str]]:
    """A random-weight sparse matcher (small keypoint budget) whose ``_extract`` calls are recorded."""
    matcher = load_matcher(request.param, pretrained=False, max_keypoints=128)
    calls: list[tuple[int, ...]] = []
    original = matcher._extract

    def recording(image: torch.Tensor):  # type: ignore[no-untyped-def]
        calls.append(tuple(image.shape))
        return original(image)

    matcher._extract = recording  # type: ignore[method-assign]
    return matcher, calls


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {f"dir/img{i}.png": torch.rand(3, 64 + 8 * i, 80, generator=generator) for i in range(NUM_IMAGES)}


def _all_pairs(cache: FeatureCache, images: dict[str, torch.Tensor]) -> dict[tuple[str, str], torch.Tensor]:
    return {(a, b): cache.match(a, b, images[a], images[b]).keypoints0
            for a, b in itertools.combinations(sorted(images), 2)}


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "h5"])
def test_cardinality_each_image_extracted_once(counted, images, tmp_path, on_disk):
    matcher, calls = counted
    calls.clear()
    cache = FeatureCache(matcher, tmp_path / "feats.h5" if on_disk else None)
    results = _all_pairs(cache, images)
    assert len(results) == NUM_IMAGES * (NUM_IMAGES - 1) // 2
    assert cache.num_extracted == NUM_IMAGES and len(calls) == NUM_IMAGES
    # the cached path gives what direct extraction + matching gives
    a, b = sorted(images)[:2]
    direct = matcher.match_features(matcher.extract(images[a]), matcher.extract(images[b]))
    assert torch.equal(results[(a, b)], direct.keypoints0)


def test_feature_h5_cache_resumes_without_reextracting(counted, images, tmp_path):
    matcher, calls = counted
    path = tmp_path / "feats.h5"
    first = FeatureCache(matcher, path)
    names = sorted(images)
    for name in names[:2]:  # an interrupted run: two of four images done
        first.get(name, images[name])
    calls.clear()
    resumed = FeatureCache(matcher, path)
    _all_pairs(resumed, images)
    assert resumed.num_extracted == NUM_IMAGES - 2 and len(calls) == NUM_IMAGES - 2
    assert sorted(resumed.keys()) == names  # nested groups from "dir/…" names
    calls.clear()
    again = FeatureCache(matcher, path)
    _all_pairs(again, images)
    assert again.num_extracted == 0 and calls == []


def test_feature_half_written_entry_is_extracted_again(counted, images, tmp_path):
    matcher, calls = counted
    path = tmp_path / "feats.h5"
    name = sorted(images)[0]
    FeatureCache(matcher, path).get(name, images[name])
    with h5py.File(path, "a") as handle:  # simulate a crash before the entry was complete
        del handle[name].attrs["image_size"]
    calls.clear()
    cache = FeatureCache(matcher, path)
    assert name not in cache and list(cache.keys()) == []
    features = cache.get(name, images[name])
    assert len(calls) == 1 and features.image_size == tuple(images[name].shape[-2:])
    assert name in FeatureCache(matcher, path)


def test_cardinality_file_backed_cache_keeps_a_bounded_number_in_memory(counted, images, tmp_path):
    """``max_in_memory=2``: never more than 2 images decoded, evicted ones read back from the file (not extracted
    again) with the same tensors; the same matches as an unbounded cache."""
    matcher, calls = counted
    calls.clear()
    unbounded = _all_pairs(FeatureCache(matcher, None), images)
    calls.clear()
    bounded = FeatureCache(matcher, tmp_path / "feats.h5", max_in_memory=2)
    sizes = []
    results = {}
    for a, b in itertools.combinations(sorted(images), 2):
        results[(a, b)] = bounded.match(a, b, images[a], images[b]).keypoints0
        sizes.append(len(bounded._memory))
    assert max(sizes) == 2 and bounded.num_extracted == NUM_IMAGES and len(calls) == NUM_IMAGES
    assert all(torch.equal(results[pair], unbounded[pair]) for pair in unbounded)
    memory_only = FeatureCache(matcher, None, max_in_memory=2)  # nothing to read back: no bound
    for name in images:
        memory_only.get(name, images[name])
    assert len(memory_only._memory) == NUM_IMAGES
    with pytest.raises(ValueError, match="max_in_memory must be a positive integer"):
        FeatureCache(matcher, tmp_path / "other.h5", max_in_memory=0)
