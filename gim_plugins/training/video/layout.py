"""Every folder and file name of GIM's ZeroMatch layout (and of our bookkeeping beside it), in one place.

GIM's video scripts write under ``data/ZeroMatch``; ``gim video`` writes the same tree under the ``--out`` folder,
with the same names, so GIM's own propagation and training code can read what we write::

    <root>/
      video_1080p/<vid>.mp4                 the source video (a link, or a copy where links fail); GIM's propagation
                                            and training read its frame size from here
      image_1080p/<vid>/<frame>.png         cached frames, <frame> = 0-based index of the decoded frame
      segment/<vid>/<frame>.npy             ADE20K class map of a frame (uint8, long side <= 720), as GIM caches it
      pseudo/WALK {METHOD} [R] {T|F} [S] {skip:2}/
        {vid} WH {w:4} {h:4} RG {start:4} {end:4} SP {skip} {len(vid)}/
          [i j].npy                         float32 (N, 4): x0, y0, x1, y1 in pixels of the full video frame
          nums.npy                          int64 (M,): labels per labelled pair, in pair order
          idxs.npy                          int64 (M, 2): the labelled frame pairs (i, j)
      propagate/<ppid>/<vid>/{i0}_{i1}.npy  propagated labels (row 0 = the frames reached), and bad_pairs.txt
      walk/<vid>/*.png                      pictures of propagated pairs (GIM writes them to dump/walk/<vid>/)
      state/<vid>/...                       ours only: decode record, shots, per-labeller bookkeeping

Names, exactly as GIM's ``video_preprocessor.py`` and ``datasets/walk`` spell them:

* label folder: ``"WALK " + METHOD + " [R] " + ("T" if zoomed else "F") + " [S] " + f"{skip:2}"`` — the brackets
  are literal, ``[R]`` is the ``--resize`` (zoom) flag and ``[S]`` the pair spacing in frames;
* video folder: ``{vid} WH {w:4} {h:4} RG {start:4} {end:4} SP {skip} {len(vid)}``, where ``WH`` is the frame size,
  ``RG`` the processed range in whole seconds (as GIM's ``--range``), and the last number the length of the video
  id, which is how GIM's readers cut the id back out of the name (``d[:int(d.split()[-1])]``);
* pair file: ``str(numpy.array([i, j])) + ".npy"``, i.e. ``"[i j].npy"`` with numpy's padding of the shorter number
  to the width of the longer one (``"[  5 100].npy"``);
* propagation folder: ``" ".join(methods sorted descending + skips ascending + zoom flags ascending + ["FM 32",
  "PM 512"])``, e.g. ``"SIFT GIM_LOFTR GIM_GLUE GIM_DKM 10 20 40 F T FM 32 PM 512"``.

Method names: GIM's four labellers keep GIM's names (:data:`GIM_METHOD_NAMES`: ``gim_dkm`` → ``GIM_DKM``,
``gim_loftr`` → ``GIM_LOFTR``, ``gim_lightglue`` → ``GIM_GLUE``, ``root_sift`` → ``SIFT``); any other registered
matcher is its registry name upper-cased (``aliked_lightglue`` → ``ALIKED_LIGHTGLUE``). GIM's own propagation and
training code only look for the 32 folders of its four names; folders of other labellers are read by ours.

Coordinates in label files are in our pixel convention (centre of the top-left pixel at (0, 0), as OpenCV's
keypoints and GIM's SIFT labels); GIM's DKM, LoFTR and LightGlue labels were 0.5 px larger (corner convention).

Frames: GIM hands RGB arrays to ``cv2.imwrite`` (which expects BGR), so its PNGs on disk have red and blue swapped;
its readers take what ``cv2.imread`` returns as RGB, which undoes the swap. Our PNGs have correct colour (any viewer
shows them right, and we read them back as RGB). GIM's unmodified training code reading *our* files therefore sees
red and blue exchanged; the decode option ``frame_colour="gim"`` writes GIM's swapped files instead, for that use.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gim_plugins.atomic import atomic_path, atomic_write_text

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "BAD_PAIRS_FILE",
    "GIM_METHOD_NAMES",
    "IDXS_FILE",
    "IMAGE_DIR",
    "NUMS_FILE",
    "PROPAGATE_DIR",
    "PSEUDO_DIR",
    "SEGMENT_DIR",
    "STATE_DIR",
    "VIDEO_DIR",
    "WALK_DIR",
    "LabelFolder",
    "Layout",
    "VideoFolder",
    "VideoPaths",
    "check_video_id",
    "method_name",
    "pair_file_name",
    "parse_pair_file_name",
    "ppid",
    "propagated_file_name",
    "read_json",
    "read_pair_label",
    "read_record",
    "write_json",
    "write_pair_label",
    "write_record",
]

VIDEO_DIR = "video_1080p"
IMAGE_DIR = "image_1080p"
SEGMENT_DIR = "segment"
PSEUDO_DIR = "pseudo"
PROPAGATE_DIR = "propagate"
WALK_DIR = "walk"
STATE_DIR = "state"
NUMS_FILE = "nums.npy"
IDXS_FILE = "idxs.npy"
BAD_PAIRS_FILE = "bad_pairs.txt"
VIDEO_SUFFIX = ".mp4"
"""GIM's readers open ``video_1080p/<vid>.mp4`` whatever the container; FFmpeg probes the content, not the name."""

