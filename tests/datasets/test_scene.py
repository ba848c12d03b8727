"""The rendered motorcycle scene: camera conventions, geometric consistency of the renders, determinism, file I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gim_plugins.datasets import motorcycle, scene


def _bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Sample a 2-D image at ``(N, 2)`` sub-pixel ``x, y`` (clamped to the border)."""
    height, width = image.shape
    x = np.clip(points[:, 0], 0, width - 1.001)
    y = np.clip(points[:, 1], 0, height - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = x - x0, y - y0
    top = (1 - ax) * image[y0, x0] + ax * image[y0, x0 + 1]
    bottom = (1 - ax) * image[y0 + 1, x0] + ax * image[y0 + 1, x0 + 1]
    return (1 - ay) * top + ay * bottom


@pytest.fixture(scope="module")
def views() -> list[scene.SceneView]:
    return scene.render_motorcycle_scene(4, seed=0)


@pytest.fixture(scope="module")
def clean_views() -> list[scene.SceneView]:
    return scene.render_motorcycle_scene(3, seed=0, appearance=0.0, include_real=False)


def test_smoke_views(views: list[scene.SceneView]) -> None:
    assert [v.name for v in views] == ["left.png", "render_00.png", "render_01.png", "render_02.png",
                                       "render_03.png", "right.png"]
    for view in views:
        assert view.image.shape == (500, 741, 3) and view.image.dtype == np.uint8
        assert view.depth is not None and view.depth.shape == (500, 741) and view.depth.dtype == np.float32
        assert view.K.shape == (3, 3) and view.R.shape == (3, 3) and view.t.shape == (3,)
        np.testing.assert_allclose(view.R @ view.R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(view.R) == pytest.approx(1.0)
        finite = np.isfinite(view.depth)
        assert 0.6 < finite.mean() < 0.97  # disocclusions stay black, most of the view is rendered
        assert not view.image[~finite].any() or view.name in ("left.png", "right.png")
        assert np.all(view.depth[finite] > 1.5) and np.all(view.depth[finite] < 6.0)


def test_feature_left_is_world_frame_and_right_matches_disparity(views: list[scene.SceneView]) -> None:
    """A left pixel at its GT depth projects onto itself, and into the right image at ``x − disp`` (measured sign)."""
    left, right = views[0], views[-1]
    disparity = motorcycle.load_disparity()
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(np.isfinite(disparity))
    pick = rng.choice(len(rows), 500, replace=False)
    pixels = np.stack([cols[pick], rows[pick]], axis=1).astype(np.float64)
    points = left.backproject(pixels, left.depth[rows[pick], cols[pick]])
    uv_left, _ = left.project(points)
    np.testing.assert_allclose(uv_left, pixels, atol=1e-9)
    uv_right, _ = right.project(points)
    np.testing.assert_allclose(uv_right[:, 0], pixels[:, 0] - disparity[rows[pick], cols[pick]], atol=1e-4)
    np.testing.assert_allclose(uv_right[:, 1], pixels[:, 1], atol=1e-9)
    np.testing.assert_allclose(right.center, [motorcycle.CALIBRATION.baseline_mm / 1000, 0, 0], atol=1e-12)


def test_feature_known_point_projects_where_expected(views: list[scene.SceneView]) -> None:
    """Every render looks at the same scene point, which lands on its principal point (roll keeps it there)."""
    render = views[1]
    target = render.center + 2.0 * render.R[2]  # a point 2 m along the optical axis
    uv, z = render.project(target[None])
    np.testing.assert_allclose(uv[0], render.K[:2, 2], atol=1e-9)
    assert z[0] == pytest.approx(2.0)
    # all renders look at one scene point: their optical axes meet (least-squares intersection, zero residual)
    projectors = [np.eye(3) - np.outer(v.R[2], v.R[2]) for v in views[1:-1]]
    meet = np.linalg.solve(sum(projectors), sum(P @ v.center for P, v in zip(projectors, views[1:-1])))
    for view in views[1:-1]:
        uv, z = view.project(meet[None])
        np.testing.assert_allclose(uv[0], view.K[:2, 2], atol=1e-6)
        assert 2.0 < z[0] < 3.5
    R_rel, t_rel = scene.relative_pose(views[0], render)
    np.testing.assert_allclose(R_rel, render.R)  # the left camera is the world frame
    np.testing.assert_allclose(t_rel, render.t)


def test_feature_renders_are_consistent_with_left_ground_truth(clean_views: list[scene.SceneView]) -> None:
    """Project the left GT points into each clean render: visible ones land on the render's depth and colour."""
    import cv2

    source = scene._source()
    left_depth = source.depth
    rows, cols = np.nonzero(np.isfinite(left_depth))
    pixels = np.stack([cols, rows], axis=1).astype(np.float64)
    K, R, t = motorcycle.CALIBRATION.K("left"), np.eye(3), np.zeros(3)
    points = scene.SceneView("left", source.left, K, R, t).backproject(pixels, left_depth[rows, cols])
    gray_left = cv2.cvtColor(np.ascontiguousarray(source.left), cv2.COLOR_RGB2GRAY).astype(np.float32)
    for view in clean_views:
        uv, z = view.project(points)
        height, width = view.size
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
        col, row = np.rint(uv[inside]).astype(int).T
        depth = view.depth[row, col]
        visible = np.abs(depth - z[inside]) < 0.01 * z[inside]
        assert visible.mean() > 0.8, view.name  # most in-view points are not occluded
        gray = cv2.cvtColor(view.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        where = uv[inside][visible]
        expected = gray_left[rows[inside][visible], cols[inside][visible]]
        error = np.abs(_bilinear(gray, where) - expected)
        assert np.median(error) < 3.0, view.name  # 8-bit levels: the colours are where the geometry says
        shifted = np.abs(_bilinear(gray, where + np.array([3.0, 0.0])) - expected)
        assert np.median(shifted) > 2 * np.median(error), view.name  # the check sees a 3 px misplacement


def test_feature_correspondences_follow_epipolar_geometry(views: list[scene.SceneView]) -> None:
    view0, view1 = views[1], views[3]
    k0, k1 = scene.correspondences(view0, view1, step=8)
    assert len(k0) > 1000
    R, t = scene.relative_pose(view0, view1)
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    F = np.linalg.inv(view1.K).T @ tx @ R @ np.linalg.inv(view0.K)
    h0, h1 = np.c_[k0, np.ones(len(k0))], np.c_[k1, np.ones(len(k1))]
    lines = h0 @ F.T
    distance = np.abs(np.sum(h1 * lines, axis=1)) / np.linalg.norm(lines[:, :2], axis=1)
    assert np.max(distance) < 1e-6


def test_feature_deterministic_per_seed() -> None:
    a = scene.render_motorcycle_scene(2, seed=3, include_real=False)
    b = scene.render_motorcycle_scene(2, seed=3, include_real=False)
    c = scene.render_motorcycle_scene(2, seed=4, include_real=False)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and np.array_equal(x.depth, y.depth, equal_nan=True)
        assert np.array_equal(x.R, y.R) and np.array_equal(x.t, y.t)
    assert not np.allclose(a[0].t, c[0].t)


def test_cardinality_view_count_and_spread() -> None:
    views = scene.render_motorcycle_scene(12, seed=0, with_depth=False)
    assert len(views) == 14 and all(v.depth is None for v in views)
    centres = np.stack([v.center for v in views])
    baselines = np.linalg.norm(centres[1:-1] - centres[0], axis=1)
    assert 0.05 < baselines.min() and baselines.max() < 0.7
    assert 0.5 < np.linalg.norm(centres.max(0) - centres.min(0)) < 2.0
    assert scene.render_motorcycle_scene(0, include_real=False) == []
    assert scene.scene_extent() == pytest.approx(4.34, abs=0.05)


def test_feature_write_read_roundtrip(views: list[scene.SceneView], tmp_path) -> None:
    poses = scene.write_scene(views[:3], tmp_path, depth=True)
    assert poses == tmp_path / "poses.json"
    document = json.loads(poses.read_text())
    assert document["format"] == scene.FORMAT and [r["name"] for r in document["views"]] == [
        "left.png", "render_00.png", "render_01.png"]
    assert not list(tmp_path.glob("**/*.tmp"))  # atomic writes leave no temporaries
    loaded = scene.read_scene(tmp_path)
    for a, b in zip(views[:3], loaded):
        assert a.name == b.name and np.array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.K, b.K)
        np.testing.assert_array_equal(a.R, b.R)
        np.testing.assert_array_equal(a.t, b.t)
        np.testing.assert_array_equal(a.depth, b.depth)


def test_exception_bad_input(views: list[scene.SceneView], tmp_path) -> None:
    with pytest.raises(ValueError, match="duplicate view names"):
        scene.write_scene([views[0], views[0]], tmp_path)
    with pytest.raises(ValueError, match="rotation"):
        scene.render_view("x.png", views[0].K, 2 * np.eye(3), np.zeros(3))
    with pytest.raises(ValueError, match="expected K"):
        scene.render_view("x.png", np.eye(2), np.eye(3), np.zeros(3))
    with pytest.raises(ValueError, match="num_views"):
        scene.render_motorcycle_scene(-1)
    with pytest.raises(FileNotFoundError, match=r"poses\.json"):
        scene.read_scene(tmp_path / "missing")
    with pytest.raises(ValueError, match="depth"):
        scene.correspondences(scene.SceneView("a", views[0].image, views[0].K, views[0].R, views[0].t), views[1])
    scene.write_scene(views[:1], tmp_path / "bad")
    document = json.loads((tmp_path / "bad" / "poses.json").read_text())
    document["views"][0]["width"] = 10
    (tmp_path / "bad" / "poses.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"poses\.json says"):
        scene.read_scene(tmp_path / "bad")
