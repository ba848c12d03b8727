"""The triangulation method of the dense step (:mod:`gim_plugins.reconstruct.dense`), stage by stage.

1. Views and neighbours from ``sparse/0``.
2. Per image (skipped when its file in ``dense/points/`` has the current key): match with each neighbour,
   triangulate, filter, colour; write the file.
3. Fusion (skipped when no image was computed now, ``dense/summary.json`` has the current key and ``fused.ply``
   exists): consistency, voxel merge, normals; ``fused.ply`` then ``summary.json``, both atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.conf import Conf, to_plain
from gim_plugins.errors import UserError
from gim_plugins.reconstruct.common import ReconstructPaths, read_json, write_json
from gim_plugins.reconstruct.dense_triangulate import ImagePoints, load_points, points_file, save_points
from gim_plugins.reconstruct.dense_views import View

__all__ = ["run_triangulation"]

log = logging.getLogger(__name__)

_PAIR_KEYS = ("neighbours", "consistency_views", "min_shared_points", "min_angle_deg", "good_angle_deg")
_IMAGE_KEYS = ("max_matches", "min_certainty", "max_reprojection_error", "min_angle_deg", "seed")
_FUSE_KEYS = ("min_consistent_views", "depth_tolerance", "consistency_cell", "voxel_size", "voxel_px", "normals",
              "normal_neighbours")


def _load_matcher(conf: Conf, name: str) -> Any:
    from gim_plugins.matching import load_matcher

    return load_matcher(name, conf.weights, conf.device, **to_plain(conf.matcher_conf))


def _image_points(view: View, partners: list[View], pair_matcher: Any, image: np.ndarray, conf: Conf,
                  key: str) -> ImagePoints:
    """Match ``view`` with each partner, triangulate and filter; the points with the reference image's colours."""
    from gim_plugins.reconstruct.dense_triangulate import triangulate_pair

    pixels, xyz, partner = [], [], []
    totals: dict[str, float] = {}
    start = time.perf_counter()
    for other in partners:
        pair_start = time.perf_counter()
        k0, k1, _ = pair_matcher(view.name, other.name)
        totals["match_seconds"] = totals.get("match_seconds", 0.0) + time.perf_counter() - pair_start
        keep, points, counts = triangulate_pair(view, other, k0, k1, max_reprojection_error=conf.max_reprojection_error,
                                                min_angle_deg=conf.min_angle_deg)
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
        pixels.append(k0[keep])
        xyz.append(points[keep])
        partner.append(np.full(int(keep.sum()), other.index, dtype=np.int32))
    pix = np.concatenate(pixels) if pixels else np.zeros((0, 2))
    height, width = image.shape[:2]
    cols = np.clip(np.rint(pix[:, 0]).astype(np.int64), 0, width - 1)
    rows = np.clip(np.rint(pix[:, 1]).astype(np.int64), 0, height - 1)
    totals["seconds"] = time.perf_counter() - start
    return ImagePoints(pix.astype(np.float32), (np.concatenate(xyz) if xyz else np.zeros((0, 3))).astype(np.float32),
                       image[rows, cols, :3].astype(np.uint8),
                       np.concatenate(partner) if partner else np.zeros(0, np.int32), key, totals)


def _triangulate_images(conf: Conf, paths: ReconstructPaths, dense_dir: Path, matcher: str, views: list[View],
                        ranked: list[list[tuple[int, int, float]]], model_key: str) -> tuple[list[ImagePoints], int]:
    """Every view's points, computed or read back; returns them and how many were computed now."""
    from tqdm import tqdm

    from gim_plugins.io import read_image
    from gim_plugins.reconstruct.dense_correspondences import PairMatcher

    base = {"model": model_key, "matcher": matcher, "matcher_conf": to_plain(conf.matcher_conf),
            "weights": conf.weights, "options": {k: conf[k] for k in _IMAGE_KEYS}}
    pair_matcher = None
    results, computed = [], 0
    for view in tqdm(views, desc="dense", unit="image", disable=not conf.progress):
        partners = [views[j] for j, _, _ in ranked[view.index][: conf.neighbours]]
        key = json.dumps({**base, "image": view.name, "neighbours": [p.name for p in partners]}, sort_keys=True)
        file = points_file(dense_dir / "points", view.name)
        points = load_points(file, key)
        if points is None:
            if pair_matcher is None:
                loaded = _load_matcher(conf, matcher)
                pair_matcher = PairMatcher(loaded, paths.images, [paths.features, dense_dir / "features.h5"],
                                           max_matches=conf.max_matches, min_certainty=conf.min_certainty,
                                           seed=conf.seed)
            points = _image_points(view, partners, pair_matcher, read_image(paths.images / view.name), conf, key)
            save_points(file, points)
            computed += 1
        results.append(points)
    return results, computed