GIM_METHOD_NAMES = {"gim_dkm": "GIM_DKM", "gim_loftr": "GIM_LOFTR", "gim_lightglue": "GIM_GLUE", "root_sift": "SIFT"}
"""Registry name → GIM's method name in folder names, for GIM's four labellers."""

_LABEL_RE = re.compile(r"^WALK (?P<method>\S+) \[R\] (?P<zoom>[TF]) \[S\] (?P<skip>[ \d]\d+)$")
_VIDEO_RE = re.compile(r" WH +(?P<w>\d+) +(?P<h>\d+) RG +(?P<start>-?\d+) +(?P<end>-?\d+) SP (?P<skip>\d+) (?P<n>\d+)$")
_PAIR_RE = re.compile(r"^\[ *(?P<i>\d+) +(?P<j>\d+)\]\.npy$")


def method_name(labeller: str) -> str:
    """The method name of a labeller in folder names: GIM's for its four, else the registry name upper-cased."""
    if labeller in GIM_METHOD_NAMES:
        return GIM_METHOD_NAMES[labeller]
    name = labeller.rsplit(":", 1)[-1].upper()
    if not name or any(ch.isspace() for ch in name):
        raise ValueError(f"labeller {labeller!r} gives no usable method name (folder names split on spaces)")
    return name


def check_video_id(vid: str) -> str:
    """``vid`` if it can name a video in the layout (non-empty, no path separator, no surrounding spaces)."""
    if not vid or vid != vid.strip() or "/" in vid or os.sep in vid or vid in (".", ".."):
        raise ValueError(f"video id {vid!r} cannot name folders: rename the file (no leading/trailing spaces, no '/')")
    return vid


@dataclass(frozen=True, order=True)
class LabelFolder:
    """One label folder ``pseudo/WALK {METHOD} [R] {T|F} [S] {skip:2}`` (a labeller × zoom flag × pair spacing)."""

    method: str
    zoom: bool
    skip: int

    @property
    def name(self) -> str:
        return f"WALK {self.method} [R] {'T' if self.zoom else 'F'} [S] {self.skip:2}"

    @classmethod
    def parse(cls, name: str) -> LabelFolder | None:
        """The folder a name denotes, or ``None`` for any other name."""
        found = _LABEL_RE.match(name)
        if found is None:
            return None
        return cls(found["method"], found["zoom"] == "T", int(found["skip"]))


