"""Step ``propagate``: chain the per-pair labels of every labeller into long-range pairs, as GIM's training reads them.

``main(conf, paths)`` reads the label folders ``pseudo/WALK {METHOD} [R] {T|F} [S] {skip}/<video folder>/`` of each
video and writes ``propagate/<ppid>/<vid>/{i0}_{i1}.npy`` (float32; row 0 = ``[i0', i1', i0', i1']``, the frames
actually reached; rows 1… = ``x0, y0, x1, y1`` in video pixels) plus ``bad_pairs.txt`` (one target pair per line),
the files GIM's training code reads. The rules are GIM's (:mod:`~gim_plugins.training.video.chain`); what differs
from GIM's ``datasets/walk/propagate.py``:

* any set of labellers, zoom flags and skips (GIM insists on exactly 24 label folders): they are taken from the
  folders present (or the ``methods``/``zooms``/``skips`` options), said in one line, and named in ``<ppid>`` as GIM
  names it;
* resumable: a target with an output file or a line in ``bad_pairs.txt`` is done (GIM asserts that
  ``bad_pairs.txt`` does not exist); outputs are written atomically, so a killed run leaves complete files only;
* sharded: ``shard=(i, n)`` takes targets ``i::n`` (independent jobs, e.g. ``--shard i/n`` on several machines; under
  torchrun ``RANK``/``WORLD_SIZE`` do the same);
* a video without a single start frame is reported and skipped (GIM's code stops with an ``IndexError``);
* ``state/<vid>/propagate_summary.json``: per ``<ppid>`` the options, the variants used, targets tried/kept/bad,
  chain lengths, label counts and throughput.

The link key ``round(x) + round(y)·W`` uses the frame width from the video folder names (GIM reads the same width
from the source video).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.atomic import atomic_path
from gim_plugins.conf import Conf, merge_conf, to_plain
from gim_plugins.errors import UserError
from gim_plugins.training.video import chain
from gim_plugins.training.video.layout import (
    PROPAGATE_DIR,
    PSEUDO_DIR,
    LabelFolder,
    Layout,
    VideoFolder,
    VideoPaths,
    pair_file_name,
    ppid,
    propagated_file_name,
    read_json,
    read_record,
    write_json,
)

__all__ = ["DEFAULT_CONF", "Variant", "VideoPlan", "default_conf", "main", "plan_video", "propagate_video",
           "read_bad_pairs", "summarise"]

log = logging.getLogger(__name__)

DEFAULT_CONF: dict[str, Any] = {
    "methods": None,  # method names as in the folder names (e.g. ["SIFT", "GIM_DKM"]); None: every one present
    "zooms": None,  # zoom flags to use, e.g. [False]; None: both where present
    "skips": None,  # pair spacings to use, e.g. [10, 20]; None: every one present
    "min_filter_matches": 32,  # GIM's MIN_FILTER_MATCHES: a start hop needs more labels than this in every variant
    "min_final_matches": 512,  # GIM's MIN_FINAL_MATCHES: links a chained hop needs
    "min_inliers": 64,  # inliers of the final fundamental-matrix check
    "step": 1000,  # GIM's STEP: targets span at most step × the largest skip
    "fundamental": {"threshold": 1.0, "confidence": 0.999999, "max_iters": 1000},
    "missing_hop": "skip",  # "skip": GIM's rule (pass over a hop without labels); "stop": end the chain there
    "cache_mb": 512,  # hop labels kept in memory
    "shard": None,  # (i, n): targets i::n only
    "progress": True,  # progress bar and status lines on stderr
}
default_conf = DEFAULT_CONF  # the name the CLI looks for

SUMMARY_STEP = "propagate"


@dataclass(frozen=True)
class Variant:
    """One label folder of a video: a labeller (``method``) × zoom flag at one ``skip``."""

    method: str
    zoom: bool
    skip: int
    path: Path
    nums: np.ndarray
    idxs: np.ndarray

    @property
    def name(self) -> str:
        return LabelFolder(self.method, self.zoom, self.skip).name


@dataclass(frozen=True)
class VideoPlan:
    """What a propagation of one video uses and produces."""

    vid: str
    width: int
    variants: tuple[Variant, ...]
    ppid: str
    starts: np.ndarray
    targets: list[tuple[int, int]]
    out_dir: Path
    methods: tuple[str, ...] = field(default=())
    zooms: tuple[bool, ...] = field(default=())
    skips: tuple[int, ...] = field(default=())

    def describe(self) -> str:
        """The one line saying what was found."""
        zooms = " ".join("T" if z else "F" for z in self.zooms)
        return (f"{self.vid}: {len(self.methods)} labeller(s) {' '.join(self.methods)} × zoom {zooms} × skips "
                f"{' '.join(map(str, self.skips))} = {len(self.variants)} label folders; {len(self.starts)} start "
                f"frames, {len(self.targets)} target pairs → {self.out_dir.parent.name}/")


def _say(conf: Conf, message: str) -> None:
    log.info(message)
    if conf.progress:
        print(message, file=sys.stderr, flush=True)


def _videos_present(layout: Layout) -> list[str]:
    """Every video id with at least one label folder."""
    pseudo = layout.root / PSEUDO_DIR
    found: set[str] = set()
    if pseudo.is_dir():
        for top in pseudo.iterdir():
            if LabelFolder.parse(top.name) is not None and top.is_dir():
                found.update(v.vid for v in map(VideoFolder.parse, (s.name for s in top.iterdir())) if v is not None)
    return sorted(found)


def _zoom_flag(value: Any) -> bool:
    """A zoom flag given as a bool or as GIM's letter (``"T"``/``"F"``)."""
    if isinstance(value, str):
        if value.upper() not in ("T", "F", "TRUE", "FALSE"):
            raise UserError(f"zooms takes T/F (or true/false), got {value!r}")
        return value.upper() in ("T", "TRUE")
    return bool(value)


