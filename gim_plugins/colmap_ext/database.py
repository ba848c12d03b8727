"""Write COLMAP databases that both COLMAP 3.8 and pycolmap 4.x open, inside real transactions.

Why not pycolmap's ``Database`` for the writes: its ``DatabaseTransaction`` commits when the block is left, also
on an exception, so an interrupted import leaves a half-written database. Here the schema is created by the
installed pycolmap (or ``colmap database_creator``), and the rows are written with the standard library's
``sqlite3`` in ``BEGIN IMMEDIATE … COMMIT`` transactions that roll back on any error: a database is either unchanged
or fully updated. The blob layouts follow COLMAP:

* ``keypoints``: float32 (N, 2) row-major, **COLMAP's pixel convention** (corner at 0: package keypoints + 0.5).
* ``matches`` / ``two_view_geometries.data``: uint32 (K, 2) keypoint row indices; ``pair_id = 2147483647·min + max``
  with the columns swapped when the pair is stored the other way round.
* ``cameras.params``: float64; model ids ≤ 10 (the models COLMAP 3.8 knows).

Cross-version rule: a fresh pycolmap-4.x database lacks the seven ``images.prior_*`` columns that COLMAP 3.8
prepares statements for, so 3.8 refuses to open it ("SQL logic error"); :func:`ensure_colmap38_columns` adds them
(nullable), after which 3.8 opens the file and pycolmap 4.x still reads it. (pycolmap 4.x opens a 3.8 database
too, but migrates it in place.)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gim_plugins.errors import UserError

if TYPE_CHECKING:
    from gim_plugins.colmap_ext.correspondences import Correspondences

__all__ = ["CAMERA_DEFAULTS", "CAMERA_MODELS", "ColmapDatabase", "DatabaseLockedError", "add_images",
           "create_database", "default_camera_params", "ensure_colmap38_columns", "image_pair_to_pair_id",
           "pair_id_to_image_pair", "write_correspondences"]

MAX_IMAGE_ID = 2147483647

CAMERA_MODELS: dict[str, tuple[int, int]] = {
    "SIMPLE_PINHOLE": (0, 3), "PINHOLE": (1, 4), "SIMPLE_RADIAL": (2, 4), "RADIAL": (3, 5), "OPENCV": (4, 8),
    "OPENCV_FISHEYE": (5, 8), "FULL_OPENCV": (6, 12), "FOV": (7, 5), "SIMPLE_RADIAL_FISHEYE": (8, 4),
    "RADIAL_FISHEYE": (9, 5), "THIN_PRISM_FISHEYE": (10, 12),
}
"""Camera models COLMAP 3.8 knows: name → (model id, number of parameters)."""

PRIOR_COLUMNS = ("prior_qw", "prior_qx", "prior_qy", "prior_qz", "prior_tx", "prior_ty", "prior_tz")

CONFIG_UNCALIBRATED = 3


class DatabaseLockedError(RuntimeError, UserError):
    """Another process holds the database's write lock."""


def image_pair_to_pair_id(image_id0: int, image_id1: int) -> int:
    """COLMAP's symmetric pair id."""
    a, b = sorted((int(image_id0), int(image_id1)))
    return MAX_IMAGE_ID * a + b


def pair_id_to_image_pair(pair_id: int) -> tuple[int, int]:
    return int(pair_id) // MAX_IMAGE_ID, int(pair_id) % MAX_IMAGE_ID


