"""The two COLMAP engines: geometric verification and incremental mapping by pycolmap or by the colmap program.

A pipeline picks an engine by name and calls these functions; it never talks to pycolmap or the program itself.
Both engines take the same inputs and leave the same results behind, so one output folder can be verified and
mapped by either:

* verification fills an empty database (made by :func:`~gim_plugins.colmap_ext.database.create_database` with the
  same engine as ``creator``) with cameras, images, keypoints and raw matches, and lets COLMAP's RANSAC write
  ``two_view_geometries``;
* mapping writes each model (binary and text files) into ``out_dir/<index>``, largest (most registered images)
  first.

Why the colmap engine imports through the program's own ``feature_importer`` instead of our database writer:
COLMAP 3.8 cannot write descriptors into a pycolmap-4.x schema (``descriptors.type`` is NOT NULL there), so its
database must come from ``colmap database_creator`` and its rows from COLMAP's importers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gim_plugins.colmap_ext.correspondences import Correspondences

__all__ = ["map_with_colmap", "map_with_pycolmap", "verify_with_colmap", "verify_with_pycolmap"]


def _matched_pairs(correspondences: Correspondences) -> list[tuple[str, str]]:
    return [pair for pair, m in sorted(correspondences.matches.items()) if len(m)]


def verify_with_pycolmap(database: Path, correspondences: Correspondences, *, camera: Mapping[str, Any],
                         verification: Mapping[str, Any], work: Path) -> None:
    """Write cameras, images, keypoints and matches with our transactional writer, then ``pycolmap.verify_matches``
    on every pair that has matches.

    Args:
        database: an empty database created by pycolmap.
        camera: camera options (:data:`~gim_plugins.colmap_ext.database.CAMERA_DEFAULTS`).
        verification: ``max_error``, ``max_num_trials``, ``min_inlier_ratio``, ``min_num_inliers``, ``confidence``.
        work: a scratch folder (the pair list for pycolmap is written there).
    """
    from gim_plugins.colmap_ext import _pycolmap
    from gim_plugins.colmap_ext.database import ColmapDatabase, add_images, write_correspondences
    from gim_plugins.h5io import write_pairs

    with ColmapDatabase(database) as db, db.transaction():
        add_images(db, correspondences.names, correspondences.image_sizes, dict(camera))
        write_correspondences(db, correspondences)
    _pycolmap.verify_matches(database, write_pairs(work / "verify_pairs.txt", _matched_pairs(correspondences)),
                             **verification)


def verify_with_colmap(database: Path, image_dir: Path, correspondences: Correspondences, *,
                       camera: Mapping[str, Any], verification: Mapping[str, Any], work: Path,
                       executable: str | None = None) -> None:
    """``colmap feature_importer`` (which also creates the cameras and images) and ``colmap matches_importer
    --match_type raw`` (COLMAP's own verification) on our text exports.

    Args:
        database: an empty database created by ``colmap database_creator``.
        image_dir: the images (the importer reads their sizes).
        camera: camera options (:data:`~gim_plugins.colmap_ext.database.CAMERA_DEFAULTS`).
        verification: as for :func:`verify_with_pycolmap`.
        work: a scratch folder for the text exports and the image list.
        executable: the colmap program (default: ``$GIM_COLMAP`` or ``colmap`` on ``PATH``).

    Raises:
        ValueError: ``single_camera`` with images of different sizes.
        RuntimeError: the importer left images or keypoints out.
    """
    from gim_plugins.colmap_ext import binary
    from gim_plugins.colmap_ext.database import ColmapDatabase
    from gim_plugins.colmap_ext.exporters import export_colmap_text

    text = export_colmap_text(correspondences, work / "text")
    image_list = work / "image_list.txt"
    image_list.write_text("".join(f"{name}\n" for name in correspondences.names))
    if camera["single_camera"] and len(set(correspondences.image_sizes.values())) > 1:
        raise ValueError("single_camera needs images of one size")
    binary.feature_importer(database, image_dir, text / "features", image_list=image_list,
                            camera_model=camera["camera_model"], single_camera=camera["single_camera"],
                            camera_params=camera["camera_params"], executable=executable)
    with ColmapDatabase(database) as db:
        imported = db.image_ids()
        missing = sorted(set(correspondences.names) - set(imported))
        if missing:
            raise RuntimeError(f"colmap feature_importer did not import {missing[:10]}")
        for name, image_id in imported.items():
            if db.num_keypoints(image_id) != len(correspondences.keypoints[name]):
                raise RuntimeError(f"colmap feature_importer imported {db.num_keypoints(image_id)} keypoints for "
                                   f"{name}, expected {len(correspondences.keypoints[name])}")
    binary.matches_importer(database, text / "matches.txt", match_type="raw", executable=executable,
                            **verification)


def map_with_pycolmap(database: Path, image_dir: Path, out_dir: Path, mapper: Mapping[str, Any]) -> list[Path]:
    """``pycolmap.incremental_mapping``; returns the model folders, largest first.

    Args:
        mapper: the mapper options listed in :func:`gim_plugins.colmap_ext._pycolmap.incremental_mapping`.
    """
    from gim_plugins.colmap_ext import _pycolmap

    return _pycolmap.incremental_mapping(database, image_dir, out_dir, dict(mapper))


def map_with_colmap(database: Path, image_dir: Path, out_dir: Path, mapper: Mapping[str, Any], *,
                    executable: str | None = None) -> list[Path]:
    """``colmap mapper``, then ``colmap model_converter`` adds the text files; returns the model folders, largest
    first."""
    from gim_plugins.colmap_ext import binary
    from gim_plugins.colmap_ext.model import read_text_model

    binary.mapper(database, image_dir, out_dir, mapper, executable=executable)
    models = sorted(p for p in out_dir.iterdir() if p.is_dir() and (p / "images.bin").is_file())
    for model in models:
        binary.model_converter(model, model, "TXT", executable=executable)
    return sorted(models, key=lambda p: len(read_text_model(p).images), reverse=True)
