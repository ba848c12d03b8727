"""Batched matching: B pairs of a dense warp matcher in one forward pass give each pair's unbatched result (CPU, random
weights, tiny canvases, seeded sampling); the worker pipeline keeps order and reports failures; batch sizes.

The GP's "faithful" slice behaviour normally needs > 2000 coarse cells (GIM's 672×896); the tests lower
``GP_LOOP_THRESHOLD`` so that the tiny canvases take that branch too, and the per-pair semantics are checked there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gim_plugins.models._arch import gp as gp_module
from gim_plugins.models.batching import BatchSizer, batch_size_for_memory, iter_matches
from gim_plugins.models.gim_dkm import GIMDKM
from gim_plugins.types import MatchResult

DKM_TINY = {"h": 32, "w": 64, "upsample": True, "upsample_res": (48, 64), "num_samples": 300, "seed": 0}


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Four textured images of different sizes and aspects (two of them need padding to the canvas aspect)."""
    rng = np.random.default_rng(3)
    base = (rng.random((160, 220, 3)) * 255).astype(np.uint8)
    return [base[:120, :180], base[20:140, 30:190], base[10:150, 5:120], base[:96, 40:216]]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dkm() -> GIMDKM:
    torch.manual_seed(0)
    return GIMDKM(DKM_TINY, pretrained=False)


def assert_same(a: MatchResult, b: MatchResult, atol: float = 1e-3) -> None:
    assert (a.image_size0, a.image_size1) == (b.image_size0, b.image_size1)
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.keypoints0, b.keypoints0, atol=atol, rtol=0)
    torch.testing.assert_close(a.keypoints1, b.keypoints1, atol=atol, rtol=0)
    torch.testing.assert_close(a.confidence, b.confidence, atol=1e-4, rtol=0)


@pytest.mark.parametrize("faithful_branch", [False, True], ids=["own-inverse", "faithful-slice"])
def test_feature_dkm_batched_equals_unbatched(dkm, images, monkeypatch, faithful_branch):
    if faithful_branch:
        monkeypatch.setattr(gp_module, "GP_LOOP_THRESHOLD", 4)  # 2×4 cells at stride 16 now take that branch
    pairs = [(images[0], images[1]), (images[2], images[0]), (images[3], images[2])]
    single = [dkm.match(a, b) for a, b in pairs]
    batched = dkm.match_batch(pairs, batch_size=3, workers=2)
    for one, many in zip(single, batched):
        assert_same(one, many)
        assert many.timing["batch"] == 3