def ensure_colmap38_columns(path: str | os.PathLike[str]) -> None:
    """Add the nullable ``images.prior_*`` columns COLMAP 3.8 needs when they are missing (idempotent)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(images)")}
        if not columns:
            raise ValueError(f"{path} has no images table: not a COLMAP database")
        with connection:
            for name in PRIOR_COLUMNS:
                if name not in columns:
                    connection.execute(f"ALTER TABLE images ADD COLUMN {name} REAL")


def create_database(path: str | os.PathLike[str], *, creator: str = "auto",
                    executable: str | None = None) -> Path:
    """Create an empty database at ``path`` that COLMAP 3.8 and pycolmap 4.x both open.

    Args:
        creator: ``"pycolmap"``, ``"colmap"`` (``colmap database_creator``) or ``"auto"`` (pycolmap when installed).

    Raises:
        FileExistsError: ``path`` exists (databases are never silently replaced).
    """
    from gim_plugins.colmap_ext import _pycolmap, binary

    target = Path(path)
    if target.exists():
        raise FileExistsError(f"{target} exists; delete it or choose another path")
    target.parent.mkdir(parents=True, exist_ok=True)
    if creator == "auto":
        creator = "pycolmap" if _pycolmap.available() else "colmap"
    if creator == "pycolmap":
        _pycolmap.create_database(target)
    elif creator == "colmap":
        binary.database_creator(target, executable=executable)
    else:
        raise ValueError(f"creator must be 'auto', 'pycolmap' or 'colmap', got {creator!r}")
    ensure_colmap38_columns(target)
    return target


def _blob(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array).tobytes()


class ColmapDatabase:
    """A COLMAP database opened for writing with all-or-nothing transactions.

    Example:
        >>> with ColmapDatabase(create_database("db.db")) as db, db.transaction():      # doctest: +SKIP
        ...     cam = db.add_camera("SIMPLE_RADIAL", 741, 500, [889.2, 370.5, 250.0, 0.0])
        ...     image = db.add_image("a.png", cam)
        ...     db.write_keypoints(image, keypoints + 0.5)

    Args:
        path: an existing COLMAP database (see :func:`create_database`).
        timeout: seconds to wait for another writer's lock before :class:`DatabaseLockedError`.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"COLMAP database not found: {self.path} (create it with create_database)")
        self._connection = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        tables = {row[0] for row in self._connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"cameras", "images", "keypoints", "matches", "two_view_geometries"} - tables
        if missing:
            self._connection.close()
            raise ValueError(f"{self.path} is not a COLMAP database (missing tables: {', '.join(sorted(missing))})")
        self._in_transaction = False

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ColmapDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[ColmapDatabase]:
        """All writes inside the block are committed together, or none (rolled back on any exception)."""
        if self._in_transaction:
            yield self
            return
        try:
            self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise DatabaseLockedError(f"{self.path} is locked by another process (a running COLMAP, pycolmap or "
                                          "gim reconstruct?); try again when it has finished") from exc
            raise
        self._in_transaction = True
        try:
            yield self
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        else:
            self._connection.execute("COMMIT")
        finally:
            self._in_transaction = False

    def _write(self, sql: str, values: Sequence[object]) -> sqlite3.Cursor:
        with self.transaction():
            try:
                return self._connection.execute(sql, values)
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"{self.path}: {exc} ({sql.split('(')[0].strip()})") from exc

    # ---------------------------------------------------------------------------------------------- cameras/images

    def add_camera(self, model: str, width: int, height: int, params: Sequence[float], *,
                   prior_focal_length: bool = False) -> int:
        """Add a camera; ``params`` in COLMAP's order and pixel convention (principal point ≈ (W/2, H/2))."""
        if model not in CAMERA_MODELS:
            raise ValueError(f"camera model {model!r} is unknown to COLMAP 3.8; use one of {', '.join(CAMERA_MODELS)}")
        model_id, count = CAMERA_MODELS[model]
        values = np.asarray(params, dtype=np.float64).ravel()
        if len(values) != count:
            raise ValueError(f"camera model {model} takes {count} parameters, got {len(values)}")
        if width <= 0 or height <= 0:
            raise ValueError(f"camera size must be positive, got {width}×{height}")
        cursor = self._write("INSERT INTO cameras(model, width, height, params, prior_focal_length) VALUES(?,?,?,?,?)",
                             (model_id, int(width), int(height), _blob(values), int(prior_focal_length)))
        return int(cursor.lastrowid or 0)

    def add_image(self, name: str, camera_id: int) -> int:
        """Add an image (``name`` relative to the image directory); duplicate names are an error."""
        if not name or name != name.strip() or "\\" in name:
            raise ValueError(f"invalid image name {name!r}")
        if self._connection.execute("SELECT 1 FROM cameras WHERE camera_id=?", (camera_id,)).fetchone() is None:
            raise ValueError(f"camera {camera_id} does not exist")
        if self._connection.execute("SELECT 1 FROM images WHERE name=?", (name,)).fetchone() is not None:
            raise ValueError(f"image {name!r} is already in {self.path}")
        cursor = self._write("INSERT INTO images(name, camera_id) VALUES(?,?)", (name, int(camera_id)))
        return int(cursor.lastrowid or 0)

    def image_ids(self) -> dict[str, int]:
        """``{image name: image id}``."""
        return {name: int(i) for i, name in self._connection.execute("SELECT image_id, name FROM images")}

    def camera_of(self, image_id: int) -> tuple[int, int, int]:
        """``(camera_id, width, height)`` of an image."""
        row = self._connection.execute(
            "SELECT cameras.camera_id, width, height FROM images JOIN cameras ON images.camera_id=cameras.camera_id "
            "WHERE image_id=?", (image_id,)).fetchone()
        if row is None:
            raise KeyError(f"image id {image_id} is not in {self.path}")
        return int(row[0]), int(row[1]), int(row[2])

    # ------------------------------------------------------------------------------------------ keypoints/matches

    def write_keypoints(self, image_id: int, keypoints: np.ndarray, *, replace: bool = False) -> None:
        """Keypoints ``(N, 2)`` in **COLMAP's convention** (package keypoints + 0.5), checked against the camera size.
        """
        kp = np.asarray(keypoints, dtype=np.float32)
        if kp.ndim != 2 or kp.shape[1] not in (2, 4, 6):
            raise ValueError(f"keypoints: expected shape (N, 2), (N, 4) or (N, 6), got {kp.shape}")
        _, width, height = self.camera_of(image_id)
        if len(kp) and (not np.isfinite(kp).all() or kp[:, 0].min() < 0 or kp[:, 1].min() < 0
                        or kp[:, 0].max() > width or kp[:, 1].max() > height):
            raise ValueError(f"keypoints of image {image_id} fall outside its {width}×{height} camera "
                             f"(x in [{kp[:, 0].min():.1f}, {kp[:, 0].max():.1f}], "
                             f"y in [{kp[:, 1].min():.1f}, {kp[:, 1].max():.1f}]): wrong image size or convention?")
        with self.transaction():
            if replace:
                self._connection.execute("DELETE FROM keypoints WHERE image_id=?", (image_id,))
            self._write("INSERT INTO keypoints(image_id, rows, cols, data) VALUES(?,?,?,?)",
                        (int(image_id), kp.shape[0], kp.shape[1], _blob(kp)))

    def num_keypoints(self, image_id: int) -> int:
        row = self._connection.execute("SELECT rows FROM keypoints WHERE image_id=?", (image_id,)).fetchone()
        if row is None:
            raise KeyError(f"image id {image_id} has no keypoints in {self.path}")
        return int(row[0])

    def read_keypoints(self, image_id: int) -> np.ndarray:
        row = self._connection.execute("SELECT rows, cols, data FROM keypoints WHERE image_id=?",
                                       (image_id,)).fetchone()
        if row is None:
            raise KeyError(f"image id {image_id} has no keypoints in {self.path}")
        return np.frombuffer(row[2], dtype=np.float32).reshape(row[0], row[1])

    def _pair_rows(self, image_id0: int, image_id1: int, matches: np.ndarray, check: bool) -> np.ndarray:
        array = np.asarray(matches)
        if array.ndim != 2 or array.shape[1] != 2:
            raise ValueError(f"matches: expected shape (K, 2), got {array.shape}")
        if image_id0 == image_id1:
            raise ValueError(f"cannot match image {image_id0} with itself")
        if check and len(array):
            if array.min() < 0:
                raise ValueError("matches hold negative keypoint indices")
            for column, image_id in ((0, image_id0), (1, image_id1)):
                if array[:, column].max() >= self.num_keypoints(image_id):
                    raise ValueError(f"match index {array[:, column].max()} out of range for image {image_id} "
                                     f"({self.num_keypoints(image_id)} keypoints)")
        array = array.astype(np.uint32)
        return array[:, ::-1] if image_id0 > image_id1 else array

    def write_matches(self, image_id0: int, image_id1: int, matches: np.ndarray, *, replace: bool = False) -> None:
        """Raw matches ``(K, 2)`` = keypoint row indices ``[i0, i1]`` (keypoints must be written first)."""
        rows = self._pair_rows(image_id0, image_id1, matches, check=True)
        pair_id = image_pair_to_pair_id(image_id0, image_id1)
        with self.transaction():
            if replace:
                self._connection.execute("DELETE FROM matches WHERE pair_id=?", (pair_id,))
            self._write("INSERT INTO matches(pair_id, rows, cols, data) VALUES(?,?,?,?)",
                        (pair_id, rows.shape[0], 2, _blob(rows)))

    def write_two_view_geometry(self, image_id0: int, image_id1: int, inliers: np.ndarray, *,
                                config: int = CONFIG_UNCALIBRATED, F: np.ndarray | None = None,
                                replace: bool = False) -> None:
        """Verified inlier matches (as ``colmap matches_importer --match_type inliers`` would store them)."""
        rows = self._pair_rows(image_id0, image_id1, inliers, check=True)
        if config not in range(9):
            raise ValueError(f"config {config} is not a COLMAP 3.8 two-view configuration (0–8)")
        pair_id = image_pair_to_pair_id(image_id0, image_id1)
        fundamental = np.zeros((3, 3)) if F is None else np.asarray(F, dtype=np.float64).reshape(3, 3)
        if F is not None and image_id0 > image_id1:
            fundamental = fundamental.T
        zeros = np.zeros((3, 3))
        with self.transaction():
            if replace:
                self._connection.execute("DELETE FROM two_view_geometries WHERE pair_id=?", (pair_id,))
            self._write("INSERT INTO two_view_geometries(pair_id, rows, cols, data, config, F, E, H, qvec, tvec) "
                        "VALUES(?,?,?,?,?,?,?,?,?,?)",
                        (pair_id, rows.shape[0], 2, _blob(rows), int(config), _blob(fundamental), _blob(zeros),
                         _blob(zeros), _blob(np.array([1.0, 0, 0, 0])), _blob(np.zeros(3))))

    def read_matches(self, image_id0: int, image_id1: int, table: str = "matches") -> np.ndarray:
        """``(K, 2)`` indices ``[i0, i1]`` of a pair from ``matches`` or ``two_view_geometries`` (empty if absent)."""
        if table not in ("matches", "two_view_geometries"):
            raise ValueError(f"table must be 'matches' or 'two_view_geometries', got {table!r}")
        row = self._connection.execute(f"SELECT rows, cols, data FROM {table} WHERE pair_id=?",
                                       (image_pair_to_pair_id(image_id0, image_id1),)).fetchone()
        if row is None or not row[0]:
            return np.zeros((0, 2), dtype=np.uint32)
        array = np.frombuffer(row[2], dtype=np.uint32).reshape(row[0], row[1])
        return array[:, ::-1] if image_id0 > image_id1 else array

    def verified_pairs(self) -> dict[tuple[int, int], int]:
        """``{(image_id0, image_id1): number of inliers}`` of every pair in ``two_view_geometries`` with inliers."""
        out = {}
        for pair_id, rows in self._connection.execute("SELECT pair_id, rows FROM two_view_geometries WHERE rows>0"):
            out[pair_id_to_image_pair(pair_id)] = int(rows)
        return out

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables."""
        return {table: int(self._connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("cameras", "images", "keypoints", "matches", "two_view_geometries")}


CAMERA_DEFAULTS: dict[str, object] = {
    "camera_model": "SIMPLE_RADIAL",  # a COLMAP 3.8 model name
    "camera_params": None,  # COLMAP-order parameters (principal point in COLMAP's convention), else a guess
    "single_camera": False,  # one camera shared by all images (they must have one size)
}
"""Camera options shared by the database writer, the exporters and ``gim reconstruct``."""


def default_camera_params(model: str, width: int, height: int, focal: float | None = None) -> list[float]:
    """COLMAP's initial guess: focal ``1.2·max(W, H)``, principal point at the image centre, no distortion."""
    if model not in CAMERA_MODELS:
        raise ValueError(f"camera model {model!r} is unknown to COLMAP 3.8; use one of {', '.join(CAMERA_MODELS)}")
    f = float(focal) if focal else 1.2 * max(width, height)
    cx, cy = width / 2.0, height / 2.0
    count = CAMERA_MODELS[model][1]
    if model == "SIMPLE_PINHOLE":
        return [f, cx, cy]
    if model in ("PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV", "THIN_PRISM_FISHEYE"):
        return [f, f, cx, cy] + [0.0] * (count - 4)
    return [f, cx, cy] + [0.0] * (count - 3)


