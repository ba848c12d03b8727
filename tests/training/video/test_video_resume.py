"""A labelling run killed mid-way (SIGKILL of a subprocess) and rerun ends with exactly the files of an unbroken run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="the video extra (PyAV) is not installed")
pytest.importorskip("scenedetect", reason="the video extra (PySceneDetect) is not installed")

from video_helpers import sample, tree_digest

from gim_plugins.training.video import decode, label
from gim_plugins.training.video.layout import LabelFolder, Layout, VideoFolder, VideoPaths

CONF = {"labellers": ["root_sift"], "masks": "none", "progress": False}  # GIM's 32400 SIFT features: ≈0.5 s a pair
SCRIPT = """
import sys
from pathlib import Path
from gim_plugins.training.video import label
from gim_plugins.training.video.layout import VideoPaths
label.main({conf!r}, VideoPaths(Path(sys.argv[1])))
"""


def test_feature_killed_run_completes_identically(tmp_path: Path) -> None:
    decoded = tmp_path / "decoded"
    decode.main({"range": "0f:80f", "skips": [10, 20], "progress": False},
                VideoPaths(decoded, sources=(sample("bikes"),)))
    unbroken, resumed = tmp_path / "unbroken", tmp_path / "resumed"
    shutil.copytree(decoded, unbroken, symlinks=True)
    shutil.copytree(decoded, resumed, symlinks=True)
    label.main(CONF, VideoPaths(unbroken))

    record = Layout(resumed).label_dir(LabelFolder("SIFT", False, 10), VideoFolder("bikes", 640, 272, 0, 3, 10))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(conf=CONF), str(resumed)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (record / "nums.npy").exists():
            assert proc.poll() is None, "the labelling subprocess ended before writing a record"
            assert time.monotonic() < deadline, "no record written within 120 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done_at_kill = len(np.load(record / "nums.npy"))
    expected = tree_digest(unbroken, "pseudo", "state")
    partial = tree_digest(resumed, "pseudo")
    assert done_at_kill < 6 and partial != {k: v for k, v in expected.items() if k.startswith("pseudo")}

    label.main(CONF, VideoPaths(resumed))  # completes what is missing, skips the rest
    got = tree_digest(resumed, "pseudo", "state")
    expected.pop("state/bikes/label_summary.json")  # timings differ between runs
    got.pop("state/bikes/label_summary.json")
    assert got == expected
