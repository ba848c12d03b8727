"""Files for ``colmap feature_importer`` and ``colmap matches_importer`` (checked against COLMAP 3.8).

* Keypoints: one ``<image name>.txt`` per image (subfolders mirrored), first line ``N 128``, then
  ``X Y SCALE ORIENTATION`` and 128 descriptor values per keypoint. GIM matches carry no SIFT descriptors, so the
  128 values are zeros (COLMAP 3.8 checks the dimension is exactly 128). Coordinates are in COLMAP's convention
  (package keypoints + 0.5).
* Matches: blocks of ``name0 name1``, then ``i0 i1`` lines (0-based keypoint rows), then an empty line; for
  ``--match_type raw`` (COLMAP verifies) or ``inliers`` (taken as verified).

COLMAP's importer stops at the first image name it does not know ("SKIP … not found" then ``break``): the rest of
the file would be silently ignored. :func:`write_match_list` therefore checks every name against ``known_names``
(e.g. the database's images) before writing anything.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import numpy as np

from gim_plugins.atomic import atomic_write_text
from gim_plugins.colmap_ext.correspondences import Correspondences

__all__ = ["write_feature_files", "write_match_list"]

_ZEROS = " ".join(["0"] * 128)


def write_feature_files(correspondences: Correspondences, out_dir: str | os.PathLike[str]) -> Path:
    """Write one ``feature_importer`` file per image into ``out_dir`` (returned)."""
    correspondences.validate()
    out = Path(out_dir)
    for name in correspondences.names:
        kp = correspondences.keypoints[name].astype(np.float64) + 0.5  # COLMAP: corner of the top-left pixel at 0
        lines = [f"{len(kp)} 128"]
        lines += [f"{x:.4f} {y:.4f} 1 0 {_ZEROS}" for x, y in kp.tolist()]
        atomic_write_text(out / f"{name}.txt", "\n".join(lines) + "\n")
    return out


def write_match_list(correspondences: Correspondences, path: str | os.PathLike[str], *,
                     known_names: Collection[str] | None = None) -> Path:
    """Write a ``matches_importer`` list (``raw`` or ``inliers``: same format) of the non-empty pairs.

    Raises:
        KeyError: a pair names an image missing from ``known_names`` (COLMAP would stop importing there).
    """
    correspondences.validate()
    if known_names is not None:
        known = set(known_names)
        missing = sorted({n for pair in correspondences.matches for n in pair if n not in known})
        if missing:
            raise KeyError(f"images missing from the database: {missing[:10]} (COLMAP's matches_importer would "
                           "stop at the first one)")
    blocks = []
    for (name0, name1), matches in sorted(correspondences.matches.items()):
        if not len(matches):
            continue
        for name in (name0, name1):
            if any(c.isspace() for c in name):
                raise ValueError(f"image name {name!r} contains whitespace; COLMAP's match lists cannot hold it")
        body = "\n".join(f"{a} {b}" for a, b in matches.tolist())
        blocks.append(f"{name0} {name1}\n{body}\n\n")
    target = Path(path)
    atomic_write_text(target, "".join(blocks))
    return target