def add_images(db: ColmapDatabase, names: Sequence[str], sizes: dict[str, tuple[int, int]],
               camera: dict[str, object] | None = None) -> dict[str, int]:
    """Add cameras and images (in one transaction); returns ``{name: image_id}``.

    Args:
        sizes: ``{name: (H, W)}``.
        camera: options of :data:`CAMERA_DEFAULTS`.
    """
    options = {**CAMERA_DEFAULTS, **(camera or {})}
    unknown = set(options) - set(CAMERA_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown camera options {sorted(unknown)}; known: {', '.join(CAMERA_DEFAULTS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate image names: {sorted({n for n in names if list(names).count(n) > 1})}")
    missing = [n for n in names if n not in sizes]
    if missing:
        raise KeyError(f"no image size for {missing[:10]}")
    model = str(options["camera_model"])
    given = options["camera_params"]
    if options["single_camera"] and len({sizes[n] for n in names}) > 1:
        raise ValueError("single_camera needs images of one size; got sizes "
                         f"{sorted({sizes[n] for n in names})}")
    ids: dict[str, int] = {}
    with db.transaction():
        shared: int | None = None
        for name in names:
            height, width = sizes[name]
            params = list(given) if given else default_camera_params(model, width, height)  # type: ignore[call-overload]
            if options["single_camera"]:
                if shared is None:
                    shared = db.add_camera(model, width, height, params, prior_focal_length=bool(given))
                camera_id = shared
            else:
                camera_id = db.add_camera(model, width, height, params, prior_focal_length=bool(given))
            ids[name] = db.add_image(name, camera_id)
    return ids


def write_correspondences(db: ColmapDatabase, correspondences: Correspondences, *, matches: bool = True,
                          two_view_geometries: bool = False) -> dict[str, int]:
    """Write keypoints (+0.5 to COLMAP's convention) and matches of every image and pair, in one transaction.

    Every image must already be in the database (:func:`add_images`); pairs without matches are skipped.
    ``two_view_geometries=True`` also stores every match as a verified inlier (``matches_importer inliers``).

    Returns:
        Counts: ``images``, ``pairs`` (written), ``empty_pairs`` (skipped).

    Raises:
        KeyError: images missing from the database (nothing is written).
    """
    correspondences.validate()
    ids = db.image_ids()
    missing = sorted(n for n in correspondences.keypoints if n not in ids)
    if missing:
        raise KeyError(f"images missing from {db.path}: {missing[:10]}")
    written = empty = 0
    with db.transaction():
        for name in correspondences.names:
            height, width = correspondences.image_sizes[name]
            _, cam_width, cam_height = db.camera_of(ids[name])
            if (cam_width, cam_height) != (width, height):
                raise ValueError(f"{name}: keypoints are for a {width}×{height} image, its camera is "
                                 f"{cam_width}×{cam_height} (inconsistent image sizes)")
            db.write_keypoints(ids[name], correspondences.keypoints[name] + 0.5)
        for (name0, name1), pairs in sorted(correspondences.matches.items()):
            if not len(pairs):
                empty += 1
                continue
            if matches:
                db.write_matches(ids[name0], ids[name1], pairs)
            if two_view_geometries:
                db.write_two_view_geometry(ids[name0], ids[name1], pairs)
            written += 1
    return {"images": len(correspondences.keypoints), "pairs": written, "empty_pairs": empty}