def _selected(value: Any, present: set[Any], what: str, vid: str) -> set[Any]:
    if value is None:
        return present
    value = [value] if isinstance(value, str | int) else value
    wanted = {_zoom_flag(v) if what == "zooms" else v for v in value}
    missing = wanted - present
    if missing:
        raise UserError(f"{vid}: no label folders for {what} {sorted(missing)} (present: {sorted(present)}); run the "
                        f"label step for them or leave them out of '{what}'")
    return wanted


def plan_video(layout: Layout, vid: str, conf: Conf) -> VideoPlan:
    """Find the label folders of ``vid``, check them, and compute its start frames and target pairs."""
    found = layout.label_dirs(vid)
    if not found:
        raise UserError(f"{vid}: no label folders under {layout.root / PSEUDO_DIR}; run 'gim video label' first")
    methods = _selected(conf.methods, {f.method for f, _, _ in found}, "methods", vid)
    zooms = _selected(conf.zooms, {f.zoom for f, _, _ in found}, "zooms", vid)
    skips = _selected(conf.skips, {f.skip for f, _, _ in found}, "skips", vid)
    chosen = [(f, v, p) for f, v, p in found if f.method in methods and f.zoom in zooms and f.skip in skips]
    seen: dict[LabelFolder, Path] = {}
    for folder, video, path in chosen:
        if folder in seen:
            raise UserError(f"{vid}: two video folders in {folder.name!r} ({seen[folder].name!r} and {path.name!r}); "
                            "remove the one of the older range")
        if video.skip != folder.skip:
            raise UserError(f"{path}: the video folder says SP {video.skip} inside a [S] {folder.skip} label folder; "
                            "relabel this folder")
        seen[folder] = path
    widths = {v.width for _, v, _ in chosen}
    if len(widths) != 1:
        raise UserError(f"{vid}: label folders of different frame widths {sorted(widths)}; relabel so that every "
                        "labeller sees the same frames")
    variants = []
    for folder, _, path in chosen:
        try:
            nums, idxs = read_record(path)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        variants.append(Variant(folder.method, folder.zoom, folder.skip, path, nums, idxs))
    variants.sort(key=lambda v: (v.skip, *chain.variant_order(v.method, v.zoom)))
    records = {s: [(v.nums, v.idxs) for v in variants if v.skip == s] for s in sorted(skips)}
    starts = chain.start_frames(records, conf.min_filter_matches)
    targets = chain.target_pairs(starts, max(skips), conf.step)
    pid = ppid(sorted(methods), sorted(skips), sorted(zooms), conf.min_filter_matches, conf.min_final_matches)
    return VideoPlan(vid, widths.pop(), tuple(variants), pid, starts, targets, layout.propagate_dir(pid, vid),
                     tuple(sorted(methods, key=lambda m: chain.variant_order(m, False))), tuple(sorted(zooms)),
                     tuple(sorted(skips)))


