"""Step 1 of ``gim video``: decode local videos frame-accurately, find the shot cuts, cache the sampled frames.

Frame ``i`` is the ``i``-th frame the decoder returns (0-based), counted while decoding sequentially with PyAV (whose
wheel bundles FFmpeg). Nothing seeks by time: GIM's ``VideoReader.seek(i / int(fps))`` drifts on 29.97 fps video
(frame index and time base disagree by 0.1 %, 18 frames after 10 minutes) and torchvision no longer ships a video
reader at all. Every frame goes, at ``detect_width`` pixels wide, through the shot detector
(:mod:`~gim_plugins.training.video.shots`); only the sampled frames and their partners are converted at full size
and cached as PNGs (``image_1080p/<vid>/<i>.png``), in correct colour unless ``frame_colour="gim"``.

Inputs are video files, folders (their video files, sorted, not recursive) and list files (``.txt``/``.lst``: one path
per line, relative to the list's folder; ``#`` starts a comment). The video id is the file name without extension;
two inputs with the same id are an error.

``range`` is ``"START:END"``: seconds (``"12.5:20"``, ``"300:-300"``: a negative end counts from the end) or frames
with an ``f`` suffix (``"100f:400f"``); either side may be empty. The default is the whole video; the ``gim`` preset
is GIM's 300 s trim at both ends (:data:`PRESETS`), which leaves nothing of a clip shorter than 10 minutes.

Resuming: ``state/<vid>/video.json`` is written last. A rerun with the same settings skips a video whose record exists
and whose needed frames are all cached; a rerun with other settings refuses to mix them (``overwrite=True`` starts the
video again). A killed decode restarts the video but keeps the PNGs already written (each is written atomically).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.atomic import atomic_write_bytes
from gim_plugins.conf import Conf, merge_conf, to_plain
from gim_plugins.errors import UserError
from gim_plugins.training.video import pairs as pairing
from gim_plugins.training.video.layout import Layout, VideoPaths, check_video_id, read_json, write_json
from gim_plugins.training.video.shots import DETECTORS, ShotDetector, shots_from_cuts, write_shots

__all__ = ["PRESETS", "VIDEO_EXTENSIONS", "default_conf", "find_videos", "main", "parse_range", "read_frame"]

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                    ".wmv", ".flv", ".3gp", ".ogv")
LIST_EXTENSIONS = (".txt", ".lst", ".list")

default_conf: dict[str, Any] = {
    "range": None,  # "START:END" in seconds ("300:-300") or frames ("100f:400f"); None: the whole video
    "gap": None,  # frames between sampled frames; None: GIM's (10 at <= 30 fps, else 20)
    "skips": None,  # pair spacings in frames; None: GIM's (10, 20, 40) at <= 30 fps, else (20, 40, 80)
    "shot_detector": "content",  # "content", "adaptive" (PySceneDetect) or "none" (one shot)
    "shot_threshold": None,  # None: PySceneDetect's default (27 content, 3.0 adaptive)
    "min_shot_len": 15,  # frames
    "detect_width": 320,  # frames are scaled to this width for shot detection
    "frame_colour": "rgb",  # "rgb": correct-colour PNGs; "gim": red and blue swapped, as GIM's files
    "link_video": True,  # put video_1080p/<vid>.mp4 (a link, else a copy) where GIM's readers look
    "shard": None,  # (i, n): this worker's share (see gim_plugins.training.video.pairs)
    "overwrite": False,  # decode again a video recorded with other settings
    "progress": True,
}
"""Options of the decode step."""

PRESETS: dict[str, dict[str, Any]] = {"gim": {"range": "300:-300"}}
"""GIM's settings for this step: drop the first and last 300 s (GIM's ``video_preprocessor.py`` default)."""

_RECORDED = ("range", "gap", "skips", "shot_detector", "shot_threshold", "min_shot_len", "detect_width",
             "frame_colour")
"""Options that change what the step writes: a rerun with other values refuses to mix results."""


# ------------------------------------------------------------------------------------------------------- inputs


def find_videos(inputs: Iterable[str | Path]) -> list[Path]:
    """Video files named by ``inputs`` (files, folders, list files), in order, without duplicates.

    Raises:
        FileNotFoundError: an input does not exist.
        UserError: an input is neither a video nor a list, a folder holds no video, or two videos share an id.
    """
    found: list[Path] = []
    for item in inputs:
        found.extend(_expand(Path(item), depth=0))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    ids: dict[str, Path] = {}
    for path in unique:
        vid = check_video_id(path.stem)
        if vid in ids:
            raise UserError(f"two videos have the id {vid!r} ({ids[vid]} and {path}); rename one (the id is the file "
                            "name without extension)")
        ids[vid] = path
    if not unique:
        raise UserError("no video given; pass video files, folders of videos or list files")
    return unique


def _expand(path: Path, depth: int) -> list[Path]:
    if depth > 8:
        raise UserError(f"list files nest too deeply at {path}")
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            raise UserError(f"{path} holds no video file ({', '.join(VIDEO_EXTENSIONS)})")
        return videos
    if not path.exists():
        raise FileNotFoundError(f"video or list not found: {path}")
    if path.suffix.lower() in LIST_EXTENSIONS:
        out: list[Path] = []
        for line in path.read_text().splitlines():
            entry = line.split("#", 1)[0].strip()
            if entry:
                target = Path(entry).expanduser()
                out.extend(_expand(target if target.is_absolute() else path.parent / target, depth + 1))
        return out
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        raise UserError(f"{path} is neither a video ({', '.join(VIDEO_EXTENSIONS)}) nor a list file (.txt)")
    return [path]


def parse_range(text: str | None, fps: float, num_frames: int) -> tuple[int, int]:
    """``"START:END"`` → ``[start, end)`` in frames, clipped to the video.

    Seconds by default (a negative end counts back from the end of the video), frames with an ``f`` suffix.

    Raises:
        UserError: malformed, or nothing is left.
    """
    if text is None or str(text).strip() in ("", ":"):
        return 0, num_frames
    head, sep, tail = str(text).partition(":")
    if not sep:
        raise UserError(f"--range expects START:END (seconds, or frames with an f suffix), got {text!r}")

    def frames(value: str, default: int) -> int:
        value = value.strip()
        if not value:
            return default
        try:
            number = int(value[:-1]) if value.endswith("f") else round(float(value.removesuffix("s")) * fps)
        except ValueError:
            raise UserError(f"--range: cannot read {value!r} as seconds or frames (e.g. 12.5 or 300f)") from None
        return num_frames + number if number < 0 else number

    start, end = max(0, frames(head, 0)), min(num_frames, frames(tail, num_frames))
    if start >= end:
        seconds = num_frames / fps if fps else 0
        raise UserError(f"--range {text} leaves no frame of a {num_frames}-frame ({seconds:.1f} s) video; pick a "
                        "smaller range (GIM's 300 s trim needs videos over 10 minutes)")
    return start, end


def read_frame(path: str | Path, colour: str = "rgb") -> np.ndarray:
    """A cached frame as ``H×W×3`` uint8 RGB (``colour="gim"`` for files with red and blue swapped).

    Raises:
        FileNotFoundError: missing or unreadable.
    """
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"frame not found or unreadable: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if colour == "rgb" else image


# ------------------------------------------------------------------------------------------------------ the step


def main(conf: Mapping[str, Any] | None, paths: VideoPaths) -> Path:
    """Decode ``paths.sources`` into the layout at ``paths.root``; returns the root.

    Writes per video: ``state/<vid>/video.json`` (see :mod:`~gim_plugins.training.video.layout`),
    ``state/<vid>/shots.csv``, the cached frames and ``video_1080p/<vid>.mp4``.
    """
    from gim_plugins.zeb.world import init_world

    cfg = _check_conf(merge_conf(default_conf, conf, owner="gim video decode"))
    sources = find_videos(paths.sources)
    layout = Layout(paths.root)
    world = init_world(tuple(cfg.shard) if cfg.shard is not None else None)
    try:
        chosen, whole = pairing.videos_of_shard([str(s) for s in sources], (world.rank, world.size))
        for source in chosen:
            _decode_video(Path(source), layout, cfg, None if whole else (world.rank, world.size))
        world.barrier()
    finally:
        world.close()
    return layout.root


def _check_conf(cfg: Conf) -> Conf:
    if cfg.shot_detector not in DETECTORS:
        raise UserError(f"shot_detector must be one of {', '.join(DETECTORS)}, got {cfg.shot_detector!r}")
    if cfg.frame_colour not in ("rgb", "gim"):
        raise UserError(f"frame_colour must be 'rgb' or 'gim', got {cfg.frame_colour!r}")
    if cfg.gap is not None and (not isinstance(cfg.gap, int) or cfg.gap < 1):
        raise UserError(f"gap must be a positive number of frames, got {cfg.gap!r}")
    if cfg.skips is not None and (not cfg.skips or any(not isinstance(s, int) or s < 1 for s in cfg.skips)):
        raise UserError(f"skips must be positive numbers of frames, got {cfg.skips!r}")
    if cfg.shard is not None and not (len(cfg.shard) == 2 and 0 <= cfg.shard[0] < cfg.shard[1]):
        raise UserError(f"shard must be (i, n) with 0 <= i < n, got {cfg.shard!r}")
    return cfg


def _open(source: Path) -> tuple[Any, Any]:
    try:
        import av
    except ImportError as exc:
        raise ImportError("decoding needs PyAV: pip install 'gim-plugins[video]'") from exc
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:  # type: ignore[attr-defined]
        raise UserError(f"cannot open {source} as a video ({exc}); is it a video file?") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"{source} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _frame_rate(stream: Any, source: Path) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise UserError(f"{source}: the video states no frame rate")
    return Fraction(rate)


def _frame_count(container: Any, stream: Any, fps: Fraction) -> int:
    """Frames in the stream per its metadata (exact for MP4), else from the duration, else by counting packets."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return round(stream.duration * stream.time_base * fps)
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _decode_video(source: Path, layout: Layout, cfg: Conf, shard: tuple[int, int] | None) -> dict[str, Any]:
    vid = check_video_id(source.stem)
    settings = {key: to_plain(cfg[key]) for key in _RECORDED}
    info_path = layout.video_info(vid)
    previous = read_json(info_path) if info_path.is_file() else None
    if previous is not None and previous.get("settings") != settings and not cfg.overwrite:
        raise UserError(f"{vid} was decoded into {layout.root} with other settings ({previous.get('settings')}); use "
                        "another --out, the same settings, or overwrite")
    container, stream = _open(source)
    try:
        fps = _frame_rate(stream, source)
        total = _frame_count(container, stream, fps)
        start, end = parse_range(cfg.range, float(fps), total)
        gap, skips = _spacing(cfg, float(fps))
        starts = pairing.shard_block(pairing.sampled_frames(start, end, gap), shard)
        needed = pairing.needed_frames(starts, skips, end)
        if (previous is not None and previous.get("settings") == settings
                and all(layout.frame(vid, i).is_file() for i in needed if i < previous["num_frames"])):
            _progress(cfg, f"decode {vid}: done before ({previous['num_frames']} frames, {len(previous['shots'])} "
                           "shots)")
            return previous
        return _decode_frames(container, stream, source, vid, layout, cfg, settings,
                              fps=fps, total=total, start=start, end=end, gap=gap, skips=skips, needed=needed)
    finally:
        container.close()


