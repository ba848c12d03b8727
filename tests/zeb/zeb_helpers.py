"""Helpers shared by the ZEB tests (importable as ``zeb_helpers``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gim_plugins.zeb.mini import MiniPair, homography_pairs, pair_line

TINY_SIZE = (240, 320)
TINY_FOCAL = 280.0


def write_tiny_subset(root: Path, folder: str, photos: tuple[str, ...] = ("astronaut", "coffee"),
                      size: tuple[int, int] = TINY_SIZE) -> tuple[list[MiniPair], dict[str, np.ndarray]]:
    """Folded-card pairs of real photos (default 320×240) in ``root/folder`` (``-`` separator, PNG images)."""
    import cv2

    images: dict[str, np.ndarray] = {}
    pairs = homography_pairs(images, photos, seed=0, size=size, focal=TINY_FOCAL)
    directory = root / folder
    directory.mkdir(parents=True, exist_ok=True)
    for stem, image in images.items():
        cv2.imwrite(str(directory / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    for pair in pairs:
        (directory / f"{pair.scene}-{pair.name0}-{pair.name1}.txt").write_text(pair_line(pair) + "\n")
    return pairs, images
