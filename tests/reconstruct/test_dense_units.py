"""The dense step's parts on exact data: PLY files, COLMAP camera models, triangulation and its filters, depth maps,
the consistency check, voxel merge, normals, neighbour ranking, the dense-warp reader, and COLMAP MVS driven through
a stand-in colmap program (the real one needs CUDA)."""

from __future__ import annotations

import json
import stat
import sys
from typing import ClassVar

import numpy as np
import pytest
import torch
from dense_helpers import write_truth_model

from gim_plugins.colmap_ext import mvs
from gim_plugins.colmap_ext.cameras import CameraModel
from gim_plugins.colmap_ext.model import read_text_model
from gim_plugins.colmap_ext.ply import PointCloud, read_ply, write_ply
from gim_plugins.reconstruct.dense_fuse import consistent_views, depth_map, estimate_normals, voxel_merge
from gim_plugins.reconstruct.dense_triangulate import ImagePoints, triangulate_pair
from gim_plugins.reconstruct.dense_views import View, rank_neighbours, views_of

# ----------------------------------------------------------------------------------------------------------- PLY


def test_feature_ply_round_trip_binary_and_ascii(tmp_path) -> None:
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(500, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (500, 3), dtype=np.uint8)
    normals = rng.normal(size=(500, 3)).astype(np.float32)
    write_ply(tmp_path / "full.ply", PointCloud(xyz, rgb, normals))
    back = read_ply(tmp_path / "full.ply")
    assert np.array_equal(back.xyz, xyz) and np.array_equal(back.rgb, rgb) and np.array_equal(back.normals, normals)
    header = (tmp_path / "full.ply").read_bytes().split(b"end_header\n")[0].decode()
    assert "binary_little_endian" in header and header.index("nx") < header.index("red")  # COLMAP's order
    write_ply(tmp_path / "xyz.ply", PointCloud(xyz))
    only = read_ply(tmp_path / "xyz.ply")
    assert only.rgb is None and only.normals is None and np.array_equal(only.xyz, xyz)
    (tmp_path / "ascii.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty double x\n"
                                        "property double y\nproperty double z\nproperty uchar red\n"
                                        "property uchar green\n"
                                        "property uchar blue\nproperty float quality\nelement face 0\n"
                                        "property list uchar int vertex_indices\nend_header\n"
                                        "1 2 3 255 0 0 0.5\n4 5 6 0 255 0 0.7\n")
    ascii_cloud = read_ply(tmp_path / "ascii.ply")
    assert np.allclose(ascii_cloud.xyz, [[1, 2, 3], [4, 5, 6]]) and ascii_cloud.rgb.tolist() == [[255, 0, 0],
                                                                                                  [0, 255, 0]]
    big = np.array([(1.0, 2.0, 3.0)], dtype=[("x", ">f8"), ("y", ">f8"), ("z", ">f8")])
    (tmp_path / "big.ply").write_bytes(b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty double x\n"
                                       b"property double y\nproperty double z\nend_header\n" + big.tobytes())
    assert read_ply(tmp_path / "big.ply").xyz.tolist() == [[1.0, 2.0, 3.0]]


