"""``gim app`` end to end in a real browser: Debian's headless chromium runs the example pair with aliked_lightglue.

Set ``GIM_APP_SCREENSHOT=docs/img/app.png`` to also copy the page's screenshot there (the docs' picture).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from app_browser import browser_missing, chromium, run_example, screenshot, serve

REASON = browser_missing()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no browser to drive: {REASON}")


def test_feature_example_pair_in_chromium(library_counts, tmp_path, record_property):
    with serve("--matcher", "aliked_lightglue", log=tmp_path / "server.log") as url, chromium() as driver:
        shown = run_example(driver, url)
        shot = screenshot(driver, tmp_path / "app.png")
    assert shown["matcher"] == "aliked_lightglue"
    assert (shown["matches"], shown["inliers"]) == library_counts
    assert shown["status"].startswith(f"aliked_lightglue: {library_counts[0]} matches, {library_counts[1]} inliers")
    assert all(stage in shown["timing"] for stage in ("decode", "match", "robust fit", "drawing"))
    assert shown["downloads"] == ["aliked_lightglue_match.png", "aliked_lightglue_matches.csv",
                                  "aliked_lightglue_matches.npz", "aliked_lightglue_warp.png"]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.width == 1000 and image.height > 1000
    assert shot.stat().st_size < 1_000_000
    record_property("page_response_seconds", round(shown["seconds"], 2))
    print(f"page response (click to inlier count): {shown['seconds']:.2f} s")
    target = os.environ.get("GIM_APP_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
