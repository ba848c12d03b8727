"""``gim reconstruct``: images → matches → COLMAP database → geometric verification → incremental mapping.

Steps (each an importable ``*_step(conf, paths) -> Path`` that reads the previous step's files, skips work that is
already done, and writes its outputs atomically):

1. :func:`match_step` → ``matches.sqlite``: every pair matched once and committed on its own (a killed run
   resumes at the next pair). Sparse matchers extract each image once through
   :class:`gim_plugins.features.FeatureCache` (``features.h5``).
2. :func:`database_step` → ``database.db``: keypoints per image and index matches per pair (sparse: the extracted
   keypoints; dense: per-pair points merged into shared keypoints by :mod:`~gim_plugins.colmap_ext.tracks`), then
   geometric verification — ``pycolmap.verify_matches`` (engine ``pycolmap``) or ``colmap feature_importer`` +
   ``matches_importer --match_type raw`` on the text exports (engine ``colmap``). Built in a temporary file and
   renamed into place; skipped when ``database.json`` says it was built from the same inputs and options.
3. :func:`mapping_step` → ``sparse/0`` (largest model, binary + text) and ``summary.json``: registered images,
   3D points, mean track length, mean reprojection error, timing; a warning when fewer than half of the images
   register.

:func:`main` runs all three. Outputs in ``paths.out``: ``pairs.txt``, ``features.h5`` (sparse), ``matches.sqlite``,
``database.db`` (+ ``database.json``), ``sparse/0``, ``summary.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.atomic import atomic_write_text
from gim_plugins.colmap_ext import tracks
from gim_plugins.colmap_ext.correspondences import Correspondences, indices_of
from gim_plugins.colmap_ext.database import CAMERA_DEFAULTS
from gim_plugins.conf import Conf, merge_conf, to_plain

__all__ = ["DEFAULT_CONF", "ReconstructPaths", "database_step", "load_correspondences", "main", "mapping_step",
           "match_step", "output_lock"]

log = logging.getLogger(__name__)

DEFAULT_CONF: dict[str, Any] = {
    "matcher": "aliked_lightglue",
    "matcher_conf": {},  # options of the matcher's default_conf
    "weights": None,
    "device": "cpu",
    "pairs": "exhaustive",  # "exhaustive", "sequential:K" or a pair-list file
    "engine": "pycolmap",  # "pycolmap" or "colmap" (the command-line program)
    "min_matches": 15,  # pairs with fewer matches are left out of the database
    "camera": dict(CAMERA_DEFAULTS),
    "tracks": dict(tracks.DEFAULT_CONF),  # dense matchers only
    "verification": {"max_error": 4.0, "max_num_trials": 20000, "min_inlier_ratio": 0.1, "min_num_inliers": 15,
                     "confidence": 0.9999},
    # relaxed against COLMAP's defaults (init 100, abs-pose 30 / 0.25): learned matchers give fewer, cleaner matches
    "mapper": {"min_num_matches": 15, "init_min_num_inliers": 50, "abs_pose_min_num_inliers": 15,
               "abs_pose_min_inlier_ratio": 0.1, "ba_refine_focal_length": True, "ba_refine_principal_point": False,
               "ba_refine_extra_params": True, "num_threads": -1, "random_seed": 0, "multiple_models": False},
    "colmap_executable": None,
    "progress": True,
    "overwrite": False,  # discard stored matches of another matcher/configuration
}


@dataclass(frozen=True)
class ReconstructPaths:
    """Where a reconstruction reads images and writes its files."""

    images: Path
    out: Path

    @classmethod
    def of(cls, paths: ReconstructPaths | Mapping[str, Any]) -> ReconstructPaths:
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


def _conf(conf: Mapping[str, Any] | None) -> Conf:
    merged = merge_conf(DEFAULT_CONF, conf, owner="gim reconstruct")
    if merged.engine not in ("pycolmap", "colmap"):
        raise ValueError(f"engine must be 'pycolmap' or 'colmap', got {merged.engine!r}")
    return merged


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------------------------------------------ matching

def _load_matcher(conf: Conf) -> Any:
    from gim_plugins.matching import load_matcher

    return load_matcher(conf.matcher, conf.weights, conf.device, **to_plain(conf.matcher_conf))


def _fingerprint(matcher: Any) -> str:
    return json.dumps({"matcher": matcher.name, "conf": to_plain(matcher.conf), "weights": matcher.weights_id},
                      sort_keys=True)


def _feature_cache(matcher: Any, path: Path) -> Any:
    """The HDF5 feature cache; an unreadable file (killed mid-write) is moved aside and extraction restarts."""
    from gim_plugins.features import FeatureCache

    try:
        return FeatureCache(matcher, path)
    except OSError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.warning("%s; moving it to %s and extracting again", exc, aside.name)
        path.rename(aside)
        return FeatureCache(matcher, path)


def _pairs(conf: Conf, paths: ReconstructPaths) -> tuple[list[str], list[tuple[str, str]]]:
    from gim_plugins.colmap_ext.pairs import list_images, make_pairs
    from gim_plugins.h5io import write_pairs

    names = list_images(paths.images)
    pairs = make_pairs(names, conf.pairs)
    if not pairs:
        raise ValueError(f"no image pairs to match ({len(names)} images, pairs={conf.pairs!r})")
    write_pairs(paths.pairs, pairs)
    used = sorted({n for pair in pairs for n in pair})
    return used, pairs


def match_step(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Match every pair not yet in ``matches.sqlite``; returns the store's path.

    Writes ``match.json``: pairs, pairs matched and images extracted in this run, seconds (extraction, matching).
    """
    from tqdm import tqdm

    from gim_plugins.colmap_ext.store import MatchStore

    conf, paths = _conf(conf), ReconstructPaths.of(paths)
    names, pairs = _pairs(conf, paths)
    matcher = _load_matcher(conf)
    start = time.perf_counter()
    extracted = 0
    with MatchStore(paths.matches, _fingerprint(matcher), overwrite=conf.overwrite) as store:
        done = store.done()
        todo = [pair for pair in pairs if pair not in done]
        cache = _feature_cache(matcher, paths.features) if matcher.is_sparse else None
        if cache is not None:
            for name in tqdm(names, desc="extract", unit="image", disable=not conf.progress):
                cache.get(name, paths.images / name)
        extract_seconds = time.perf_counter() - start
        for name0, name1 in tqdm(todo, desc=f"match ({matcher.name})", unit="pair", disable=not conf.progress):
            pair_start = time.perf_counter()
            if cache is not None:
                result = cache.match(name0, name1, paths.images / name0, paths.images / name1)
            else:
                result = matcher.match(paths.images / name0, paths.images / name1)
            k0, k1, scores = result.numpy()
            store.put(name0, name1, k0, k1, scores, result.image_size0, result.image_size1,
                      time.perf_counter() - pair_start)
        extracted = cache.num_extracted if cache is not None else 0
        stored_seconds = store.seconds()
    seconds = time.perf_counter() - start
    report = {"pairs": len(pairs), "matched_now": len(todo), "extracted_now": extracted, "images": len(names),
              "seconds_now": seconds, "extract_seconds_now": extract_seconds,
              "pair_seconds_now": seconds - extract_seconds, "match_seconds_total": stored_seconds,
              "matcher": matcher.name, "sparse": bool(matcher.is_sparse)}
    _write_json(paths.out / "match.json", report)
    return paths.matches


