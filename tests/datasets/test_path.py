"""Camera paths through the motorcycle scene: smooth cameras, exact frames, the moving card, static correspondences."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from gim_plugins.datasets import scene
from gim_plugins.datasets.render import NEAR

NUM_FRAMES = 20
SCALE = 0.25  # 185×125 frames: seconds for the whole path


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    height, width = image.shape
    x = np.clip(points[:, 0], 0, width - 1.001)
    y = np.clip(points[:, 1], 0, height - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    ax, ay = x - x0, y - y0
    top = (1 - ax) * image[y0, x0] + ax * image[y0, x0 + 1]
    bottom = (1 - ax) * image[y0 + 1, x0] + ax * image[y0 + 1, x0 + 1]
    return (1 - ay) * top + ay * bottom


@pytest.fixture(scope="module")
def cameras() -> list[scene.Camera]:
    return scene.smooth_path(NUM_FRAMES, seed=0, scale=SCALE)


@pytest.fixture(scope="module")
def card() -> scene.MovingObject:
    return scene.moving_card(NUM_FRAMES, supersample=1)


@pytest.fixture(scope="module")
def frames(cameras: list[scene.Camera], card: scene.MovingObject) -> list[scene.Frame]:
    return list(scene.render_motorcycle_path(cameras, moving=card, supersample=1))


def _card_in_view(card: scene.MovingObject, camera: scene.Camera, index: int) -> bool:
    """Whether any sample of the card projects into the image in front of the camera (geometry only)."""
    pose = card.poses[index]
    if pose is None:
        return False
    world = pose[:3, :3] @ card.points.points + pose[:3, 3:]
    uv, z = camera.project(world.T)
    u, v = np.rint(uv[:, 0]), np.rint(uv[:, 1])
    height, width = camera.size
    with np.errstate(invalid="ignore"):
        return bool(np.any((z > NEAR) & (u >= 0) & (u < width) & (v >= 0) & (v < height)))


def test_cardinality_frames_carry_the_requested_cameras(cameras: list[scene.Camera],
                                                        frames: list[scene.Frame]) -> None:
    assert len(cameras) == len(frames) == NUM_FRAMES
    assert cameras[0].size == (125, 185)
    for index, (camera, frame) in enumerate(zip(cameras, frames)):
        assert frame.index == index and frame.name == f"frame_{index:04d}.png"
        assert frame.image.shape == (125, 185, 3) and frame.image.dtype == np.uint8
        assert frame.depth.shape == (125, 185) and frame.depth.dtype == np.float32
        assert frame.object_mask.shape == (125, 185) and frame.object_mask.dtype == bool
        np.testing.assert_array_equal(frame.K, camera.K)
        np.testing.assert_array_equal(frame.R, camera.R)
        np.testing.assert_array_equal(frame.t, camera.t)
        finite = np.isfinite(frame.depth)
        assert 0.7 < finite.mean() < 0.99  # within the views the source renders without large holes
        assert not frame.image[~finite].any()


def test_feature_path_is_smooth_and_stays_in_the_view_range(cameras: list[scene.Camera]) -> None:
    full = scene.smooth_path(NUM_FRAMES, seed=0)
    np.testing.assert_allclose(full[0].K, scene.motorcycle.CALIBRATION.K("left"))
    for small, large in zip(cameras, full):
        np.testing.assert_allclose(small.R, large.R)
        np.testing.assert_allclose(small.t, large.t)
    centres = np.stack([c.center for c in cameras])
    baselines = np.linalg.norm(centres, axis=1)  # the left camera is the world origin
    assert baselines.max() < 0.7  # the spiral views' range (0.13–0.46 m for seed 0)
    assert centres[-1, 0] - centres[0, 0] > 0.5  # the camera sweeps left to right
    # one curve, sampled more densely for more frames: every 4th camera of a 4× denser path is the same camera
    dense = scene.smooth_path(4 * (NUM_FRAMES - 1) + 1, seed=0, scale=SCALE)
    for a, b in zip(dense[::4], cameras):
        np.testing.assert_allclose(a.R, b.R, atol=1e-12)
        np.testing.assert_allclose(a.t, b.t, atol=1e-12)

    def max_second_difference(path: list[scene.Camera]) -> float:
        centres = np.stack([c.center for c in path])
        axes = np.stack([c.R[2] for c in path])
        return max(np.abs(np.diff(centres, 2, axis=0)).max(), np.abs(np.diff(axes, 2, axis=0)).max())

    # smooth: second differences shrink with the square of the spacing (a kink would make them shrink linearly)
    assert max_second_difference(cameras) > 12 * max_second_difference(dense)
    steps = np.linalg.norm(np.diff(np.stack([c.center for c in dense]), axis=0), axis=1)
    assert steps[0] < 0.05 * steps.max() and steps[-1] < 0.05 * steps.max()  # starts and ends at rest
    axes = np.stack([c.R[2] for c in cameras])
    turns = np.degrees(np.arccos(np.clip(np.sum(axes[1:] * axes[:-1], axis=1), -1, 1)))
    assert turns.max() < 3.0  # the viewing direction turns smoothly
    again = scene.smooth_path(NUM_FRAMES, seed=0, scale=SCALE)
    other = scene.smooth_path(NUM_FRAMES, seed=1, scale=SCALE)
    assert all(np.array_equal(a.R, b.R) and np.array_equal(a.t, b.t) for a, b in zip(cameras, again))
    assert not np.allclose(other[5].t, cameras[5].t)


def test_feature_object_mask_exactly_when_the_card_is_in_view(cameras: list[scene.Camera], card: scene.MovingObject,
                                                              frames: list[scene.Frame]) -> None:
    in_view = [_card_in_view(card, camera, i) for i, camera in enumerate(cameras)]
    present = [pose is not None for pose in card.poses]
    assert present == [NUM_FRAMES // 4 <= i < 3 * NUM_FRAMES // 4 for i in range(NUM_FRAMES)]
    # the path has frames without the card, with it present but out of view, and with it in view
    assert not all(present) and any(p and not v for p, v in zip(present, in_view)) and sum(in_view) >= 3
    assert [bool(f.object_mask.any()) for f in frames] == in_view
    for frame, pose in zip(frames, card.poses):
        assert (frame.object_pose is None) == (pose is None)
        if pose is not None:
            np.testing.assert_array_equal(frame.object_pose, pose)
    frame = frames[int(np.argmax([f.object_mask.sum() for f in frames]))]
    assert frame.object_mask.mean() > 0.1
    # the card's pixels lie on its plane: the plane z = 0 of its rest frame, seen through its pose
    rows, cols = np.nonzero(frame.object_mask)
    points = frame.backproject(np.stack([cols, rows], 1).astype(float), frame.depth[rows, cols])
    rest = (points - frame.object_pose[:3, 3]) @ frame.object_pose[:3, :3]
    assert np.abs(rest[:, 2]).max() < 0.01 and np.abs(rest[:, :2]).max() < 0.21  # 0.4 m wide card
    # outside the card the frame is the static scene, bit for bit
    static = next(scene.render_motorcycle_path([cameras[frame.index]], supersample=1))
    assert not static.object_mask.any() and static.object_pose is None
    outside = ~frame.object_mask
    np.testing.assert_array_equal(frame.image[outside], static.image[outside])
    np.testing.assert_array_equal(frame.depth[outside], static.depth[outside])
    assert np.all(frame.depth[frame.object_mask] < static.depth[frame.object_mask])  # the card is in front


def test_feature_correspondences_are_exact_and_leave_out_the_card(frames: list[scene.Frame]) -> None:
    with_card = [f for f in frames if f.object_mask.any()]
    frame0, frame1 = with_card[0], with_card[-1]
    k0, k1 = scene.correspondences(frame0, frame1)
    assert len(k0) > 2000
    col0, row0 = k0.astype(int).T
    assert not frame0.object_mask[row0, col0].any()
    col1, row1 = np.rint(k1).astype(int).T
    assert not frame1.object_mask[row1, col1].any()
    # against plain views (no masks): the frames' pairs are exactly those touching the card on neither side; a frame
    # with itself shows that the masks matter (the card's depth agrees there, so only the mask removes it)
    for a, b, least in ((frame0, frame1, 0), (frame0, frame0, 100)):
        plain_a = scene.SceneView("a", a.image, a.K, a.R, a.t, a.depth)
        plain_b = scene.SceneView("b", b.image, b.K, b.R, b.t, b.depth)
        p0, p1 = scene.correspondences(plain_a, plain_b)
        m0, m1 = scene.correspondences(a, b)
        c0, r0 = p0.astype(int).T
        c1, r1 = np.rint(p1).astype(int).T
        touches = a.object_mask[r0, c0] | b.object_mask[r1, c1]
        assert touches.sum() >= least
        np.testing.assert_array_equal(m0, p0[~touches])
        np.testing.assert_array_equal(m1, p1[~touches])
    # exact geometry: every pair satisfies the epipolar constraint of the requested cameras
    R, t = scene.relative_pose(frame0, frame1)
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    F = np.linalg.inv(frame1.K).T @ tx @ R @ np.linalg.inv(frame0.K)
    lines = np.c_[k0, np.ones(len(k0))] @ F.T
    distance = np.abs(np.sum(np.c_[k1, np.ones(len(k1))] * lines, axis=1)) / np.linalg.norm(lines[:, :2], axis=1)
    assert distance.max() < 1e-6
    # and the frames' colours agree where the pairs say (clean frames)
    gray0, gray1 = _gray(frame0.image), _gray(frame1.image)
    error = np.abs(_bilinear(gray1, k1) - gray0[row0, col0])
    shifted = np.abs(_bilinear(gray1, k1 + np.array([3.0, 0.0])) - gray0[row0, col0])
    assert np.median(error) < 4.0 and np.median(shifted) > 2 * np.median(error)


def test_feature_left_ground_truth_projects_onto_the_frames(frames: list[scene.Frame]) -> None:
    """Independent check: the left photo's ground-truth points land on the frames' depth and colour."""
    source = scene._source()
    rows, cols = np.nonzero(np.isfinite(source.depth))
    pick = np.random.default_rng(0).choice(len(rows), 20_000, replace=False)
    rows, cols = rows[pick], cols[pick]
    left = scene.SceneView("left", source.left, scene.motorcycle.CALIBRATION.K("left"), np.eye(3), np.zeros(3))
    points = left.backproject(np.stack([cols, rows], 1).astype(float), source.depth[rows, cols])
    gray_left = _gray(np.ascontiguousarray(source.left))[rows, cols]
    for frame in frames[::6]:
        uv, z = frame.project(points)
        height, width = frame.size
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
        col, row = np.rint(uv[inside]).astype(int).T
        visible = (np.abs(frame.depth[row, col] - z[inside]) < 0.01 * z[inside]) & ~frame.object_mask[row, col]
        assert visible.mean() > 0.7, frame.name
        error = np.abs(_bilinear(_gray(frame.image), uv[inside][visible]) - gray_left[inside][visible])
        assert np.median(error) < 6.0, frame.name  # quarter-size frames: the left photo's detail is averaged


def test_feature_streaming_keeps_no_frames(cameras: list[scene.Camera], card: scene.MovingObject) -> None:
    frames = scene.render_motorcycle_path(cameras[:3], moving=scene.MovingObject(card.points, card.poses[8:11]),
                                          supersample=1)
    first = next(frames)
    ref = weakref.ref(first)
    del first
    second = next(frames)
    gc.collect()
    assert ref() is None and second.index == 1  # the generator holds no earlier frame
    assert [f.index for f in frames] == [2]


def test_feature_appearance_changes_images_not_geometry(cameras: list[scene.Camera],
                                                        frames: list[scene.Frame]) -> None:
    shown = list(scene.render_motorcycle_path(cameras[9:12], moving=scene.MovingObject(
        scene.moving_card(3, first=0, last=3, supersample=1).points, [None] * 3), supersample=1, appearance=1.0,
        seed=3))
    again = next(scene.render_motorcycle_path(cameras[9:10], supersample=1, appearance=1.0, seed=3))
    clean = list(scene.render_motorcycle_path(cameras[9:12], supersample=1))
    np.testing.assert_array_equal(shown[0].image, again.image)  # deterministic per seed
    for a, b in zip(shown, clean):
        np.testing.assert_array_equal(a.depth, b.depth)
        assert not np.array_equal(a.image, b.image)
        assert np.abs(a.image.astype(float) - b.image).mean() < 30


def test_exception_bad_input(cameras: list[scene.Camera], card: scene.MovingObject) -> None:
    with pytest.raises(ValueError, match="num_frames"):
        scene.smooth_path(0)
    with pytest.raises(ValueError, match="num_keys"):
        scene.smooth_path(5, num_keys=1)
    with pytest.raises(ValueError, match="scale"):
        scene.smooth_path(5, scale=0)
    with pytest.raises(ValueError, match="first < last"):
        scene.moving_card(10, first=5, last=5)
    with pytest.raises(ValueError, match="poses for"):
        scene.render_motorcycle_path(cameras[:3], moving=card)
