"""Drive the matcher page in Debian's headless chromium through selenium and chromedriver.

Shared by the browser test (tests/app/test_app_browser.py) and the page benchmark (benchmarks/app_page.py). The
network here is closed: chromium runs with the flags that keep it from trying to reach Google's services (which
otherwise hangs it on refused connections) and a fresh profile. Browsers are never downloaded: the system's
``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian's ``chromium`` and ``chromium-driver``) are used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

CHROMIUM = os.environ.get("GIM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("GIM_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def browser_missing() -> str | None:
    """Why the page cannot be driven here (None when chromium, chromedriver, selenium and gradio are present)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: apt-get install -y {package} (the browser test uses the system's chromium)"
    for module, hint in (("selenium", "pip install selenium"), ("gradio", "pip install 'gim-plugins[app]'")):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed: {hint}"
    return None


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(*args: str, log: Path, timeout: float = 240.0) -> Iterator[str]:
    """Run ``gim app --port <free port> ARGS`` in a subprocess until the block ends; yields the page's URL."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gim_plugins", "app", "--port", str(port), *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gim app exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gim app did not answer on {url} within {timeout:.0f} s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless chromium (selenium WebDriver) with a fresh profile, closed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="gim-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _value(driver: Any, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    fields = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")
    return str(fields[0].get_property("value") or "") if fields else ""


def run_example(driver: Any, url: str, timeout: float = 900.0) -> dict[str, Any]:
    """Open the page, load the example pair, press Match; what the page shows and the seconds until it showed it.

    ``seconds`` runs from the click on "Match" to the inlier count appearing in the page.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 120).until(lambda d: d.find_elements(By.ID, "example"))
    driver.find_element(By.ID, "example").click()
    WebDriverWait(driver, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#image0 img, #image1 img")) == 2)
    matcher = _value(driver, "matcher")
    run = driver.find_element(By.ID, "run")
    start = time.perf_counter()
    run.click()
    WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: _value(d, "num-inliers") or d.find_element(By.ID, "status").text.startswith(("Error", "Internal")))
    seconds = time.perf_counter() - start
    status = driver.find_element(By.ID, "status").text
    if not _value(driver, "num-inliers"):
        raise AssertionError(f"the page reported: {status}")
    WebDriverWait(driver, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#downloads a")) >= 4)
    return {
        "matcher": matcher,
        "matches": int(_value(driver, "num-matches")),
        "inliers": int(_value(driver, "num-inliers")),
        "seconds": seconds,
        "status": status,
        "timing": driver.find_element(By.ID, "timing").text,
        "downloads": sorted({unquote((a.get_attribute("href") or "").rsplit("/", 1)[-1])
                             for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")} - {""}),
    }


def screenshot(driver: Any, path: Path, width: int = 1000) -> Path:
    """The whole page as a PNG ``width`` px wide, reduced to a 256-colour palette (a few hundred kB)."""
    from PIL import Image

    for _ in range(2):  # the layout may grow once the window is taller
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(1400, min(height + 160, 4000))
        time.sleep(0.5)
    driver.execute_script("window.scrollTo(0, 0)")
    time.sleep(0.5)
    raw = path.with_suffix(".raw.png")
    driver.save_screenshot(str(raw))
    with Image.open(raw) as image:
        image = image.convert("RGB")
        small = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    small.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    raw.unlink()
    return path
