"""A synthetic video with exact tracks, and label folders written from it as GIM's labellers would write them.

Why: propagation tests need label folders whose every row has a known true correspondence, with the features that
make GIM's rules matter: sparse labellers that detect the *same* keypoint in a frame for every pair (their labels
link exactly), dense labellers that sample new points per pair (they link only where rounded pixels coincide), a
zoom pass with its own noise, outliers, pairs a labeller did not label, and points leaving the view.

The scene: random 3D points in front of a camera that moves sideways and turns slightly; every point is a track.
Frames are indexed as decoded frames; pairs start every ``gap`` frames as GIM's preprocessor samples them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gim_plugins.training.video.layout import (
    LabelFolder,
    Layout,
    VideoFolder,
    write_pair_label,
    write_record,
)

SPARSE = "sparse"  # the same keypoints of a frame in every pair (SIFT, SuperPoint+LightGlue)
DENSE = "dense"  # new samples per pair (DKM, LoFTR)


@dataclass(frozen=True)
class Labeller:
    """How a synthetic labeller behaves: ``kind``, share of tracks it sees, pixel noise, outlier share, share of
    pairs it leaves unlabelled."""

    method: str
    kind: str = SPARSE
    coverage: float = 0.6
    noise: float = 0.15
    outliers: float = 0.02
    missing: float = 0.0


GIM_LABELLERS = (
    Labeller("SIFT", SPARSE, 0.5, 0.12, 0.02, 0.015),
    Labeller("GIM_DKM", DENSE, 0.7, 0.25, 0.03, 0.01),
    Labeller("GIM_GLUE", SPARSE, 0.4, 0.15, 0.02, 0.025),
    Labeller("GIM_LOFTR", DENSE, 0.5, 0.3, 0.04, 0.02),
)


@dataclass
class World:
    """Random points seen by a moving camera; ``positions(f)`` are the exact pixels of every track in frame ``f``."""

    num_frames: int = 200
    num_points: int = 3000
    width: int = 640
    height: int = 480
    speed: float = 0.004  # metres per frame, sideways
    seed: int = 0
    weak: tuple[int, int] | None = None  # frames [a, b) where labellers find few points (blur, a fast pan)
    points: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.points = np.column_stack([rng.uniform(-3.5, 3.5, self.num_points), rng.uniform(-2.5, 2.5, self.num_points),
                                       rng.uniform(4.0, 10.0, self.num_points)])
        self.K = np.array([[500.0, 0, (self.width - 1) / 2], [0, 500.0, (self.height - 1) / 2], [0, 0, 1]])

    def camera(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """World-to-camera ``R, t`` of a frame: translation along x, a slow yaw and a small vertical wave."""
        yaw = 0.0004 * frame
        c, s = np.cos(yaw), np.sin(yaw)
        R = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
        centre = np.array([self.speed * frame, 0.05 * np.sin(frame / 40.0), 0.0])
        return R, -R @ centre

    def positions(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 2)`` exact pixels of every track and ``(N,)`` whether it is inside the frame."""
        R, t = self.camera(frame)
        cam = self.points @ R.T + t
        uv = (cam @ self.K.T)[:, :2] / cam[:, 2:3]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= self.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= self.height - 1)
        return uv, inside & (cam[:, 2] > 0.1)


def _noise(seed: tuple[int, ...], count: int, sigma: float) -> np.ndarray:
    return np.random.default_rng(list(seed)).normal(0.0, sigma, (count, 2))


