"""What the steps of ``gim reconstruct`` share: the options, the output folder's layout, its lock, JSON records.

Every step resolves the same conf (:data:`DEFAULT_CONF`, merged strictly: an unknown key is an error) and reads
and writes the files named by :class:`ReconstructPaths`, so a step can run alone on a folder an earlier run left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gim_plugins.atomic import atomic_write_text
from gim_plugins.colmap_ext import tracks
from gim_plugins.colmap_ext.database import CAMERA_DEFAULTS, CAMERA_MODELS
from gim_plugins.conf import Anything, Bool, Choice, Conf, Float, Int, PathText, Seq, Str, merge_conf
from gim_plugins.errors import InputError, UserError
from gim_plugins.reconstruct.retrieval import DEFAULT_CONF as RETRIEVAL_DEFAULTS

__all__ = ["CONF_SCHEMA", "DEFAULT_CONF", "ENGINES", "OutputInUseError", "ReconstructPaths", "check_paths",
           "output_lock", "read_json", "resolve_conf", "write_json"]

log = logging.getLogger(__name__)

ENGINES = ("pycolmap", "colmap")
"""Who verifies and maps: the pycolmap package or the colmap command-line program."""

DEFAULT_CONF: dict[str, Any] = {
    "matcher": "aliked_lightglue",
    "matcher_conf": {},  # options of the matcher's default_conf
    "weights": None,
    "device": "cpu",
    "pairs": "exhaustive",  # exhaustive, sequential:K, sequential:K+loop:L, retrieval:K or a pair-list file
    "retrieval": dict(RETRIEVAL_DEFAULTS),  # how retrieval:K and loop:L measure image similarity
    "shard": None,  # "i/n": match only this share of the pairs (then merge with gim reconstruct --merge-shards)
    "batch_size": None,  # dense matchers: pairs per forward pass (None: chosen from free GPU memory; 1 on CPU)
    "engine": "pycolmap",  # "pycolmap" or "colmap" (the command-line program)
    "min_matches": 15,  # pairs with fewer matches are left out of the database
    "camera": dict(CAMERA_DEFAULTS),
    "tracks": dict(tracks.DEFAULT_CONF),  # dense matchers only
    "verification": {"max_error": 4.0, "max_num_trials": 20000, "min_inlier_ratio": 0.1, "min_num_inliers": 15,
                     "confidence": 0.9999, "random_seed": 0},
    # relaxed against COLMAP's defaults (init 100, abs-pose 30 / 0.25): learned matchers give fewer, cleaner matches
    "mapper": {"min_num_matches": 15, "init_min_num_inliers": 50, "abs_pose_min_num_inliers": 15,
               "abs_pose_min_inlier_ratio": 0.1, "ba_refine_focal_length": True, "ba_refine_principal_point": False,
               "ba_refine_extra_params": True, "num_threads": -1, "random_seed": 0, "multiple_models": False},
    "colmap_executable": None,
    "progress": True,
    "overwrite": False,  # discard stored matches of another matcher/configuration
}

CONF_SCHEMA: dict[str, Any] = {
    "matcher": Str(),
    "matcher_conf": Anything(),  # checked by the matcher's own schema when it is built
    "weights": PathText() | None,
    "device": Str(),
    "pairs": Str(),
    "retrieval": {"backend": Str(), "features": Str() | None, "vocabulary": Int(min=2),
                  "train_descriptors": Int(min=1), "iterations": Int(min=1), "seed": Int(min=0)},
    "shard": Str() | None,
    "batch_size": Int(min=1) | None,
    "engine": Choice(*ENGINES),
    "min_matches": Int(min=1),
    "camera": {"camera_model": Choice(*CAMERA_MODELS), "camera_params": Seq(Float()) | None,
               "single_camera": Bool()},
    "tracks": {"mode": Choice("merge", "none"), "grid": Float(min=0, min_open=True),
               "radius": Float(min=0), "max_keypoints": Int(min=1) | None, "min_score": Float()},
    "verification": {"max_error": Float(min=0, min_open=True), "max_num_trials": Int(min=1),
                     "min_inlier_ratio": Float(min=0, max=1), "min_num_inliers": Int(min=1),
                     "confidence": Float(min=0, max=1, min_open=True, max_open=True), "random_seed": Int(min=0)},
    "mapper": {"min_num_matches": Int(min=1), "init_min_num_inliers": Int(min=1),
               "abs_pose_min_num_inliers": Int(min=1), "abs_pose_min_inlier_ratio": Float(min=0, max=1),
               "ba_refine_focal_length": Bool(), "ba_refine_principal_point": Bool(),
               "ba_refine_extra_params": Bool(), "num_threads": Int(min=-1), "random_seed": Int(min=0),
               "multiple_models": Bool()},
    "colmap_executable": PathText() | None,
    "progress": Bool(),
    "overwrite": Bool(),
}
"""Type and range of every option of :data:`DEFAULT_CONF`."""


class OutputInUseError(RuntimeError, UserError):
    """Another run holds the output folder."""


@dataclass(frozen=True)
class ReconstructPaths:
    """Where a reconstruction reads images and writes its files."""

    images: Path
    out: Path

    @classmethod
    def of(cls, paths: ReconstructPaths | Mapping[str, Any]) -> ReconstructPaths:
        """``paths`` as it is, or built from a mapping with ``images`` and ``out``."""
        if isinstance(paths, ReconstructPaths):
            return paths
        return cls(Path(paths["images"]), Path(paths["out"]))

    @property
    def pairs(self) -> Path:
        return self.out / "pairs.txt"

    @property
    def features(self) -> Path:
        return self.out / "features.h5"

    @property
    def matches(self) -> Path:
        return self.out / "matches.sqlite"

    @property
    def match_report(self) -> Path:
        return self.out / "match.json"

    @property
    def retrieval(self) -> Path:
        return self.out / "retrieval.npz"

    def shard_matches(self, index: int, count: int) -> Path:
        """The match store of shard ``index`` of ``count`` (merged into :attr:`matches`)."""
        return self.out / "shards" / f"matches-{index}-of-{count}.sqlite"

    def shard_features(self, index: int, count: int) -> Path:
        """The feature cache of shard ``index`` of ``count`` (sparse matchers)."""
        return self.out / "shards" / f"features-{index}-of-{count}.h5"

    @property
    def database(self) -> Path:
        return self.out / "database.db"

    @property
    def database_info(self) -> Path:
        return self.out / "database.json"

    @property
    def model(self) -> Path:
        return self.out / "sparse" / "0"

    @property
    def summary(self) -> Path:
        return self.out / "summary.json"


def resolve_conf(conf: Mapping[str, Any] | None) -> Conf:
    """:data:`DEFAULT_CONF` merged with ``conf`` (unknown keys are errors; an already resolved conf passes).

    Raises:
        ConfError: an unknown key.
        ConfValueError: a value of the wrong type or out of range (e.g. an unknown engine).
    """
    return merge_conf(DEFAULT_CONF, conf, owner="gim reconstruct", schema=CONF_SCHEMA)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a step's record atomically (sorted keys, so reruns diff cleanly)."""
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A step's record, or ``{}`` when it is missing or unreadable (the step then counts as not done)."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def check_paths(paths: ReconstructPaths) -> None:
    """Refuse a missing or non-folder image path and an output path that is a file, before anything is written.

    Raises:
        InputError: one line naming the path.
    """
    if not paths.images.exists():
        raise FileNotFoundError(f"image folder not found: {paths.images}")
    if not paths.images.is_dir():
        raise InputError(f"{paths.images} is a file; gim reconstruct takes a folder of images")
    if paths.out.exists() and not paths.out.is_dir():
        raise InputError(f"output {paths.out} is a file; give a folder (--out)")


@contextlib.contextmanager
def output_lock(out: Path, *, shared: bool = False, wait: bool = False) -> Iterator[None]:
    """Exclusive use of an output folder; removes what a killed run left in temporary folders.

    ``shared``: the match step of a shard, which many processes run at once (an exclusive holder — a merge, the
    database or mapping step — still keeps them out). ``wait``: block until the folder is free instead of failing.

    Raises:
        RuntimeError: another ``gim reconstruct`` holds the folder.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a") as handle:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(handle, mode if wait else mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputInUseError(f"{out} is in use by another gim reconstruct; wait for it or use another --out"
                                   ) from None
        if not shared:
            for stale in [*out.glob(".database.*"), *out.glob(".sparse.*")]:
                log.info("removing %s left by an interrupted run", stale.name)
                shutil.rmtree(stale, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
