"""The page's downloads: the matches as CSV and NPZ, and the match and warp pictures as PNG.

CSV, for spreadsheets and any language: a header line ``x0,y0,x1,y1,confidence,inlier`` then one row per match;
coordinates in pixels of the images as uploaded, centre of the top-left pixel at (0, 0) (add 0.5 for COLMAP's
convention); floats with 9 significant digits, which give every float32 back exactly; ``inlier`` is 0 or 1.

NPZ, for numpy: ``keypoints0``, ``keypoints1`` (N×2 float32), ``confidence`` (N float32), ``inliers`` (N bool),
``model`` (the fitted 3×3 matrix, or a 0×3 array when none could be fitted), ``robust`` and ``threshold`` (how the
inliers were counted), ``image_size0``/``image_size1`` ((H, W) as uploaded), ``matcher``, ``conf`` (the matcher's
options, JSON) and ``weights``. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.app.run import AppResult
from gim_plugins.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["CSV_HEADER", "read_matches", "write_downloads"]

CSV_HEADER = "x0,y0,x1,y1,confidence,inlier"


def _csv_text(result: AppResult) -> str:
    table = np.column_stack([result.keypoints0, result.keypoints1, result.confidence]).astype(np.float64)
    lines = [CSV_HEADER]
    for row, inlier in zip(table.reshape(-1, 5), result.inliers):
        lines.append(",".join(f"{v:.9g}" for v in row) + f",{int(bool(inlier))}")
    return "\n".join(lines) + "\n"


def _npz_bytes(result: AppResult) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        keypoints0=np.asarray(result.keypoints0, np.float32).reshape(-1, 2),
        keypoints1=np.asarray(result.keypoints1, np.float32).reshape(-1, 2),
        confidence=np.asarray(result.confidence, np.float32).reshape(-1),
        inliers=np.asarray(result.inliers, bool).reshape(-1),
        model=np.zeros((0, 3)) if result.model is None else np.asarray(result.model, np.float64),
        robust=np.array(result.robust),
        threshold=np.array(result.threshold, np.float64),
        image_size0=np.array(result.image_size0, np.int64),
        image_size1=np.array(result.image_size1, np.int64),
        matcher=np.array(result.matcher),
        conf=np.array(json.dumps(result.conf, sort_keys=True, default=repr)),
        weights=np.array(result.weights),
    )
    return buffer.getvalue()


def write_downloads(result: AppResult, directory: str | os.PathLike[str], stem: str | None = None) -> list[Path]:
    """Write ``{stem}_matches.csv``, ``{stem}_matches.npz``, ``{stem}_match.png`` and ``{stem}_warp.png``.

    Args:
        result: the request's output.
        directory: where to write (created if needed).
        stem: file name prefix (default: the matcher's name).

    Returns:
        The four paths, in that order.
    """
    from gim_plugins.viz import write_png

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = (stem or result.matcher or "matches").replace(":", ".").replace(os.sep, "_")
    return [
        atomic_write_text(directory / f"{stem}_matches.csv", _csv_text(result)),
        atomic_write_bytes(directory / f"{stem}_matches.npz", _npz_bytes(result)),
        write_png(directory / f"{stem}_match.png", result.match_picture),
        write_png(directory / f"{stem}_warp.png", result.warp_picture),
    ]


def read_matches(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a downloaded ``.csv`` or ``.npz`` back: ``keypoints0``, ``keypoints1``, ``confidence``, ``inliers``.

    An NPZ file also gives its other entries (``model``, ``robust``, ``matcher``, ``conf`` as a dict, …).

    Raises:
        ValueError: a CSV whose header is not :data:`CSV_HEADER`, or a file that is neither CSV nor NPZ.
    """
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            out: dict[str, Any] = {key: data[key] for key in data.files}
        for key in ("robust", "matcher", "weights"):
            out[key] = str(out[key])
        out["conf"] = json.loads(str(out["conf"]))
        out["threshold"] = float(out["threshold"])
        out["model"] = None if out["model"].size == 0 else out["model"]
        return out
    if path.suffix != ".csv":
        raise ValueError(f"{path}: expected a .csv or .npz file of matches")
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().strip()
        if header != CSV_HEADER:
            raise ValueError(f"{path}: expected the header {CSV_HEADER!r}, got {header!r}")
        rows = [line for line in handle if line.strip()]
    table = np.loadtxt(rows, delimiter=",", ndmin=2, dtype=np.float64).reshape(-1, 6) if rows else np.zeros((0, 6))
    return {
        "keypoints0": table[:, 0:2].astype(np.float32),
        "keypoints1": table[:, 2:4].astype(np.float32),
        "confidence": table[:, 4].astype(np.float32),
        "inliers": table[:, 5].astype(bool),
    }