def pair_label(world: World, labeller: Labeller, zoom: bool, pair: tuple[int, int], index: int) -> np.ndarray:
    """One labeller's ``(N, 4)`` float32 label of a pair (deterministic per labeller, zoom flag and pair)."""
    a, b = pair
    tag = [index, int(zoom)]
    uv_a, in_a = world.positions(a)
    uv_b, in_b = world.positions(b)
    n = world.num_points
    if labeller.kind == SPARSE:  # the labeller's keypoints of a frame are the same in every pair
        seen = np.random.default_rng([*tag, 7]).random(n) < labeller.coverage
        kp_a = uv_a + _noise((*tag, a), n, labeller.noise)
        kp_b = uv_b + _noise((*tag, b), n, labeller.noise)
    else:  # new samples per pair
        seen = np.random.default_rng([*tag, a, b]).random(n) < labeller.coverage
        kp_a = uv_a + _noise((*tag, a, b, 0), n, labeller.noise)
        kp_b = uv_b + _noise((*tag, a, b, 1), n, labeller.noise)
    keep = seen & in_a & in_b
    if world.weak is not None and any(world.weak[0] <= f < world.weak[1] for f in pair):
        keep &= np.random.default_rng([*tag, a, b, 3]).random(n) < 0.05
    label = np.concatenate([kp_a[keep], kp_b[keep]], axis=1)
    rng = np.random.default_rng([*tag, a, b, 99])
    wrong = rng.random(len(label)) < labeller.outliers
    label[wrong, 2] = rng.uniform(0, world.width - 1, int(wrong.sum()))
    label[wrong, 3] = rng.uniform(0, world.height - 1, int(wrong.sum()))
    order = rng.permutation(len(label))
    return label[order].astype(np.float32)


def frame_pairs(world: World, skip: int, gap: int = 10) -> list[tuple[int, int]]:
    """GIM's pairs of one skip: ``(i, i + skip)`` for ``i`` every ``gap`` frames."""
    listing = list(range(0, world.num_frames, gap))
    return list(zip(listing[: -(skip // gap)], listing[skip // gap :], strict=True))


def write_label_folders(root: Path, vid: str, world: World, labellers: tuple[Labeller, ...] = GIM_LABELLERS,
                        zooms: tuple[bool, ...] = (False, True), skips: tuple[int, ...] = (10, 20, 40),
                        gap: int = 10, drop: dict[tuple[str, bool, int], set[tuple[int, int]]] | None = None) -> None:
    """Write ``pseudo/WALK …/<video folder>/`` for every labeller × zoom × skip, with ``nums.npy``/``idxs.npy``.

    ``drop`` names pairs a variant leaves unlabelled on purpose (besides the labeller's random ``missing`` share).
    """
    layout = Layout(root)
    for index, labeller in enumerate(labellers):
        for zoom in zooms:
            for skip in skips:
                label_dir = layout.label_dir(LabelFolder(labeller.method, zoom, skip),
                                             VideoFolder(vid, world.width, world.height, 0, world.num_frames // 25,
                                                         skip))
                label_dir.mkdir(parents=True, exist_ok=True)
                unlucky = np.random.default_rng([index, int(zoom), skip, 5])
                dropped = (drop or {}).get((labeller.method, zoom, skip), set())
                nums, idxs = [], []
                for pair in frame_pairs(world, skip, gap):
                    if unlucky.random() < labeller.missing or pair in dropped:
                        continue
                    label = pair_label(world, labeller, zoom, pair, index)
                    if len(label) == 0:
                        continue
                    write_pair_label(layout.pair_file(label_dir, *pair), label)
                    nums.append(len(label))
                    idxs.append(pair)
                write_record(label_dir, nums, np.array(idxs, dtype=np.int64).reshape(-1, 2))


def true_error(world: World, rows: np.ndarray, frames: tuple[int, int]) -> np.ndarray:
    """Per row, the distance in frame ``frames[1]`` between the label and the nearest track's true position, where
    that track is the one nearest to the row's point in frame ``frames[0]``."""
    uv0, _ = world.positions(frames[0])
    uv1, _ = world.positions(frames[1])
    nearest = np.concatenate([np.argmin(((chunk[:, None, :2] - uv0[None]) ** 2).sum(-1), axis=1)
                              for chunk in np.array_split(rows, max(1, len(rows) // 256))]) if len(rows) else []
    return np.linalg.norm(rows[:, 2:] - uv1[nearest], axis=1)
