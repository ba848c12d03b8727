"""``gim reconstruct`` end to end on the rendered motorcycle scene: registration and camera accuracy through both
engines, dense matches through the track step (and what happens without it), resuming, bad input, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from colmap_helpers import requires_colmap, requires_pycolmap

from gim_plugins import reconstruct
from gim_plugins.colmap_ext.model import camera_centre_errors, read_text_model
from gim_plugins.colmap_ext.store import MatchStore
from gim_plugins.conf import ConfError
from gim_plugins.datasets import scene
from gim_plugins.reconstruct import database, match

pytestmark = requires_pycolmap
HELPERS = Path(__file__).resolve().parents[1] / "colmap_ext"  # colmap_helpers.py, for the subprocess


def _accuracy(summary_path: Path, views: list[scene.SceneView]) -> dict[str, float]:
    summary = json.loads(summary_path.read_text())
    model = read_text_model(summary["model"])
    errors = camera_centre_errors(model, {v.name: v.center for v in views})
    return {**summary, "centre_error_median": errors["median"], "centre_error_max": errors["max"],
            "extent": scene.scene_extent()}


def _requires_aliked() -> None:
    from gim_plugins.matching import weights_available

    if not weights_available("aliked_lightglue"):
        pytest.skip("aliked_lightglue weights are not installed (`gim weights fetch aliked_lightglue`)")


def _check_sparse(result: dict[str, float], num_views: int) -> None:
    assert result["registered"] == result["images"] == num_views  # 100 % of the views
    assert result["centre_error_median"] < 0.01 * result["extent"]  # < 1 % of the scene extent after Sim3
    assert result["mean_reprojection_error"] < 1.5 and result["mean_track_length"] > 3
    assert not result["warnings"]


@requires_colmap
def test_feature_sparse_registers_all_views_through_both_engines(scene_dir, scene_views, tmp_path) -> None:
    """aliked_lightglue (1024 keypoints, to keep the default suite fast) on 8 views (sequential:2, 13 pairs): each
    image extracted once; pycolmap, then the colmap program on the same output folder (the second run reuses every
    match and feature). The full-size run is the slow test below."""
    _requires_aliked()
    paths = {"images": scene_dir, "out": tmp_path / "out"}
    conf = {"matcher": "aliked_lightglue", "matcher_conf": {"max_keypoints": 1024}, "pairs": "sequential:2",
            "progress": False}
    result = _accuracy(reconstruct.main({**conf, "engine": "pycolmap"}, paths), scene_views)
    _check_sparse(result, 8)
    assert result["match"]["extracted_now"] == 8 and result["match"]["matched_now"] == 13  # one extraction/image
    result = _accuracy(reconstruct.main({**conf, "engine": "colmap"}, paths), scene_views)
    _check_sparse(result, 8)
    assert result["engine"] == "colmap"
    assert result["match"]["extracted_now"] == 0 and result["match"]["matched_now"] == 0  # resumed, nothing redone


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["pycolmap", "colmap"])
def test_feature_sparse_full_scene(scene14_dir, scene14_views, tmp_path_factory, engine) -> None:
    """The full 14-view scene, exhaustive pairs (91), both engines."""
    _requires_aliked()
    if engine == "colmap" and not __import__("shutil").which("colmap"):
        pytest.skip("the colmap program is not on PATH")
    out = tmp_path_factory.getbasetemp() / "sparse14"  # shared: the colmap run reuses the pycolmap run's matches
    result = _accuracy(reconstruct.main({"matcher": "aliked_lightglue", "engine": engine, "progress": False},
                                        {"images": scene14_dir, "out": out}), scene14_views)
    print({k: result[k] for k in ("registered", "images", "points", "mean_track_length", "mean_reprojection_error",
                                  "centre_error_median", "centre_error_max")})
    _check_sparse(result, 14)


def _dense_run(images: Path, out: Path, views: list[scene.SceneView], mode: str) -> dict[str, float]:
    summary = reconstruct.main({"matcher": "gt_dense", "tracks": {"mode": mode}, "progress": False},
                               {"images": images, "out": out})
    result = json.loads(summary.read_text())
    if result["registered"] >= 3:
        result = _accuracy(summary, views)
    return result


def test_feature_dense_matches_register_all_views_with_tracks(gt_dense, scene_dir, scene_views, tmp_path) -> None:
    """Dense ground-truth matches (pair-specific sub-pixel points, 0.5 px noise, 5 % outliers) of 8 views: with
    the track step all views register with mean track length >= 3; without it the mapper finds no initial pair."""
    merged = _dense_run(scene_dir, tmp_path / "out", scene_views, "merge")
    assert merged["registered"] == merged["images"] == 8
    assert merged["mean_track_length"] >= 3.0
    assert merged["centre_error_median"] < 0.01 * merged["extent"]
    naive = _dense_run(scene_dir, tmp_path / "out", scene_views, "none")  # same matches, rebuilt database
    assert naive["match"]["matched_now"] == 0
    assert naive["database"]["correspondences"]["mean_track_length"] == 2.0
    assert naive["registered"] < 4 and naive["warnings"]  # fewer than half: the warning is in the summary


@pytest.mark.slow
def test_feature_dense_full_scene(gt_dense, scene14_dir, scene14_views, tmp_path) -> None:
    merged = _dense_run(scene14_dir, tmp_path / "out", scene14_views, "merge")
    naive = _dense_run(scene14_dir, tmp_path / "out", scene14_views, "none")
    print({k: merged[k] for k in ("registered", "points", "mean_track_length", "mean_reprojection_error",
                                  "centre_error_median")}, {k: naive[k] for k in ("registered", "points")})
    assert merged["registered"] == 14 and merged["mean_track_length"] >= 3.0
    assert merged["centre_error_median"] < 0.01 * merged["extent"]
    assert naive["registered"] < 7


def test_feature_killed_run_resumes(gt_dense, scene_dir, tmp_path) -> None:
    """SIGKILL in the middle of matching (5th pair of 10): the stored pairs survive, the rerun matches only the
    rest and completes."""
    out = tmp_path / "out"
    pairs = tmp_path / "pairs.txt"
    names = ["left.png", "render_00.png", "render_01.png", "render_02.png", "right.png"]
    pairs.write_text("".join(f"{a} {b}\n" for i, a in enumerate(names) for b in names[i + 1:]))
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from colmap_helpers import GroundTruthDense\n"
        "from gim_plugins.datasets import scene\n"
        "from gim_plugins.registry import register_matcher\n"
        "from gim_plugins import reconstruct\n"
        "GroundTruthDense.register_views(scene.render_motorcycle_scene(6, seed=0))\n"
        "register_matcher('gt_dense', GroundTruthDense)\n"
        "reconstruct.main({'matcher': 'gt_dense', 'pairs': sys.argv[2], 'progress': False},"
        " {'images': sys.argv[3], 'out': sys.argv[4]})\n")
    env = {**os.environ, "GIM_TEST_KILL_AFTER": "5"}
    done = subprocess.run([sys.executable, "-c", script, str(HELPERS), str(pairs), str(scene_dir), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == -9, done.stderr[-2000:]  # killed, not a Python error
    with MatchStore(out / "matches.sqlite", _gt_fingerprint()) as store:
        assert len(store) == 4  # pairs 1-4 committed; the 5th was in flight
    assert not (out / "database.db").exists()
    summary = json.loads(reconstruct.main({"matcher": "gt_dense", "pairs": str(pairs), "progress": False},
                                          {"images": scene_dir, "out": out}).read_text())
    assert summary["match"]["matched_now"] == 6 and summary["database"]["verified_pairs"] == 10
    assert summary["registered"] == 5


def _gt_fingerprint() -> str:
    from gim_plugins.matching import load_matcher

    return match.fingerprint(load_matcher("gt_dense"))


def test_exception_bad_input(gt_dense, scene_dir, tmp_path) -> None:
    paths = {"images": scene_dir, "out": tmp_path / "out"}
    with pytest.raises(ConfError, match="unknown option 'pair'"):
        reconstruct.main({"pair": "exhaustive"}, paths)
    with pytest.raises(ValueError, match="engine"):
        reconstruct.main({"engine": "glomap"}, paths)
    with pytest.raises(FileNotFoundError, match="no images"):
        reconstruct.main({"matcher": "gt_dense"}, {"images": tmp_path, "out": tmp_path / "o"})
    bad_pairs = tmp_path / "bad_pairs.txt"
    bad_pairs.write_text("left.png missing.png\n")
    with pytest.raises(KeyError, match=r"missing\.png"):
        match.main({"matcher": "gt_dense", "pairs": str(bad_pairs)}, paths)
    # empty match sets: every pair below min_matches -> a clear error, nothing written
    conf = {"matcher": "gt_dense", "pairs": "sequential:1", "progress": False, "min_matches": 10 ** 6}
    match.main(conf, paths)
    with pytest.raises(ValueError, match="no pair has at least"):
        database.main(conf, paths)
    assert not (tmp_path / "out" / "database.db").exists()
    # the store refuses matches of another configuration
    with pytest.raises(ValueError, match="another matcher or configuration"):
        match.main({**conf, "matcher_conf": {"noise": 1.0}}, paths)
    # a second process on the same folder
    with reconstruct.output_lock(tmp_path / "out"), pytest.raises(RuntimeError, match="in use"):
        reconstruct.main(conf, paths)


def test_exception_image_changed_after_matching(gt_dense, scene_views, tmp_path) -> None:
    images = tmp_path / "images"
    scene.write_scene(scene_views[:3], images)
    conf = {"matcher": "gt_dense", "pairs": "sequential:1", "progress": False}
    match.main(conf, {"images": images, "out": tmp_path / "out"})
    import cv2

    cv2.imwrite(str(images / "render_00.png"), np.zeros((100, 120, 3), np.uint8))  # inconsistent size now
    with pytest.raises(ValueError, match="changed since it was matched"):
        database.main(conf, {"images": images, "out": tmp_path / "out"})


def test_smoke_cli(gt_dense, scene_dir, tmp_path, capsys) -> None:
    from gim_plugins.cli import main

    names = ["left.png", "render_00.png", "render_01.png", "render_02.png"]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{a} {b}\n" for i, a in enumerate(names) for b in names[i + 1:]))
    args = ["reconstruct", str(scene_dir), "--matcher", "gt_dense", "--pairs", str(pairs), "--out",
            str(tmp_path / "out"), "--no-progress", "--export", "hloc-h5", "--export", "colmap-text"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "images: 4, registered: 4 (100 %)" in printed
    assert (tmp_path / "out" / "exports" / "hloc-h5" / "matches.h5").is_file()
    assert (tmp_path / "out" / "exports" / "colmap-text" / "features" / "left.png.txt").is_file()
    assert main(args) == 0  # rerun: everything is up to date
    assert "matched now: 0" in capsys.readouterr().out
    assert main(["reconstruct", str(tmp_path / "nothing"), "--matcher", "gt_dense"]) == 2
    assert "image folder not found" in capsys.readouterr().err


def test_exception_corrupt_feature_cache_is_replaced(scene_views, tmp_path) -> None:
    """A features.h5 left unreadable (e.g. killed mid-write) is moved aside and features are extracted again."""
    images = tmp_path / "images"
    scene.write_scene([scene_views[0], scene_views[-1]], images)
    conf = {"matcher": "root_sift", "matcher_conf": {"max_keypoints": 500}, "pairs": "exhaustive",
            "progress": False}
    paths = {"images": images, "out": tmp_path / "out"}
    match.main(conf, paths)
    report = json.loads((tmp_path / "out" / "match.json").read_text())
    assert report["extracted_now"] == 2 and report["matched_now"] == 1
    (tmp_path / "out" / "features.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    match.main(conf, paths)
    report = json.loads((tmp_path / "out" / "match.json").read_text())
    assert report["extracted_now"] == 2 and report["matched_now"] == 0  # features again; the match was kept
    assert len(list((tmp_path / "out").glob("features.h5.corrupt-*"))) == 1
    corr = reconstruct.load_correspondences(conf, paths)
    assert len(corr.matches[("left.png", "right.png")]) > 100


def _photos_with_exif(scene_dir: Path, out: Path, focal_35mm: int) -> Path:
    """The scene's views as JPEG photos whose EXIF tags state a 35 mm-equivalent focal length (as a camera writes
    them; a wrong one, as on photos cropped or resized after capture)."""
    from PIL import Image

    out.mkdir(parents=True)
    for path in sorted(scene_dir.glob("*.png")):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Canon", "Canon EOS 5D"  # Make, Model
        exif.get_ifd(0x8769).update({0xA405: focal_35mm, 0x920A: (focal_35mm, 1)})  # FocalLengthIn35mmFilm, mm
        with Image.open(path) as image:
            image.convert("RGB").save(out / f"{path.stem}.jpg", format="JPEG", quality=95, exif=exif)
    return out


def _cameras_by_image(db_path: Path) -> dict[str, tuple[np.ndarray, bool]]:
    from gim_plugins.colmap_ext.database import ColmapDatabase

    with ColmapDatabase(db_path) as db:
        cameras = db.cameras()
        return {name: (cameras[db.camera_of(image_id)[0]][3], cameras[db.camera_of(image_id)[0]][4])
                for name, image_id in db.image_ids().items()}


@requires_colmap
@pytest.mark.parametrize("matcher", ["root_sift", "aliked_lightglue"])
def test_feature_engines_agree_on_photos_with_exif_focal_length(matcher, scene_dir, scene_views, tmp_path) -> None:
    """Real-photo views (the Middlebury motorcycle scene) saved as JPEGs with a misleading EXIF focal length, both
    offline matchers, both engines on one output folder: the same cameras (no EXIF prior: the colmap program's
    importer used to take one, so its verification fitted essential matrices with a focal length half the real one
    and kept different, more inliers than pycolmap), nearly the same inliers, every view registered accurately."""
    if matcher == "aliked_lightglue":
        _requires_aliked()
    images = _photos_with_exif(scene_dir, tmp_path / "photos", focal_35mm=24)  # ≈ 508 px; the real one is 995 px
    truth = {f"{Path(v.name).stem}.jpg": v.center for v in scene_views}
    conf = {"matcher": matcher, "matcher_conf": {"max_keypoints": 1024}, "pairs": "sequential:2", "progress": False}
    paths = {"images": images, "out": tmp_path / "out"}
    runs = {}
    for engine in ("pycolmap", "colmap"):
        summary = json.loads(reconstruct.main({**conf, "engine": engine}, paths).read_text())
        cameras = _cameras_by_image(tmp_path / "out" / "database.db")
        errors = camera_centre_errors(read_text_model(summary["model"]), truth)
        runs[engine] = (summary, cameras, errors)
    (py, py_cameras, py_errors), (cm, cm_cameras, cm_errors) = runs["pycolmap"], runs["colmap"]
    assert py_cameras.keys() == cm_cameras.keys() == truth.keys()
    for name, (params, prior) in cm_cameras.items():
        assert not prior and not py_cameras[name][1]
        np.testing.assert_allclose(params, py_cameras[name][0])  # 1.2·max(W, H), centre, no distortion
    assert cm["match"]["extracted_now"] == 0 and cm["match"]["matched_now"] == 0  # same matches for both
    assert py["database"]["verified_pairs"] == cm["database"]["verified_pairs"] == 13
    assert abs(cm["database"]["mean_inliers"] / py["database"]["mean_inliers"] - 1) < 0.02
    for summary, errors in ((py, py_errors), (cm, cm_errors)):
        assert summary["registered"] == summary["images"] == 8
        assert errors["median"] < 0.01 * scene.scene_extent()
