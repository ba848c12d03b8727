"""GIM's BalanceSampler: per-epoch resampling to maxlen, 1/len^0.75 weights, interleaving, disjoint rank shards whose
union is the epoch's sample list, set_epoch reshuffling."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gim_plugins.training.data.sampler import BalanceSampler


class Fake:
    def __init__(self, kind: str, size: int) -> None:
        self.kind, self.size = kind, size

    def __len__(self) -> int:
        return self.size


DATASETS = [Fake("megadepth", 40), Fake("megadepth", 400), Fake("walk", 7), Fake("walk", 13), Fake("colmap", 30)]
MAXLEN = {"megadepth": 120, "walk": 60, "colmap": 30}


def _kind_of(index: int) -> str:
    offsets = np.cumsum([0] + [len(d) for d in DATASETS])
    return DATASETS[int(np.searchsorted(offsets, index, side="right")) - 1].kind


def test_cardinality_per_kind_lengths():
    sampler = BalanceSampler(DATASETS, MAXLEN, seed=1)
    keys = list(sampler)
    assert len(keys) == len(sampler) == 210
    counts = Counter(_kind_of(i) for i, _ in keys)
    assert counts == {"megadepth": 120, "walk": 60, "colmap": 30}
    walk = [i for i, _ in keys if _kind_of(i) == "walk"]
    assert set(walk) == set(range(440, 460))  # undersized: every item, plus draws with replacement
    colmap = sorted(i for i, _ in keys if _kind_of(i) == "colmap")
    assert colmap == list(range(460, 490))  # exactly its length: a permutation
    mega = [i for i, _ in keys if _kind_of(i) == "megadepth"]
    assert len(set(mega)) == 120  # oversized: drawn without replacement
    assert all(epoch == 0 for _, epoch in keys)


def test_feature_small_scenes_are_favoured():
    """Weights 1/len^0.75, drawn without replacement: the 40-item scene's share of the 120 MegaDepth draws matches
    GIM's ``WeightedRandomSampler(replacement=False)`` (torch.multinomial) and far exceeds its 40/440 share."""
    import torch

    shares = []
    for epoch in range(60):
        sampler = BalanceSampler(DATASETS, MAXLEN, seed=3)
        sampler.set_epoch(epoch)
        mega = [i for i, _ in sampler if _kind_of(i) == "megadepth"]
        shares.append(np.mean([i < 40 for i in mega]))
    weights = torch.tensor([40 ** -0.75] * 40 + [400 ** -0.75] * 400, dtype=torch.float64)
    reference = [float((torch.multinomial(weights, 120, generator=torch.Generator().manual_seed(k)) < 40)
                       .double().mean()) for k in range(600)]
    assert abs(np.mean(shares) - np.mean(reference)) < 0.015
    assert np.mean(shares) > 2.5 * 40 / 440


def test_feature_interleaving_is_proportional():
    keys = [i for i, _ in BalanceSampler(DATASETS, MAXLEN, seed=1)]
    kinds = [_kind_of(i) for i in keys]
    # in every window of 7 items: 4 MegaDepth, 2 walk, 1 colmap (shares 120 : 60 : 30)
    for start in range(0, 210, 7):
        assert Counter(kinds[start:start + 7]) == {"megadepth": 4, "walk": 2, "colmap": 1}


@pytest.mark.parametrize("world", [1, 2])
def test_feature_ranks_get_disjoint_shards_whose_union_is_the_epoch(world):
    reference = BalanceSampler(DATASETS, MAXLEN, seed=7)
    reference.set_epoch(4)
    epoch_list = Counter(i for i, _ in reference)
    shards = []
    for rank in range(world):
        sampler = BalanceSampler(DATASETS, MAXLEN, seed=7, rank=rank, world_size=world)
        sampler.set_epoch(4)
        shards.append([i for i, _ in sampler])
        assert len(shards[-1]) == len(sampler) == 210 // world
    union = Counter(i for shard in shards for i in shard)
    assert union == epoch_list  # together exactly the epoch's sample list (positions are disjoint)
    positions = [reference.epoch_indices()[k] for k in range(3)]
    for rank in range(world):  # each rank takes every world-th item of each kind's list
        expected = Counter(int(i) for p in positions for i in p[rank::world])
        assert Counter(shards[rank]) == expected


def test_feature_set_epoch_reshuffles_deterministically():
    a = BalanceSampler(DATASETS, MAXLEN, seed=11)
    b = BalanceSampler(DATASETS, MAXLEN, seed=11)
    first = [i for i, _ in a]
    assert first == [i for i, _ in b]
    a.set_epoch(1)
    second = list(a)
    assert [i for i, _ in second] != first and all(e == 1 for _, e in second)
    b.set_epoch(1)
    assert list(b) == second
    a.set_epoch(0)
    assert [i for i, _ in a] == first


def test_cardinality_uneven_world_drops_the_remainder():
    sampler = BalanceSampler([Fake("walk", 5)], {"walk": 11}, rank=1, world_size=3)
    assert len(sampler) == len(list(sampler)) == 3  # 11 → 9 items, 3 per rank (DistributedSampler drop_last)


def test_exception_bad_arguments():
    with pytest.raises(ValueError, match="rank 2 is not in"):
        BalanceSampler(DATASETS, MAXLEN, rank=2, world_size=2)
    with pytest.raises(ValueError, match="maxlen names kinds with no dataset"):
        BalanceSampler(DATASETS, {"scannet": 10})
