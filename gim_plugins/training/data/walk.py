"""Video pairs: GIM's propagated ZeroMatch labels as training pairs (``WALKDataset`` in GIM's training branches).

Reads a ZeroMatch tree, ours (``gim video``) or GIM's (``data/ZeroMatch``), with the folder and file names of
:mod:`gim_plugins.training.video.layout`:

* ``propagate/<ppid>/<vid>/{i0}_{i1}.npy``: float32, row 0 = the frames actually reached ``[i0', i1', i0', i1']``,
  then ``x0, y0, x1, y1`` per label in pixels of the labelled video frame; ``bad_pairs.txt`` lists target pairs
  ``"i0 i1"`` to skip (and receives the pairs given up during training, as GIM's loader appends them);
* ``image_1080p/<vid>/<i>.png``: the frames.

Labels are scaled by ``frame_size / label_size`` (GIM: the PNG's size over the video's; 1 unless frames were stored
smaller). The label size is read from our decode record ``state/<vid>/video.json``, else from
``video_1080p/<vid>.mp4``, else from the ``WH`` field of the video's label folders, else it is the frame size.

Frame colour: GIM's frames have red and blue swapped on disk (it wrote RGB arrays with ``cv2.imwrite``); ours have
correct colour. ``frame_colour="auto"`` tells them apart by our decode record (``state/<vid>/video.json``, which GIM's
tree never has, and whose ``frame_colour`` field says how the frames were written): present → as recorded, absent →
GIM's swapped frames. ``"rgb"`` or ``"gim"`` force one reading.

Each item: the pair's labels through GIM's augmentation (:mod:`.augment`, ≥ 64 labels or up to 30 retries; then the
pair is appended to ``bad_pairs.txt`` and a substitute is drawn) with ``zs`` True, ``gt`` False, identity ``K``/``T``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.training.data.base import PairDataset, read_rgb
from gim_plugins.training.video import layout as zm

__all__ = ["FRAME_COLOURS", "WalkDataset", "find_ppid", "walk_datasets"]

FRAME_COLOURS = ("auto", "rgb", "gim")


def find_ppid(root: str | os.PathLike[str], ppid: str | None = None) -> str:
    """The propagation folder to read: ``ppid`` if given (it must exist), else the only one under ``propagate/``.

    Raises:
        FileNotFoundError: no ``propagate/`` folder, or not the named one; ValueError: several and none chosen.
    """
    base = Path(root) / zm.PROPAGATE_DIR
    if not base.is_dir():
        raise FileNotFoundError(f"no {zm.PROPAGATE_DIR}/ folder in {root}: run `gim video propagate {root}` first")
    found = sorted(p.name for p in base.iterdir() if p.is_dir())
    if ppid is not None:
        if ppid not in found:
            raise FileNotFoundError(f"propagation folder {ppid!r} not in {base}; present: {found}")
        return ppid
    if len(found) != 1:
        raise ValueError(f"{base} holds {len(found)} propagation folders {found}: choose one with ppid=...")
    return found[0]


def _read_bad_pairs(path: Path) -> set[tuple[int, int]]:
    if not path.is_file():
        return set()
    pairs = set()
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            pairs.add((int(parts[0]), int(parts[1])))
    return pairs


def _video_size(layout: zm.Layout, vid: str) -> tuple[int, int] | None:
    """``(w, h)`` of the labelled video frames, or ``None`` when nothing records it."""
    info = layout.video_info(vid)
    if info.is_file():
        record = json.loads(info.read_text())
        if "width" in record and "height" in record:
            return int(record["width"]), int(record["height"])
    video = layout.video_file(vid)
    if video.exists():
        import cv2

        capture = cv2.VideoCapture(str(video))
        size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        if min(size) > 0:
            return size
    for _, folder, _ in layout.label_dirs(vid):
        return folder.width, folder.height
    return None


def _frames_swapped(layout: zm.Layout, vid: str, frame_colour: str) -> bool:
    if frame_colour != "auto":
        return frame_colour == "gim"
    info = layout.video_info(vid)
    if not info.is_file():
        return True  # GIM's tree: no decode record, frames written R/B-swapped
    return json.loads(info.read_text()).get("frame_colour", "rgb") == "gim"


class WalkDataset(PairDataset):
    """The propagated pairs of one video (one "scene" for the sampler).

    Args:
        root: the ZeroMatch tree (``gim video`` output or GIM's ``data/ZeroMatch``).
        vid: the video id.
        conf: ``ppid`` (propagation folder; default: the only one), ``frame_colour`` (``auto``/``rgb``/``gim``),
            ``max_pairs`` (GIM's ``MAX_SAMPLES``: keep this many pairs, drawn with GIM's seeded generator; ``None``:
            all), ``record_bad_pairs``, plus the shared options of :class:`~.base.PairDataset` (``augment``,
            ``max_labels``, ``augment_on``, ``seed``, ``substitutes``).

    Raises:
        FileNotFoundError: the video's propagation folder is missing; ValueError: a bad option.
    """

    kind = "walk"
    default_conf: Mapping[str, Any] = {"ppid": None, "frame_colour": "auto", "max_pairs": None,
                                       "record_bad_pairs": True}
    augment_defaults: Mapping[str, Any] = {"keep_box": True, "min_labels": 64}

    def __init__(self, root: str | os.PathLike[str], vid: str, conf: Mapping[str, Any] | None = None) -> None:
        super().__init__(conf, self.default_conf, vid)
        if self.conf.frame_colour not in FRAME_COLOURS:
            raise ValueError(f"frame_colour must be one of {', '.join(FRAME_COLOURS)}, got {self.conf.frame_colour!r}")
        self.layout = zm.Layout(root)
        self.ppid = find_ppid(root, self.conf.ppid)
        self.directory = self.layout.propagate_dir(self.ppid, vid)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"no propagated labels for video {vid!r}: {self.directory} is missing")
        names = [p.name for p in self.directory.iterdir() if p.suffix == ".npy"]
        pairs = np.array(sorted(_parse_pair(n) for n in names if _parse_pair(n) is not None), dtype=np.int64)
        max_pairs = self.conf.max_pairs
        if max_pairs is not None and 0 < max_pairs < len(pairs):
            # GIM: np.random.seed(3407); pair_ids[sorted(np.random.randint(len, size=max_samples))], then a set:
            # drawn with repeats, which collapse (so fewer than max_pairs remain)
            pairs = np.unique(pairs[np.random.RandomState(3407).randint(len(pairs), size=max_pairs)], axis=0)
        bad = _read_bad_pairs(self.layout.bad_pairs(self.ppid, vid))
        self.pairs = [tuple(p) for p in pairs.reshape(-1, 2).tolist() if tuple(p) not in bad]
        self.swapped = _frames_swapped(self.layout, vid, self.conf.frame_colour)
        self.label_size = _video_size(self.layout, vid)
        self.given_up: set[tuple[int, int]] = set()

    def labels(self, index: int) -> tuple[np.ndarray, int, int]:
        """``(labels (N, 4) in label-frame pixels, i0', i1')`` of pair ``index`` (the frames reached)."""
        i0, i1 = self.pairs[index]
        data = np.load(self.layout.propagated_file(self.ppid, self.scene, i0, i1)).astype(np.float64)
        if data.ndim != 2 or data.shape[1] != 4 or len(data) < 1:
            raise ValueError(f"{self.layout.propagated_file(self.ppid, self.scene, i0, i1)}: expected float32 (N, 4) "
                             "with the reached frames in row 0")
        reached = data[0].astype(np.int64)
        return data[1:], int(reached[0]), int(reached[1])

    def load(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        labels, f0, f1 = self.labels(index)
        image0 = read_rgb(self.layout.frame(self.scene, f0), swapped=self.swapped)
        image1 = read_rgb(self.layout.frame(self.scene, f1), swapped=self.swapped)
        height, width = image0.shape[:2]
        if self.label_size is not None and self.label_size != (width, height):
            labels = labels * np.tile([width / self.label_size[0], height / self.label_size[1]], 2)
        plan = self.augmenter.plan(rng, image0.shape[:2], image1.shape[:2], labels)
        if plan is None:
            return None
        return self.sample(plan, image0, image1, rng, pair=(str(f0), str(f1)), zs=True, gt=False)

    def give_up(self, index: int) -> None:
        """Append the target pair to ``bad_pairs.txt`` (one ``O_APPEND`` write: safe from concurrent workers), once
        per process: the pair stays in this run's list (the sampler's lengths are fixed), so later epochs may give
        it up again without writing it twice."""
        if not self.conf.record_bad_pairs:
            return
        i0, i1 = self.pairs[index]
        if (i0, i1) in self.given_up:
            return
        self.given_up.add((i0, i1))
        path = self.layout.bad_pairs(self.ppid, self.scene)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{i0} {i1}\n".encode())
        finally:
            os.close(fd)


def _parse_pair(name: str) -> tuple[int, int] | None:
    stem = name[: -len(".npy")] if name.endswith(".npy") else ""
    first, sep, second = stem.partition("_")
    if sep and first.isdigit() and second.isdigit() and zm.propagated_file_name(int(first), int(second)) == name:
        return int(first), int(second)
    return None


def walk_datasets(root: str | os.PathLike[str], videos: Sequence[str] | None = None,
                  conf: Mapping[str, Any] | None = None) -> list[WalkDataset]:
    """One :class:`WalkDataset` per video with propagated labels (``videos``: these ids only), empty ones dropped.

    Raises:
        FileNotFoundError: no propagation folder, or none of ``videos`` has labels.
    """
    ppid = find_ppid(root, (conf or {}).get("ppid"))
    base = Path(root) / zm.PROPAGATE_DIR / ppid
    names = sorted(p.name for p in base.iterdir() if p.is_dir()) if videos is None else list(videos)
    datasets = [WalkDataset(root, vid, {**dict(conf or {}), "ppid": ppid}) for vid in names]
    datasets = [d for d in datasets if len(d)]
    if not datasets:
        raise FileNotFoundError(f"no propagated pairs under {base}: run `gim video propagate {root}` first")
    return datasets
