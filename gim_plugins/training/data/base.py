"""What every training dataset shares: seeded items, the pair augmentation, and turning a drawn pair into a sample
of the batch format (:mod:`.batch`).

Determinism: item ``i`` of epoch ``e`` draws all its randomness from ``numpy.random.default_rng([seed, e, salt,
i])`` (``salt`` identifies the dataset), never from a global generator. The same item is therefore the same on any
worker, rank or device and in any batch, and a resumed run sees the same data.

Failure: a pair whose labels cannot survive the augmentation ``retries`` times is *given up*: it is recorded (video
pairs: GIM's ``bad_pairs.txt``) and another pair of the same dataset, drawn from the item's generator, takes its place.
GIM returns ``None`` there and the batch shrinks; a substitute keeps every batch the same size, so data-parallel ranks
stay in step.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gim_plugins.conf import Conf, merge_conf, to_plain
from gim_plugins.training.data.augment import PairAugmenter, PairPlan, finish
from gim_plugins.training.data.batch import DARK_PARAMS, collate

__all__ = ["PairDataset", "make_sample", "read_rgb"]

AUGMENT_ON = ("worker", "device")


def read_rgb(path: str | Path, *, swapped: bool = False) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB; ``swapped``: the file stores red and blue exchanged (GIM's frames).

    Raises:
        FileNotFoundError: no such file; ValueError: not an image.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ValueError(f"cannot decode {path} as an image")
    return np.ascontiguousarray(image if swapped else image[..., ::-1])


def _tensor(array: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(dtype)


def make_sample(plan: PairPlan, canvas: tuple[int, int], image0: np.ndarray, image1: np.ndarray, *,
                rng: np.random.Generator, max_labels: int, dataset: str, scene: str, pair: tuple[str, str],
                zs: bool, gt: bool, K0: np.ndarray | None = None, K1: np.ndarray | None = None,
                T_0to1: np.ndarray | None = None, depth0: np.ndarray | None = None, depth1: np.ndarray | None = None,
                pending: bool = False) -> dict[str, Any]:
    """One item of the batch format from a drawn pair.

    Args:
        plan: the pair's geometry and surviving labels (:meth:`PairAugmenter.plan`).
        canvas: ``(H, W)``.
        image0, image1: ``(h, w, 3)`` uint8 RGB source images.
        rng: the item's generator (orders the labels at random and keeps the first ``max_labels``).
        K0, K1: source-pixel intrinsics (package convention) or ``None`` (identity: video pairs).
        T_0to1: 4×4 camera-0 → camera-1, or ``None`` (identity).
        depth0, depth1: source-resolution depth maps in metres (0, negative or non-finite: unknown), or ``None``.
        pending: leave the Dark augmentation and the image-1 warp to :func:`~.augment.finish` on the device.
    """
    labels = plan.labels  # sorted rows (np.unique): shuffle, so that any first k rows are a random subset
    labels = labels[rng.permutation(len(labels))[:max_labels]]
    padded = np.zeros((max_labels, 4), np.float32)
    padded[: len(labels)] = labels
    A0, A1 = plan.plan0.matrix, plan.plan1.matrix
    masks = []
    for p in (plan.plan0, plan.plan1):
        mask = np.zeros(canvas, bool)
        mask[: p.size[0], : p.size[1]] = True
        masks.append(mask)
    has_depth = depth0 is not None and depth1 is not None
    depths = []
    for depth, p in ((depth0, plan.plan0), (depth1, plan.plan1)):
        if depth is None or not has_depth:
            depths.append(np.zeros(canvas, np.float32))
            continue
        clean = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
        depths.append(p.render(clean, canvas, "nearest"))
    eye3 = np.eye(3)
    sample = {
        "image0": _tensor(plan.plan0.render(image0, canvas).transpose(2, 0, 1)) / 255.0,
        "image1": _tensor(plan.plan1.render(image1, canvas).transpose(2, 0, 1)) / 255.0,
        "mask0": torch.from_numpy(masks[0]), "mask1": torch.from_numpy(masks[1]),
        "size0": torch.tensor(plan.plan0.size, dtype=torch.int64),
        "size1": torch.tensor(plan.plan1.size, dtype=torch.int64),
        "K0": _tensor(eye3 if K0 is None else A0 @ K0), "K1": _tensor(eye3 if K1 is None else A1 @ K1),
        "T_0to1": _tensor(np.eye(4) if T_0to1 is None else T_0to1),
        "H1": _tensor(plan.H1),
        "source0": _tensor(np.linalg.inv(A0)), "source1": _tensor(np.linalg.inv(A1)),
        "depth0": _tensor(depths[0]), "depth1": _tensor(depths[1]),
        "labels": _tensor(padded), "num_labels": torch.tensor(len(labels), dtype=torch.int64),
        "zs": torch.tensor(zs), "gt": torch.tensor(gt), "has_depth": torch.tensor(has_depth),
        "pending": torch.tensor(True),
        "dark0": _tensor(plan.dark0.reshape(DARK_PARAMS)), "dark1": _tensor(plan.dark1.reshape(DARK_PARAMS)),
        "dataset": dataset, "scene": scene, "pair": (str(pair[0]), str(pair[1])),
    }
    if pending:
        return sample
    done = finish(collate([sample]))
    return {key: (value[0] if isinstance(value, (torch.Tensor, list)) else value) for key, value in done.items()}


class PairDataset(torch.utils.data.Dataset):
    """Base of the training datasets: a list of pairs, GIM's pair augmentation and seeded, substitutable items.

    Subclasses set ``kind`` (the ``dataset`` key) and ``scene``, fill ``self.pairs`` and implement
    :meth:`load` ``(index, rng) -> sample or None``; they may override :meth:`give_up` to record a failed pair.

    Conf (``base_conf``, shared by all datasets): ``augment`` (:class:`PairAugmenter` options), ``max_labels`` (label
    capacity ``L``), ``augment_on`` (``"worker"``: finished samples; ``"device"``: pending for :func:`finish`),
    ``seed``, ``substitutes`` (pairs tried in place of a given-up one).
    """

    kind = ""
    base_conf: Mapping[str, Any] = {"augment": {}, "max_labels": 2048, "augment_on": "worker", "seed": 3407,
                                    "substitutes": 10}
    augment_defaults: Mapping[str, Any] = {}

    def __init__(self, conf: Mapping[str, Any] | None, default_conf: Mapping[str, Any], scene: str) -> None:
        defaults = {**self.base_conf, **default_conf,
                    "augment": {**PairAugmenter.default_conf, **self.augment_defaults}}
        self.conf: Conf = merge_conf(defaults, dict(conf or {}))
        if self.conf.augment_on not in AUGMENT_ON:
            raise ValueError(f"augment_on must be one of {', '.join(AUGMENT_ON)}, got {self.conf.augment_on!r}")
        if int(self.conf.max_labels) < 1:
            raise ValueError(f"max_labels must be positive, got {self.conf.max_labels}")
        self.augmenter = PairAugmenter(to_plain(self.conf.augment))
        self.canvas = self.augmenter.canvas
        self.scene = scene
        self.salt = zlib.crc32(f"{self.kind}/{scene}".encode())
        self.epoch = 0
        self.pairs: list[Any] = []

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scene!r}, {len(self)} pairs)"

    def set_epoch(self, epoch: int) -> None:
        """The epoch used by plain integer indices (a sampler may pass ``(index, epoch)`` keys instead)."""
        self.epoch = int(epoch)

    def rng(self, index: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng([int(self.conf.seed), int(epoch), self.salt, int(index)])

    def load(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        raise NotImplementedError

    def give_up(self, index: int) -> None:
        """Called when pair ``index`` kept too few labels ``retries`` times (default: nothing to record)."""

    def sample(self, plan: PairPlan, image0: np.ndarray, image1: np.ndarray, rng: np.random.Generator,
               **fields: Any) -> dict[str, Any]:
        """:func:`make_sample` with this dataset's canvas, capacity, kind, scene and ``augment_on``."""
        return make_sample(plan, self.canvas, image0, image1, rng=rng, max_labels=int(self.conf.max_labels),
                           dataset=self.kind, scene=self.scene, pending=self.conf.augment_on == "device", **fields)

    def item(self, index: int, epoch: int) -> dict[str, Any] | None:
        """Item ``index`` of ``epoch``; a given-up pair is replaced by another of this dataset (``None`` if
        ``substitutes`` replacements fail too)."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self!r}: index {index} out of range")
        rng = self.rng(index, epoch)
        current = index
        for _ in range(int(self.conf.substitutes) + 1):
            sample = self.load(current, rng)
            if sample is not None:
                return sample
            self.give_up(current)
            current = int(rng.integers(len(self)))
        return None

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | None:
        if isinstance(key, tuple):
            return self.item(int(key[0]), int(key[1]))
        return self.item(int(key), self.epoch)