def test_exception_ply(tmp_path) -> None:
    (tmp_path / "not.ply").write_text("hello\n")
    with pytest.raises(ValueError, match="not a PLY"):
        read_ply(tmp_path / "not.ply")
    write_ply(tmp_path / "cut.ply", PointCloud(np.zeros((10, 3))))
    (tmp_path / "cut.ply").write_bytes((tmp_path / "cut.ply").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_ply(tmp_path / "cut.ply")
    (tmp_path / "noxyz.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1\n")
    with pytest.raises(ValueError, match="no x, y, z"):
        read_ply(tmp_path / "noxyz.ply")
    with pytest.raises(ValueError, match="rgb"):
        PointCloud(np.zeros((3, 3)), np.zeros((2, 3)))
    with pytest.raises(FileNotFoundError):
        read_ply(tmp_path / "missing.ply")


# -------------------------------------------------------------------------------------------------- cameras


@pytest.mark.parametrize("model, params", [
    ("SIMPLE_PINHOLE", [800, 320, 240]), ("PINHOLE", [800, 820, 320, 240]),
    ("SIMPLE_RADIAL", [800, 320, 240, 0.05]), ("RADIAL", [800, 320, 240, 0.05, -0.02]),
    ("OPENCV", [800, 820, 320, 240, 0.05, -0.02, 0.001, -0.002])])
def test_feature_camera_models_round_trip(model, params) -> None:
    camera = CameraModel(model, 640, 480, np.array(params, float))
    rng = np.random.default_rng(1)
    points = np.column_stack([rng.uniform(-1, 1, 200), rng.uniform(-0.7, 0.7, 200), rng.uniform(2, 5, 200)])
    pixels, depth = camera.project(points)
    assert np.allclose(depth, points[:, 2])
    normalised = camera.image_to_normalised(pixels)
    assert np.abs(normalised - points[:, :2] / points[:, 2:]).max() < 1e-9
    behind, _ = camera.project(np.array([[0.0, 0.0, -1.0]]))
    assert np.isnan(behind).all()


def test_exception_camera_models() -> None:
    with pytest.raises(ValueError, match="not supported"):
        CameraModel("FISHEYE", 10, 10, np.zeros(4))
    with pytest.raises(ValueError, match="has 4 parameters"):
        CameraModel("SIMPLE_RADIAL", 10, 10, np.zeros(3))


# ------------------------------------------------------------------------------------ triangulation and fusion


def _view(index: int, center: list[float], *, model: str = "SIMPLE_RADIAL", yaw_deg: float = 0.0) -> View:
    yaw = np.radians(yaw_deg)
    R = np.array([[np.cos(yaw), 0, -np.sin(yaw)], [0, 1, 0], [np.sin(yaw), 0, np.cos(yaw)]])
    params = [700.0, 320.0, 240.0, 0.03] if model == "SIMPLE_RADIAL" else [700.0, 320.0, 240.0]
    return View(index, f"v{index}.png", CameraModel(model, 640, 480, np.array(params)), R, -R @ np.array(center))


def _surface(count: int, seed: int = 0) -> np.ndarray:
    """Points of the slanted plane z = 5 + x / 5, in front of the test cameras."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1, 1, count), rng.uniform(-0.7, 0.7, count)
    return np.column_stack([x, y, 5.0 + 0.2 * x])


def test_feature_triangulation_is_exact_and_filters_bad_points() -> None:
    view0, view1 = _view(0, [0, 0, 0]), _view(1, [0.8, 0, 0], yaw_deg=-5)
    xyz = _surface(300)
    k0, k1 = view0.project(xyz)[0], view1.project(xyz)[0]
    keep, found, counts = triangulate_pair(view0, view1, k0, k1, max_reprojection_error=1.0, min_angle_deg=1.0)
    assert keep.all() and np.abs(found - xyz).max() < 1e-8  # through the distortion, both ways
    assert counts == {"matches": 300, "in_front": 300, "reprojection": 300, "angle": 300}
    k1_bad = k1.copy()
    k1_bad[:10, 1] += 5.0  # off the epipolar line: no point reprojects within 1 px in both images
    keep, _, counts = triangulate_pair(view0, view1, k0, k1_bad, max_reprojection_error=1.0, min_angle_deg=1.0)
    assert not keep[:10].any() and keep[10:].all() and counts["reprojection"] == 290
    narrow = _view(2, [0.02, 0, 0])  # 2 cm baseline at 5 m: < 0.3°
    keep, _, counts = triangulate_pair(view0, narrow, k0, narrow.project(xyz)[0], max_reprojection_error=1.0,
                                       min_angle_deg=1.0)
    assert not keep.any() and counts["reprojection"] == 300 and counts["angle"] == 0


def test_feature_depth_map_is_the_median_per_block() -> None:
    pixels = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [5.0, 5.0], [100.0, 100.0]])
    depth = np.array([1.0, 3.0, 2.0, 7.0, 9.0])
    dmap = depth_map(pixels, depth, (8, 8), 4)
    assert dmap.shape == (2, 2)
    assert dmap[0, 0] == 2.0 and dmap[1, 1] == 7.0 and np.isnan(dmap[0, 1]) and np.isnan(dmap[1, 0])


def test_feature_consistency_counts_agreeing_views_only() -> None:
    views = [_view(0, [0, 0, 0]), _view(1, [0.6, 0, 0], yaw_deg=-4), _view(2, [-0.6, 0, 0], yaw_deg=4)]
    xyz = _surface(2000, seed=3)
    maps = {}
    for view in views:
        uv, z = view.project(xyz)
        maps[view.index] = depth_map(uv, z, (480, 640), 4)
    good = xyz[:5]
    bad = good.copy()
    bad[:, 2] += 0.5  # 10 % deeper: no view's depth agrees
    points = ImagePoints(np.zeros((10, 2), np.float32), np.vstack([good, bad]).astype(np.float32),
                         np.zeros((10, 3), np.uint8), np.array([1] * 5 + [2] * 5, np.int32), "", {})
    counts = consistent_views(points, views[0], views, maps, cell=4, depth_tolerance=0.01)
    # good points made with view 1 are confirmed by view 2 only (their own partner cannot confirm them)
    assert counts[:5].tolist() == [1] * 5 and counts[5:].tolist() == [0] * 5


def test_feature_voxel_merge_and_normals() -> None:
    xyz = np.array([[0.01, 0.01, 0.01], [0.02, 0.02, 0.02], [0.51, 0.01, 0.01]])
    rgb = np.array([[0, 0, 0], [100, 200, 50], [9, 9, 9]], np.uint8)
    towards = np.tile([0.0, 0.0, -1.0], (3, 1))
    merged, colour, direction, count = voxel_merge(xyz, rgb, towards, 0.1)
    assert np.allclose(direction, [0.0, 0.0, -1.0])
    order = np.argsort(merged[:, 0])
    assert count[order].tolist() == [2, 1]
    assert np.allclose(merged[order][0], [0.015, 0.015, 0.015]) and colour[order][0].tolist() == [50, 100, 25]
    with pytest.raises(ValueError, match="voxel size"):
        voxel_merge(xyz, rgb, towards, 0.0)
    rng = np.random.default_rng(0)
    plane = np.column_stack([rng.uniform(0, 1, 400), rng.uniform(0, 1, 400), 2.0 + 0.3 * rng.uniform(0, 1, 400)])
    plane[:, 2] = 2.0 + 0.5 * plane[:, 0]  # the plane z = 2 + x / 2
    normals = estimate_normals(plane, np.tile([0.0, 0.0, -1.0], (400, 1)))
    expected = np.array([0.5, 0.0, -1.0]) / np.linalg.norm([0.5, 0.0, -1.0])  # facing the cameras (−z side)
    assert np.abs(normals - expected).max() < 1e-4


# ---------------------------------------------------------------------------------------------- neighbours


def test_feature_neighbours_from_the_exact_model(scene_views, tmp_path) -> None:
    model = read_text_model(write_truth_model(scene_views, tmp_path / "model", num_points=1500))
    assert model.colors is not None and model.colors.shape == (len(model.points), 3)
    assert all(len(track) >= 2 for track in model.tracks)
    views = views_of(model)
    ranked = rank_neighbours(model, views, min_shared_points=15, min_angle_deg=1.0, good_angle_deg=10.0)
    assert len(ranked) == len(views) == 8
    for view, candidates in zip(views, ranked):
        others = [j for j, _, _ in candidates]
        assert view.index not in others and len(others) >= 4
        assert all(shared >= 15 and angle >= 1.0 for _, shared, angle in candidates)
        scores = [shared * min(1.0, angle / 10.0) for _, shared, angle in candidates]
        assert scores == sorted(scores, reverse=True)
    assert not any(rank_neighbours(model, views, min_angle_deg=60.0))  # nothing is that wide


# ------------------------------------------------------------------------------------------ dense-warp reader


class ShiftWarp:
    """Stands in for the network of a dense-warp matcher: a warp that moves every pixel by (+3, −2) px."""

    shift: ClassVar[tuple[float, float]] = (3.0, -2.0)

    def __call__(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = image0.shape[-2:]
        ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")  # corner convention
        grid = torch.stack([2 * xs / w - 1, 2 * ys / h - 1], dim=-1)
        moved = torch.stack([2 * (xs + self.shift[0]) / w - 1, 2 * (ys + self.shift[1]) / h - 1], dim=-1)
        warp = torch.cat([grid, moved], dim=-1)
        certainty = torch.ones(h, w)
        certainty[:, : w // 4] = 0.1  # an uncertain band: left out
        return warp, certainty


def test_feature_dense_warp_reader_maps_the_warp_to_pixels(tmp_path) -> None:
    import cv2

    from gim_plugins.models.gim_dkm import GIMDKM
    from gim_plugins.reconstruct.dense_correspondences import PairMatcher

    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((60, 80, 3), 128, np.uint8))
    matcher = GIMDKM({"h": 64, "w": 96, "pad_to_aspect": True}, pretrained=False)  # padded 60×80 → 64×96 aspect
    matcher.dense = ShiftWarp()  # type: ignore[method-assign]
    pairs = PairMatcher(matcher, tmp_path, [tmp_path / "f.h5"], max_matches=500, min_certainty=0.5)
    assert pairs.kind == "dense-warp"
    k0, k1, confidence = pairs("a.png", "b.png")
    assert len(k0) == 500 and np.all(confidence == 1.0)
    assert np.allclose(k1 - k0, ShiftWarp.shift, atol=1e-4)  # package convention on both sides
    assert np.abs(k0 - np.rint(k0)).max() < 1e-4  # the warp grid = the padded image's pixel centres
    assert k0[:, 0].min() > -1e-4 and k1[:, 0].max() < 79 + 1e-4 and k1[:, 1].min() > -1e-4  # inside both images


# ----------------------------------------------------------------------------------------------- COLMAP MVS

FAKE_COLMAP = '''#!{python}
"""A stand-in colmap program "with CUDA": records each call and writes what the real one would."""
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
if args[:1] == ["-h"]:
    print("COLMAP 3.9 -- Structure-from-Motion and Multi-View Stereo\\n (Commit abc on 2024-01-01 with CUDA)")
    sys.exit(0)
command, options = args[0], dict(zip(args[1::2], args[2::2]))
with open(os.environ["FAKE_COLMAP_LOG"], "a") as log:
    log.write(json.dumps([command, options]) + "\\n")
if command == "image_undistorter":
    out = Path(options["--output_path"])
    for name in sorted(os.listdir(options["--image_path"])):
        if name.endswith(".png"):
            (out / "images").mkdir(parents=True, exist_ok=True)
            (out / "images" / name).write_bytes(b"png")
    (out / "sparse").mkdir(exist_ok=True)
elif command == "patch_match_stereo":
    ws = Path(options["--workspace_path"])
    (ws / "stereo" / "depth_maps").mkdir(parents=True, exist_ok=True)
    for name in os.listdir(ws / "images"):
        (ws / "stereo" / "depth_maps" / (name + ".geometric.bin")).write_bytes(b"d")
elif command == "stereo_fusion":
    Path(options["--output_path"]).write_bytes(b"ply\\nformat ascii 1.0\\nelement vertex 1\\nproperty float x\\n"
        b"property float y\\nproperty float z\\nend_header\\n1 2 3\\n")
'''


def test_feature_colmap_mvs_stages_and_resume(scene_dir, tmp_path, monkeypatch) -> None:
    from gim_plugins.colmap_ext import binary

    colmap = tmp_path / "bin" / "colmap"
    colmap.parent.mkdir()
    colmap.write_text(FAKE_COLMAP.format(python=sys.executable))
    colmap.chmod(colmap.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_COLMAP_LOG", str(log))
    assert binary.cuda_build(str(colmap)) and mvs.unavailable("colmap", str(colmap)) is None
    workspace, output = tmp_path / "mvs", tmp_path / "fused.ply"
    mvs.run_mvs("colmap", tmp_path / "model", scene_dir, workspace, output, max_image_size=1000,
                executable=str(colmap))
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c[0] for c in calls] == ["image_undistorter", "patch_match_stereo", "stereo_fusion"]
    assert calls[1][1]["--PatchMatchStereo.geom_consistency"] == "1"
    assert calls[1][1]["--PatchMatchStereo.max_image_size"] == "1000"
    assert read_ply(output).xyz.tolist() == [[1.0, 2.0, 3.0]] and mvs.depth_maps_done(workspace)
    assert not list(tmp_path.glob(".fused.ply*"))  # the temporary file is gone
    log.unlink()
    mvs.run_mvs("colmap", tmp_path / "model", scene_dir, workspace, output, executable=str(colmap))
    assert [json.loads(line)[0] for line in log.read_text().splitlines()] == ["stereo_fusion"]  # resumed


def test_exception_mvs_without_cuda(tmp_path, monkeypatch) -> None:
    from gim_plugins.colmap_ext import _pycolmap

    colmap = tmp_path / "colmap"
    colmap.write_text("#!/bin/sh\necho 'COLMAP 3.8 (Commit Unknown on Unknown without CUDA)'\n")
    colmap.chmod(colmap.stat().st_mode | stat.S_IEXEC)
    assert "without CUDA" in mvs.unavailable("colmap", str(colmap))
    with pytest.raises(RuntimeError, match="cannot run"):
        mvs.run_mvs("colmap", tmp_path, tmp_path, tmp_path / "ws", tmp_path / "f.ply", executable=str(colmap))
    assert "not on PATH" in mvs.unavailable("colmap", str(tmp_path / "nothing"))
    if _pycolmap.available():
        monkeypatch.setattr(_pycolmap, "cuda_build", lambda: False)
        assert "no CUDA" in mvs.unavailable("pycolmap")
        monkeypatch.setattr(_pycolmap, "cuda_build", lambda: True)
        monkeypatch.setattr(_pycolmap, "cuda_devices", lambda: 0)
        assert "finds no GPU" in mvs.unavailable("pycolmap")
        monkeypatch.setattr(_pycolmap, "cuda_devices", lambda: 1)
        assert mvs.unavailable("pycolmap") is None
    with pytest.raises(ValueError, match="MVS engine"):
        mvs.unavailable("openmvs")