@dataclass(frozen=True, order=True)
class VideoFolder:
    """The per-video folder inside a label folder: ``{vid} WH {w:4} {h:4} RG {start:4} {end:4} SP {skip} {len}``.

    Attributes:
        vid: the video id (file stem of the source video).
        width: frame width in pixels.
        height: frame height in pixels.
        start: first second of the processed range (GIM's ``--range`` unit).
        end: last second of the processed range.
        skip: pair spacing in frames.
    """

    vid: str
    width: int
    height: int
    start: int
    end: int
    skip: int

    @property
    def name(self) -> str:
        return (f"{self.vid} WH {self.width:4} {self.height:4} RG {self.start:4} {self.end:4} SP {self.skip} "
                f"{len(self.vid)}")

    @classmethod
    def parse(cls, name: str) -> VideoFolder | None:
        """The folder a name denotes (its id cut out by the trailing length, as GIM's readers do), else ``None``."""
        found = _VIDEO_RE.search(name)
        if found is None:
            return None
        vid = name[: int(found["n"])]
        if name[len(vid) : found.start()] != "":
            return None
        return cls(vid, int(found["w"]), int(found["h"]), int(found["start"]), int(found["end"]), int(found["skip"]))


def pair_file_name(i: int, j: int) -> str:
    """``str(numpy.array([i, j])) + ".npy"`` without numpy: ``"[10 20].npy"``, ``"[  5 100].npy"``."""
    if i < 0 or j < 0:
        raise ValueError(f"frame indices are non-negative, got {i}, {j}")
    width = max(len(str(i)), len(str(j)))
    return f"[{i:>{width}} {j:>{width}}].npy"


def parse_pair_file_name(name: str) -> tuple[int, int] | None:
    """``"[10 20].npy"`` → ``(10, 20)``; ``None`` for other names."""
    found = _PAIR_RE.match(name)
    return None if found is None else (int(found["i"]), int(found["j"]))


def propagated_file_name(i0: int, i1: int) -> str:
    """``{i0}_{i1}.npy``: a propagated pair, named after the target pair (not the frames it reached)."""
    return f"{i0}_{i1}.npy"


def ppid(methods: list[str] | tuple[str, ...], skips: list[int] | tuple[int, ...],
         zooms: list[bool] | tuple[bool, ...], min_filter_matches: int = 32, min_final_matches: int = 512) -> str:
    """GIM's propagation folder name from the label folders used (methods descending, skips and flags ascending)."""
    flags = sorted({"T" if z else "F" for z in zooms})
    return " ".join([*sorted(set(methods), reverse=True), *map(str, sorted(set(skips))), *flags,
                     f"FM {min_filter_matches}", f"PM {min_final_matches}"])


@dataclass(frozen=True)
class VideoPaths:
    """What a step's ``main(conf, paths)`` works on: the layout root, which videos (ids; ``None``: every video
    present) and, for the decode step, the source files."""

    root: Path
    videos: tuple[str, ...] | None = None
    sources: tuple[Path, ...] = ()
    """Video files, folders or list files (the decode step's input; later steps use ``videos``)."""

    @property
    def layout(self) -> Layout:
        return Layout(self.root)


