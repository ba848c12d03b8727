"""Unknown matchers and options, wrong types and ranges, unavailable devices: ``gim match``, ``gim reconstruct``,
``gim zeb run`` and the library. Every row is refused before any work, with exit status 2 and one line."""

from __future__ import annotations

import pytest
import torch
from robust_helpers import check_error, record

M = ("match", "--matcher")

# (row id, argv after `gim` with {left}/{right}/{out} placeholders, exit status, error-line pattern)
MATCH_ROWS = [
    ("unknown-matcher", (*M, "nope"), 2, r"unknown matcher 'nope'; registered matchers: .*root_sift"),
    ("module-not-a-class", (*M, "os:path"), 2, r"os:path names a module, not a matcher: 'module:Class' must name"),
    ("class-not-a-matcher", (*M, "collections:OrderedDict"), 2, r"names the class OrderedDict, not a matcher"),
    ("missing-module", (*M, "no_such_module_xyz:Thing"), 2, r"cannot import matcher class 'no_such_module_xyz:Thing'"),
    ("empty-module", (*M, ":Thing"), 2, r"cannot import matcher class ':Thing'"),
    ("unknown-option", (*M, "root_sift", "--conf", "ratio=0.7"), 2, r"unknown option 'ratio' for matcher 'root_sift'"),
    ("option-without-value", (*M, "root_sift", "--conf", "max_keypoints"), 2, r"--conf expects KEY=VALUE"),
    ("text-for-int", (*M, "root_sift", "--conf", "max_keypoints=abc"), 2,
     r"option 'max_keypoints' of matcher 'root_sift' expects an integer >= 1 or None, got 'abc'"),
    ("float-for-int", (*M, "aliked_lightglue", "--conf", "max_keypoints=1.5"), 2,
     r"option 'max_keypoints' of matcher 'aliked_lightglue' expects an integer >= 1, got 1\.5"),
    ("negative-keypoints", (*M, "aliked_lightglue", "--conf", "max_keypoints=-5"), 2,
     r"'max_keypoints' .* expects an integer >= 1, got -5"),
    ("negative-chunk", (*M, "root_sift", "--conf", "chunk_size=-1"), 2, r"'chunk_size' .* expects an integer >= 1"),
    ("zero-chunk", (*M, "root_sift", "--conf", "chunk_size=0"), 2, r"'chunk_size' .* expects an integer >= 1, got 0"),
    ("ratio-out-of-range", (*M, "root_sift", "--conf", "ratio_threshold=2"), 2,
     r"'ratio_threshold' .* expects a number > 0 and <= 1, got 2"),
    ("int-for-bool", (*M, "root_sift", "--conf", "mutual=1"), 2, r"'mutual' .* expects true or false, got 1"),
    ("nan", (*M, "root_sift", "--conf", "contrast_threshold=nan"), 2, r"'contrast_threshold' .* got 'nan'"),
    ("bad-choice", (*M, "gim_loftr", "--conf", "oversize=shrink"), 2,
     r"'oversize' of matcher 'gim_loftr' expects one of 'error', 'resize', got 'shrink'"),
    ("zero-pixels-limit", (*M, "root_sift", "--conf", "max_image_pixels=0"), 2,
     r"'max_image_pixels' .* expects an integer >= 1 or None"),
    ("device-cuda", (*M, "root_sift", "--device", "cuda"), 2, r"device 'cuda' is not available: .*--device cpu"),
    ("device-cuda-index", (*M, "aliked_lightglue", "--device", "cuda:7"), 2, r"device 'cuda:7'"),
    ("device-unknown", (*M, "root_sift", "--device", "gpu"), 2, r"unknown device 'gpu'; use cpu, cuda, cuda:N or mps"),
    ("device-mps", (*M, "root_sift", "--device", "mps"), 2, r"device 'mps' is not available"),
    ("max-size-zero", (*M, "root_sift", "--max-size", "0"), 2,
     r"--max-size must be a whole number of pixels, 1 or more \(e\.g\. 1024\), got 0"),
    ("max-size-negative", (*M, "root_sift", "--max-size", "-5"), 2, r"--max-size must be a whole number.*got -5"),
    ("max-size-text", (*M, "root_sift", "--max-size", "big"), 2, r"argument --max-size: invalid int value"),
    ("threshold-zero", (*M, "root_sift", "--threshold", "0"), 2, r"--threshold must be a positive number"),
    ("weights-for-sift", (*M, "root_sift", "--weights", "x.pth"), 2, r"matcher 'root_sift' has no weights to load"),
    ("weights-missing", (*M, "aliked_lightglue", "--weights", "{out}/none.pth"), 2, r"weights file not found"),
    ("weights-directory", (*M, "aliked_lightglue", "--weights", "{out}"), 2, r"is a directory, not a checkpoint"),
    ("disparity-missing", (*M, "root_sift", "--disparity", "{out}/none.npz"), 2, r"--disparity file not found"),
    ("disparity-garbage", (*M, "root_sift", "--disparity", "{left}"), 2, r"--disparity .* is not a readable"),
]


