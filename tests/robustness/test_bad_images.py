"""Bad and unusual images through ``gim match`` and the library: each row an input, the call, the outcome.

Unusual but valid images (RGBA, 16-bit, gray, palette, CMYK, renamed, spaces in the name) must match about as well
as the plain RGB image (a silently misread image, e.g. palette indices read as gray, would lose most inliers);
broken ones end in exit status 2 with one line naming the file and the problem, and nothing is written.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from robust_helpers import check_error, check_ok, record

MATCH = ("match", "--matcher", "root_sift", "--conf", "max_keypoints=1024")

# (row id, input key for image0, expected exit status, pattern of the error line)
BROKEN = [
    ("missing", "missing", 2, r"image not found: .*missing\.png"),
    ("zero-byte", "zero", 2, r"zero\.png is empty \(0 bytes\)"),
    ("truncated-png", "truncated_png", 2, r"truncated\.png is truncated"),
    ("truncated-jpeg", "truncated_jpg", 2, r"truncated\.jpg is truncated"),
    ("text-named-png", "text_png", 2, r"cannot decode .*notes\.png"),
    ("random-bytes-jpeg", "random_jpg", 2, r"cannot decode .*random\.jpg"),
    ("directory", "directory", 2, r"folder\.png is a directory, not an image file"),
    ("tiny-8px", "tiny", 2, r"image0: image of 8×8 px is too small; this matcher needs at least 16×16"),
    ("one-pixel", "one_px", 2, r"image of 1×1 px is too small"),
    ("huge-header", "huge_header", 2, r"20000×15000 px \(300\.0 MP\) is larger than the 24\.0 MP matcher "
                                      r"'root_sift' accepts"),
]

# (row id, input key, share of the plain image's inliers it must keep at least)
UNUSUAL = [
    ("jpeg", "left_jpg", 0.6),
    ("jpeg-renamed-png", "jpeg_named_png", 0.6),
    ("png-renamed-jpg", "png_named_jpg", 0.9),
    ("spaces-in-name", "spaces", 0.9),
    ("rgba", "rgba", 0.9),
    ("16-bit", "sixteen", 0.9),
    ("gray", "gray", 0.5),
    ("palette", "palette", 0.4),
    ("cmyk-jpeg", "cmyk_jpg", 0.5),
    ("cmyk-tiff", "cmyk_tif", 0.9),
]


def _inliers(out: str) -> int:
    return int(re.search(r"^inliers: (\d+)", out, re.M).group(1))


@pytest.fixture(scope="module")
def baseline(inputs, tmp_path_factory) -> int:
    from gim_plugins.cli import main

    out = tmp_path_factory.mktemp("baseline")
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main([*MATCH, str(inputs["left"]), str(inputs["right"]), "--out", str(out)]) == 0
    return _inliers(buffer.getvalue())


@pytest.mark.parametrize(("key", "code", "pattern"), [row[1:] for row in BROKEN], ids=[row[0] for row in BROKEN])
def test_exception_broken_image(gim, inputs, tmp_path, key, code, pattern) -> None:
    out = tmp_path / "out"
    check_error(gim(*MATCH, inputs[key], inputs["right"], "--out", out), code, pattern)
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    if key not in ("missing", "directory"):
        assert inputs[key].stat().st_size == inputs[key].stat().st_size  # inputs are never modified


def test_exception_broken_image_as_image1(gim, inputs, tmp_path) -> None:
    check_error(gim(*MATCH, inputs["left"], inputs["truncated_jpg"], "--out", tmp_path), 2, r"truncated\.jpg")


@pytest.mark.parametrize(("key", "floor"), [row[1:] for row in UNUSUAL], ids=[row[0] for row in UNUSUAL])
def test_feature_unusual_image_matches_like_rgb(gim, inputs, tmp_path, baseline, key, floor) -> None:
    outcome = gim(*MATCH, inputs[key], inputs["right"], "--out", tmp_path)
    check_ok(outcome)
    inliers = _inliers(outcome.out)
    if inliers < floor * baseline:
        record("wrong")
        pytest.fail(f"{key}: {inliers} inliers against {baseline} for the RGB file: misread?")


def test_feature_huge_image_refused_then_downscaled(gim, big_pair, tmp_path) -> None:
    """27 MP: refused from the header without --max-size; with it, matched and drawn at a bounded size."""
    left, right = big_pair
    check_error(gim(*MATCH, left, right, "--out", tmp_path / "a"), 2,
                r"6000×4500 px \(27\.0 MP\) is larger than the 24\.0 MP .* --max-size")
    assert not (tmp_path / "a").exists()
    outcome = gim(*MATCH, left, right, "--out", tmp_path / "b", "--max-size", 640)
    check_ok(outcome)
    assert _inliers(outcome.out) > 100
    picture = cv2.imread(str(next((tmp_path / "b").glob("*_match.png"))))
    assert max(picture.shape[:2]) <= 2 * 2048 + 2  # bounded, not 2 × 6000 px wide


# -------------------------------------------------------------------------------------------- library rows


def _pil(inputs, mode: str):
    from PIL import Image

    image = Image.open(inputs["left"]).convert("RGB")
    return image.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else image.convert(mode)


@pytest.mark.parametrize("mode", ["P", "CMYK", "L", "RGBA", "1"])
def test_feature_pil_images_in_any_mode(inputs, mode) -> None:
    """PIL images are converted by mode: palette indices or CMYK inks are never read as pixel values."""
    from gim_plugins.io import to_image_tensor

    rgb = to_image_tensor(inputs["left"])
    tensor = to_image_tensor(_pil(inputs, mode))
    assert tensor.shape == rgb.shape
    error = float((tensor - rgb).abs().mean())
    limit = {"P": 0.03, "CMYK": 0.01, "L": 0.2, "RGBA": 1e-6, "1": 0.5}[mode]
    assert error < limit, f"mode {mode}: mean error {error:.3f}"
    record("ok")


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda m: m.match(np.zeros((0, 0, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)), r"image array is empty"),
        (lambda m: m.match(np.zeros((64, 0), np.uint8), np.zeros((64, 64), np.uint8)), r"image array is empty"),
        (lambda m: m.match(None, np.zeros((64, 64, 3), np.uint8)), r"image0: expected a path.*got None"),
        (lambda m: m.match(np.zeros((64, 64, 2), np.uint8), np.zeros((64, 64), np.uint8)), r"H×W×3"),
        (lambda m: m.match(np.full((64, 64, 3), np.nan, np.float32), np.zeros((64, 64), np.uint8)), r"NaN"),
        (lambda m: m.match(np.zeros((64, 64), np.int64), np.zeros((64, 64), np.uint8)), r"dtype int64"),
        (lambda m: m.match(Path("/nonexistent/a.png"), np.zeros((64, 64), np.uint8)), r"image not found"),
    ],
    ids=["empty-0x0x3", "empty-64x0", "none", "two-channels", "nan", "int64", "missing-path"],
)
def test_exception_library_inputs(call, pattern) -> None:
    from gim_plugins import load_matcher
    from gim_plugins.errors import UserError

    matcher = load_matcher("root_sift")
    with pytest.raises((UserError, FileNotFoundError), match=pattern):
        call(matcher)
    record("clear")


def test_exception_library_huge_array_refused_before_conversion() -> None:
    """A 30 MP uint8 array (90 MB) is refused before the 360 MB float copy is made."""
    from gim_plugins import load_matcher
    from gim_plugins.errors import InputError

    big = np.zeros((5000, 6000, 3), np.uint8)
    with pytest.raises(InputError, match=r"6000×5000 px \(30\.0 MP\) is larger than the 24\.0 MP"):
        load_matcher("root_sift").match(big, big)
    record("clear")
