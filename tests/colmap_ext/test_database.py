"""The COLMAP database writer: layouts read back by pycolmap 4.x, opened by COLMAP 3.8, all-or-nothing writes."""

from __future__ import annotations

import sqlite3
import subprocess

import numpy as np
import pytest
from colmap_helpers import requires_colmap, requires_pycolmap

from gim_plugins.colmap_ext import database as dbm
from gim_plugins.colmap_ext.correspondences import Correspondences

pytestmark = requires_pycolmap


def _toy(n: int = 3, size: tuple[int, int] = (40, 60)) -> Correspondences:
    rng = np.random.default_rng(0)
    names = [f"im{i}.png" for i in range(n)]
    keypoints = {name: (rng.uniform(0, 1, (20, 2)) * [size[1] - 1, size[0] - 1]).astype(np.float32)
                 for name in names}
    matches = {(names[i], names[j]): np.stack([np.arange(10), np.arange(10)[::-1] + i], 1)
               for i in range(n) for j in range(i + 1, n)}
    return Correspondences(keypoints, dict.fromkeys(names, size), matches)


@pytest.fixture
def db_path(tmp_path):
    return dbm.create_database(tmp_path / "db.db", creator="pycolmap")


def test_feature_pycolmap_reads_what_we_write(db_path) -> None:
    import pycolmap

    corr = _toy()
    with dbm.ColmapDatabase(db_path) as db, db.transaction():
        ids = dbm.add_images(db, corr.names, corr.image_sizes, {"camera_model": "PINHOLE"})
        dbm.write_correspondences(db, corr, two_view_geometries=True)
    # swap the order on purpose: pair ids are symmetric and the columns follow the order asked for
    with pycolmap.Database.open(str(db_path)) as db:
        assert {im.name: im.image_id for im in db.read_all_images()} == ids
        for name in corr.names:
            np.testing.assert_allclose(db.read_keypoints(ids[name])[:, :2], corr.keypoints[name] + 0.5, atol=1e-6)
            camera = db.read_camera(db.read_image(ids[name]).camera_id)
            assert (camera.model.name, camera.width, camera.height) == ("PINHOLE", 60, 40)
            np.testing.assert_allclose(camera.params, [72, 72, 30, 20])
        for (a, b), pairs in corr.matches.items():
            np.testing.assert_array_equal(db.read_matches(ids[a], ids[b]), pairs)
            np.testing.assert_array_equal(db.read_matches(ids[b], ids[a]), pairs[:, ::-1])
            tvg = db.read_two_view_geometry(ids[a], ids[b])
            np.testing.assert_array_equal(tvg.inlier_matches, pairs)
            assert int(tvg.config) == 3  # UNCALIBRATED
    columns = {row[1] for row in sqlite3.connect(db_path).execute("PRAGMA table_info(images)")}
    assert set(dbm.PRIOR_COLUMNS) <= columns  # COLMAP 3.8 prepares statements with these


def test_feature_pair_id_and_swapped_writes(db_path) -> None:
    assert dbm.image_pair_to_pair_id(2, 1) == dbm.image_pair_to_pair_id(1, 2) == 2147483647 + 2
    assert dbm.pair_id_to_image_pair(2147483647 * 3 + 7) == (3, 7)
    corr = _toy(2)
    with dbm.ColmapDatabase(db_path) as db:
        ids = dbm.add_images(db, corr.names, corr.image_sizes)
        for name in corr.names:
            db.write_keypoints(ids[name], corr.keypoints[name] + 0.5)
        db.write_matches(ids["im1.png"], ids["im0.png"], np.array([[6, 0], [5, 1]]))
        np.testing.assert_array_equal(db.read_matches(ids["im0.png"], ids["im1.png"]), [[0, 6], [1, 5]])
        np.testing.assert_array_equal(db.read_matches(ids["im1.png"], ids["im0.png"]), [[6, 0], [5, 1]])


def test_exception_rollback_leaves_database_unchanged(db_path) -> None:
    corr = _toy()
    with dbm.ColmapDatabase(db_path) as db:
        dbm.add_images(db, corr.names, corr.image_sizes)
        before = db.counts()
        with pytest.raises(RuntimeError, match="killed"), db.transaction():
            dbm.write_correspondences(db, corr)
            assert db.counts()["matches"] == 3
            raise RuntimeError("killed")
        assert db.counts() == before
        bad = Correspondences(dict(corr.keypoints), dict(corr.image_sizes), dict(corr.matches))
        bad.matches[("im1.png", "im2.png")] = np.array([[0, 99]])  # out of range: found after other writes
        with pytest.raises(ValueError, match="out of range"):
            dbm.write_correspondences(db, bad)
        assert db.counts() == before