# ------------------------------------------------------------------------------------------------ correspondences

def _image_size(path: Path) -> tuple[int, int]:
    from gim_plugins.io import read_image

    image = read_image(path)
    return int(image.shape[0]), int(image.shape[1])


def _check_sizes(stored: dict[str, tuple[int, int]], images: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    """Image sizes from the stored matches, checked against the files (an edited image invalidates its matches)."""
    sizes = {}
    for name in names:
        actual = _image_size(images / name)
        if name in stored and stored[name] != actual:
            raise ValueError(f"{name} is {actual[1]}×{actual[0]} px but was matched at {stored[name][1]}×"
                             f"{stored[name][0]}: the image changed since it was matched (rerun with --overwrite)")
        sizes[name] = actual
    return sizes


def load_correspondences(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]
                         ) -> Correspondences:
    """Keypoints per image and index matches per pair from the match step's files (no matching happens here).

    Raises:
        ValueError: pairs are missing from the store (run :func:`match_step`), or image sizes changed.
    """
    from gim_plugins.colmap_ext.store import MatchStore
    from gim_plugins.h5io import read_pairs

    conf, paths = _conf(conf), ReconstructPaths.of(paths)
    pairs = read_pairs(paths.pairs)
    names = sorted({n for pair in pairs for n in pair})
    matcher = _load_matcher(conf)
    with MatchStore(paths.matches, _fingerprint(matcher)) as store:
        missing = [pair for pair in pairs if pair not in store]
        if missing:
            raise ValueError(f"{len(missing)} pairs are not matched yet (first: {missing[0]}); run the match step")
        raw = {pair: store.get(*pair) for pair in pairs}
    stored_sizes = {}
    for (name0, name1), (_, _, _, size0, size1) in raw.items():
        stored_sizes[name0], stored_sizes[name1] = size0, size1
    sizes = _check_sizes(stored_sizes, paths.images, names)
    raw = {pair: value for pair, value in raw.items() if len(value[0]) >= conf.min_matches}
    if not raw:
        raise ValueError(f"no pair has at least {conf.min_matches} matches: nothing to reconstruct")
    if not matcher.is_sparse:
        return tracks.build_correspondences({pair: value[:3] for pair, value in raw.items()}, sizes, conf.tracks)
    cache = _feature_cache(matcher, paths.features)
    keypoints = {name: cache.get(name, paths.images / name).keypoints.numpy() for name in names}
    scores = {name: cache.get(name).scores.numpy() for name in names}
    matches, match_scores = {}, {}
    for (name0, name1), (k0, k1, pair_scores, _, _) in raw.items():
        idx0, idx1 = indices_of(keypoints[name0], k0), indices_of(keypoints[name1], k1)
        found = (idx0 >= 0) & (idx1 >= 0)
        if not found.all():
            raise ValueError(f"pair ({name0}, {name1}): {int((~found).sum())} matched points are not keypoints of the "
                             "cached features (features.h5 changed since matching?); rerun with --overwrite")
        rows = tracks.unique_matches(idx0, idx1, pair_scores)
        matches[(name0, name1)] = np.stack([idx0[rows], idx1[rows]], 1)
        match_scores[(name0, name1)] = pair_scores[rows]
    return Correspondences(keypoints, sizes, matches, scores, match_scores)