def test_feature_dkm_batch_dense_outputs_match(dkm, images):
    """The warps and certainties themselves (before sampling) agree per pair."""
    prepared = [dkm.prepare_pair(images[0], images[1]), dkm.prepare_pair(images[3], images[2])]
    with torch.inference_mode():
        warps, certainties = dkm.dense_canvases(
            torch.cat([prepared[0].coarse[:1], prepared[1].coarse[:1], prepared[0].coarse[1:], prepared[1].coarse[1:]]),
            torch.cat([prepared[0].fine[:1], prepared[1].fine[:1], prepared[0].fine[1:], prepared[1].fine[1:]]),
            torch.cat([prepared[0].black[:1], prepared[1].black[:1], prepared[0].black[1:], prepared[1].black[1:]]))
        for index, pair in enumerate(prepared):
            warp, certainty = dkm.dense_canvases(pair.coarse, pair.fine, pair.black)
            torch.testing.assert_close(warps[index], warp[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(certainties[index], certainty[0], atol=1e-4, rtol=0)
    assert warps.shape == (2, 48, 128, 4) and certainties.shape == (2, 48, 128)


def test_feature_gp_faithful_is_per_pair(monkeypatch):
    """GP over [A1, A2; B1, B2] with the slice behaviour = each pair alone."""
    monkeypatch.setattr(gp_module, "GP_LOOP_THRESHOLD", 4)
    torch.manual_seed(1)
    gp = gp_module.GP(gp_dim=8).eval()
    a, b = torch.randn(2, 16, 3, 4), torch.randn(2, 16, 3, 4)
    batch = torch.cat([a, b])
    support = batch[[2, 3, 0, 1]]
    together = gp(batch, support, faithful=True, pairs=2)
    for k in range(2):
        alone = gp(torch.stack([a[k], b[k]]), torch.stack([b[k], a[k]]), faithful=True, pairs=1)
        torch.testing.assert_close(together[[k, k + 2]], alone, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="symmetric pairs"):
        gp(batch[:3], support[:3], faithful=True, pairs=2)


def test_feature_unbatched_match_equals_the_single_pair_recipe(dkm, images):
    """``match`` (the batch of one) = pad, the network's single-pair ``dense_match``, sample, to pixels: exactly."""
    from gim_plugins.models.dense_warp import matches_to_keypoints

    result = dkm.match(images[3], images[1])
    im0 = torch.from_numpy(images[3]).permute(2, 0, 1).float()[None] / 255
    im1 = torch.from_numpy(images[1]).permute(2, 0, 1).float()[None] / 255
    with torch.inference_mode():
        padded0, pad0 = dkm._pad(im0)
        padded1, pad1 = dkm._pad(im1)
        assert pad0 != (0, 0)  # this pair exercises the padding
        warp, certainty = dkm.dense(padded0, padded1)
        matches, confidence = dkm.sample(warp, certainty)
    k0, k1, confidence = matches_to_keypoints(
        matches, confidence, (padded0.shape[-2:], padded1.shape[-2:]), (pad0, pad1), (im0.shape[-2:], im1.shape[-2:]),
        bounds_filter=dkm.conf.bounds_filter, drop_zero_confidence=dkm.conf.drop_zero_confidence)
    assert torch.equal(result.keypoints0, k0 - 0.5) and torch.equal(result.keypoints1, k1 - 0.5)
    assert torch.equal(result.confidence, confidence)


def test_feature_iter_matches_keeps_order_for_a_sparse_matcher(images):
    from gim_plugins.models.root_sift import RootSIFT

    matcher = RootSIFT()
    items = [(f"p{i}", images[i], images[(i + 1) % 4]) for i in range(4)]
    out = list(iter_matches(matcher, items, workers=2))
    assert [key for key, _ in out] == ["p0", "p1", "p2", "p3"]
    for (_, a, b), (_, result) in zip(items, out):
        expected = matcher.match(a, b)
        assert torch.equal(result.keypoints0, expected.keypoints0)
        assert result.timing["total"] > 0


@pytest.mark.parametrize("workers", [0, 2])
def test_exception_a_bad_pair_raises_in_order(dkm, images, workers):
    items = [("ok", images[0], images[1]), ("bad", images[0], "missing-file.png"), ("late", images[1], images[2])]
    seen = []
    with pytest.raises(FileNotFoundError, match=r"missing-file\.png"):
        for key, _ in iter_matches(dkm, items, batch_size=1, workers=workers):
            seen.append(key)
    assert seen == ["ok"]


def test_exception_bad_batch_size(dkm):
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="batch_size"):
            BatchSizer(dkm, bad)


def test_cardinality_batch_sizes(dkm):
    assert batch_size_for_memory(10 * 2**30, 1 * 2**30, 16) == 8  # 0.8 · 10 GB / 1 GB
    assert batch_size_for_memory(100 * 2**30, 1 * 2**30, 16) == 16
    assert batch_size_for_memory(0.5 * 2**30, 1 * 2**30, 16) == 1
    assert BatchSizer(dkm).size == 1  # CPU, automatic: one pair at a time
    assert BatchSizer(dkm, 4).size == 4
    from gim_plugins.models.root_sift import RootSIFT

    assert BatchSizer(RootSIFT(), 4).size == 1  # no batched forward pass: batches of one


class _RunsOutOfMemory:
    """A stand-in matcher whose forward pass fails for batches of more than two pairs."""

    supports_batching = True
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.calls: list[int] = []

    def match_prepared(self, prepared):
        self.calls.append(len(prepared))
        if len(prepared) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return [MatchResult.empty((4, 4), (4, 4), f"{p}") for p in prepared]


def test_feature_out_of_memory_halves_the_batch():
    matcher = _RunsOutOfMemory()
    sizer = BatchSizer(matcher, 8)
    results = sizer.run(list(range(8)))
    assert [r.matcher for r in results] == [str(i) for i in range(8)]
    assert sizer.size == 2 and matcher.calls == [8, 4, 2, 2, 4, 2, 2]


def test_feature_roma_batched_equals_unbatched(images):
    from gim_plugins.models.gim_roma import GIMRoMa

    torch.manual_seed(0)
    roma = GIMRoMa({"h": 56, "w": 56, "upsample": True, "upsample_res": (64, 64), "num_samples": 200, "seed": 0},
                   pretrained=False)
    pairs = [(images[0], images[1]), (images[3], images[2])]
    single = [roma.match(a, b) for a, b in pairs]
    for one, many in zip(single, roma.match_batch(pairs, batch_size=2, workers=1)):
        assert_same(one, many)
