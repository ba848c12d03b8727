"""Step 5 of ``gim reconstruct`` (``--dense``): a dense coloured point cloud ``dense/fused.ply`` from ``sparse/0``.

Two methods, chosen by ``method`` (:data:`DEFAULT_CONF`):

* ``mvs`` — COLMAP's multi-view stereo (undistortion, PatchMatch stereo, fusion) through
  :mod:`gim_plugins.colmap_ext.mvs`, by pycolmap or the colmap program. It needs a CUDA build (``pip install
  'gim-plugins[cuda]'`` on a GPU machine, or a colmap compiled with CUDA).
* ``triangulate`` — dense triangulation from a matcher, anywhere: each registered image is matched with its best
  covisible neighbours in the sparse model (:mod:`~gim_plugins.reconstruct.dense_views`), the correspondences
  (:mod:`~gim_plugins.reconstruct.dense_correspondences`: the dense warp of ``gim_dkm``/``gim_roma``, the matches of
  other matchers) are triangulated with the model's cameras and filtered by reprojection error and triangulation
  angle (:mod:`~gim_plugins.reconstruct.dense_triangulate`), then by multi-view consistency, merged per voxel and
  given normals (:mod:`~gim_plugins.reconstruct.dense_fuse`). With a sparse matcher the cloud is *sparse-derived*
  (points only where the detector put keypoints) and the summary says so.

``auto`` takes MVS where it can run, else triangulation with a dense matcher; with neither (a sparse matcher and no
CUDA) it stops with a one-line message naming both ways out. The matcher is the reconstruction's unless
``matcher`` is set (``gim reconstruct --dense-matcher``).

Resumable: each image's points are a file in ``dense/points/`` keyed by everything they depend on (model, matcher,
options, neighbours), so a rerun only computes the missing or stale images; ``fused.ply`` and ``dense/summary.json``
are written atomically and skipped when their key is unchanged. Run it after the mapping step, inside the output
folder's lock (:func:`gim_plugins.reconstruct.main` with ``dense=`` does both).
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.conf import Conf, merge_conf, to_plain
from gim_plugins.errors import UserError
from gim_plugins.reconstruct.common import ReconstructPaths, read_json, write_json

__all__ = ["DEFAULT_CONF", "METHODS", "choose_method", "main", "resolve_dense_conf"]

log = logging.getLogger(__name__)

METHODS = ("auto", "mvs", "triangulate")

DEFAULT_CONF: dict[str, Any] = {
    "method": "auto",  # "auto", "mvs" (COLMAP PatchMatch stereo, CUDA) or "triangulate" (matcher + sparse model)
    "mvs_engine": "auto",  # "auto", "pycolmap" or "colmap"
    "matcher": None,  # None: the reconstruction's matcher (match.json)
    "matcher_conf": {},
    "weights": None,
    "device": "cpu",
    "neighbours": 4,  # images each image is matched with
    "consistency_views": 8,  # images each dense point is checked against
    "min_shared_points": 15,  # sparse points two images must share to be neighbours
    "min_angle_deg": 3.0,  # least triangulation angle (pairs: median over shared points; points: each)
    "good_angle_deg": 10.0,  # pair angles up to this one rank higher
    "max_matches": 40000,  # dense warps: correspondences kept per pair
    "min_certainty": 0.3,  # dense warps: least certainty kept
    "max_reprojection_error": 2.0,  # pixels, in both images
    "min_consistent_views": 1,  # other views whose depth must agree with a point
    "depth_tolerance": 0.01,  # relative depth agreement
    "consistency_cell": 4,  # pixels per depth-map block of the consistency check
    "voxel_size": None,  # model units; None: voxel_px pixels at the median depth
    "voxel_px": 2.0,
    "normals": True,
    "normal_neighbours": 12,
    "max_image_size": 2000,  # MVS: longest side for stereo and fusion
    "min_num_pixels": 5,  # MVS: consistent pixels per fused point
    "colmap_executable": None,
    "seed": 0,
    "progress": True,
}


def resolve_dense_conf(conf: Mapping[str, Any] | None) -> Conf:
    """:data:`DEFAULT_CONF` merged with ``conf`` (unknown keys are errors).

    Raises:
        ConfError: an unknown key.
        UserError: an unknown method or MVS engine, or a non-positive count.
    """
    merged = merge_conf(DEFAULT_CONF, conf, owner="gim reconstruct --dense")
    if merged.method not in METHODS:
        raise UserError(f"dense method must be one of {', '.join(METHODS)}, got {merged.method!r}")
    if merged.mvs_engine not in ("auto", "pycolmap", "colmap"):
        raise UserError(f"mvs_engine must be auto, pycolmap or colmap, got {merged.mvs_engine!r}")
    for key in ("neighbours", "max_matches", "consistency_cell"):
        if int(merged[key]) < 1:
            raise UserError(f"dense option {key} must be >= 1, got {merged[key]!r}")
    return merged


def _matcher_name(conf: Conf, paths: ReconstructPaths) -> str:
    if conf.matcher:
        return str(conf.matcher)
    name = read_json(paths.match_report).get("matcher")
    if not name:
        raise UserError(f"no matcher recorded in {paths.match_report}: pass one (--dense-matcher NAME)")
    return str(name)


def choose_method(conf: Conf, matcher: str) -> tuple[str, str | None]:
    """``("mvs", engine)`` or ``("triangulate", None)`` for the conf's ``method`` on this machine.

    Raises:
        UserError: ``mvs`` asked for and unavailable, or ``auto`` with a sparse matcher and no CUDA.
    """
    from gim_plugins.colmap_ext import mvs
    from gim_plugins.registry import get_matcher_class

    reasons = []
    if conf.method in ("auto", "mvs"):
        engines = mvs.ENGINES if conf.mvs_engine == "auto" else (conf.mvs_engine,)
        for engine in engines:
            reason = mvs.unavailable(engine, conf.colmap_executable)
            if reason is None:
                return "mvs", engine
            reasons.append(f"{engine}: {reason}")
        if conf.method == "mvs":
            raise UserError(f"COLMAP MVS cannot run here ({'; '.join(reasons)}); use --dense triangulate")
    if conf.method == "auto" and get_matcher_class(matcher).is_sparse:
        raise UserError(f"no dense method here: COLMAP's PatchMatch stereo needs CUDA ({'; '.join(reasons)}) and "
                        f"{matcher} is a sparse matcher; use --dense-matcher gim_dkm (or gim_roma, gim_loftr), or "
                        "--dense triangulate for a sparse-derived cloud")
    return "triangulate", None


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(conf: Mapping[str, Any] | None, paths: ReconstructPaths | Mapping[str, Any]) -> Path:
    """Densify ``sparse/0`` into ``dense/fused.ply`` (+ ``dense/summary.json``); returns the PLY's path.

    Raises:
        UserError: no sparse model, no usable method (see :func:`choose_method`), or no point survived.
    """
    conf, paths = resolve_dense_conf(conf), ReconstructPaths.of(paths)
    if not (paths.model / "images.txt").is_file():
        raise UserError(f"no sparse model in {paths.model}: run gim reconstruct without --dense first")
    matcher = _matcher_name(conf, paths)
    method, engine = choose_method(conf, matcher)
    dense_dir = paths.out / "dense"
    dense_dir.mkdir(parents=True, exist_ok=True)
    if method == "mvs":
        assert engine is not None
        return _run_mvs(conf, paths, dense_dir, engine)
    from gim_plugins.reconstruct.dense_run import run_triangulation

    return run_triangulation(conf, paths, dense_dir, matcher)


def _run_mvs(conf: Conf, paths: ReconstructPaths, dense_dir: Path, engine: str) -> Path:
    from gim_plugins.colmap_ext import mvs
    from gim_plugins.colmap_ext.ply import read_ply
    from gim_plugins.reconstruct.dense_views import model_digest

    output, summary_path = dense_dir / "fused.ply", dense_dir / "summary.json"
    key = _digest({"method": "mvs", "engine": engine, "model": model_digest(paths.model),
                   "options": [conf.max_image_size, conf.min_num_pixels]})
    if read_json(summary_path).get("key") == key and output.is_file():
        log.info("dense model %s is up to date", output)
        return output
    start = time.perf_counter()
    mvs.run_mvs(engine, paths.model, paths.images, dense_dir / "mvs", output, max_image_size=conf.max_image_size,
                min_num_pixels=conf.min_num_pixels, executable=conf.colmap_executable)
    write_json(summary_path, {"key": key, "method": "mvs", "engine": engine, "fused_points": len(read_ply(output)),
                              "fused": str(output), "seconds": {"total": time.perf_counter() - start},
                              "peak_rss_mb": peak_rss_mb(), "conf": to_plain(conf), "warnings": []})
    return output


def auto_voxel_size(depths_over_focal: np.ndarray, voxel_px: float) -> float:
    """``voxel_px`` pixels' footprint at the median depth (depth / focal is one pixel's size there)."""
    finite = depths_over_focal[np.isfinite(depths_over_focal) & (depths_over_focal > 0)]
    if not len(finite):
        raise UserError("no dense point survived the filters: nothing to merge (see dense/summary.json)")
    return float(np.median(finite) * voxel_px)