class Layout:
    """Paths of one ZeroMatch tree rooted at ``root`` (GIM's ``data/ZeroMatch``); creates nothing by itself."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Layout({str(self.root)!r})"

    # ----------------------------------------------------------------------------------------- GIM's folders

    def video_file(self, vid: str) -> Path:
        """``video_1080p/<vid>.mp4``: where GIM's readers find the video (a link to, or copy of, the source)."""
        return self.root / VIDEO_DIR / f"{vid}{VIDEO_SUFFIX}"

    def frames_dir(self, vid: str) -> Path:
        return self.root / IMAGE_DIR / vid

    def frame(self, vid: str, index: int) -> Path:
        """``image_1080p/<vid>/<index>.png`` (0-based index of the decoded frame)."""
        return self.frames_dir(vid) / f"{index}.png"

    def segment(self, vid: str, index: int) -> Path:
        """``segment/<vid>/<index>.npy``: the ADE20K class map of a frame."""
        return self.root / SEGMENT_DIR / vid / f"{index}.npy"

    def label_root(self, folder: LabelFolder) -> Path:
        return self.root / PSEUDO_DIR / folder.name

    def label_dir(self, folder: LabelFolder, video: VideoFolder) -> Path:
        """``pseudo/<label folder>/<video folder>``: one labeller's labels of one video at one spacing."""
        return self.label_root(folder) / video.name

    def label_dirs(self, vid: str) -> list[tuple[LabelFolder, VideoFolder, Path]]:
        """Every label folder holding video ``vid``, sorted by name (what a propagation can use)."""
        found = []
        pseudo = self.root / PSEUDO_DIR
        if not pseudo.is_dir():
            return []
        for top in sorted(pseudo.iterdir()):
            folder = LabelFolder.parse(top.name)
            if folder is None or not top.is_dir():
                continue
            for sub in sorted(top.iterdir()):
                video = VideoFolder.parse(sub.name)
                if video is not None and video.vid == vid and sub.is_dir():
                    found.append((folder, video, sub))
        return found

    @staticmethod
    def pair_file(label_dir: Path, i: int, j: int) -> Path:
        return label_dir / pair_file_name(i, j)

    def propagate_dir(self, ppid_: str, vid: str) -> Path:
        return self.root / PROPAGATE_DIR / ppid_ / vid

    def propagated_file(self, ppid_: str, vid: str, i0: int, i1: int) -> Path:
        return self.propagate_dir(ppid_, vid) / propagated_file_name(i0, i1)

    def bad_pairs(self, ppid_: str, vid: str) -> Path:
        return self.propagate_dir(ppid_, vid) / BAD_PAIRS_FILE

    def walk_dir(self, vid: str) -> Path:
        return self.root / WALK_DIR / vid

    # ------------------------------------------------------------------------------------------ our records

    def state_dir(self, vid: str) -> Path:
        return self.root / STATE_DIR / vid

    def video_info(self, vid: str) -> Path:
        """``state/<vid>/video.json``: the decode record (source, fps, frame count, range, shots); written last."""
        return self.state_dir(vid) / "video.json"

    def shots_file(self, vid: str) -> Path:
        """``state/<vid>/shots.csv``: one shot per line, ``shot,start,end`` with ``end`` exclusive (frames)."""
        return self.state_dir(vid) / "shots.csv"

    def labeller_state(self, vid: str, folder: LabelFolder) -> Path:
        """``state/<vid>/<label folder>/``: pairs tried without a label, shard records, the labeller's conf."""
        return self.state_dir(vid) / folder.name

    def summary(self, vid: str, step: str) -> Path:
        return self.state_dir(vid) / f"{step}_summary.json"


# ---------------------------------------------------------------------------------------------- reading/writing


def read_record(label_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(nums (M,), idxs (M, 2))`` of a label folder; empty arrays when it has no record yet."""
    import numpy as np

    nums_path, idxs_path = label_dir / NUMS_FILE, label_dir / IDXS_FILE
    if not (nums_path.is_file() and idxs_path.is_file()):
        return np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
    nums = np.load(nums_path).astype(np.int64).reshape(-1)
    idxs = np.load(idxs_path).astype(np.int64).reshape(-1, 2)
    if len(nums) != len(idxs):
        raise ValueError(f"{label_dir}: {NUMS_FILE} has {len(nums)} entries but {IDXS_FILE} {len(idxs)}; delete both "
                         "to relabel this folder")
    return nums, idxs


def write_record(label_dir: Path, nums: Any, idxs: Any) -> None:
    """Write ``nums.npy`` and ``idxs.npy`` atomically (int64, as GIM's files).

    ``idxs`` is written first and ``nums`` second; a reader that finds them of different lengths (a kill between the
    two renames) gets an error from :func:`read_record`, and the labelling step repairs it from the pair files.
    """
    import numpy as np

    nums_arr = np.asarray(nums, dtype=np.int64).reshape(-1)
    idxs_arr = np.asarray(idxs, dtype=np.int64).reshape(-1, 2)
    with atomic_path(label_dir / IDXS_FILE) as tmp, open(tmp, "wb") as handle:
        np.save(handle, idxs_arr)
    with atomic_path(label_dir / NUMS_FILE) as tmp, open(tmp, "wb") as handle:
        np.save(handle, nums_arr)


def write_pair_label(path: Path, label: Any) -> None:
    """Write one pair's ``(N, 4)`` float32 label file atomically."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(label, dtype=np.float32).reshape(-1, 4))


def read_pair_label(path: Path) -> np.ndarray:
    """One pair's ``(N, 4)`` float32 label: ``x0, y0, x1, y1``."""
    import numpy as np

    return np.load(path).astype(np.float32).reshape(-1, 4)


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())
