"""``gim train`` end to end on the data pipeline's datasets: a ZeroMatch tree (the layout ``gim video`` writes and
GIM's ``data/ZeroMatch``) mixed with a ZEB-format folder, validated on ZEB-format pairs, resumed by the same
command, and the best checkpoint loaded by the matcher."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "data"))

from _train_synthetic import write_zeb_planes  # noqa: E402
from traindata_helpers import homography_pair, make_walk_tree  # noqa: E402

SETTINGS = ["image_size=[96,96]", "data.max_labels=64", "trainer.extractor_weights=null", "trainer.max_keypoints=64",
            "trainer.checkpointed=false", "validation.max_pairs=1", "validation.conf={'max_keypoints':48}",
            "checkpoint_every=1"]


def _walk_tree(root: Path, style: str) -> Path:
    image0, image1, labels = homography_pair(200, 240, step=4)
    frames = {0: image0, 5: image1, 10: image0}
    back = labels[:, [2, 3, 0, 1]]
    return make_walk_tree(root, frames, {(0, 5): labels, (5, 10): back}, style=style)


def _train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gim_plugins", "train", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _rows(run: Path, kind: str) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as handle:
        return [r for r in csv.DictReader(handle) if r["kind"] == kind]


@pytest.mark.parametrize("style", ["ours", "gim"])
def test_feature_gim_train_reads_zeromatch_and_zeb_folders(style: str, tmp_path: Path) -> None:
    from gim_plugins.matching import load_matcher

    tree = _walk_tree(tmp_path / "zeromatch", style)
    zeb = write_zeb_planes(tmp_path / "zeb", count=1, size=(96, 96))
    run = tmp_path / "run"
    args = ["--preset", "gim_lightglue", "--data", str(tree), f"zeb:{zeb}", "--out", str(run), "--val", str(zeb),
            "--val-every", "1", "--no-progress", *[item for s in SETTINGS for item in ("--set", s)]]
    first = _train(*args, "--max-steps", "2")
    assert first.returncode == 0, first.stderr
    assert f"wrote {run / 'last.ckpt'} and {run / 'best.ckpt'}" in first.stdout
    train = _rows(run, "train")
    assert [int(r["step"]) for r in train] == [1, 2]
    assert all(math.isfinite(float(r["loss"])) for r in train)
    assert [int(r["step"]) for r in _rows(run, "val")] == [1, 2]
    second = _train(*args, "--max-steps", "3")  # the same command resumes the run
    assert second.returncode == 0, second.stderr
    assert [int(r["step"]) for r in _rows(run, "train")] == [1, 2, 3]
    matcher = load_matcher("gim_lightglue", weights=str(run / "best.ckpt"), max_keypoints=48)
    image = np.zeros((64, 64, 3), np.uint8)
    result = matcher.match(image, image)
    assert result.keypoints0.shape[1] == 2


def test_exception_gim_train_refuses_an_empty_zeromatch_tree(tmp_path: Path) -> None:
    (tmp_path / "tree" / "propagate" / "SIFT 10 20 40 F FM 32 PM 512").mkdir(parents=True)
    result = _train("--preset", "gim_lightglue", "--data", str(tmp_path / "tree"), "--out", str(tmp_path / "run"),
                    "--val", "none", "--set", "trainer.extractor_weights=null")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "propagate" in result.stderr
