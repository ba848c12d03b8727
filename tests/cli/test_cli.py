"""The ``gim`` command end to end (in-process through ``main`` and as a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from gim_plugins.cli import main
from gim_plugins.conf import parse_conf
from gim_plugins.datasets.motorcycle import paths


def test_smoke_match_writes_both_pictures(tmp_path, capsys):
    files = paths()
    code = main(["match", str(files["left"]), str(files["right"]), "--matcher", "root_sift", "--out", str(tmp_path),
                 "--disparity", str(files["disparity"])])
    out = capsys.readouterr().out
    assert code == 0
    match_png = tmp_path / "motorcycle_left_motorcycle_right_root_sift_match.png"
    warp_png = tmp_path / "motorcycle_left_motorcycle_right_root_sift_warp.png"
    for png in (match_png, warp_png):
        assert png.is_file() and f"wrote {png}" in out
    match_img, warp_img = cv2.imread(str(match_png)), cv2.imread(str(warp_png))
    assert match_img.shape == (2 * 500 + 2, 2 * 741 + 2, 3)  # two rows of both images, 2-px margins
    assert warp_img.shape == (500, 3 * 741 + 4, 3)
    # row 2 has green match markers, row 1 is the untouched pair
    bottom = match_img[502:].astype(int)
    assert ((bottom[..., 1] > 200) & (bottom[..., 0] < 60) & (bottom[..., 2] < 60)).sum() > 1000
    inliers = int(next(line for line in out.splitlines() if line.startswith("inliers:")).split()[1])
    assert inliers >= 700
    assert "within 3 px of the GT disparity" in out


def test_feature_max_size_maps_keypoints_back(tmp_path, capsys):
    files = paths()
    assert main(["match", str(files["left"]), str(files["right"]), "--matcher", "root_sift", "--out",
                 str(tmp_path), "--max-size", "400", "--disparity", str(files["disparity"])]) == 0
    out = capsys.readouterr().out
    share = float(next(line for line in out.splitlines() if line.startswith("ground truth:")).split()[2])
    assert share > 85.0  # keypoints are in original pixels, so they still agree with the full-size GT
    assert cv2.imread(str(tmp_path / "motorcycle_left_motorcycle_right_root_sift_match.png")).shape[1] == 2 * 741 + 2


def test_exception_clear_errors(tmp_path, capsys):
    files = paths()
    assert main(["match", str(tmp_path / "missing.png"), str(files["right"]), "--matcher", "root_sift"]) == 2
    assert "image not found" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["match", str(bad), str(files["right"]), "--matcher", "root_sift", "--out", str(tmp_path)]) == 2
    assert "cannot decode" in capsys.readouterr().err
    assert main(["match", str(files["left"]), str(files["right"]), "--matcher", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown matcher 'nope'" in err and "root_sift" in err
    assert main(["match", str(files["left"]), str(files["right"]), "--matcher", "root_sift",
                 "--conf", "ratio=0.7"]) == 2
    assert "unknown option 'ratio'" in capsys.readouterr().err
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    assert main(["match", str(tiny), str(files["right"]), "--matcher", "root_sift"]) == 2
    assert "too small" in capsys.readouterr().err


def test_feature_parse_conf():
    assert parse_conf(["a=1", "b=true", "c=(1, 2)", "d=hello", "e=null", "f=0.5"]) == {
        "a": 1, "b": True, "c": (1, 2), "d": "hello", "e": None, "f": 0.5}
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_conf(["novalue"])


def test_feature_list_and_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "gim_plugins", "list"], capture_output=True, text=True, timeout=120,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "root_sift" in proc.stdout and "aliked_lightglue" in proc.stdout and "default matcher" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "gim_plugins", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "gim-plugins" in proc.stdout


def test_exception_user_error_line_and_debug(tmp_path, capsys):
    """A user error is one line with exit status 2; ``--debug`` shows the traceback instead."""
    missing = str(tmp_path / "missing.png")
    assert main(["match", missing, missing, "--matcher", "root_sift"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gim: error: ") and len(err.strip().splitlines()) == 1
    with pytest.raises(FileNotFoundError):
        main(["--debug", "match", missing, missing, "--matcher", "root_sift"])