def _fuse(conf: Conf, views: list[View], ranked: list[list[tuple[int, int, float]]], points: list[ImagePoints],
          ) -> tuple[Any, dict[str, Any]]:
    """Consistency, voxel merge and normals; returns the cloud and its statistics."""
    from gim_plugins.colmap_ext.ply import PointCloud
    from gim_plugins.reconstruct.dense import auto_voxel_size
    from gim_plugins.reconstruct.dense_fuse import consistent_views, depth_map, estimate_normals, voxel_merge

    cell = int(conf.consistency_cell)
    maps = {}
    for view, own in zip(views, points):
        _, z = view.project(own.xyz.astype(np.float64))
        maps[view.index] = depth_map(own.pixels, z, (view.camera.height, view.camera.width), cell)
    kept_xyz, kept_rgb, towards, per_focal = [], [], [], []
    for view, own in zip(views, points):
        if not len(own):
            continue
        others = [views[j] for j, _, _ in ranked[view.index][: conf.consistency_views]]
        counts = consistent_views(own, view, others, maps, cell=cell, depth_tolerance=conf.depth_tolerance)
        keep = counts >= conf.min_consistent_views
        xyz = own.xyz[keep].astype(np.float64)
        rays = view.center - xyz
        distance = np.linalg.norm(rays, axis=1, keepdims=True)
        kept_xyz.append(xyz)
        kept_rgb.append(own.rgb[keep])
        towards.append(rays / np.maximum(distance, 1e-12))
        per_focal.append(view.to_camera(xyz)[:, 2] / float(np.mean(view.camera.focal)))
    xyz = np.concatenate(kept_xyz) if kept_xyz else np.zeros((0, 3))
    stats: dict[str, Any] = {"consistent": len(xyz)}
    if not len(xyz):
        return PointCloud(np.zeros((0, 3)), np.zeros((0, 3), np.uint8)), {**stats, "voxel_size": None}
    voxel = float(conf.voxel_size) if conf.voxel_size else auto_voxel_size(np.concatenate(per_focal), conf.voxel_px)
    merged, rgb, direction, count = voxel_merge(xyz, np.concatenate(kept_rgb), np.concatenate(towards), voxel)
    normals = estimate_normals(merged, direction, conf.normal_neighbours) if conf.normals else None
    stats.update(voxel_size=voxel, fused_points=len(merged), mean_points_per_voxel=float(count.mean()))
    return PointCloud(merged, rgb, normals), stats


def run_triangulation(conf: Conf, paths: ReconstructPaths, dense_dir: Path, matcher: str) -> Path:
    """Dense triangulation into ``dense_dir/fused.ply`` (see the module docstring); returns its path."""
    from gim_plugins.colmap_ext.model import read_text_model
    from gim_plugins.colmap_ext.ply import write_ply
    from gim_plugins.reconstruct.dense import peak_rss_mb
    from gim_plugins.reconstruct.dense_views import model_digest, rank_neighbours, views_of

    start = time.perf_counter()
    model = read_text_model(paths.model)
    views = views_of(model)
    ranked = rank_neighbours(model, views, min_shared_points=conf.min_shared_points, min_angle_deg=conf.min_angle_deg,
                             good_angle_deg=conf.good_angle_deg,
                             limit=max(conf.neighbours, conf.consistency_views))
    sparse = _is_sparse(matcher)
    warnings = []
    if sparse:
        warnings.append(f"{matcher} is a sparse matcher: the cloud is sparse-derived (points only at its keypoints)")
        log.warning(warnings[-1])
    lonely = [v.name for v in views if not ranked[v.index]]
    if lonely:
        warnings.append(f"{len(lonely)} images have no neighbour with enough shared points and baseline: "
                        f"{', '.join(lonely[:5])}")
    model_key = model_digest(paths.model)
    points, computed = _triangulate_images(conf, paths, dense_dir, matcher, views, ranked, model_key)
    triangulated = time.perf_counter()
    output, summary_path = dense_dir / "fused.ply", dense_dir / "summary.json"
    key = hashlib.sha1(json.dumps([[p.key for p in points], {k: conf[k] for k in _FUSE_KEYS + _PAIR_KEYS}],
                                  sort_keys=True).encode()).hexdigest()
    if computed == 0 and read_json(summary_path).get("key") == key and output.is_file():
        log.info("dense model %s is up to date", output)
        return output
    cloud, fused = _fuse(conf, views, ranked, points)
    if not len(cloud):
        hint = (" (a point needs min_consistent_views other views: with so few images set it to 0)"
                if len(views) <= 2 + conf.min_consistent_views else "")
        raise UserError(f"no dense point survived the filters{hint}: see {dense_dir / 'points'} for the per-image "
                        "counts; lower min_consistent_views, raise max_reprojection_error, or check the matcher")
    write_ply(output, cloud)
    totals: dict[str, float] = {}
    for p in points:
        for name, value in p.stats.items():
            totals[name] = totals.get(name, 0) + value
    summary = {"key": key, "method": "triangulate", "matcher": matcher, "sparse_derived": sparse,
               "images": len(views), "images_with_points": sum(1 for p in points if len(p)),
               "images_computed_now": computed, "pairs": sum(min(conf.neighbours, len(r)) for r in ranked),
               "matches": int(totals.get("matches", 0)), "in_front": int(totals.get("in_front", 0)),
               "reprojection": int(totals.get("reprojection", 0)), "angle": int(totals.get("angle", 0)), **fused,
               "fused": str(output), "normals": cloud.normals is not None,
               "seconds": {"images": triangulated - start, "match_total": totals.get("match_seconds", 0.0),
                           "fuse": time.perf_counter() - triangulated, "total": time.perf_counter() - start},
               "peak_rss_mb": peak_rss_mb(), "conf": to_plain(conf), "warnings": warnings}
    write_json(summary_path, summary)
    return output


def _is_sparse(matcher: str) -> bool:
    from gim_plugins.registry import get_matcher_class

    return bool(get_matcher_class(matcher).is_sparse)