@pytest.mark.parametrize(("argv", "code", "pattern"), [r[1:] for r in MATCH_ROWS], ids=[r[0] for r in MATCH_ROWS])
def test_exception_match_option(gim, inputs, tmp_path, argv, code, pattern) -> None:
    if "cuda" in " ".join(argv) and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(left=inputs["left"], right=inputs["right"], out=out) for a in argv]
    check_error(gim(args[0], inputs["left"], inputs["right"], *args[1:], "--out", out), code, pattern)
    assert not any(out.iterdir())  # refused before anything was written


def test_exception_disparity_of_another_size_is_checked_before_writing(gim, inputs, tmp_path) -> None:
    import numpy as np

    bad = tmp_path / "disp.npz"
    np.savez(bad, np.zeros((7, 9), np.float32))
    out = tmp_path / "out"
    check_error(gim("match", inputs["left"], inputs["right"], "--matcher", "root_sift", "--disparity", bad,
                    "--out", out), 2, r"9×7 values, but image0 is 320×216 px")
    assert not out.exists() or not any(out.iterdir())


RECONSTRUCT_ROWS = [
    ("device-cuda", ("--device", "cuda"), r"device 'cuda' is not available"),
    ("bad-option", ("--matcher", "root_sift", "--conf", "max_keypoints=abc"), r"expects an integer >= 1 or None"),
    ("sequential-zero", ("--pairs", "sequential:0"), r"sequential window must be >= 1"),
    ("bad-pairs", ("--pairs", "neighbours"), r"expected 'exhaustive', 'sequential:K'.* or an existing pair file"),
    ("bad-camera-model", ("--camera-model", "FISHEYE9"), r"'camera.camera_model' .* expects one of"),
    ("bad-camera-params", ("--camera-params", "a,b"), r"--camera-params expects comma-separated numbers"),
    ("min-matches-zero", ("--min-matches", "0"), r"'min_matches' of gim reconstruct expects an integer >= 1"),
    ("unknown-matcher", ("--matcher", "os:path"), r"not a matcher"),
]


@pytest.mark.parametrize(("extra", "pattern"), [r[1:] for r in RECONSTRUCT_ROWS],
                         ids=[r[0] for r in RECONSTRUCT_ROWS])
def test_exception_reconstruct_option(gim, inputs, tmp_path, extra, pattern) -> None:
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    images = tmp_path / "images"
    images.mkdir()
    for side in ("left", "right"):
        (images / f"{side}.png").write_bytes(inputs[side].read_bytes())
    out = tmp_path / "out"
    check_error(gim("reconstruct", images, "--out", out, "--no-progress", *extra), 2, pattern)
    assert not (out / "matches.sqlite").exists()


def test_exception_reconstruct_paths(gim, inputs, tmp_path) -> None:
    check_error(gim("reconstruct", tmp_path / "nowhere", "--out", tmp_path / "o"), 2, r"image folder not found")
    check_error(gim("reconstruct", inputs["left"], "--out", tmp_path / "o"), 2, r"is a file; gim reconstruct takes a")
    empty = tmp_path / "empty"
    empty.mkdir()
    check_error(gim("reconstruct", empty, "--out", tmp_path / "o"), 2, r"no images|no image pairs")


