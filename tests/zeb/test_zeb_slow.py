"""Long ZEB checks (``--runslow``): a run killed with SIGKILL resumes to the same dump; ZEB-mini end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from zeb_helpers import write_tiny_subset

from gim_plugins.zeb.dumps import dump_file_name
from gim_plugins.zeb.mini import write_mini
from gim_plugins.zeb.report import collect
from gim_plugins.zeb.runner import RunConfig, run

pytestmark = pytest.mark.slow


def _command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "gim_plugins.zeb", "run", "--matcher", "root_sift", "--data", str(data), "--out",
            str(out), "--no-progress"]


def test_feature_sigkill_mid_run_then_resume(tmp_path: Path):
    data = tmp_path / "zeb"
    write_tiny_subset(data, "minihomography", photos=("astronaut", "coffee", "chelsea", "rocket"), size=(480, 640))
    reference = tmp_path / "reference"
    run(RunConfig(matcher="root_sift", progress=False), data, reference)
    out = tmp_path / "killed"
    records = out / "runs" / "root_sift@vanilla" / "MiniHomography" / "records-0-of-1.jsonl"
    process = subprocess.Popen(_command(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if records.is_file() and len(records.read_bytes().splitlines()) >= 3:
            break
        time.sleep(0.05)
    if process.poll() is not None:
        pytest.fail("the run finished before it could be killed; make the fixture larger")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    name = dump_file_name("root_sift", "MiniHomography", "vanilla")
    assert not (out / name).exists()
    done = len(records.read_bytes().splitlines())
    assert 3 <= done < 12
    assert subprocess.run(_command(data, out), capture_output=True, timeout=600).returncode == 0
    assert (out / name).read_bytes() == (reference / name).read_bytes()


def test_feature_zeb_mini_end_to_end(tmp_path: Path):
    summary = write_mini(tmp_path / "zeb_mini")
    assert summary.pairs["MiniHomography"] == 18 and summary.pairs["MiniScene"] >= 1
    run(RunConfig(matcher="root_sift", progress=False), tmp_path / "zeb_mini", tmp_path / "dumps")
    (result,) = collect(tmp_path / "dumps")
    # floors well below what RootSIFT reaches (about 80 / 97 AUC@5 on the homography / scene subsets)
    assert result.subsets["MiniHomography"].auc[5.0] > 0.6
    assert result.subsets["MiniScene"].auc[5.0] > 0.6
    assert result.subsets["MiniHomography"].failures == 0
