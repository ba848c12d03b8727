"""Exporters: feature_importer / matches_importer text files, hloc's HDF5 layout, the entry-point registry, and the
text files imported and mapped by Debian's COLMAP 3.8."""

from __future__ import annotations

import subprocess

import h5py
import numpy as np
import pytest
from colmap_helpers import requires_colmap

from gim_plugins import h5io
from gim_plugins.colmap_ext import exporters
from gim_plugins.colmap_ext.correspondences import Correspondences
from gim_plugins.colmap_ext.text_export import write_feature_files, write_match_list


def _toy() -> Correspondences:
    keypoints = {"a.png": np.array([[0.0, 0.0], [9.5, 4.5]], np.float32),
                 "sub/b.png": np.array([[1.25, 2.0], [3.0, 4.0], [5.0, 1.0]], np.float32)}
    matches = {("a.png", "sub/b.png"): np.array([[0, 2], [1, 0]])}
    return Correspondences(keypoints, {"a.png": (5, 10), "sub/b.png": (5, 10)}, matches,
                           {"a.png": np.array([1.0, 2.0], np.float32), "sub/b.png": np.ones(3, np.float32)},
                           {("a.png", "sub/b.png"): np.array([0.5, 0.25], np.float32)})


def test_feature_feature_importer_files(tmp_path) -> None:
    out = write_feature_files(_toy(), tmp_path / "features")
    lines = (out / "sub" / "b.png.txt").read_text().splitlines()  # subfolders mirrored
    assert lines[0] == "3 128"
    values = lines[1].split()
    assert len(values) == 4 + 128 and values[4:] == ["0"] * 128
    assert [float(v) for v in values[:4]] == [1.75, 2.5, 1.0, 0.0]  # +0.5: COLMAP's corner convention
    assert (out / "a.png.txt").read_text().splitlines()[1].split()[:2] == ["0.5000", "0.5000"]


def test_feature_match_list(tmp_path) -> None:
    path = write_match_list(_toy(), tmp_path / "matches.txt", known_names=["a.png", "sub/b.png"])
    assert path.read_text() == "a.png sub/b.png\n0 2\n1 0\n\n"


def test_exception_match_list_refuses_unknown_names(tmp_path) -> None:
    with pytest.raises(KeyError, match=r"missing from the database: \['sub/b.png'\]"):
        write_match_list(_toy(), tmp_path / "matches.txt", known_names=["a.png"])
    assert not (tmp_path / "matches.txt").exists()  # nothing half-written for COLMAP to stop in
    empty = _toy()
    empty.matches[("a.png", "sub/b.png")] = np.zeros((0, 2), np.int64)
    assert write_match_list(empty, tmp_path / "m.txt").read_text() == ""  # empty match sets are left out
    bad = _toy()
    bad.keypoints["a.png"] = np.array([[20.0, 0.0], [1.0, 1.0]], np.float32)
    with pytest.raises(ValueError, match="outside"):
        write_feature_files(bad, tmp_path / "f")


def test_feature_hloc_h5_layout(tmp_path) -> None:
    corr = _toy()
    out = exporters.export("hloc-h5", corr, tmp_path / "hloc")
    with h5py.File(out / "features.h5", "r") as handle:
        assert handle["sub"]["b.png"]["keypoints"].dtype == np.float32  # not hloc's lossy float16
        assert handle["sub"]["b.png"]["image_size"][()].tolist() == [10, 5]
    np.testing.assert_array_equal(h5io.read_keypoints(out / "features.h5", "sub/b.png"), corr.keypoints["sub/b.png"])
    matches, scores = h5io.read_matches(out / "matches.h5", "sub/b.png", "a.png")
    np.testing.assert_array_equal(matches, [[2, 0], [0, 1]])  # stored as (a, b): read reversed
    np.testing.assert_allclose(scores, [0.5, 0.25])
    dense = Correspondences(corr.keypoints, corr.image_sizes, corr.matches, dense=True)
    out = exporters.export("hloc-h5", dense, tmp_path / "dense")
    with h5py.File(out / "features.h5", "r") as handle:
        assert handle["a.png"]["keypoints"].dtype == np.float32 and "image_size" not in handle["a.png"]
    with h5py.File(out / "matches.h5", "r") as handle:
        assert handle["a.png"]["sub-b.png"]["matches0"].dtype == np.int32


