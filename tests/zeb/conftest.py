"""Fixtures for the ZEB tests: tiny benchmarks in the official layout, generated at test time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gim_plugins.zeb.mini import MiniPair, homography_pairs, pair_line

TINY_SIZE = (240, 320)
TINY_FOCAL = 280.0


def write_tiny_subset(root: Path, folder: str, photos: tuple[str, ...] = ("astronaut", "coffee")) -> list[MiniPair]:
    """Folded-card pairs of real photos at 320×240 in ``root/folder`` (``-`` separator, PNG images)."""
    import cv2

    images: dict[str, np.ndarray] = {}
    pairs = homography_pairs(images, photos, seed=0, size=TINY_SIZE, focal=TINY_FOCAL)
    directory = root / folder
    directory.mkdir(parents=True, exist_ok=True)
    for stem, image in images.items():
        cv2.imwrite(str(directory / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    for pair in pairs:
        (directory / f"{pair.scene}-{pair.name0}-{pair.name1}.txt").write_text(pair_line(pair) + "\n")
    return pairs


@pytest.fixture(scope="session")
def tiny_zeb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ZEB folder with one subset (``minihomography``, 6 pairs of 320×240 renders of two real photos)."""
    root = tmp_path_factory.mktemp("tiny_zeb")
    write_tiny_subset(root, "minihomography")
    return root
