"""Step 3 of ``gim reconstruct``: the match step's correspondences → a geometrically verified ``database.db``.

Keypoints per image and index matches per pair, read back from the match step by
:func:`~gim_plugins.reconstruct.correspondences.load_correspondences`, go into a new database, which the chosen
engine verifies (:mod:`gim_plugins.colmap_ext.engines`: ``pycolmap.verify_matches``, or the colmap program's
``feature_importer`` + ``matches_importer --match_type raw``). The database is built in a temporary folder and
renamed into place, so ``database.db`` is complete or absent. ``database.json`` records what it was built from (a
digest of the correspondences, engine, camera and verification options); a rerun with the same key skips the step.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.colmap_ext.correspondences import Correspondences
from gim_plugins.conf import Conf, to_plain
from gim_plugins.errors import deferred_interrupts
from gim_plugins.reconstruct.common import ReconstructPaths, read_json, resolve_conf, write_json
from gim_plugins.reconstruct.correspondences import load_correspondences

__all__ = ["main"]

log = logging.getLogger(__name__)


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
    """Fill the new database and verify it with the conf's engine."""
    from gim_plugins.colmap_ext import engines

    camera, verification = to_plain(conf.camera), to_plain(conf.verification)
    if conf.engine == "pycolmap":
        engines.verify_with_pycolmap(db_path, correspondences, camera=camera, verification=verification, work=work)
    else:
        engines.verify_with_colmap(db_path, paths.images, correspondences, camera=camera, verification=verification,
                                   work=work, executable=conf.colmap_executable)


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Build and verify ``database.db`` (skipped when ``database.json`` matches the inputs); returns its path.

    Raises:
        ValueError: the match step's files are incomplete or stale (see :func:`load_correspondences`).
    """
    from gim_plugins.colmap_ext.database import ColmapDatabase, create_database

    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    start = time.perf_counter()
    correspondences = load_correspondences(conf, paths)
    key = {"correspondences": _digest(correspondences), "engine": conf.engine, "camera": to_plain(conf.camera),
           "verification": to_plain(conf.verification)}
    info = read_json(paths.database_info)
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
        with deferred_interrupts():  # an interrupt now would leave half the folder
            shutil.rmtree(work, ignore_errors=True)
    stats = correspondences.summary()
    info = {"key": key, "counts": counts, "verified_pairs": len(verified),
            "mean_inliers": float(np.mean(list(verified.values()))) if verified else 0.0,
            "correspondences": stats, "seconds": time.perf_counter() - start}
    write_json(paths.database_info, info)
    return paths.database
