"""The bad-input suite: shared inputs, the runner for ``gim`` rows, and the tally printed at the end.

Every row of the tables in this folder is one input, one command or call, and the expected outcome: the exit
status, a pattern for the first error line, no traceback, and files left intact. ``gim`` rows run in-process through
``gim_plugins.cli.main`` (the same ``run_cli`` edge as the console script, without a new interpreter per row);
subprocesses are used only where the process edge is what is tested (signals, the console script itself).

Each row records its outcome in :data:`TALLY` (``clear`` / ``ok`` / ``traceback`` / ``wrong`` / ``lost``); the
session ends with one summary line, e.g. ``robustness: 97 cases: 71 clear errors, 26 handled, 0 tracebacks, 0 silent
wrong results, 0 data lost``.

The weights rows work on copies: ``GIM_WEIGHTS_DIR`` and ``XDG_CACHE_HOME`` point into a temporary folder for the
whole session, with copies of the offline default's files when they are installed.
"""

from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from robust_helpers import OFFLINE_FILES, TALLY, Outcome


@pytest.fixture
def gim(capsys: pytest.CaptureFixture[str]) -> Any:
    """``gim(*argv)`` → :class:`Outcome`, in-process (an escaping exception is reported as a traceback)."""
    from gim_plugins.cli import main

    def run(*argv: Any) -> Outcome:
        capsys.readouterr()
        try:
            code: int | None = main([str(a) for a in argv])
            trace = None
        except SystemExit as exc:  # argparse's own errors
            code, trace = int(exc.code or 0), None
        except BaseException:
            code, trace = None, traceback.format_exc()
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err, trace)

    return run


# ------------------------------------------------------------------------------------------------------ inputs


def _write(path: Path, rgb: np.ndarray, *params: int) -> Path:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    assert cv2.imwrite(str(path), bgr, list(params))
    return path


def _huge_header_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width×height`` (the pixels are never written: only the header may be read)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good and bad image files built from the real motorcycle pair (downscaled to 320 px to keep rows fast)."""
    from PIL import Image

    from gim_plugins.datasets.motorcycle import paths

    root = tmp_path_factory.mktemp("inputs")
    files = paths()
    left = cv2.cvtColor(cv2.imread(str(files["left"])), cv2.COLOR_BGR2RGB)
    right = cv2.cvtColor(cv2.imread(str(files["right"])), cv2.COLOR_BGR2RGB)
    size = (320, round(320 * left.shape[0] / left.shape[1]))
    left, right = (cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in (left, right))
    out: dict[str, Path] = {"left": _write(root / "left.png", left), "right": _write(root / "right.png", right)}
    out["left_jpg"] = _write(root / "left.jpg", left, cv2.IMWRITE_JPEG_QUALITY, 95)
    jpeg = out["left_jpg"].read_bytes()
    png = out["left"].read_bytes()
    out["missing"] = root / "missing.png"
    out["zero"] = root / "zero.png"
    out["zero"].write_bytes(b"")
    out["truncated_png"] = root / "truncated.png"
    out["truncated_png"].write_bytes(png[: len(png) // 2])
    out["truncated_jpg"] = root / "truncated.jpg"
    out["truncated_jpg"].write_bytes(jpeg[: len(jpeg) // 2])
    out["text_png"] = root / "notes.png"
    out["text_png"].write_text("not an image\n")
    out["random_jpg"] = root / "random.jpg"
    out["random_jpg"].write_bytes(np.random.default_rng(0).bytes(5000))
    out["jpeg_named_png"] = root / "photo_really_jpeg.png"
    out["jpeg_named_png"].write_bytes(jpeg)
    out["png_named_jpg"] = root / "photo_really_png.jpg"
    out["png_named_jpg"].write_bytes(png)
    out["directory"] = root / "folder.png"
    out["directory"].mkdir()
    out["spaces"] = _write(root / "name with spaces.png", left)
    out["rgba"] = _write(root / "rgba.png", np.dstack([left, np.full(left.shape[:2], 128, np.uint8)]))
    bgr16 = (cv2.cvtColor(left, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    assert cv2.imwrite(str(root / "sixteen.png"), bgr16)
    out["sixteen"] = root / "sixteen.png"
    out["gray"] = _write(root / "gray.png", cv2.cvtColor(left, cv2.COLOR_RGB2GRAY))
    pil = Image.fromarray(left)
    pil.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(out.setdefault("palette", root / "palette.png"))
    pil.convert("CMYK").save(out.setdefault("cmyk_jpg", root / "cmyk.jpg"), quality=95)
    pil.convert("CMYK").save(out.setdefault("cmyk_tif", root / "cmyk.tif"))
    out["tiny"] = _write(root / "tiny.png", left[:8, :8])
    out["one_px"] = _write(root / "one.png", left[:1, :1])
    out["huge_header"] = _huge_header_png(root / "huge_header.png", 20000, 15000)
    return out


@pytest.fixture(scope="session")
def big_pair(tmp_path_factory: pytest.TempPathFactory, inputs: dict[str, Path]) -> tuple[Path, Path]:
    """A real 27-megapixel pair (6000×4500, the motorcycle pair upscaled): above root_sift's default limit."""
    root = tmp_path_factory.mktemp("big")
    pair = []
    for side in ("left", "right"):
        image = cv2.imread(str(inputs[side]))
        big = cv2.resize(image, (6000, 4500), interpolation=cv2.INTER_LINEAR)
        path = root / f"big_{side}.png"
        assert cv2.imwrite(str(path), big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        pair.append(path)
    return pair[0], pair[1]


@pytest.fixture(scope="module", autouse=True)
def scratch_weights(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``GIM_WEIGHTS_DIR``/``XDG_CACHE_HOME`` in a temporary folder (copies of the offline files when installed):
    no row touches the real cache. Module scope: the environment is restored before other folders' tests run."""
    from gim_plugins.weights import search_dirs

    root = tmp_path_factory.mktemp("weights")
    weights, cache = root / "weights", root / "cache"
    weights.mkdir()
    real = [d for d in search_dirs() if (d / OFFLINE_FILES[0]).is_file()]
    if real:
        for name in OFFLINE_FILES:
            if (real[0] / name).is_file():
                shutil.copy2(real[0] / name, weights / name)
    saved = {k: os.environ.get(k) for k in ("GIM_WEIGHTS_DIR", "XDG_CACHE_HOME")}
    os.environ["GIM_WEIGHTS_DIR"], os.environ["XDG_CACHE_HOME"] = str(weights), str(cache)
    yield weights
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def offline_weights(scratch_weights: Path) -> Path:
    if not (scratch_weights / OFFLINE_FILES[0]).is_file():
        pytest.skip("aliked_lightglue weights are not installed (`gim weights fetch aliked_lightglue`)")
    return scratch_weights


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    total = sum(TALLY.values())
    terminalreporter.write_line(
        f"robustness: {total} cases: {TALLY['clear']} clear errors, {TALLY['ok']} handled, "
        f"{TALLY['traceback']} tracebacks, {TALLY['wrong']} silent wrong results, {TALLY['lost']} data lost")
