"""Synthetic training pairs in the batch format, with exact geometry, for the trainer and engine tests.

A textured plane seen by two pinhole cameras: image 1 is image 0 warped by the plane's homography, so every label,
depth and pose is exact. Rows come in the four kinds the data pipeline produces: ``walk`` (video: labels only, K = T
= I), ``megadepth`` (labels + depth + pose), ``colmap`` (labels + pose, no depth), ``zeb`` (pose only).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import torch

TENSOR_KEYS = ("image0", "image1", "mask0", "mask1", "size0", "size1", "K0", "K1", "T_0to1", "H1", "source0",
               "source1", "depth0", "depth1", "labels", "num_labels", "zs", "gt", "has_depth", "pending", "dark0",
               "dark1")
PLANE_DEPTH = 5.0


def texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random RGB texture with some detail, float32 in [0, 1]."""
    out = np.zeros((h, w, 3), np.float32)
    for cells, weight in ((4, 0.5), (12, 0.3), (max(h, w) // 2, 0.2)):
        low = rng.random((cells, cells, 3)).astype(np.float32)
        out += weight * cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0)


def plane_pair(size: tuple[int, int], seed: int, kind: str = "walk", max_labels: int = 256,
               label_stride: int = 4) -> dict[str, Any]:
    """One sample of the batch format (see the module docstring)."""
    h, w = size
    rng = np.random.default_rng(seed)
    image0 = texture(h, w, rng)
    f = 1.2 * w
    K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
    angle = np.deg2rad(rng.uniform(-6, 6))
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3)])
    H = K @ (R + np.outer(t, [0, 0, 1]) / PLANE_DEPTH) @ np.linalg.inv(K)
    image1 = cv2.warpPerspective(image0, H, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    ys, xs = np.mgrid[0:h, 0:w]
    pix1 = np.stack([xs.ravel(), ys.ravel(), np.ones(h * w)])
    back = np.linalg.inv(H) @ pix1
    back = back[:2] / back[2]
    mask1 = ((back[0] >= 0) & (back[0] <= w - 1) & (back[1] >= 0) & (back[1] <= h - 1)).reshape(h, w)
    X0 = PLANE_DEPTH * (np.linalg.inv(K) @ np.vstack([back, np.ones(h * w)]))
    depth1 = ((R @ X0).T + t)[:, 2].reshape(h, w) * mask1
    gy, gx = np.mgrid[2 : h - 2 : label_stride, 2 : w - 2 : label_stride]
    p0 = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64) + rng.uniform(-0.5, 0.5, (gx.size, 2))
    q = H @ np.vstack([p0.T, np.ones(len(p0))])
    p1 = (q[:2] / q[2]).T
    inside = (p1[:, 0] >= 1) & (p1[:, 0] <= w - 2) & (p1[:, 1] >= 1) & (p1[:, 1] <= h - 2)
    labels = np.concatenate([p0, p1], 1)[inside][:max_labels]
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    with_labels = kind != "zeb"
    posed = kind != "walk"
    depth = kind == "megadepth"
    padded = np.zeros((max_labels, 4), np.float32)
    if with_labels:
        padded[: len(labels)] = labels
    sample = {
        "image0": torch.from_numpy(image0).permute(2, 0, 1).contiguous(),
        "image1": torch.from_numpy(image1).permute(2, 0, 1).contiguous(),
        "mask0": torch.ones(h, w, dtype=torch.bool),
        "mask1": torch.from_numpy(mask1),
        "size0": torch.tensor([h, w]),
        "size1": torch.tensor([h, w]),
        "K0": torch.tensor(K if posed else np.eye(3), dtype=torch.float32),
        "K1": torch.tensor(K if posed else np.eye(3), dtype=torch.float32),
        "T_0to1": torch.tensor(T if posed else np.eye(4), dtype=torch.float32),
        "H1": torch.eye(3),
        "source0": torch.eye(3),
        "source1": torch.eye(3),
        "depth0": torch.full((h, w), PLANE_DEPTH if depth else 0.0),
        "depth1": torch.tensor(depth1 if depth else np.zeros((h, w)), dtype=torch.float32),
        "labels": torch.from_numpy(padded),
        "num_labels": torch.tensor(len(labels) if with_labels else 0),
        "zs": torch.tensor(kind == "walk"),
        "gt": torch.tensor(posed),
        "has_depth": torch.tensor(depth),
        "pending": torch.tensor(False),
        "dark0": torch.zeros(16),
        "dark1": torch.zeros(16),
        "dataset": kind,
        "scene": f"plane{seed}",
        "pair": (f"{seed}a", f"{seed}b"),
    }
    sample["homography"] = H
    return sample


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch (the batch format's ``collate`` semantics, for tests)."""
    batch: dict[str, Any] = {key: torch.stack([s[key] for s in samples]) for key in TENSOR_KEYS}
    for key in ("dataset", "scene", "pair"):
        batch[key] = [s[key] for s in samples]
    return batch


class PlaneDataset(torch.utils.data.Dataset):
    """``count`` fixed pairs (item i is the same every epoch), kinds cycling through ``kinds``."""

    def __init__(self, count: int, size: tuple[int, int], kinds: tuple[str, ...] = ("walk",), seed: int = 0,
                 max_labels: int = 256) -> None:
        self.count, self.size, self.kinds, self.seed, self.max_labels = count, size, kinds, seed, max_labels
        self.cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index = int(key[0]) if isinstance(key, tuple) else int(key)
        if index not in self.cache:
            sample = plane_pair(self.size, self.seed + index, self.kinds[index % len(self.kinds)], self.max_labels)
            sample.pop("homography")
            self.cache[index] = sample
        return self.cache[index]


class ShardedSampler(torch.utils.data.Sampler):
    """A permutation of the items per ``(seed, epoch)``; rank ``r`` of ``n`` takes every n-th (the data pipeline's
    rule), yielding ``(index, epoch)`` keys."""

    def __init__(self, count: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.count, self.seed, self.rank, self.world_size, self.epoch = count, seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.count)
        order = order[: len(order) - len(order) % self.world_size]
        return iter((int(i), self.epoch) for i in order[self.rank :: self.world_size])

    def __len__(self) -> int:
        return self.count // self.world_size


def plane_batch(size: tuple[int, int], kinds: tuple[str, ...], seed: int = 0, max_labels: int = 256) -> dict[str, Any]:
    """A collated batch, one row per kind."""
    samples = [plane_pair(size, seed + i, kind, max_labels) for i, kind in enumerate(kinds)]
    for sample in samples:
        sample.pop("homography")
    return collate(samples)


def write_zeb_planes(root: Any, count: int = 2, size: tuple[int, int] = (64, 64), seed: int = 100) -> Any:
    """A ZEB-format folder (subset ``minihomography``) of ``count`` plane pairs with their K and pose."""
    from pathlib import Path

    folder = Path(root) / "minihomography"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        sample = plane_pair(size, seed + i, "megadepth")
        scene = f"plane{i}"
        for name, key in (("a", "image0"), ("b", "image1")):
            rgb = (sample[key].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            cv2.imwrite(str(folder / f"{scene}-{name}.png"), rgb[..., ::-1])
        K = sample["K0"].numpy().ravel()
        tokens = ["a", "b", "0.5", "0.5", *map(repr, K.tolist()), *map(repr, K.tolist()),
                  *map(repr, sample["T_0to1"].numpy().ravel().tolist())]
        (folder / f"{scene}-a-b.txt").write_text(" ".join(tokens) + "\n")
    return Path(root)
