"""Step 2 of ``gim video``: label every in-shot frame pair with every labeller, GIM's filters, GIM's label folders.

For each video, labeller and pair spacing (``skip``), every pair ``(i, i + skip)`` of sampled frames within one shot
is matched and filtered, and the surviving matches are written to ``pseudo/WALK {METHOD} [R] F [S] {skip:2}/...``
(:mod:`~gim_plugins.training.video.layout`). Per pair, as GIM's ``video_preprocessor.py``:

1. the frames' usable-pixel masks (:mod:`~gim_plugins.training.video.masks`); an empty mask gives no label;
2. matching, the mask given to each labeller the way GIM gives it;
3. with ``static_filter`` (GIM's "watermark removal", on in the ``gim`` preset): matches that moved less than 1 px
   in both x and y are dropped. Off by default: on a tripod shot or a slow pan it drops real matches (gim #81);
4. the robust filter: ``cv2.findFundamentalMat(USAC_MAGSAC, 0.5 px, confidence 0.999999, 100000 iterations)``; a pair
   without inliers gets no label.

Labellers: any registered matchers (``labellers``); by default GIM's set — ``gim_dkm``, ``gim_loftr``,
``gim_lightglue`` and ``root_sift`` with GIM's 32400 features — when all their weights are installed, else the
offline set ``root_sift`` + ``aliked_lightglue``. :data:`VIDEO_CONF` holds GIM's video settings of its labellers.
Sparse labellers extract each frame once: pairs are processed in order of their first frame over all spacings, and
a frame's features leave memory once no later pair needs them.

The zoom pass (``zoom``, GIM's ``--resize``; on in the ``gim`` preset) runs after every plain pass of the video:
each frame of a pair is cropped to the bounding box of the ``zoom_source`` labeller's plain label of that pair
(GIM: GIM_DKM's), the crop is scaled with area interpolation to fit ``zoom_size`` (1600×900; the frame size for
SIFT, as GIM) in multiples of 8, matched and filtered again, and the matches are mapped back to the frame. Its labels
go to ``WALK {METHOD} [R] T [S] {skip:2}``. Pairs whose source has no label get no zoomed label.

Resuming, sharding and records: :mod:`~gim_plugins.training.video.records`; the pipeline order of the workers:
:mod:`~gim_plugins.training.video.pairs`.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.conf import Conf, merge_conf, to_plain
from gim_plugins.errors import UserError
from gim_plugins.training.video import pairs as pairing
from gim_plugins.training.video.decode import decoded_videos, read_frame
from gim_plugins.training.video.layout import (
    LabelFolder,
    Layout,
    VideoFolder,
    VideoPaths,
    method_name,
    read_json,
    read_pair_label,
    write_json,
    write_pair_label,
)
from gim_plugins.training.video.masks import apply_mask, make_masker, mask_mode
from gim_plugins.training.video.records import LabelRecord

__all__ = ["GIM_SET", "OFFLINE_SET", "PRESETS", "VIDEO_CONF", "choose_labellers", "default_conf", "main"]

GIM_SET = ("gim_dkm", "gim_loftr", "gim_lightglue", "root_sift")
OFFLINE_SET = ("root_sift", "aliked_lightglue")

VIDEO_CONF: dict[str, dict[str, Any]] = {
    # DKMv3(None, 672, 896) without padding, 5000 samples, no bounds filter; seeded so reruns give the same labels
    "gim_dkm": {"h": 672, "w": 896, "pad_to_aspect": False, "upsample": True, "upsample_res": (1152, 1536),
                "num_samples": 5000, "bounds_filter": False, "drop_zero_confidence": False, "seed": 0},
    "root_sift": {"max_keypoints": 32400, "contrast_threshold": 1e-5},  # cv2.SIFT_create(32400, 1e-5)
}
"""GIM's video settings of its labellers (on top of each matcher's defaults; ``labeller_conf`` overrides them)."""

default_conf: dict[str, Any] = {
    "labellers": None,  # registry names; None: GIM's set if its weights are installed, else the offline set
    "labeller_conf": {},  # {labeller: {option: value}} over VIDEO_CONF
    "skips": None,  # spacings to label (a subset of the decoded ones); None: all
    "masks": "auto",  # "auto", "ade20k", "sky" or "none" (gim_plugins.training.video.masks)
    "static_filter": False,  # GIM's watermark filter: drop matches that moved < 1 px in x and y
    "ransac_threshold": 0.5,
    "ransac_confidence": 0.999999,
    "ransac_iterations": 100000,
    "zoom": False,  # GIM's --resize pass
    "zoom_source": None,  # labeller whose labels give the crop; None: gim_dkm if labelling, else the first labeller
    "zoom_size": (1600, 900),  # (width, height) the crop is fitted into
    "device": "cpu",
    "shard": None,  # (i, n); torchrun ranks split the work the same way
    "progress": True,
}
"""Options of the label step."""

PRESETS: dict[str, dict[str, Any]] = {"gim": {"static_filter": True, "zoom": True}}
"""GIM's settings for this step: its watermark filter and its zoom pass."""

