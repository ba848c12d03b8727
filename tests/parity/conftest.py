"""Access to GIM's original networks for parity tests; every test here skips cleanly when they are absent.

The wrappers live in the top-level ``parity`` package (shared with ``benchmarks/``); its README says how to build the
reference environments the original code needs.
"""

from __future__ import annotations

import types

import pytest

from parity.gim_networks import load_networks, missing_reason


@pytest.fixture(scope="session")
def gim_networks() -> types.ModuleType:
    """GIM's ``networks`` package (original code), or a skip with the set-up instructions."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    return load_networks()
