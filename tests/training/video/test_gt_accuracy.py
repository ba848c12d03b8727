"""Label precision on a small ground-truth video, through the pipeline's own steps (decode → label → propagate).

The full measurement (300 frames at 740×500, both offline labellers) is ``benchmarks/video_gt_accuracy.py``; its table
is in docs/video.md. Here: 120 frames at half size (370×250), H.264 through PyAV, the card crossing frames 40–79,
RootSIFT only. At this size a pair has a few hundred labels, fewer than GIM's 512 links per hop, so the propagation
runs with ``min_final_matches=128`` (an option; every other rule is GIM's).

Measured on this clip: 9473 labels after filtering, 95.5 % within 2 px (98.5 % of those away from the renderer's
unrendered cracks), 0.3 % on the card; 4 propagated pairs, 713 labels, 95.4 % within 2 px, none on the card. Floors
(rounding, encoder and OpenCV builds move these numbers a little): ≥ 93 % within 2 px after filtering and after
propagation, < 1 % on the moving card.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("av", reason="the video extra (PyAV) is not installed")

from gim_plugins.training.video import decode, groundtruth, label, propagate
from gim_plugins.training.video.layout import Layout, VideoPaths, ppid, read_json

QUIET = {"progress": False}


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("gt")
    video, truth, root = work / "gtwalk.mp4", work / "truth", work / "ZeroMatch"
    groundtruth.write_truth_video(video, truth, num_frames=120, scale=0.5, moving=(40, 80), supersample=1)
    decode.main({**QUIET, "shot_detector": "none"}, VideoPaths(root, None, (video,)))
    label.main({**QUIET, "labellers": ["root_sift"], "masks": "none"}, VideoPaths(root, ("gtwalk",)))
    propagate.main({**QUIET, "min_final_matches": 128}, VideoPaths(root, ("gtwalk",)))
    return {"video": video, "truth": truth, "root": root}


def test_feature_truth_video_is_real_video(clip: dict[str, Path]) -> None:
    import av

    info = groundtruth.truth_info(clip["truth"])
    assert info["codec"] in ("libx264", "h264", "mpeg4") and (info["width"], info["height"]) == (370, 250)
    with av.open(str(clip["video"])) as container:
        assert sum(1 for _ in container.decode(video=0)) == 120
    frame = groundtruth.read_truth(clip["truth"], 60)
    assert frame.depth.shape == (250, 370) and frame.object_mask.any() and frame.object_pose is not None
    assert not groundtruth.read_truth(clip["truth"], 0).object_mask.any()


def test_feature_true_correspondences_have_zero_error(clip: dict[str, Path]) -> None:
    import numpy as np

    from gim_plugins.datasets.scene import Frame, correspondences

    views = []
    for index in (20, 50):
        t = groundtruth.read_truth(clip["truth"], index)
        views.append(Frame(str(index), np.zeros((*t.depth.shape, 3), np.uint8), t.K, t.R, t.t, t.depth,
                           object_mask=t.object_mask))
    k0, k1 = correspondences(*views, step=4)
    errors, on_object, _ = groundtruth.label_errors(groundtruth.read_truth(clip["truth"], 20),
                                                     groundtruth.read_truth(clip["truth"], 50),
                                                     np.concatenate([k0, k1], axis=1))
    assert len(errors) > 1000 and np.mean(errors < 1e-6) > 0.99 and not on_object.any()
    shifted, _, _ = groundtruth.label_errors(groundtruth.read_truth(clip["truth"], 20),
                                             groundtruth.read_truth(clip["truth"], 50),
                                             np.concatenate([k0, k1 + np.array([1.5, 0.0])], axis=1))
    # the truth takes the best of the four depths around a point, so a shift is measured a little short of itself
    assert np.median(shifted) == pytest.approx(1.5, abs=0.1) and np.mean(shifted > 1.0) > 0.9


def test_feature_precision_after_filtering(clip: dict[str, Path]) -> None:
    folders = [p for f, _, p in Layout(clip["root"]).label_dirs("gtwalk") if f.method == "SIFT"]
    measured = groundtruth.measure_labels(folders, clip["truth"])
    assert measured["labels"] > 3000
    assert measured["within_2px"] >= 0.93 and measured["on_object"] < 0.01


def test_feature_precision_after_propagation(clip: dict[str, Path]) -> None:
    pid = ppid(["SIFT"], [10, 20, 40], [False], 32, 128)
    entry = read_json(Layout(clip["root"]).summary("gtwalk", "propagate"))[pid]
    assert entry["kept"] >= 3 and entry["chain_frames"]["max"] >= 40
    measured = groundtruth.measure_propagated(Layout(clip["root"]).propagate_dir(pid, "gtwalk"), clip["truth"])
    assert measured["labels"] == entry["labels_total"] > 400
    assert measured["within_2px"] >= 0.93 and measured["on_object"] < 0.01