def test_feature_hloc_h5_roundtrip(tmp_path, dense_correspondences) -> None:
    """What the hloc-h5 exporter writes, colmap_ext reads back through the core (gim_plugins.h5io), no hloc."""
    from gim_plugins.colmap_ext.correspondences import from_hloc_h5

    for corr, dense in ((_toy(), False), (dense_correspondences, True)):
        out = exporters.export("hloc-h5", corr, tmp_path / f"hloc{dense}")
        back = from_hloc_h5(out / "features.h5", out / "matches.h5", list(corr.matches),
                            image_sizes=corr.image_sizes if dense else None)
        assert back.image_sizes == corr.image_sizes
        for name in corr.names:
            np.testing.assert_array_equal(back.keypoints[name], corr.keypoints[name])
        for pair, pairs in corr.matches.items():
            np.testing.assert_array_equal(back.matches[pair][np.argsort(back.matches[pair][:, 0])],
                                          pairs[np.argsort(pairs[:, 0])])
    with pytest.raises(KeyError, match="image_size"):
        from_hloc_h5(tmp_path / "hlocTrue" / "features.h5", tmp_path / "hlocTrue" / "matches.h5",
                     list(dense_correspondences.matches))


def test_feature_registry() -> None:
    assert {"colmap-db", "colmap-text", "hloc-h5"} <= set(exporters.list_exporters())
    assert exporters.get_exporter("colmap-text") is exporters.export_colmap_text
    with pytest.raises(KeyError, match="unknown exporter 'ply'"):
        exporters.get_exporter("ply")


@requires_colmap
def test_feature_colmap38_imports_and_maps_text_exports(tmp_path, dense_correspondences, scene_dir) -> None:
    """database_creator → feature_importer → matches_importer raw → mapper, all by COLMAP 3.8, on our text files."""
    from gim_plugins.colmap_ext.database import ColmapDatabase
    from gim_plugins.colmap_ext.model import read_text_model

    text = exporters.export("colmap-text", dense_correspondences, tmp_path / "text")
    db = tmp_path / "db.db"
    (tmp_path / "list.txt").write_text("\n".join(dense_correspondences.names) + "\n")

    def colmap(*args: str) -> None:
        subprocess.run(["colmap", *args], check=True, capture_output=True, text=True)

    colmap("database_creator", "--database_path", str(db))
    colmap("feature_importer", "--database_path", str(db), "--image_path", str(scene_dir), "--import_path",
           str(text / "features"), "--image_list_path", str(tmp_path / "list.txt"))
    colmap("matches_importer", "--database_path", str(db), "--match_list_path", str(text / "matches.txt"),
           "--match_type", "raw", "--SiftMatching.use_gpu", "0", "--SiftMatching.min_inlier_ratio", "0.1")
    with ColmapDatabase(db) as handle:
        ids = handle.image_ids()
        assert sorted(ids) == dense_correspondences.names
        for name in dense_correspondences.names:
            np.testing.assert_allclose(handle.read_keypoints(ids[name])[:, :2],
                                       dense_correspondences.keypoints[name] + 0.5, atol=1e-4)
        assert len(handle.verified_pairs()) == len(dense_correspondences.matches)
    out = tmp_path / "sparse"
    out.mkdir()
    colmap("mapper", "--database_path", str(db), "--image_path", str(scene_dir), "--output_path", str(out),
           "--Mapper.num_threads", "2", "--Mapper.multiple_models", "0", "--Mapper.init_min_num_inliers", "50",
           "--Mapper.abs_pose_min_num_inliers", "15", "--Mapper.abs_pose_min_inlier_ratio", "0.1")
    colmap("model_converter", "--input_path", str(out / "0"), "--output_path", str(out / "0"), "--output_type", "TXT")
    assert len(read_text_model(out / "0").images) == len(dense_correspondences.names)