def _hop_reader(plan: VideoPlan) -> chain.Reader:
    """``(skip, pair) → labels``: every variant's file of that pair, concatenated in GIM's folder order."""
    folders = {s: [v.path for v in plan.variants if v.skip == s] for s in plan.skips}

    def read(skip: int, pair: tuple[int, int]) -> np.ndarray | None:
        parts = []
        for folder in folders.get(skip, ()):
            path = folder / pair_file_name(*pair)
            if path.is_file():
                parts.append(np.load(path).reshape(-1, 4))
        return np.concatenate(parts, axis=0).astype(np.float32) if parts else None

    return read


def read_bad_pairs(path: Path) -> set[tuple[int, int]]:
    """Target pairs recorded in a ``bad_pairs.txt`` (lines that are not two integers are ignored)."""
    if not path.is_file():
        return set()
    pairs = set()
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and all(f.lstrip("-").isdigit() for f in fields):
            pairs.add((int(fields[0]), int(fields[1])))
    return pairs


def _append_bad_pair(path: Path, pair: tuple[int, int]) -> None:
    """Append one line with a single ``write`` on an ``O_APPEND`` descriptor (concurrent shards never interleave)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        lead = b""
        if size:  # a kill mid-line must not glue two records together
            with open(path, "rb") as handle:
                handle.seek(size - 1)
                lead = b"" if handle.read(1) == b"\n" else b"\n"
        os.write(fd, lead + f"{pair[0]} {pair[1]}\n".encode())
    finally:
        os.close(fd)


def _write_label(path: Path, reached: tuple[int, int], label: np.ndarray) -> None:
    head = np.array([[reached[0], reached[1], reached[0], reached[1]]], dtype=np.float32)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.concatenate([head, label.astype(np.float32)], axis=0))


def _shard(conf: Conf) -> tuple[int, int]:
    shard = conf.shard
    if shard is None:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), size) if size > 1 else (0, 1)
    if isinstance(shard, str):
        index, _, count = shard.partition("/")
        shard = (index, count)
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        i, n = -1, 0
    if not 0 <= i < n:
        raise UserError(f"shard expects i/n with 0 <= i < n (0-based), got {conf.shard!r}")
    return i, n


def _conf_record(conf: Conf) -> dict[str, Any]:
    """The options that change the output files (progress, cache and shard do not)."""
    plain = to_plain(conf)
    return {k: plain[k] for k in ("step", "min_inliers", "fundamental", "missing_hop")}


def _check_conf(layout: Layout, plan: VideoPlan, conf: Conf) -> None:
    path = layout.summary(plan.vid, SUMMARY_STEP)
    record = read_json(path).get(plan.ppid, {}) if path.is_file() else {}
    previous = record.get("conf")
    has_outputs = plan.out_dir.is_dir() and any(plan.out_dir.iterdir())
    if previous is not None and previous != _conf_record(conf) and has_outputs:
        raise UserError(f"{plan.out_dir} was propagated with other options ({previous}); rerun with those, or delete "
                        "that folder to propagate again")


def _update_summary(layout: Layout, plan: VideoPlan, entry: dict[str, Any]) -> Path:
    path = layout.summary(plan.vid, SUMMARY_STEP)
    data = read_json(path) if path.is_file() else {}
    data[plan.ppid] = entry
    return write_json(path, data)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    array = np.asarray(values, dtype=np.float64)
    return {"count": len(values), "min": float(array.min()), "median": float(np.median(array)),
            "mean": round(float(array.mean()), 3), "max": float(array.max())}


def summarise(layout: Layout, plan: VideoPlan) -> dict[str, Any]:
    """Counts from the files on disk (so every shard's summary describes the whole video): targets kept, bad and
    pending, chain lengths in frames and in hops of the largest skip, labels per kept pair."""
    targets = set(plan.targets)
    bad = read_bad_pairs(layout.bad_pairs(plan.ppid, plan.vid)) & targets
    spans, counts = [], []
    for i0, i1 in sorted(targets - bad):
        path = plan.out_dir / propagated_file_name(i0, i1)
        if path.is_file():
            array = np.load(path, mmap_mode="r")
            spans.append(float(array[0, 1] - array[0, 0]))
            counts.append(float(array.shape[0] - 1))
    return {
        "start_frames": len(plan.starts), "targets": len(targets), "kept": len(spans), "bad": len(bad),
        "pending": len(targets) - len(spans) - len(bad), "chain_frames": _stats(spans),
        "chain_hops": _stats([s / plan.skips[-1] for s in spans]), "labels": _stats(counts),
        "labels_total": int(sum(counts)),
    }


def propagate_video(layout: Layout, plan: VideoPlan, conf: Conf) -> dict[str, Any]:
    """Propagate this shard's remaining targets of one video; returns the video's summary entry."""
    _check_conf(layout, plan, conf)
    index, count = _shard(conf)
    mine = plan.targets[index::count]
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    bad_path = layout.bad_pairs(plan.ppid, plan.vid)
    bad = read_bad_pairs(bad_path)
    todo = [t for t in mine if t not in bad and not (plan.out_dir / propagated_file_name(*t)).is_file()]
    entry: dict[str, Any] = {"conf": _conf_record(conf), "vid": plan.vid, "width": plan.width,
                             "variants": [v.name for v in plan.variants], "methods": list(plan.methods),
                             "zooms": ["T" if z else "F" for z in plan.zooms], "skips": list(plan.skips)}
    _update_summary(layout, plan, {**entry, **summarise(layout, plan)})
    labels = chain.LabelCache(_hop_reader(plan), int(conf.cache_mb * 2**20))
    chainer = chain.Chainer(labels, plan.width, conf.min_final_matches, conf.missing_hop)
    fit = conf.fundamental
    bar = None
    if conf.progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="pair", desc=f"propagate {plan.vid}")
    started, frames, kept = time.perf_counter(), 0, 0
    try:
        for target in todo:
            outcome = chain.propagate_pair(chainer, target, plan.skips, min_inliers=conf.min_inliers,
                                           threshold=fit.threshold, confidence=fit.confidence,
                                           max_iters=fit.max_iters)
            if outcome.label is None or outcome.reached is None:
                _append_bad_pair(bad_path, target)
            else:
                _write_label(plan.out_dir / propagated_file_name(*target), outcome.reached, outcome.label)
                frames += outcome.reached[1] - outcome.reached[0]
                kept += 1
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    speed = {"seconds": round(seconds, 3), "pairs": len(todo), "label_reads": labels.reads,
             "pairs_per_s": round(len(todo) / seconds, 3) if seconds > 0 else None,
             "frames_per_s": round(frames / seconds, 1) if seconds > 0 else None}
    if todo:
        _say(conf, f"{plan.vid}: {len(todo)} target pairs in {seconds:.1f} s ({speed['pairs_per_s']} pairs/s, "
                   f"{speed['frames_per_s']} chained frames/s), {kept} kept, {len(todo) - kept} bad")
    result = {**entry, **summarise(layout, plan), "last_run": speed, "shard": [index, count]}
    _update_summary(layout, plan, result)
    return result


def main(conf: Mapping[str, Any] | None, paths: VideoPaths | Mapping[str, Any]) -> Path:
    """Propagate the labels of every video of ``paths`` (see the module docstring); returns ``<root>/propagate``.

    Args:
        conf: options of :data:`DEFAULT_CONF`.
        paths: :class:`~gim_plugins.training.video.layout.VideoPaths` (``root``: the layout root, GIM's
            ``data/ZeroMatch``; ``videos``: ids, or ``None`` for every video with label folders).

    Raises:
        UserError: no label folders, a selection that names absent folders, inconsistent folders, a bad shard.
    """
    conf = merge_conf(DEFAULT_CONF, conf, owner="gim video propagate")
    if conf.missing_hop not in ("skip", "stop"):
        raise UserError(f"missing_hop must be 'skip' (GIM) or 'stop', got {conf.missing_hop!r}")
    _shard(conf)
    if not isinstance(paths, VideoPaths):
        paths = VideoPaths(Path(paths["root"]), tuple(paths["videos"]) if paths.get("videos") else None)
    layout = paths.layout
    videos = list(paths.videos) if paths.videos else _videos_present(layout)
    if not videos:
        raise UserError(f"no label folders under {layout.root / PSEUDO_DIR}; run 'gim video label' first")
    for vid in videos:
        plan = plan_video(layout, vid, conf)
        _say(conf, plan.describe())
        if not plan.targets:
            _say(conf, f"{vid}: no start frame has more than {conf.min_filter_matches} labels at skip "
                       f"{plan.skips[-1]} in every variant and labels at the smaller skips; nothing to propagate")
        propagate_video(layout, plan, conf)
    return layout.root / PROPAGATE_DIR
