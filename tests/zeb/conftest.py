"""Fixtures for the ZEB tests: tiny benchmarks in the official layout, generated at test time."""

from __future__ import annotations

from pathlib import Path

import pytest
from zeb_helpers import write_tiny_subset


@pytest.fixture(scope="session")
def tiny_zeb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ZEB folder with one subset (``minihomography``, 6 pairs of 320×240 renders of two real photos)."""
    root = tmp_path_factory.mktemp("tiny_zeb")
    write_tiny_subset(root, "minihomography")
    return root