def _spacing(cfg: Conf, fps: float) -> tuple[int, tuple[int, ...]]:
    gap, skips = pairing.gim_gap_and_skips(fps)
    return (cfg.gap or gap), tuple(cfg.skips or skips)


def _decode_frames(container: Any, stream: Any, source: Path, vid: str, layout: Layout, cfg: Conf,
                   settings: dict[str, Any], *, fps: Fraction, total: int, start: int, end: int, gap: int,
                   skips: tuple[int, ...], needed: list[int]) -> dict[str, Any]:
    import cv2
    from tqdm import tqdm

    detector = ShotDetector(cfg.shot_detector, fps, threshold=cfg.shot_threshold, min_shot_len=cfg.min_shot_len)
    wanted = set(needed)
    last_needed = max(needed, default=-1)
    stop = end if cfg.shot_detector != "none" else max(last_needed + 1, 1)  # ≥ 1 frame: its size is recorded
    layout.frames_dir(vid).mkdir(parents=True, exist_ok=True)
    colour_format = "bgr24" if cfg.frame_colour == "rgb" else "rgb24"  # cv2 writes BGR arrays as correct colour
    width = height = 0
    count = written = 0
    began = time.perf_counter()
    bar = tqdm(total=stop, desc=f"decode {vid[:24]}", unit="frame", disable=not cfg.progress, leave=False,
               file=sys.stderr, dynamic_ncols=True)
    stopped = False
    with bar:
        for index, frame in enumerate(container.decode(stream)):
            if index >= stop:
                stopped = True
                break
            count = index + 1
            bar.update(1)
            width, height = frame.width, frame.height
            if index >= start and cfg.shot_detector != "none":
                small_w = min(cfg.detect_width, width)
                small_h = max(1, round(small_w * height / width))
                detector.feed(index, frame.to_ndarray(format="bgr24", width=small_w, height=small_h))
            if index in wanted and not layout.frame(vid, index).is_file():
                ok, png = cv2.imencode(".png", frame.to_ndarray(format=colour_format))
                if not ok:
                    raise RuntimeError(f"PNG encoding of frame {index} of {vid} failed")
                atomic_write_bytes(layout.frame(vid, index), png.tobytes())
                written += 1
    seconds = time.perf_counter() - began
    if not stopped:  # the whole stream was decoded: ``count`` is exact (the metadata may have promised more)
        end = min(end, count)
    if width == 0:
        raise UserError(f"{source}: no frame could be decoded")
    shots = shots_from_cuts(detector.cuts(), start, end)
    write_shots(layout.shots_file(vid), shots)
    if cfg.link_video:
        _link_video(source, layout.video_file(vid))
    info = {
        "vid": vid, "source": str(source), "fps": float(fps), "fps_num": fps.numerator, "fps_den": fps.denominator,
        "fps_int": math.ceil(fps), "num_frames": max(count, total) if stopped else count,
        "width": width, "height": height, "range": [start, end],
        "range_seconds": [int(start // fps), int(end // fps)], "gap": gap, "skips": list(skips), "shots": shots,
        "frame_colour": cfg.frame_colour, "settings": settings,
        "decode": {"frames": count, "seconds": round(seconds, 3), "frames_per_second": round(count / seconds, 1)
                   if seconds > 0 else None, "frames_written": written},
    }
    write_json(layout.video_info(vid), info)
    _progress(cfg, f"decode {vid}: {count} frames in {seconds:.1f} s ({count / max(seconds, 1e-9):.0f} frames/s), "
                   f"{len(shots)} shots, {written} frames cached")
    return info


def _link_video(source: Path, target: Path) -> None:
    """``video_1080p/<vid>.mp4`` → the source (a symbolic link; a copy where links are not allowed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        if target.resolve() == source.resolve():
            return
        target.unlink()
    try:
        target.symlink_to(source.resolve())
    except OSError:
        shutil.copy2(source, target)


def _progress(cfg: Conf, line: str) -> None:
    if cfg.progress:
        print(line, flush=True)


def decoded_videos(layout: Layout, videos: Sequence[str] | None = None) -> list[str]:
    """Ids of the videos whose decode record exists (all of them, or those of ``videos``, in that order).

    Raises:
        UserError: a requested video has not been decoded.
    """
    state = layout.root / "state"
    if videos is None:
        return sorted(p.name for p in state.iterdir() if (p / "video.json").is_file()) if state.is_dir() else []
    missing = [v for v in videos if not layout.video_info(v).is_file()]
    if missing:
        raise UserError(f"not decoded yet in {layout.root}: {', '.join(missing)}; run `gim video decode` first")
    return list(videos)
