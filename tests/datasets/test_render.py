"""The point-splatting renderer on synthetic content: exact reproduction, plane geometry, layers, cameras, errors."""

from __future__ import annotations

import numpy as np
import pytest

from gim_plugins.datasets.render import Appearance, MovingObject, PointSet, degrade, render, render_path
from gim_plugins.datasets.views import Camera, SceneView, check_pose, look_at

SIZE = (60, 80)
K = np.array([[70.0, 0.0, 39.5], [0.0, 70.0, 29.5], [0.0, 0.0, 1.0]])


def _texture(size: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth random colours (bilinear sampling of them is well defined), never black."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(30, 255, (size[0] // 4, size[1] // 4, 3)).astype(np.uint8)
    return cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _plane_depth(camera: Camera, normal: np.ndarray, offset: float) -> np.ndarray:
    """Depth map of the plane ``normal · X = offset`` (world) seen by ``camera``."""
    rows, cols = np.mgrid[0:camera.size[0], 0:camera.size[1]]
    rays = np.linalg.inv(camera.K) @ np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
    # X = R.T (z ray − t): normal · X = offset → z = (offset + normal · R.T t) / (normal · R.T ray)
    n_cam = camera.R @ normal
    z = (offset + normal @ (camera.R.T @ camera.t)) / (n_cam @ rays)
    return z.reshape(camera.size)


@pytest.fixture(scope="module")
def wall() -> PointSet:
    """A slanted textured wall 3–4 m in front of the identity camera."""
    camera = Camera(K, np.eye(3), np.zeros(3), SIZE)
    normal = np.array([0.2, 0.0, 1.0]) / np.linalg.norm([0.2, 0.0, 1.0])
    depth = _plane_depth(camera, normal, 3.2)
    return PointSet.from_depth(_texture(SIZE, 0), depth, camera, supersample=3)


def test_smoke_identity_render_reproduces_the_source() -> None:
    camera = Camera(K, np.eye(3), np.zeros(3), SIZE)
    depth = np.full(SIZE, 2.5)
    depth[:, :10] = np.inf  # unknown depth stays unknown
    image = _texture(SIZE, 1)
    result = render(camera, PointSet.from_depth(image, depth, camera, supersample=1), max_hole_area=0)
    assert result.image.dtype == np.uint8 and result.depth.dtype == np.float32 and result.labels.dtype == np.int8
    np.testing.assert_array_equal(result.valid, np.isfinite(depth))
    np.testing.assert_allclose(result.depth[:, 10:], 2.5, rtol=1e-6)
    np.testing.assert_array_equal(result.image[:, 10:], image[:, 10:])
    assert not result.image[:, :10].any() and (result.labels[:, :10] == -1).all() and (result.labels[:, 10:] == 0).all()


def test_feature_plane_depth_and_colour_from_a_new_camera(wall: PointSet) -> None:
    """A rotated, translated view of a plane: depth matches the analytic plane, colours match the source photo."""
    R, t = look_at(np.array([0.3, -0.1, 0.2]), np.array([0.0, 0.0, 3.3]), roll=0.05)
    camera = Camera(K, R, t, SIZE)
    result = render(camera, wall, max_hole_area=0)  # no filling: every depth comes from a sample
    assert 0.8 < result.valid.mean() < 1.0  # part of the view is outside the source photo
    normal = np.array([0.2, 0.0, 1.0]) / np.linalg.norm([0.2, 0.0, 1.0])
    expected = _plane_depth(camera, normal, 3.2)
    rows, cols = np.nonzero(result.valid)
    points = camera.backproject(np.stack([cols, rows], 1).astype(float), expected[rows, cols])
    uv, _ = wall.camera.project(points)
    # away from the source photo's border (where samples take the border pixel's depth)
    inner = (uv[:, 0] > 1) & (uv[:, 0] < SIZE[1] - 2) & (uv[:, 1] > 1) & (uv[:, 1] < SIZE[0] - 2)
    rows, cols, uv = rows[inner], cols[inner], uv[inner]
    assert inner.mean() > 0.9
    # nearest-pixel splat: the winning sample lies within half a pixel of the pixel centre, so its depth is the
    # plane's at the centre up to half a pixel's depth change (and nearer, since the z-buffer keeps the nearest)
    gy, gx = np.gradient(expected)
    bound = (0.5 * (np.abs(gx) + np.abs(gy)) + 1e-6 * expected)[rows, cols]
    error = expected[rows, cols] - result.depth[rows, cols]
    assert np.all(error <= bound) and np.all(error >= -1e-6 * expected[rows, cols])
    u, v = np.rint(uv).astype(int).T
    colour_error = np.abs(result.image[rows, cols].astype(float) - wall.image[v, u])
    assert np.median(colour_error) < 6.0  # colours come from where the geometry says (smooth texture, ≤ 0.5 px)
    shifted = np.abs(result.image[rows, cols].astype(float) - wall.image[v, np.clip(u + 3, 0, SIZE[1] - 1)])
    assert np.median(shifted) > 2 * np.median(colour_error)  # the check sees a 3 px misplacement


def test_feature_moving_object_is_composited_by_depth(wall: PointSet) -> None:
    camera = Camera(K, np.eye(3), np.zeros(3), SIZE)
    card_camera = Camera(np.array([[40.0, 0, 9.5], [0, 40.0, 9.5], [0, 0, 1]]), np.eye(3), np.array([0, 0, 1.0]),
                         (20, 20))
    card = PointSet.from_depth(np.full((20, 20, 3), 250, np.uint8), np.ones((20, 20)), card_camera, supersample=2)
    assert np.allclose(card.points[2], 0.0)  # rest coordinates: the plane z = 0
    pose = np.eye(4)
    pose[:3, 3] = [0.3, 0.0, 2.0]  # 0.5 m wide card, 2 m away, right of centre, in front of the wall
    alone = render(camera, wall)
    both = render(camera, wall, objects=[(card, pose)])
    mask = both.object_mask
    uv, _ = camera.project(np.array([[0.3 - 0.25, -0.25, 2.0], [0.3 + 0.25, 0.25, 2.0]]))
    (u0, v0), (u1, v1) = uv
    rows, cols = np.mgrid[0:SIZE[0], 0:SIZE[1]]

    def within(margin: float) -> np.ndarray:  # pixel centres inside the card's outline grown by ``margin`` px
        return (cols > u0 - margin) & (cols < u1 + margin) & (rows > v0 - margin) & (rows < v1 + margin)

    assert mask[within(-0.5)].all() and not mask[~within(0.5)].any()  # the card's projection, nothing else
    np.testing.assert_allclose(both.depth[mask], 2.0, rtol=1e-6)
    assert (both.image[mask] == 250).all() and (both.labels[mask] == 1).all()
    np.testing.assert_array_equal(both.depth[~mask], alone.depth[~mask])
    np.testing.assert_array_equal(both.image[~mask], alone.image[~mask])
    behind = pose.copy()
    behind[2, 3] = 6.0  # behind the wall: hidden by the z-buffer
    hidden = render(camera, wall, objects=[(card, behind)])
    assert not hidden.object_mask.any()
    np.testing.assert_array_equal(hidden.depth, alone.depth)


def test_feature_render_path_streams_frames_with_exact_cameras(wall: PointSet) -> None:
    cameras = [Camera(K, *look_at(np.array([x, 0.0, 0.0]), np.array([0.0, 0.0, 3.3])), SIZE)
               for x in np.linspace(-0.2, 0.2, 4)]
    read: list[int] = []

    class Poses(list):
        def __getitem__(self, index):  # records which frames' poses have been read
            read.append(index)
            return super().__getitem__(index)

    card = PointSet.from_depth(np.full((8, 8, 3), 200, np.uint8), np.ones((8, 8)),
                               Camera(np.diag([16.0, 16.0, 1.0]) + np.array([[0, 0, 3.5], [0, 0, 3.5], [0, 0, 0]]),
                                      np.eye(3), np.array([0, 0, 1.0]), (8, 8)))
    pose = np.eye(4)
    pose[2, 3] = 2.0
    frames = render_path(cameras, wall, moving=MovingObject(card, Poses([None, pose, pose, None])))
    assert read == []  # nothing is rendered before the first frame is asked for
    first = next(frames)
    assert read == [0] and first.index == 0 and first.name == "frame_0000.png" and first.object_pose is None
    rest = list(frames)
    assert read == [0, 1, 2, 3] and [f.index for f in rest] == [1, 2, 3]
    for frame, camera in zip([first, *rest], cameras):
        assert frame.K is camera.K and frame.R is camera.R and frame.t is camera.t and frame.size == camera.size
    assert [f.object_mask.any() for f in [first, *rest]] == [False, True, True, False]
    np.testing.assert_array_equal(rest[0].object_pose, pose)


def test_feature_camera_helpers() -> None:
    camera = Camera(K, *look_at(np.array([0.1, 0.2, -0.3]), np.array([0.0, 0.0, 3.0]), roll=0.1), SIZE)
    np.testing.assert_allclose(camera.center, [0.1, 0.2, -0.3], atol=1e-12)
    uv, z = camera.project(np.array([[0.0, 0.0, 3.0]]))
    np.testing.assert_allclose(uv[0], K[:2, 2], atol=1e-9)  # the target is on the principal point
    points = np.array([[0.3, -0.2, 2.5], [-0.4, 0.1, 3.7]])
    uv, z = camera.project(points)
    np.testing.assert_allclose(camera.backproject(uv, z), points, atol=1e-12)
    view = SceneView("v.png", np.zeros((*SIZE, 3), np.uint8), camera.K, camera.R, camera.t)
    assert view.camera.size == SIZE and np.array_equal(view.camera.R, camera.R)
    np.testing.assert_array_equal(view.project(points)[0], uv)
    half = camera.scaled(0.5)
    assert half.size == (30, 40)
    np.testing.assert_allclose(half.project(points)[0], (uv + 0.5) * 0.5 - 0.5, atol=1e-12)  # pixel-centre rule


def test_feature_appearance() -> None:
    image = _texture(SIZE, 2)
    image[:5] = 0
    assert degrade(image, np.random.default_rng(0), 0.0) is image
    a = degrade(image, np.random.default_rng(0), 1.0)
    np.testing.assert_array_equal(a, degrade(image, np.random.default_rng(0), 1.0))
    assert not np.array_equal(a, image) and not a[:5].any()  # changed, black stays black
    assert np.abs(a.astype(float) - image).mean() < 40
    start, end = Appearance.draw(np.random.default_rng(1), 1.0), Appearance.draw(np.random.default_rng(2), 1.0)
    assert start.blend(end, 0.0) == start and start.blend(end, 1.0) == end
    middle = start.blend(end, 0.5)
    assert middle.gain == pytest.approx((start.gain + end.gain) / 2)


def test_exception_bad_input(wall: PointSet) -> None:
    camera = Camera(K, np.eye(3), np.zeros(3), SIZE)
    with pytest.raises(ValueError, match="rotation"):
        Camera(K, 2 * np.eye(3), np.zeros(3), SIZE)
    with pytest.raises(ValueError, match="size"):
        Camera(K, np.eye(3), np.zeros(3), (0, 5))
    with pytest.raises(ValueError, match="4×4"):
        check_pose(np.eye(3))
    with pytest.raises(ValueError, match="rotation"):
        render(camera, wall, objects=[(wall, np.diag([2.0, 1, 1, 1]))])
    with pytest.raises(ValueError, match="supersample"):
        PointSet.from_depth(wall.image, np.ones(SIZE), camera, supersample=0)
    with pytest.raises(ValueError, match="sizes differ"):
        PointSet.from_depth(wall.image, np.ones((5, 5)), camera)
    skewed = K.copy()
    skewed[0, 1] = 1.0
    with pytest.raises(ValueError, match="skew"):
        PointSet.from_depth(wall.image, np.ones(SIZE), Camera(skewed, np.eye(3), np.zeros(3), SIZE))
    with pytest.raises(ValueError, match="2 poses for 1 cameras"):
        render_path([camera], wall, moving=MovingObject(wall, [None, None]))
    with pytest.raises(TypeError, match="Camera"):
        render_path([(K, np.eye(3), np.zeros(3))], wall)
