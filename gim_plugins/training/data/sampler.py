"""GIM's ``BalanceSampler``: every epoch each kind of data is resampled to a fixed length and the kinds are mixed.

GIM's rule (``datasets/sampler.py`` of its training branches), per epoch and per kind of dataset (MegaDepth, ScanNet,
WALK there; ``walk``, ``megadepth``, ``colmap``, ``zeb`` here):

* fewer items than ``maxlen[kind]``: draw the missing ones uniformly with replacement and put them before the rest;
* more items: draw ``maxlen[kind]`` without replacement with weights ``1 / len(scene)^0.75`` (each dataset is one
  scene or video, so small scenes are not drowned by big ones);
* then shuffle, shard over ranks (rank ``r`` of ``n`` takes every ``n``-th item), and interleave the kinds.

Differences, all for correctness under data parallelism and resumption: GIM seeds the draws with 3407 (or the
``EPOCH`` environment variable when reloading per epoch) but shuffles each rank's shard again with Python's unseeded
global ``random`` in ``__iter__``; here every draw comes from ``(seed, epoch)``, so :meth:`BalanceSampler.set_epoch`
reshuffles deterministically and a resumed run sees the same order. GIM asserts that ``maxlen`` is a multiple of the
number of ranks; here each kind's list is cut to a multiple (at most ``world_size − 1`` items dropped, as
``DistributedSampler(drop_last=True)``) so ranks always get disjoint shards of equal length. GIM interleaves with a
round-robin that leaves holes (``None`` items) unless every kind has the same length; here kinds are merged by
proportional position (the same round-robin for equal lengths).

Items are yielded as ``(index, epoch)`` keys, which :class:`~.loader.MixedDataset` and every
:class:`~.base.PairDataset` accept, so persistent data workers see the right epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch

__all__ = ["BalanceSampler"]


class BalanceSampler(torch.utils.data.Sampler):
    """Balanced, rank-sharded, epoch-seeded sampling over a list of datasets.

    Args:
        datasets: the datasets in their concatenation order (each has ``kind`` and ``__len__``).
        maxlen: items per epoch for each kind (GIM: ``--maxlen``; 938 240 per kind in its README commands). A kind
            missing from ``maxlen`` keeps its natural length.
        seed: base seed (GIM: 3407).
        rank, world_size: this process's shard.
    """

    def __init__(self, datasets: Sequence[torch.utils.data.Dataset], maxlen: Mapping[str, int] | None = None, *,
                 seed: int = 3407, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.sizes = [len(d) for d in datasets]
        self.kinds = [str(getattr(d, "kind", type(d).__name__)) for d in datasets]
        self.order = list(dict.fromkeys(self.kinds))
        self.maxlen = {kind: int((maxlen or {}).get(kind, sum(n for n, k in zip(self.sizes, self.kinds) if k == kind)))
                       for kind in self.order}
        unknown = set(maxlen or {}) - set(self.order)
        if unknown:
            raise ValueError(f"maxlen names kinds with no dataset: {sorted(unknown)}; kinds present: {self.order}")
        self.seed, self.rank, self.world_size, self.epoch = int(seed), int(rank), int(world_size), 0
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose resampled, shuffled order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def _kind_indices(self, kind: str, rng: np.random.Generator) -> np.ndarray:
        indices, weights = [], []
        for k, (name, size) in enumerate(zip(self.kinds, self.sizes)):
            if name == kind and size:
                indices.append(np.arange(self.offsets[k], self.offsets[k + 1]))
                weights.append(np.full(size, 1.0 / (size ** 0.75 + 1e-8)))
        if not indices:
            return np.zeros(0, np.int64)
        pool, weight = np.concatenate(indices), np.concatenate(weights)
        target = self.maxlen[kind]
        if len(pool) < target:
            pool = np.concatenate([pool[rng.integers(0, len(pool), target - len(pool))], pool])
        elif len(pool) > target:
            # weighted draw without replacement (successive sampling, as torch's WeightedRandomSampler) by
            # Efraimidis–Spirakis keys: the ``target`` largest log(u) / w
            keys = np.log(rng.random(len(pool))) / weight
            pool = pool[np.argsort(-keys, kind="stable")[:target]]
        return pool[rng.permutation(len(pool))]

    def epoch_indices(self, epoch: int | None = None) -> list[np.ndarray]:
        """Each kind's resampled and shuffled dataset indices for ``epoch`` (all ranks together), in kind order."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        out = []
        for number, kind in enumerate(self.order):
            rng = np.random.default_rng([self.seed, epoch, number])
            indices = self._kind_indices(kind, rng)
            out.append(indices[: len(indices) - len(indices) % self.world_size])
        self._cache = (epoch, out)
        return out

    def _shard(self) -> np.ndarray:
        shards = [indices[self.rank::self.world_size] for indices in self.epoch_indices()]
        keys = np.concatenate([(np.arange(len(s)) + 0.5) / max(len(s), 1) for s in shards] or [np.zeros(0)])
        kinds = np.concatenate([np.full(len(s), k) for k, s in enumerate(shards)] or [np.zeros(0)])
        merged = np.concatenate(shards or [np.zeros(0, np.int64)])
        return merged[np.lexsort((kinds, keys))].astype(np.int64)

    def __len__(self) -> int:
        return sum(len(indices) // self.world_size for indices in self.epoch_indices())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(int(index), epoch) for index in self._shard()])
