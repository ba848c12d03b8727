"""``gim view`` in a real browser: Debian's headless chromium opens the page from its file (no server), with WebGL
(SwiftShader) and with the 2D-canvas fallback; no console errors, and the screenshot shows the coloured points.

Set ``GIM_VIEW_SCREENSHOT=docs/img/view.png`` to also keep the WebGL screenshot (the docs' picture).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from view_browser import browser_missing, chromium, open_page

from gim_plugins.view import main
from gim_plugins.view.render import BACKGROUND

REASON = browser_missing()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no browser to open the page: {REASON}")


def _canvas_pixels(shown: dict) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(shown["screenshot"], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    left, top, width, height, ratio = shown["canvas"]
    box = [round(v * ratio) for v in (left, top, width, height)]
    return image[box[1] : box[1] + box[3], box[0] : box[0] + box[2]]


def _check_points_drawn(pixels: np.ndarray) -> None:
    background = np.all(np.abs(pixels.astype(int) - np.array(BACKGROUND)) <= 2, axis=2)
    assert 0.05 < 1 - background.mean() < 0.95, f"non-background share {1 - background.mean():.3f}"
    drawn = pixels[~background].astype(np.float64)
    assert drawn.std(axis=0).mean() > 20  # the photo's colours
    red = (drawn[:, 0] > 150) & (drawn[:, 1] < 80) & (drawn[:, 2] < 80)
    assert red.sum() > 200  # the motorcycle's red tank


@pytest.mark.parametrize("query, renderer", [("", "WebGL"), ("?renderer=2d", "2D canvas")])
def test_feature_page_in_chromium(recon_dir, tmp_path, query, renderer) -> None:
    out = tmp_path / "recon"
    shutil.copytree(recon_dir, out)
    page = main({"png": False}, {"out": out})
    with chromium() as driver:
        shown = open_page(driver, page, query=query)
    assert shown["errors"] == [], shown["errors"]
    assert shown["renderer"] == renderer, shown["status"]
    assert shown["status"].startswith(f"{renderer}: 60000 dense points, ") and "4 cameras" in shown["status"]
    _check_points_drawn(_canvas_pixels(shown))
    target = os.environ.get("GIM_VIEW_SCREENSHOT")
    if target and renderer == "WebGL":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(shown["screenshot"])
