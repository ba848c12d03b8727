"""Walk pictures of propagated pairs: GIM's choice of pairs (seed 3407), three rows, bounded size, resumable."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from propagation_world import SPARSE, Labeller, World, write_label_folders

from gim_plugins.errors import UserError
from gim_plugins.training.video import propagate, walk
from gim_plugins.training.video.layout import Layout, VideoPaths, ppid

PID = ppid(["SIFT"], [10, 20, 40], [False])


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Propagated labels of a synthetic video and its frames (a random texture per frame, 640×480)."""
    root = tmp_path_factory.mktemp("walk")
    world = World(num_frames=200, seed=4)
    write_label_folders(root, "clip", world, (Labeller("SIFT", SPARSE, 0.7, 0.1, 0.01),), zooms=(False,))
    propagate.main({"progress": False, "step": 2}, VideoPaths(root))
    layout = Layout(root)
    rng = np.random.default_rng(0)
    for frame in range(0, 200, 10):
        path = layout.frame("clip", frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    return root


def _copy(tree: Path, tmp_path: Path) -> Path:
    shutil.copytree(tree, tmp_path / "root")
    return tmp_path / "root"


def test_smoke_pictures_are_drawn_and_bounded(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(tree, tmp_path)
    out = walk.main({"num_pairs": 4}, VideoPaths(root))
    pictures = sorted((out / "clip").glob("*.png"))
    propagated = sorted(p.name for p in Layout(root).propagate_dir(PID, "clip").glob("*.npy"))
    assert len(propagated) > 4 and len(pictures) == 4
    assert [p.stem + ".npy" for p in pictures] == walk.choose_pairs(propagated, 4, 3407)
    for picture in pictures:
        image = cv2.imread(str(picture))
        assert image.shape == (4 * walk.MARGIN + 3 * 360, 3 * walk.MARGIN + 2 * 480, 3)
    assert "4 walk picture(s) drawn, 0 already there" in capsys.readouterr().err


def test_feature_rows_show_frames_points_and_lines() -> None:
    rng = np.random.default_rng(1)
    image0 = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    image1 = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    label = np.array([[100.0, 150.0, 300.0, 250.0], [50.0, 60.0, 70.0, 80.0]], np.float32)
    picture = walk.draw_walk(image0, image1, label, header=[], footer=[], max_size=(200, 200), max_lines=1)
    assert picture.shape == (4 * walk.MARGIN + 3 * 150, 3 * walk.MARGIN + 2 * 200, 3)
    scaled = cv2.resize(image0, (200, 150), interpolation=cv2.INTER_AREA)
    m, h = walk.MARGIN, 150
    assert np.array_equal(picture[m + 100 : m + 150, m + 100 : m + 200], scaled[100:150, 100:200])  # row 1: colour
    grey = picture[2 * m + h : 2 * m + 2 * h, m : m + 200]
    assert tuple(grey[75, 50]) == walk.POINT  # row 2: the point (100, 150) at scale 0.5
    assert tuple(grey[30, 25]) == walk.POINT

    def coloured(image: np.ndarray) -> int:  # row 3 is grey but for what is drawn
        row3 = image[3 * m + 2 * h : 3 * m + 3 * h].astype(int)
        return int(((row3[..., 0] != row3[..., 1]) | (row3[..., 1] != row3[..., 2])).sum())

    both = walk.draw_walk(image0, image1, label, header=[], footer=[], max_size=(200, 200), max_lines=2)
    assert 150 < coloured(picture) < coloured(both)  # one line of about 200 px, then both lines
    assert np.array_equal(picture[-1], np.full_like(picture[-1], 255))


def test_feature_rerun_skips_overwrite_redraws(tree: Path, tmp_path: Path) -> None:
    root = _copy(tree, tmp_path)
    walk.main({"progress": False, "num_pairs": 2}, VideoPaths(root))
    folder = root / "walk" / "clip"
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}
    walk.main({"progress": False, "num_pairs": 2}, VideoPaths(root))
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")} == stamps
    walk.main({"progress": False, "num_pairs": 2, "overwrite": True}, VideoPaths(root))
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in folder.glob("*.png"))


def test_feature_missing_frames_are_reported(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(tree, tmp_path)
    shutil.rmtree(Layout(root).frames_dir("clip"))
    walk.main({"num_pairs": 3}, VideoPaths(root))
    assert "3 skipped: frames not cached" in capsys.readouterr().err
    assert not list((root / "walk").rglob("*.png"))


def test_exception_no_or_ambiguous_propagation(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no propagated labels"):
        walk.main({}, VideoPaths(tmp_path))
    root = _copy(tree, tmp_path)
    other = Layout(root).propagate_dir("SIFT 40 F FM 32 PM 512", "clip")
    other.mkdir(parents=True)
    with pytest.raises(UserError, match="several propagations"):
        walk.main({}, VideoPaths(root))
    with pytest.raises(UserError, match="no propagation 'X'"):
        walk.main({"ppid": "X"}, VideoPaths(root))
    assert walk.main({"ppid": PID, "progress": False, "num_pairs": 1}, VideoPaths(root)) == root / "walk"
    with pytest.raises(UserError, match="num_pairs"):
        walk.main({"num_pairs": 0}, VideoPaths(root))
