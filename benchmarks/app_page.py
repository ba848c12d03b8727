"""``gim app`` in a real browser: seconds from the click on "Match" to the inlier count shown, on the example pair.

The page runs as ``gim app`` in a subprocess, driven by Debian's headless chromium (the browser test's helper,
tests/app/app_browser.py). The baseline, measured in the same run between the page's requests, is the library alone:
``load_matcher(...).match(left, right)`` and the fundamental-matrix fit, i.e. what ``gim demo`` computes. The ratio
is the page's overhead (upload of nothing: the example is on the server; decoding, drawing, PNG transfer, Gradio).

Usage::

    python benchmarks/app_page.py                         # aliked_lightglue, 3 page runs
    python benchmarks/app_page.py --matcher root_sift --repeats 5

The first page run includes loading the matcher (the page keeps it for the next ones): both are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gim_plugins.machine import cpu_name

REPO = Path(__file__).resolve().parents[1]




class Library:
    """The baseline: the matcher loaded in this process; one call = match + F fit at 1 px, as ``gim demo``."""

    def __init__(self, matcher: str) -> None:
        from gim_plugins.datasets.motorcycle import paths
        from gim_plugins.matching import load_matcher

        self.files = paths()
        self.model = load_matcher(matcher)
        self()  # warm-up

    def __call__(self) -> tuple[float, int, int]:
        start = time.perf_counter()
        result = self.model.match(self.files["left"], self.files["right"])
        inliers = result.fundamental(threshold=1.0).num_inliers
        return time.perf_counter() - start, len(result), inliers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matcher", default="aliked_lightglue")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests" / "app"))
    from app_browser import browser_missing, chromium, run_example, serve

    missing = browser_missing()
    if missing:
        print(f"cannot drive the page: {missing}", file=sys.stderr)
        return 2
    print(f"CPU: {cpu_name()}; load average at start {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d')}")
    library = Library(args.matcher)
    page, base = [], []
    with tempfile.TemporaryDirectory() as tmp, serve("--matcher", args.matcher, log=Path(tmp) / "server.log") as url:
        for i in range(args.repeats + 1):
            with chromium() as driver:
                shown = run_example(driver, url)
            if i == 0:
                print(f"page, first request (loads the matcher): {shown['seconds']:.2f} s", flush=True)
                continue
            seconds, matches, inliers = library()  # interleaved, so both see the same machine load
            page.append(shown["seconds"])
            base.append(seconds)
            print(f"run {i}: page {shown['seconds']:7.2f} s ({shown['matches']} matches, {shown['inliers']} inliers)"
                  f"   library {seconds:7.2f} s ({matches} matches, {inliers} inliers)   "
                  f"{shown['seconds'] / seconds:.2f}x", flush=True)
    p, b = statistics.median(page), statistics.median(base)
    print(f"median over {args.repeats}: page {p:.2f} s (click to inlier count shown), library {b:.2f} s "
          f"(match + F fit): {p / b:.2f}x; load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