# ------------------------------------------------------------------------------------------------------- database

def _digest(correspondences: Correspondences) -> str:
    digest = hashlib.sha256()
    for name in correspondences.names:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(correspondences.keypoints[name]).tobytes())
    for pair in sorted(correspondences.matches):
        digest.update("/".join(pair).encode())
        digest.update(np.ascontiguousarray(correspondences.matches[pair], dtype=np.int64).tobytes())
    return digest.hexdigest()


def _verify(conf: Conf, paths: ReconstructPaths, db_path: Path, work: Path, correspondences: Correspondences) -> None:
    """Fill the new database and verify it with the chosen engine (:mod:`gim_plugins.colmap_ext.engines`)."""
    from gim_plugins.colmap_ext import engines

    camera, verification = to_plain(conf.camera), to_plain(conf.verification)
    if conf.engine == "pycolmap":
        engines.verify_with_pycolmap(db_path, correspondences, camera=camera, verification=verification, work=work)
    else:
        engines.verify_with_colmap(db_path, paths.images, correspondences, camera=camera, verification=verification,
                                   work=work, executable=conf.colmap_executable)


def database_step(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Build and verify ``database.db`` (skipped when ``database.json`` matches the inputs); returns its path."""
    from gim_plugins.colmap_ext.database import ColmapDatabase, create_database

    conf, paths = _conf(conf), ReconstructPaths.of(paths)
    start = time.perf_counter()
    correspondences = load_correspondences(conf, paths)
    key = {"correspondences": _digest(correspondences), "engine": conf.engine, "camera": to_plain(conf.camera),
           "verification": to_plain(conf.verification)}
    info = _read_json(paths.database_info)
    if paths.database.is_file() and info.get("key") == key:
        log.info("database %s is up to date", paths.database)
        return paths.database
    work = Path(tempfile.mkdtemp(prefix=".database.", dir=paths.out))
    try:
        db_path = create_database(work / "database.db", creator=conf.engine, executable=conf.colmap_executable)
        _verify(conf, paths, db_path, work, correspondences)
        with ColmapDatabase(db_path) as db:
            verified = db.verified_pairs()
            counts = db.counts()
        os.replace(db_path, paths.database)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stats = correspondences.summary()
    info = {"key": key, "counts": counts, "verified_pairs": len(verified),
            "mean_inliers": float(np.mean(list(verified.values()))) if verified else 0.0,
            "correspondences": stats, "seconds": time.perf_counter() - start}
    _write_json(paths.database_info, info)
    return paths.database


# -------------------------------------------------------------------------------------------------------- mapping

def _run_mapper(conf: Conf, paths: ReconstructPaths, work: Path) -> list[Path]:
    from gim_plugins.colmap_ext import engines

    mapper = to_plain(conf.mapper)
    if conf.engine == "pycolmap":
        return engines.map_with_pycolmap(paths.database, paths.images, work, mapper)
    return engines.map_with_colmap(paths.database, paths.images, work, mapper, executable=conf.colmap_executable)


def mapping_step(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Incremental mapping of ``database.db`` into ``sparse/0`` (largest model) and ``summary.json``; returns the
    summary's path. Skipped when the summary was made from the same database and options."""
    from gim_plugins.colmap_ext.model import read_text_model

    conf, paths = _conf(conf), ReconstructPaths.of(paths)
    info = _read_json(paths.database_info)
    if not paths.database.is_file() or not info:
        raise FileNotFoundError(f"{paths.database} is missing: run the database step first")
    key = {"database": info.get("key"), "mapper": to_plain(conf.mapper)}
    summary = _read_json(paths.summary)
    if summary.get("key") == key and paths.model.is_dir():
        log.info("model %s is up to date", paths.model)
        _write_json(paths.summary, {**summary, "match": _read_json(paths.out / "match.json"), "database": info})
        return paths.summary
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".sparse.", dir=paths.out))
    try:
        models = _run_mapper(conf, paths, work)
        if paths.model.parent.exists():
            shutil.rmtree(paths.model.parent)
        if models:
            paths.model.parent.mkdir(parents=True)
            shutil.move(str(models[0]), paths.model)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    num_images = int(info["counts"]["images"])
    stats = read_text_model(paths.model).statistics() if models else {
        "registered": 0, "points": 0, "observations": 0, "mean_track_length": 0.0,
        "mean_reprojection_error": float("nan")}
    warnings = []
    if stats["registered"] < num_images / 2:
        warnings.append(f"only {stats['registered']} of {num_images} images registered: too few verified matches "
                        "between them (dense matcher without track merging? too few pairs?)")
        log.warning(warnings[-1])
    summary = {"key": key, "engine": conf.engine, "images": num_images, **stats,
               "registered_share": stats["registered"] / num_images if num_images else 0.0,
               "models": len(models), "model": str(paths.model), "database": info,
               "match": _read_json(paths.out / "match.json"), "mapping_seconds": time.perf_counter() - start,
               "warnings": warnings}
    _write_json(paths.summary, summary)
    return paths.summary


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Exclusive use of an output folder; removes what a killed run left in temporary folders.

    Raises:
        RuntimeError: another ``gim reconstruct`` holds the folder.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{out} is in use by another gim reconstruct; wait for it or use another --out"
                               ) from None
        for stale in [*out.glob(".database.*"), *out.glob(".sparse.*")]:
            log.info("removing %s left by an interrupted run", stale.name)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Run match → database → mapping; returns ``summary.json`` (resumable: finished work is skipped)."""
    conf, paths = _conf(conf), ReconstructPaths.of(paths)
    with output_lock(paths.out):
        match_step(conf, paths)
        database_step(conf, paths)
        return mapping_step(conf, paths)