ZEB_ROWS = [
    ("device-cuda", ("--matcher", "root_sift", "--device", "cuda"), r"device 'cuda' is not available"),
    ("device-unknown", ("--matcher", "root_sift", "--device", "tpu"), r"unknown device 'tpu'"),
    ("bad-option", ("--matcher", "root_sift", "--conf", "chunk_size=0"), r"'chunk_size' .* expects an integer >= 1"),
    ("unknown-matcher", ("--matcher", "os:path"), r"not a matcher"),
    ("max-pairs-zero", ("--matcher", "root_sift", "--max-pairs", "0"), r"max_pairs must be positive"),
    ("bad-shard", ("--matcher", "root_sift", "--shard", "3/2"), r"--shard expects i/n with 0 <= i < n"),
    ("unknown-preset", ("--matcher", "root_sift", "--preset", "fast"), r"has no preset 'fast'"),
    ("no-matcher", (), r"give --matcher"),
]


@pytest.fixture(scope="module")
def tiny_zeb(tmp_path_factory):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "zeb"))
    from zeb_helpers import write_tiny_subset

    root = tmp_path_factory.mktemp("tiny_zeb")
    write_tiny_subset(root, "minihomography")
    return root


@pytest.mark.parametrize(("extra", "pattern"), [r[1:] for r in ZEB_ROWS], ids=[r[0] for r in ZEB_ROWS])
def test_exception_zeb_option(gim, tiny_zeb, tmp_path, extra, pattern) -> None:
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    check_error(gim("zeb", "run", "--data", tiny_zeb, "--out", tmp_path / "dumps", "--no-progress", *extra), 2,
                pattern)


def test_feature_zeb_run_stopped_by_bad_input_does_not_block_the_next(gim, tiny_zeb, tmp_path) -> None:
    """A run that stops at its first pair (a missing image) leaves no results; a run with another configuration
    may then use the folder (nothing to mix), and its results are complete."""
    import shutil

    data = tmp_path / "zeb"
    shutil.copytree(tiny_zeb, data)
    images = {path: path.read_bytes() for path in (data / "minihomography").glob("*.png")}
    for path in images:
        path.unlink()
    common = ("zeb", "run", "--data", data, "--out", tmp_path / "dumps", "--no-progress", "--matcher", "root_sift")
    check_error(gim(*common, "--conf", "max_keypoints=500"), 2, r"not found")
    for path, data_bytes in images.items():
        path.write_bytes(data_bytes)
    outcome = gim(*common, "--conf", "max_keypoints=400")
    assert outcome.code == 0, outcome.err
    assert "6/6 pairs; wrote" in outcome.out
    record("ok")


@pytest.mark.parametrize(
    ("call", "exc", "pattern"),
    [
        (lambda: __import__("gim_plugins").load_matcher(None), KeyError, r"a matcher name is needed \(got None\)"),
        (lambda: __import__("gim_plugins").load_matcher(""), KeyError, r"a matcher name is needed"),
        (lambda: __import__("gim_plugins").load_matcher(3), KeyError, r"a matcher name is needed \(got 3\)"),
        (lambda: __import__("gim_plugins").load_matcher("root_sift", chunk_size=-1), ValueError, r"chunk_size"),
        (lambda: __import__("gim_plugins").load_matcher("root_sift", device="cuda:0"), ValueError,
         r"device 'cuda:0'"),
        (lambda: __import__("gim_plugins").match_pair("root_sift", "a.png", "b.png", max_size=0), ValueError,
         r"max_size must be a positive number of pixels"),
    ],
    ids=["none", "empty", "int", "range", "device", "max-size"],
)
def test_exception_library_calls(call, exc, pattern) -> None:
    from gim_plugins.errors import UserError

    if "cuda" in pattern and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert isinstance(info.value, UserError)  # reported as one line at the command line
    record("clear")


def test_feature_every_registered_matcher_declares_every_option() -> None:
    """The schema is complete for the package's matchers: no option escapes type and range checks."""
    from gim_plugins.conf import check_schema
    from gim_plugins.registry import get_matcher_class, list_matchers

    for name in list_matchers():
        cls = get_matcher_class(name)
        if cls.__module__.startswith("gim_plugins."):
            check_schema(cls.default_conf, cls.conf_schema, owner=name, complete=True)
            assert "max_image_pixels" in cls.default_conf, name
    from gim_plugins.reconstruct.common import CONF_SCHEMA, DEFAULT_CONF

    check_schema(DEFAULT_CONF, CONF_SCHEMA, owner="gim reconstruct", complete=True)
