"""``gim reconstruct --dense`` on the rendered motorcycle scene: accuracy and completeness against the true surface
with ground-truth dense correspondences on the exact model, the consistency filter's effect on outliers, resuming,
the choice of method and its errors, the command line, and real photos end to end (sparse → dense → page)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from colmap_helpers import requires_pycolmap
from dense_helpers import align_model, cloud_accuracy, write_truth_model

from gim_plugins.colmap_ext import mvs
from gim_plugins.colmap_ext.ply import read_ply
from gim_plugins.conf import ConfError
from gim_plugins.errors import UserError
from gim_plugins.reconstruct import dense

GT = {"matcher": "gt_dense", "method": "triangulate", "progress": False}


@pytest.fixture
def exact(scene_dir, scene_views, tmp_path) -> dict[str, Path]:
    """An output folder whose ``sparse/0`` is the exact model of the 8 views."""
    write_truth_model(scene_views, tmp_path / "out" / "sparse" / "0")
    return {"images": scene_dir, "out": tmp_path / "out"}


def _summary(ply: Path) -> dict:
    return json.loads((ply.parent / "summary.json").read_text())


def test_feature_ground_truth_correspondences_give_an_accurate_complete_cloud(gt_dense, exact) -> None:
    """8 views, exact cameras, 5000 ground-truth correspondences per pair (0.5 px noise, 5 % outliers): the fused
    cloud lies on the true surface (median < 1 cm, 90 % < 3 cm; the scene is 4.3 m) and covers half of it."""
    ply = dense.main({**GT, "matcher_conf": {"num_matches": 5000}}, exact)
    summary = _summary(ply)
    cloud = read_ply(ply)
    accuracy = cloud_accuracy(cloud.xyz)
    print({k: round(v, 4) for k, v in accuracy.items()}, summary["fused_points"])
    assert summary["images"] == summary["images_with_points"] == 8 and summary["pairs"] == 32
    assert summary["matches"] == 32 * 5000 and not summary["sparse_derived"] and not summary["warnings"]
    assert summary["fused_points"] == len(cloud) > 50_000
    assert cloud.rgb is not None and cloud.normals is not None
    assert accuracy["median_m"] < 0.01 and accuracy["p90_m"] < 0.03
    assert accuracy["completeness"] > 0.5
    # normals face the cameras (all of which look along +z)
    assert np.mean(cloud.normals[:, 2] < 0) > 0.9


def test_feature_consistency_removes_wrong_matches(gt_dense, exact) -> None:
    """With 30 % outliers and a lax reprojection limit, wrong matches near the epipolar lines survive triangulation;
    the multi-view check removes most of them: the share of points more than 5 cm off the surface falls 3×."""
    lax = {**GT, "matcher_conf": {"num_matches": 2000, "outliers": 0.3}, "max_reprojection_error": 20.0,
           "neighbours": 3}
    unchecked = cloud_accuracy(read_ply(dense.main({**lax, "min_consistent_views": 0}, exact)).xyz)
    checked_ply = dense.main({**lax, "min_consistent_views": 1}, exact)
    checked = cloud_accuracy(read_ply(checked_ply).xyz)
    assert _summary(checked_ply)["images_computed_now"] == 0  # only the fusion reran
    print(unchecked, checked)
    assert unchecked["far_share"] > 0.01  # the outliers are there without the check
    assert checked["far_share"] < unchecked["far_share"] / 3 and checked["points"] < unchecked["points"]


def test_feature_resume_recomputes_only_what_changed(gt_dense, exact) -> None:
    conf = {**GT, "matcher_conf": {"num_matches": 1000}, "neighbours": 2}
    ply = dense.main(conf, exact)
    first = _summary(ply)
    assert first["images_computed_now"] == 8
    stamp = ply.stat().st_mtime_ns
    dense.main(conf, exact)
    assert ply.stat().st_mtime_ns == stamp  # nothing to do: fused.ply untouched
    victim = sorted((exact["out"] / "dense" / "points").glob("left.png-*.npz"))
    assert len(victim) == 1
    victim[0].unlink()
    assert _summary(dense.main(conf, exact))["images_computed_now"] == 1
    assert _summary(dense.main({**conf, "voxel_px": 3.0}, exact))["images_computed_now"] == 0  # fusion only
    assert _summary(dense.main({**conf, "max_reprojection_error": 1.5}, exact))["images_computed_now"] == 8


def test_exception_choice_of_method(gt_dense, exact, tmp_path, monkeypatch) -> None:
    with pytest.raises(UserError, match="no sparse model"):
        dense.main(GT, {"images": exact["images"], "out": tmp_path / "empty"})
    with pytest.raises(ConfError, match="unknown option"):
        dense.main({**GT, "neighbors": 3}, exact)
    with pytest.raises(UserError, match="dense method"):
        dense.main({**GT, "method": "poisson"}, exact)
    no_cuda = {"pycolmap": "no CUDA here", "colmap": "built without CUDA"}
    monkeypatch.setattr(mvs, "unavailable", lambda engine, executable=None: no_cuda[engine])
    conf = dense.resolve_dense_conf({"method": "auto"})
    with pytest.raises(UserError, match=r"needs CUDA .* aliked_lightglue is a sparse matcher; use --dense-matcher"):
        dense.choose_method(conf, "aliked_lightglue")
    assert dense.choose_method(conf, "gt_dense") == ("triangulate", None)  # a dense matcher: triangulation
    with pytest.raises(UserError, match=r"COLMAP MVS cannot run here .*no CUDA here.*built without CUDA"):
        dense.choose_method(dense.resolve_dense_conf({"method": "mvs"}), "gt_dense")
    triangulate = dense.resolve_dense_conf({"method": "triangulate"})
    assert dense.choose_method(triangulate, "aliked_lightglue") == ("triangulate", None)  # sparse-derived, asked
    monkeypatch.setattr(mvs, "unavailable", lambda engine, executable=None: None if engine == "colmap" else "no")
    assert dense.choose_method(conf, "aliked_lightglue") == ("mvs", "colmap")  # CUDA first when it is there
    # two views cannot confirm a point by a third one: the message says what to change
    two = tmp_path / "two"
    write_truth_model(_two_views(), two / "sparse" / "0")
    with pytest.raises(UserError, match="min_consistent_views"):
        dense.main({**GT, "matcher_conf": {"num_matches": 500}}, {"images": exact["images"], "out": two})


def _two_views() -> list:
    from gim_plugins.datasets import scene

    views = scene.render_motorcycle_scene(6, seed=0)
    return [views[0], views[-1]]


@requires_pycolmap
def test_smoke_cli(gt_dense, scene_dir, tmp_path, capsys) -> None:
    """``gim reconstruct --dense triangulate`` then ``gim view`` on 4 views; a sparse matcher without CUDA is one
    line and exit 2 before anything runs."""
    from gim_plugins.cli import main

    out = tmp_path / "out"
    names = ["left.png", "render_00.png", "render_01.png", "render_02.png"]
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{a} {b}\n" for i, a in enumerate(names) for b in names[i + 1:]))
    args = ["reconstruct", str(scene_dir), "--matcher", "gt_dense", "--pairs", str(pairs), "--out", str(out),
            "--no-progress", "--dense", "triangulate", "--dense-conf", "neighbours=2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "registered: 4 (100 %)" in printed and "points by triangulate (gt_dense):" in printed
    assert read_ply(out / "dense" / "fused.ply").xyz.shape[0] > 1000
    assert _summary(out / "dense" / "fused.ply")["conf"]["neighbours"] == 2
    assert main(["view", str(out), "--max-points", "2000"]) == 0
    assert (out / "view.html").is_file() and (out / "view.png").is_file()
    capsys.readouterr()
    if mvs.unavailable("pycolmap") and mvs.unavailable("colmap"):
        assert main(["reconstruct", str(scene_dir), "--matcher", "root_sift", "--out", str(tmp_path / "o2"),
                     "--dense"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "root_sift is a sparse matcher" in err
        assert not (tmp_path / "o2").exists()
    assert main(["reconstruct", str(scene_dir), "--dense-matcher", "gt_dense"]) == 2
    assert "need --dense" in capsys.readouterr().err


@requires_pycolmap
def test_exception_dense_without_a_sparse_model(gt_dense, scene_views, tmp_path) -> None:
    """Two views with 20 matches: the mapping registers nothing, and ``--dense`` says so in one line (not "run
    without --dense first", which is the message of the dense step run on its own)."""
    from gim_plugins import reconstruct
    from gim_plugins.datasets import scene

    images = tmp_path / "images"
    scene.write_scene([scene_views[0], scene_views[-1]], images)
    conf = {"matcher": "gt_dense", "matcher_conf": {"num_matches": 20}, "progress": False}
    with pytest.raises(UserError, match=r"registered 0 images and made no model to densify") as error:
        reconstruct.main(conf, {"images": images, "out": tmp_path / "out"}, dense={"method": "triangulate"})
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out" / "dense").exists()


@pytest.mark.slow
@requires_pycolmap
def test_feature_real_photos_end_to_end(scene_views, tmp_path) -> None:
    """The two real Middlebury photos and two renders, aliked_lightglue: sparse model, sparse-derived dense cloud
    (triangulated matches), page and picture. After aligning the model to the scene, the dense cloud lies on the true
    surface as closely as the model's own sparse points do: its error is the model's (the estimated principal point
    is ≈60 px off the true one), the dense step adds none."""
    from gim_plugins import reconstruct
    from gim_plugins.colmap_ext.model import read_text_model
    from gim_plugins.datasets import scene
    from gim_plugins.matching import weights_available
    from gim_plugins.view import main as view

    if not weights_available("aliked_lightglue"):
        pytest.skip("aliked_lightglue weights are not installed (`gim weights fetch aliked_lightglue`)")
    chosen = [v for v in scene_views if v.name in ("left.png", "render_01.png", "render_04.png", "right.png")]
    images = tmp_path / "images"
    scene.write_scene(chosen, images)
    out = tmp_path / "out"
    conf = {"matcher": "aliked_lightglue", "matcher_conf": {"max_keypoints": 1024}, "progress": False}
    summary = json.loads(reconstruct.main(conf, {"images": images, "out": out},
                                          dense={"method": "triangulate"}).read_text())
    assert summary["registered"] == 4
    ply = out / "dense" / "fused.ply"
    record = _summary(ply)
    assert record["sparse_derived"] and "sparse-derived" in record["warnings"][0]
    assert not (out / "dense" / "features.h5").exists()  # the reconstruction's features were reused
    s, R, t = align_model(out / "sparse" / "0", chosen)
    cloud = read_ply(ply)
    accuracy = cloud_accuracy(s * cloud.xyz.astype(np.float64) @ R.T + t)
    sparse = cloud_accuracy(s * read_text_model(out / "sparse" / "0").points @ R.T + t)
    print({k: round(v, 4) for k, v in accuracy.items()}, {k: round(v, 4) for k, v in sparse.items()})
    assert accuracy["points"] > 300 and accuracy["points"] > 1.5 * sparse["points"]
    assert accuracy["median_m"] < 1.25 * sparse["median_m"] and accuracy["median_share"] < 0.03
    page = view(None, {"out": out})
    assert f'"n":{len(cloud)}' in page.read_text().replace(" ", "")
    shutil.rmtree(out / "dense" / "points")  # the page and cloud do not need the per-image files
    assert view({"png": False}, {"out": out}) == page
