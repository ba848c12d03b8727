"""Helpers of the bad-input suite (importable as ``robust_helpers``): outcomes, checks, the tally, processes."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

TALLY: Counter[str] = Counter()
"""Outcome → number of rows (see the module docstring)."""

OFFLINE_FILES = ("aliked_lightglue.pth", "aliked-n16.pth", "index.json")


@dataclass
class Outcome:
    """What one ``gim`` row did."""

    code: int | None
    out: str
    err: str
    traceback: str | None = None

    @property
    def error_line(self) -> str:
        return next((line for line in self.err.splitlines() if "error:" in line), "")


def record(kind: str) -> None:
    TALLY[kind] += 1


def check_error(outcome: Outcome, code: int, pattern: str) -> None:
    """A clear error: the exit status, one ``error:`` line matching ``pattern``, no traceback."""
    if outcome.traceback is not None or "Traceback" in outcome.err:
        record("traceback")
        pytest.fail(f"traceback instead of a clear error:\n{outcome.traceback or outcome.err}")
    if outcome.code != code or not re.search(pattern, outcome.error_line):
        record("wrong")
        pytest.fail(f"expected exit {code} and an error line matching {pattern!r}; got exit {outcome.code}:\n"
                    f"{outcome.err}")
    record("clear")


def check_ok(outcome: Outcome) -> None:
    if outcome.traceback is not None or "Traceback" in outcome.err:
        record("traceback")
        pytest.fail(f"traceback:\n{outcome.traceback or outcome.err}")
    if outcome.code != 0:
        record("wrong")
        pytest.fail(f"expected success, got exit {outcome.code}:\n{outcome.err}")
    record("ok")


def gim_process(*argv: Any, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """The real ``gim`` console entry (``python -m gim_plugins``) as a subprocess, with SIGINT as a terminal gives it.

    A test suite started in the background of a non-interactive shell (``make test &``, some CI runners) inherits
    SIGINT *ignored*, and Python then never installs its KeyboardInterrupt handler: a Ctrl-C test would see the run
    finish instead. The child therefore starts with SIGINT at its default, as when a user runs ``gim`` and presses
    Ctrl-C.
    """
    then = kwargs.pop("preexec_fn", None)  # e.g. a resource limit of the caller's, applied after

    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if then is not None:
            then()

    return subprocess.Popen([sys.executable, "-m", "gim_plugins", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
                            preexec_fn=preexec, **kwargs)


# ------------------------------------------------------------------------------------------------------ folders


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False) -> Any:
    """A small tmpfs mounted at ``path`` (skips the test when mounting is not allowed here)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)




# ------------------------------------------------------------------------------------------ concurrent writers


def fake_sparse_matcher() -> Any:
    """A cheap sparse matcher whose features are a pure function of the image (for the concurrency rows)."""
    import torch

    from gim_plugins.models.base import SparseMatcher
    from gim_plugins.types import Features

    class FakeSparse(SparseMatcher):
        name = "fake_sparse"
        default_conf: ClassVar[dict[str, Any]] = {"max_image_pixels": None}

        def _init(self, conf: Any) -> None:
            pass

        def _extract(self, image: torch.Tensor) -> Features:
            value = float(image.mean())
            keypoints = torch.full((50, 2), value * 10)
            return self._features(keypoints, torch.full((50, 8), value), torch.full((50,), value), image)

        def _match_features(self, f0: Features, f1: Features) -> Any:
            index = torch.arange(min(len(f0), len(f1)))
            return index, index, torch.ones(len(index))

    return FakeSparse()


def image_for(key: int) -> Any:
    import numpy as np

    return np.full((32, 32, 3), key, np.uint8)


def write_features(path: str, keys: list[int], barrier: Any) -> None:
    """One of several processes filling one feature file (run with multiprocessing's spawn)."""
    from gim_plugins.features import FeatureCache

    barrier.wait()  # all processes start writing at once
    cache = FeatureCache(fake_sparse_matcher(), path, lock_timeout=60)
    for key in keys:
        cache.get(f"image_{key:03d}", image_for(key))


def hold_h5(path: str, seconds: float, ready: Any) -> None:
    """Keep an HDF5 file open for writing (HDF5's own lock), as another program would."""
    import time

    import h5py

    with h5py.File(path, "a"):
        ready.set()
        time.sleep(seconds)