MIN_MATCHES = 8
"""Fewest matches a pair is fitted with (GIM skips SIFT pairs with fewer than 8 descriptors; F needs 8)."""


def choose_labellers(names: Any) -> tuple[list[str], str]:
    """The labellers to run and one line saying which set it is.

    Raises:
        UnknownMatcherError: a name is not registered.
    """
    from gim_plugins.matching import weights_available
    from gim_plugins.registry import get_matcher_class

    if names:
        chosen = [names] if isinstance(names, str) else list(names)
        for name in chosen:
            get_matcher_class(name)
        return chosen, f"labellers: {', '.join(chosen)}"
    missing = [n for n in GIM_SET if not weights_available(n)]
    if not missing:
        return list(GIM_SET), f"labellers: GIM's set ({', '.join(GIM_SET)})"
    return list(OFFLINE_SET), (f"labellers: the offline set ({', '.join(OFFLINE_SET)}); GIM's set needs the weights of "
                               f"{', '.join(missing)} (`gim weights list`)")


# --------------------------------------------------------------------------------------------------- per video


class _Frames:
    """RGB frames and masks of one video, kept while later pairs still need them."""

    def __init__(self, layout: Layout, vid: str, colour: str, masker: Any) -> None:
        self.layout, self.vid, self.colour, self.masker = layout, vid, colour, masker
        self._rgb: dict[int, np.ndarray] = {}
        self._mask: dict[int, np.ndarray | None] = {}

    def rgb(self, index: int) -> np.ndarray:
        if index not in self._rgb:
            self._rgb[index] = read_frame(self.layout.frame(self.vid, index), self.colour)
        return self._rgb[index]

    def mask(self, index: int) -> np.ndarray | None:
        if index not in self._mask:
            self._mask[index] = self.masker.mask(self.vid, index, self.rgb(index))
        return self._mask[index]

    def forget_before(self, index: int) -> list[int]:
        gone = [k for k in self._rgb if k < index]
        for key in gone:
            self._rgb.pop(key, None)
            self._mask.pop(key, None)
        return gone


