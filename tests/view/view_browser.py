"""Open a ``gim view`` page from its file in Debian's headless chromium (selenium + chromedriver) and look at it.

Shared by the browser test and the docs' screenshot. The network is closed here: chromium runs with the flags that
keep it from calling Google's services, a fresh profile, and SwiftShader (software WebGL) allowed, since there is
no GPU. ``?renderer=2d`` in the URL makes the page use its 2D-canvas fallback instead of WebGL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("GIM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GIM_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--enable-unsafe-swiftshader")


def browser_missing() -> str | None:
    """Why no page can be opened here (None when chromium, chromedriver and selenium are present)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: apt-get install -y {package}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install 'gim-plugins[dev]'"
    return None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A headless chromium (selenium WebDriver) that records the console, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gim-view-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, page: Path, *, query: str = "", timeout: float = 120.0) -> dict[str, Any]:
    """Load ``page`` from its file, wait until the viewer has drawn; what it shows, its console and a screenshot.

    Returns:
        ``status`` (the viewer's status line), ``renderer``, ``errors`` (console messages of level SEVERE),
        ``console`` (all of them), ``screenshot`` (PNG bytes of the window), ``canvas`` (its box in CSS pixels)
        and ``seconds`` from navigation to the first drawing.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.perf_counter()
    driver.get(page.resolve().as_uri() + query)
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    seconds = time.perf_counter() - start
    time.sleep(0.5)  # the first animation frame after the ready flag
    console = driver.get_log("browser")
    status = driver.execute_script("return document.getElementById('gim-status').textContent")
    renderer = driver.execute_script("return document.getElementById('gim-status').dataset.renderer")
    canvas = driver.execute_script("var b = document.getElementById('gim-canvas').getBoundingClientRect();"
                                   "return [b.left, b.top, b.width, b.height, window.devicePixelRatio];")
    return {"status": status, "renderer": renderer, "console": console, "canvas": canvas, "seconds": seconds,
            "errors": [entry for entry in console if entry.get("level") == "SEVERE"],
            "screenshot": driver.get_screenshot_as_png()}
