"""Step 4 of ``gim reconstruct``: incremental mapping of ``database.db`` into ``sparse/0`` and ``summary.json``.

The chosen engine (:mod:`gim_plugins.colmap_ext.engines`) maps into a temporary folder; the largest model (most
registered images) becomes ``sparse/0`` (binary and text files). ``summary.json`` reports registered images, 3D
points, mean track length, mean reprojection error and timing, together with the match and database records, and
warns when fewer than half of the images register. A rerun with the same database and mapper options skips the
mapping and only refreshes the records in the summary.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gim_plugins.conf import Conf, to_plain
from gim_plugins.errors import deferred_interrupts
from gim_plugins.reconstruct.common import ReconstructPaths, read_json, resolve_conf, write_json

__all__ = ["main"]

log = logging.getLogger(__name__)


def _run_mapper(conf: Conf, paths: ReconstructPaths, work: Path) -> list[Path]:
    """Map with the conf's engine into ``work``; returns the model folders, largest first."""
    from gim_plugins.colmap_ext import engines

    mapper = to_plain(conf.mapper)
    if conf.engine == "pycolmap":
        return engines.map_with_pycolmap(paths.database, paths.images, work, mapper)
    return engines.map_with_colmap(paths.database, paths.images, work, mapper, executable=conf.colmap_executable)


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Map ``database.db`` into ``sparse/0`` (largest model) and write ``summary.json``; returns the summary's path.

    Raises:
        FileNotFoundError: the database step has not run.
    """
    from gim_plugins.colmap_ext.model import read_text_model

    conf, paths = resolve_conf(conf), ReconstructPaths.of(paths)
    info = read_json(paths.database_info)
    if not paths.database.is_file() or not info:
        raise FileNotFoundError(f"{paths.database} is missing: run the database step first")
    key = {"database": info.get("key"), "mapper": to_plain(conf.mapper)}
    summary = read_json(paths.summary)
    if summary.get("key") == key and paths.model.is_dir():
        log.info("model %s is up to date", paths.model)
        write_json(paths.summary, {**summary, "match": read_json(paths.match_report), "database": info})
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
        with deferred_interrupts():  # an interrupt now would leave half the folder
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
               "match": read_json(paths.match_report), "mapping_seconds": time.perf_counter() - start,
               "warnings": warnings}
    write_json(paths.summary, summary)
    return paths.summary