class _Labeller:
    """One labeller: its matcher, how it takes masks, its feature cache (sparse) and GIM's filters."""

    def __init__(self, name: str, cfg: Conf, device: str) -> None:
        from gim_plugins.features import FeatureCache
        from gim_plugins.matching import load_matcher

        options = {**VIDEO_CONF.get(name, {}), **to_plain(cfg.labeller_conf.get(name, {}))}
        self.name = name
        self.method = method_name(name)
        self.matcher = load_matcher(name, device=device, **options)
        self.mode = mask_mode(self.matcher)
        self.cache = FeatureCache(self.matcher) if self.matcher.is_sparse else None
        self.cfg = cfg
        self.extracted = 0

    def _inputs(self, rgb: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """What the matcher gets: the masked image, or the image and the mask it takes itself."""
        if mask is None or self.mode != "multiply":
            return rgb, mask
        return apply_mask(rgb, mask), None

    def match(self, rgb0: np.ndarray, rgb1: np.ndarray, mask0: np.ndarray | None, mask1: np.ndarray | None,
              keys: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """Matches ``(N, 2), (N, 2)`` between two frames (or crops; ``keys`` = frame indices for the cache)."""
        image0, m0 = self._inputs(rgb0, mask0)
        image1, m1 = self._inputs(rgb1, mask1)
        if self.matcher.is_sparse:
            f0 = self._features(image0, m0, keys[0] if keys else None)
            f1 = self._features(image1, m1, keys[1] if keys else None)
            result = self.matcher.match_features(f0, f1)
        elif m0 is not None or m1 is not None:
            result = self.matcher.match(image0, image1, mask0=m0, mask1=m1)
        else:
            result = self.matcher.match(image0, image1)
        k0, k1, _ = result.numpy()
        return k0, k1

    def _features(self, image: np.ndarray, mask: np.ndarray | None, key: int | None) -> Any:
        if key is None or self.cache is None:
            self.extracted += 1
            return self.matcher.extract(image) if mask is None else self.matcher.extract(image, mask=mask)
        if str(key) not in self.cache:
            self.extracted += 1
        return self.cache.get(str(key), image, mask=mask)

    def forget(self, frames: list[int]) -> None:
        if self.cache is not None:
            for index in frames:
                self.cache.discard(str(index))

    def filter(self, k0: np.ndarray, k1: np.ndarray) -> np.ndarray | None:
        """GIM's filters; ``(N, 4)`` float32 ``x0 y0 x1 y1`` of the survivors, or ``None`` when none survive."""
        from gim_plugins.geometry import estimate_fundamental

        if self.cfg.static_filter and len(k0):
            moved = ~(np.abs(k0 - k1) < 1).all(axis=1)
            k0, k1 = k0[moved], k1[moved]
        if len(k0) < MIN_MATCHES:
            return None
        fit = estimate_fundamental(k0, k1, threshold=self.cfg.ransac_threshold,
                                   confidence=self.cfg.ransac_confidence, max_iters=self.cfg.ransac_iterations)
        if fit.num_inliers == 0:
            return None
        return np.concatenate([k0[fit.inliers], k1[fit.inliers]], axis=1).astype(np.float32)


def _zoom_box(points: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """GIM's crop of a frame around label points: ``floor(min)`` to ``ceil(max)`` (exclusive), clipped."""
    height, width = size
    x0, y0 = max(0, math.floor(points[:, 0].min())), max(0, math.floor(points[:, 1].min()))
    x1, y1 = min(width, math.ceil(points[:, 0].max())), min(height, math.ceil(points[:, 1].max()))
    return (x0, y0, x1, y1) if x1 - x0 >= 8 and y1 - y0 >= 8 else None


def _fit_size(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """GIM's ``get_resized_wh`` + ``get_divisible_wh``: fit into ``box = (w, h)`` keeping aspect, floor to 8s."""
    scale = min(box[1] / height, box[0] / width)
    w_new, h_new = round(width * scale), round(height * scale)
    return max(w_new // 8, 1) * 8, max(h_new // 8, 1) * 8


def _zoom_crop(rgb: np.ndarray, mask: np.ndarray | None, box: tuple[int, int, int, int],
               fit: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    import cv2

    x0, y0, x1, y1 = box
    crop = cv2.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]), fit, interpolation=cv2.INTER_AREA)
    small = None
    if mask is not None:
        small = cv2.resize(mask[y0:y1, x0:x1].astype(np.uint8), fit, interpolation=cv2.INTER_NEAREST) > 0
    return crop, small, ((x1 - x0) / fit[0], (y1 - y0) / fit[1])


def _label_pair(lab: _Labeller, frames: _Frames, pair: tuple[int, int], source: np.ndarray | None) -> np.ndarray | None:
    """The filtered label of one pair (``source``: the zoom source's plain label for a zoomed pass)."""
    i, j = pair
    mask0, mask1 = frames.mask(i), frames.mask(j)
    if (mask0 is not None and not mask0.any()) or (mask1 is not None and not mask1.any()):
        return None
    rgb0, rgb1 = frames.rgb(i), frames.rgb(j)
    if source is None:
        k0, k1 = lab.match(rgb0, rgb1, mask0, mask1, pair)
        return lab.filter(k0, k1)
    size = rgb0.shape[:2]
    box0, box1 = _zoom_box(source[:, :2], size), _zoom_box(source[:, 2:], size)
    if box0 is None or box1 is None:
        return None
    limit = (size[1], size[0]) if lab.name == "root_sift" else tuple(lab.cfg.zoom_size)
    fit0 = _fit_size(box0[2] - box0[0], box0[3] - box0[1], limit)
    fit1 = _fit_size(box1[2] - box1[0], box1[3] - box1[1], limit)
    crop0, small0, s0 = _zoom_crop(rgb0, mask0, box0, fit0)
    crop1, small1, s1 = _zoom_crop(rgb1, mask1, box1, fit1)
    if min(crop0.shape[:2] + crop1.shape[:2]) < lab.matcher.min_image_size:
        return None
    label = lab.filter(*lab.match(crop0, crop1, small0, small1, None))  # filtered in the crops' pixels, as GIM
    if label is None:
        return None
    # back to the frame: pixel centres at integers, so a point maps as (x + 0.5) * s - 0.5, then the crop offset
    scale = np.array([s0[0], s0[1], s1[0], s1[1]], dtype=np.float64)
    offset = np.array([box0[0], box0[1], box1[0], box1[1]], dtype=np.float64)
    return ((label + 0.5) * scale - 0.5 + offset).astype(np.float32)


# ------------------------------------------------------------------------------------------------------ the step


def main(conf: Mapping[str, Any] | None, paths: VideoPaths) -> Path:
    """Label the decoded videos ``paths.videos`` (default: all) in the layout at ``paths.root``; returns the root."""
    from gim_plugins.zeb.world import init_world, rank_device

    cfg = merge_conf(default_conf, conf, owner="gim video label")
    layout = Layout(paths.root)
    videos = list(paths.videos) if paths.videos is not None else decoded_videos(layout)
    if not videos:
        raise UserError(f"no decoded video in {layout.root}; run `gim video decode` (or `gim video run`) first")
    names, line = choose_labellers(cfg.labellers)
    zoom_source = cfg.zoom_source or ("gim_dkm" if "gim_dkm" in names else names[0])
    if cfg.zoom and zoom_source not in names:
        raise UserError(f"zoom_source {zoom_source!r} is not among the labellers ({', '.join(names)})")
    world = init_world(tuple(cfg.shard) if cfg.shard is not None else None)
    try:
        device = rank_device(cfg.device, world)
        masker, mask_line = make_masker(cfg.masks, layout, device)
        _say(cfg, world, line)
        _say(cfg, world, mask_line)
        labellers = [_Labeller(name, cfg, device) for name in names]
        chosen, whole = pairing.videos_of_shard(videos, (world.rank, world.size))
        decoded_videos(layout, chosen)  # this worker's videos must be decoded (another job's may still be running)
        shard = None if (whole or world.size <= 1) else (world.rank, world.size)
        record_shard = (world.rank, world.size) if world.size > 1 and not whole else None
        for vid in chosen:
            _label_video(layout, vid, labellers, masker, cfg, zoom_source, shard, record_shard)
        world.barrier()
        if world.distributed and world.rank == 0 and not whole:
            for vid in videos:  # every rank has finished: make sure the folders' records are merged
                for folder, _video, label_dir in layout.label_dirs(vid):
                    LabelRecord(label_dir, layout.labeller_state(vid, folder)).merge(world.size)
    finally:
        world.close()
    return layout.root


def _say(cfg: Conf, world: Any, line: str) -> None:
    if cfg.progress and world.rank == 0:
        print(line, flush=True)


def _label_video(layout: Layout, vid: str, labellers: list[_Labeller], masker: Any, cfg: Conf, zoom_source: str,
                 shard: tuple[int, int] | None, record_shard: tuple[int, int] | None) -> None:
    info = read_json(layout.video_info(vid))
    skips = [s for s in info["skips"] if cfg.skips is None or s in cfg.skips]
    if cfg.skips is not None and len(skips) != len(set(cfg.skips)):
        raise UserError(f"{vid} was decoded for skips {info['skips']}; skips {list(cfg.skips)} are not all among them")
    starts = pairing.shard_block(pairing.sampled_frames(*info["range"], info["gap"]), shard)
    work = {skip: pairing.video_pairs(starts, skip, info["range"][1], info["shots"]) for skip in skips}
    summary_path = layout.summary(vid, "label")
    summary = read_json(summary_path) if summary_path.is_file() else {}
    passes = [(lab, False) for lab in labellers] + ([(lab, True) for lab in labellers] if cfg.zoom else [])
    source = next((lab for lab in labellers if lab.name == zoom_source), labellers[0])
    for lab, zoomed in passes:  # every plain pass before any zoomed one: a zoomed pass reads the plain labels
        stats = _run_pass(layout, info, lab, masker, cfg, work, zoomed, source, record_shard)
        key = f"{lab.method} {'T' if zoomed else 'F'}"
        if stats["processed"] == 0 and key in summary:  # nothing left to do: keep the run that did the work
            stats = {**summary[key], "pairs": stats["pairs"], "labelled": stats["labelled"]}
        summary[key] = stats
    write_json(summary_path, summary)


def _video_folder(info: dict[str, Any], skip: int) -> VideoFolder:
    return VideoFolder(info["vid"], info["width"], info["height"], *info["range_seconds"], skip)


def _run_pass(layout: Layout, info: dict[str, Any], lab: _Labeller, masker: Any, cfg: Conf,
              work: dict[int, list[tuple[int, int]]], zoomed: bool, source: _Labeller,
              record_shard: tuple[int, int] | None) -> dict[str, Any]:
    from tqdm import tqdm

    vid = info["vid"]
    records, dirs, source_dirs, source_records = {}, {}, {}, {}
    for skip in work:
        folder = LabelFolder(lab.method, zoomed, skip)
        dirs[skip] = layout.label_dir(folder, _video_folder(info, skip))
        records[skip] = LabelRecord(dirs[skip], layout.labeller_state(vid, folder), record_shard)
        dirs[skip].mkdir(parents=True, exist_ok=True)
        if zoomed:
            source_folder = LabelFolder(source.method, False, skip)
            source_dirs[skip] = layout.label_dir(source_folder, _video_folder(info, skip))
            source_records[skip] = LabelRecord(source_dirs[skip], layout.labeller_state(vid, source_folder))
    todo = sorted((pair[0], skip, pair) for skip, pairs in work.items() for pair in pairs if pair not in records[skip])
    frames = _Frames(layout, vid, info.get("frame_colour", "rgb"), masker)
    lab.extracted = 0
    done = labels = pending = 0
    began = time.perf_counter()
    name = f"{lab.method}{' zoom' if zoomed else ''}"
    for first, skip, pair in tqdm(todo, desc=f"label {vid[:16]} {name}", unit="pair", disable=not cfg.progress,
                                  leave=False, file=sys.stderr, dynamic_ncols=True):
        lab.forget(frames.forget_before(first))
        src = None
        if zoomed:
            src_file = layout.pair_file(source_dirs[skip], *pair)
            if not src_file.is_file():
                if pair not in source_records[skip]:  # the plain pass has not reached this pair (another shard's)
                    pending += 1
                    continue
                records[skip].add(pair, 0)
                done += 1
                continue
            src = read_pair_label(src_file)
        label = _label_pair(lab, frames, pair, src)
        if label is not None:
            write_pair_label(layout.pair_file(dirs[skip], *pair), label)
            labels += len(label)
        records[skip].add(pair, 0 if label is None else len(label))
        done += 1
    lab.forget(frames.forget_before(sys.maxsize))
    seconds = time.perf_counter() - began
    complete = {skip: records[skip].finish(work[skip]) for skip in work}
    total_pairs = sum(len(p) for p in work.values())
    labelled = sum(sum(1 for p in work[s] if records[s].done.get(p, 0) > 0) for s in work)
    rate = done / seconds if seconds > 0 else 0.0
    if cfg.progress:
        print(f"label {vid} {name}: {done} pairs in {seconds:.1f} s ({rate:.2f} pairs/s), {labelled}/{total_pairs} "
              f"pairs labelled, {labels} labels written" + (f", {lab.extracted} frames extracted" if lab.cache else "")
              + (f", {pending} pairs wait for the plain {source.method} pass" if pending else ""), flush=True)
    return {"pairs": total_pairs, "processed": done, "labelled": labelled, "labels_written": labels,
            "seconds": round(seconds, 3), "pairs_per_second": round(rate, 3), "frames_extracted": lab.extracted,
            "pending": pending, "records_complete": all(complete.values())}
