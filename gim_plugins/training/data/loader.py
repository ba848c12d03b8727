"""The training loader: datasets mixed by :class:`~.sampler.BalanceSampler`, collated into the batch format.

``build_loader(datasets, batch_size=…, maxlen=…, rank=…, world_size=…)`` returns a ``torch.utils.data.DataLoader``
whose sampler yields ``(index, epoch)`` keys; call :func:`set_epoch` before each epoch (it reaches the sampler and,
through the keys, the data workers, persistent or not). Data workers are seeded from ``(seed, rank, worker)``
(Python's ``random``, NumPy's legacy global generator, torch), although the datasets themselves draw only from
per-item generators (:mod:`.base`): anything a user adds that touches a global generator stays reproducible.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from gim_plugins.training.data.batch import collate
from gim_plugins.training.data.sampler import BalanceSampler

__all__ = ["MixedDataset", "build_loader", "seed_worker", "set_epoch"]


class MixedDataset(torch.utils.data.Dataset):
    """Several :class:`~.base.PairDataset` one after the other (as ``ConcatDataset``), indexed by plain integers or
    ``(index, epoch)`` keys.

    Raises:
        ValueError: no dataset, or datasets with different canvases or label capacities (one batch needs one of each).
    """

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("no training dataset: pass at least one (video labels, MegaDepth, COLMAP or ZEB)")
        shapes = {(tuple(d.canvas), int(d.conf.max_labels)) for d in self.datasets}
        if len(shapes) != 1:
            raise ValueError(f"datasets differ in canvas or max_labels {sorted(shapes)}: give them one image_size and "
                             "one max_labels")
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets]).tolist()
        self.epoch = 0

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """``(dataset number, index inside it)`` of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        number = bisect.bisect_right(self.offsets, index) - 1
        return number, index - self.offsets[number]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | None:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), self.epoch)
        number, local = self.locate(index)
        return self.datasets[number].item(local, epoch)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed Python's and NumPy's global generators from the worker's torch seed (which the
    loader derives from its own generator and the worker id)."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def build_loader(datasets: Sequence[Any], *, batch_size: int, maxlen: Mapping[str, int] | None = None,
                 seed: int = 3407, rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool = False) -> torch.utils.data.DataLoader:
    """A loader over ``datasets`` mixed by GIM's balance rule, this rank's shard, batches in the batch format.

    Args:
        datasets: :class:`~.base.PairDataset` objects (one per scene or video), sharing ``image_size`` and
            ``max_labels``.
        batch_size: items per batch on this rank.
        maxlen: items per epoch per kind (``{"walk": …, "megadepth": …}``); default: each kind's natural length.
        seed: seeds the sampler, the loader's generator and (via the datasets' own ``seed``) nothing else.
        rank, world_size: the data-parallel shard.
        num_workers, pin_memory, persistent_workers: as ``DataLoader``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    mixed = MixedDataset(datasets)
    sampler = BalanceSampler(mixed.datasets, maxlen, seed=seed, rank=rank, world_size=world_size)
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    return torch.utils.data.DataLoader(
        mixed, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=num_workers,
        pin_memory=pin_memory, drop_last=False, worker_init_fn=seed_worker if num_workers else None,
        generator=generator, persistent_workers=persistent_workers and num_workers > 0)


def set_epoch(loader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Select the epoch of a loader made by :func:`build_loader` (its sampler's draw and its datasets' items)."""
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    dataset = loader.dataset
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
