"""Helpers of the bad-input suite (importable as ``robust_helpers``): outcomes, checks, the tally, processes."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """The real ``gim`` console entry (``python -m gim_plugins``) as a subprocess."""
    return subprocess.Popen([sys.executable, "-m", "gim_plugins", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kwargs)


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