def test_exception_bad_input(db_path, tmp_path) -> None:
    corr = _toy()
    with dbm.ColmapDatabase(db_path) as db:
        with pytest.raises(ValueError, match="duplicate image names"):
            dbm.add_images(db, ["a.png", "a.png"], {"a.png": (4, 4)})
        ids = dbm.add_images(db, corr.names[:2], corr.image_sizes)
        with pytest.raises(ValueError, match="already in"):
            db.add_image("im0.png", 1)
        with pytest.raises(KeyError, match=r"missing from .*im2\.png"):  # image names missing from the DB
            dbm.write_correspondences(db, corr)
        assert db.counts()["keypoints"] == 0
        with pytest.raises(ValueError, match="outside"):
            db.write_keypoints(ids["im0.png"], np.array([[61.0, 3.0]]))
        with pytest.raises(ValueError, match=r"unknown to COLMAP 3\.8"):
            db.add_camera("EQUIRECTANGULAR", 10, 10, [1.0])
        with pytest.raises(ValueError, match="takes 4 parameters"):
            db.add_camera("PINHOLE", 10, 10, [1.0])
    shrunk = Correspondences(corr.keypoints, dict.fromkeys(corr.names, (40, 60)), corr.matches)
    other = dbm.create_database(tmp_path / "other.db")
    with dbm.ColmapDatabase(other) as db:
        dbm.add_images(db, corr.names, dict.fromkeys(corr.names, (80, 120)))
        with pytest.raises(ValueError, match="inconsistent image sizes"):
            dbm.write_correspondences(db, shrunk)
        assert db.counts()["keypoints"] == 0
    with pytest.raises(FileExistsError):
        dbm.create_database(db_path)
    (tmp_path / "plain.db").write_bytes(b"")
    with pytest.raises(ValueError, match="not a COLMAP database"):
        dbm.ColmapDatabase(tmp_path / "plain.db")


def test_exception_locked_database(db_path) -> None:
    corr = _toy(2)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with dbm.ColmapDatabase(db_path, timeout=0.2) as db, pytest.raises(dbm.DatabaseLockedError, match="locked"):
            dbm.add_images(db, corr.names, corr.image_sizes)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    with dbm.ColmapDatabase(db_path) as db:  # released: the same write now succeeds
        assert len(dbm.add_images(db, corr.names, corr.image_sizes)) == 2


@requires_colmap
def test_feature_colmap38_maps_our_database(tmp_path, dense_correspondences, scene_dir) -> None:
    """A database we write (pycolmap-4.2.1 schema + prior columns), opened and mapped by Debian's COLMAP 3.8."""
    from gim_plugins.colmap_ext.exporters import export
    from gim_plugins.colmap_ext.model import read_text_model

    db_path = export("colmap-db", dense_correspondences, tmp_path / "db.db", two_view_geometries=True)
    out = tmp_path / "sparse"
    out.mkdir()
    subprocess.run(["colmap", "mapper", "--database_path", str(db_path), "--image_path", str(scene_dir),
                    "--output_path", str(out), "--Mapper.num_threads", "2", "--Mapper.multiple_models", "0",
                    # the relaxed thresholds of gim reconstruct's default mapper conf
                    "--Mapper.init_min_num_inliers", "50", "--Mapper.abs_pose_min_num_inliers", "15",
                    "--Mapper.abs_pose_min_inlier_ratio", "0.1"],
                   check=True, capture_output=True)
    subprocess.run(["colmap", "model_converter", "--input_path", str(out / "0"), "--output_path", str(out / "0"),
                    "--output_type", "TXT"], check=True, capture_output=True)
    model = read_text_model(out / "0")
    assert len(model.images) == len(dense_correspondences.names)


def test_feature_set_camera_round_trip(db_path) -> None:
    """Cameras read back as written; ``set_camera`` replaces parameters and prior flag, keeps model and size."""
    with dbm.ColmapDatabase(db_path) as db:
        first = db.add_camera("SIMPLE_RADIAL", 60, 40, [500.0, 30.0, 20.0, 0.0], prior_focal_length=True)
        second = db.add_camera("PINHOLE", 80, 50, [90.0, 91.0, 40.0, 25.0])
        db.set_camera(first, [72.0, 30.0, 20.0, 0.01], prior_focal_length=False)
        cameras = db.cameras()
        assert cameras.keys() == {first, second}
        model, width, height, params, prior = cameras[first]
        assert (model, width, height, prior) == (dbm.CAMERA_MODELS["SIMPLE_RADIAL"][0], 60, 40, False)
        np.testing.assert_array_equal(params, [72.0, 30.0, 20.0, 0.01])
        np.testing.assert_array_equal(cameras[second][3], [90.0, 91.0, 40.0, 25.0])
        with pytest.raises(ValueError, match="takes 4 parameters, got 3"):
            db.set_camera(second, [1.0, 2.0, 3.0], prior_focal_length=False)
        with pytest.raises(KeyError, match="camera 99"):
            db.set_camera(99, [1.0, 2.0, 3.0, 0.0], prior_focal_length=False)
        np.testing.assert_array_equal(db.cameras()[second][3], [90.0, 91.0, 40.0, 25.0])  # unchanged
