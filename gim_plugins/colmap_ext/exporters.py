"""Exporters of :class:`Correspondences`: ``colmap-db``, ``colmap-text``, ``hloc-h5`` (entry-point group
``gim_plugins.exporters``).

Each exporter is ``export(correspondences, out, **options) -> Path`` and writes atomically: the target appears
complete or not at all. Other packages add exporters by declaring an entry point in the same group.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from gim_plugins.colmap_ext.correspondences import Correspondences

__all__ = ["EXPORTER_GROUP", "export", "export_colmap_db", "export_colmap_text", "export_hloc_h5", "get_exporter",
           "list_exporters"]

EXPORTER_GROUP = "gim_plugins.exporters"

Exporter = Callable[..., Path]


def list_exporters() -> list[str]:
    """Names registered in the ``gim_plugins.exporters`` entry-point group."""
    return sorted({ep.name for ep in entry_points(group=EXPORTER_GROUP)})


def get_exporter(name: str) -> Exporter:
    """Load an exporter by name (only that entry point is imported)."""
    found = [ep for ep in entry_points(group=EXPORTER_GROUP) if ep.name == name]
    if not found:
        raise KeyError(f"unknown exporter {name!r}; registered: {', '.join(list_exporters()) or '(none)'}")
    return found[0].load()  # type: ignore[no-any-return]


def export(name: str, correspondences: Correspondences, out: str | os.PathLike[str], **options: Any) -> Path:
    """Run exporter ``name``."""
    return get_exporter(name)(correspondences, out, **options)


def export_colmap_db(correspondences: Correspondences, out: str | os.PathLike[str], *,
                     camera: dict[str, Any] | None = None, two_view_geometries: bool = False,
                     creator: str = "auto", overwrite: bool = False) -> Path:
    """A COLMAP database (COLMAP 3.8 and pycolmap 4.x) with cameras, images, keypoints and raw matches.

    Args:
        out: the database file; built next to it and renamed into place when complete.
        camera: camera options (:data:`gim_plugins.colmap_ext.database.CAMERA_DEFAULTS`).
        two_view_geometries: also store every match as a verified inlier (skip COLMAP's verification).
        creator: who creates the schema: ``"auto"``, ``"pycolmap"`` or ``"colmap"``.
        overwrite: replace an existing file (otherwise FileExistsError).
    """
    from gim_plugins.colmap_ext.database import ColmapDatabase, add_images, create_database, write_correspondences

    correspondences.validate()
    target = Path(out)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / target.name
    try:
        create_database(tmp, creator=creator)
        with ColmapDatabase(tmp) as db, db.transaction():
            add_images(db, correspondences.names, correspondences.image_sizes, camera)
            write_correspondences(db, correspondences, two_view_geometries=two_view_geometries)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return target


def export_colmap_text(correspondences: Correspondences, out: str | os.PathLike[str], *,
                       known_names: Any = None) -> Path:
    """``out/features/<name>.txt`` for ``colmap feature_importer`` and ``out/matches.txt`` for ``colmap
    matches_importer`` (``raw`` or ``inliers``); returns ``out``."""
    from gim_plugins.colmap_ext.text_export import write_feature_files, write_match_list

    target = Path(out)
    write_feature_files(correspondences, target / "features")
    write_match_list(correspondences, target / "matches.txt", known_names=known_names)
    return target


def export_hloc_h5(correspondences: Correspondences, out: str | os.PathLike[str], *,
                   dense: bool | None = None) -> Path:
    """hloc's ``features.h5`` and ``matches.h5`` in ``out`` (layouts: :mod:`gim_plugins.h5io`); returns ``out``.

    Sparse correspondences use hloc's ``extract_features`` / ``match_features`` layout (``image_size``, int16
    ``matches0``) but keep float32 keypoints: hloc's float16 (``as_half``) quantises coordinates above 512 px to
    0.25–0.5 px, and its readers accept either. Merged dense ones (``dense=None`` follows
    ``correspondences.dense``) use ``match_dense``'s layout (float32 keypoints + ``score``, int32 ``matches0``; the
    raw per-pair points are not kept). Either is what ``hloc.reconstruction`` reads.
    """
    from gim_plugins import h5io

    correspondences.validate()
    is_dense = correspondences.dense if dense is None else dense
    target = Path(out)
    with h5io.atomic_h5(target / "features.h5", append=False) as handle:
        for name in correspondences.names:
            h5io.write_features(handle, name, correspondences.keypoints[name],
                                scores=correspondences.keypoint_scores.get(name),
                                image_size=None if is_dense else correspondences.image_sizes[name], dense=is_dense,
                                as_half=False)
    with h5io.atomic_h5(target / "matches.h5", append=False) as handle:
        for (name0, name1), pairs in sorted(correspondences.matches.items()):
            num0 = len(correspondences.keypoints[name0])
            if not is_dense and len(correspondences.keypoints[name1]) > 32767:
                raise ValueError(f"{name1}: hloc's sparse layout stores at most 32767 keypoints; use dense=True")
            h5io.write_matches(handle, name0, name1, pairs, num0,
                               scores=correspondences.match_scores.get((name0, name1)), wide=is_dense)
    return target
