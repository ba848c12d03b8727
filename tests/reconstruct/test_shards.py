"""Sharded matching: ``--shard i/n`` jobs in separate processes, merged by a run without ``--shard``, store the
same matches as one process; torchrun ranks do the same and rank 0 maps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gim_plugins.colmap_ext.store import MatchStore
from gim_plugins.reconstruct import match
from gim_plugins.reconstruct.common import ReconstructPaths

CONF = {"matcher": "root_sift", "matcher_conf": {"max_keypoints": 512}, "pairs": "exhaustive", "progress": False}
CLI = ["--matcher", "root_sift", "--conf", "max_keypoints=512", "--pairs", "exhaustive", "--no-progress"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _stored(path: Path) -> dict:
    with _open(path) as store:
        return dict(store.items())


def _open(path: Path) -> MatchStore:
    import sqlite3

    fingerprint = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()[0]
    return MatchStore(path, fingerprint)


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for pair, (k0, k1, scores, size0, size1) in a.items():
        other = b[pair]
        assert np.array_equal(k0, other[0]) and np.array_equal(k1, other[1]) and np.array_equal(scores, other[2])
        assert (size0, size1) == other[3:]


@pytest.fixture(scope="module")
def reference(scene_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("unsharded")
    return _stored(match.main(CONF, ReconstructPaths(scene_dir, out)))


def test_feature_two_shard_processes_equal_one_process(scene_dir: Path, reference: dict, tmp_path: Path) -> None:
    jobs = [subprocess.Popen([sys.executable, "-m", "gim_plugins", "reconstruct", str(scene_dir), "--out",
                              str(tmp_path), *CLI, "--shard", f"{i}/2"], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [job.communicate(timeout=300) for job in jobs]
    for job, (stdout, stderr) in zip(jobs, outputs):
        assert job.returncode == 0, stderr[-3000:]
        assert "run without --shard to merge" in stdout
    reports = [json.loads((tmp_path / "shards" / f"match-{i}-of-2.json").read_text()) for i in range(2)]
    assert [r["shard"] for r in reports] == ["0/2", "1/2"]
    assert sum(r["matched_now"] for r in reports) == len(reference)
    assert abs(reports[0]["matched_now"] - reports[1]["matched_now"]) <= 1
    assert not (tmp_path / "matches.sqlite").exists()
    # the merge: a run without --shard takes the shards' pairs and matches nothing again
    store = match.main(CONF, ReconstructPaths(scene_dir, tmp_path))
    merged = json.loads((tmp_path / "match.json").read_text())
    assert merged["matched_now"] == 0 and merged["extracted_now"] == 0  # the shards' features were merged too
    assert not list((tmp_path / "shards").glob("*.sqlite")) and not list((tmp_path / "shards").glob("*.h5"))
    _assert_same(_stored(store), reference)


def test_feature_a_shard_skips_pairs_already_merged(scene_dir: Path, reference: dict, tmp_path: Path) -> None:
    paths = ReconstructPaths(scene_dir, tmp_path)
    match.main(CONF, paths)
    shard = match.main({**CONF, "shard": "1/3"}, paths)
    assert shard == paths.shard_matches(1, 3)
    assert json.loads((tmp_path / "shards" / "match-1-of-3.json").read_text())["matched_now"] == 0


def test_exception_bad_shard(scene_dir: Path, tmp_path: Path) -> None:
    from gim_plugins.errors import UserError

    with pytest.raises(UserError, match="0 <= i < n"):
        match.main({**CONF, "shard": "2/2"}, ReconstructPaths(scene_dir, tmp_path))
    done = subprocess.run([sys.executable, "-m", "gim_plugins", "reconstruct", str(scene_dir), "--out",
                           str(tmp_path), *CLI, "--shard", "x"], env=ENV, capture_output=True, text=True)
    assert done.returncode == 2 and "--shard expects i/n" in done.stderr


@pytest.mark.slow
def test_feature_torchrun_two_ranks_match_merge_and_map(scene_dir: Path, reference: dict, tmp_path: Path) -> None:
    pytest.importorskip("pycolmap")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "gim_plugins", "reconstruct", str(scene_dir), "--out", str(tmp_path), *CLI]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "summary.json").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["registered"] >= 2
    _assert_same(_stored(tmp_path / "matches.sqlite"), reference)


def test_feature_cli_scale_options_reach_the_conf(scene_dir: Path) -> None:
    import argparse

    from gim_plugins.errors import UserError
    from gim_plugins.reconstruct.cli import build_conf, register
    from gim_plugins.reconstruct.common import resolve_conf

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["reconstruct", str(scene_dir), "--pairs", "sequential:3+loop:2", "--retrieval", "vlad",
                              "--shard", "1/4", "--batch-size", "8"])
    conf = resolve_conf(build_conf(args))
    assert (conf.pairs, conf.retrieval.backend, conf.shard, conf.batch_size) == ("sequential:3+loop:2", "vlad",
                                                                                  "1/4", 8)
    assert conf.retrieval.vocabulary == 64  # the other retrieval options keep their defaults
    for bad, message in ((["--shard", "4/4"], "0 <= i < n"), (["--batch-size", "0"], "batch-size")):
        with pytest.raises(UserError, match=message):
            build_conf(parser.parse_args(["reconstruct", str(scene_dir), *bad]))
