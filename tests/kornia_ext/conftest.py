"""Fixtures of the kornia integration tests (helpers in ``kornia_helpers.py``)."""

from __future__ import annotations

import pytest
from kornia_helpers import ShiftMatcher

from gim_plugins.registry import register_matcher, unregister_matcher


@pytest.fixture(scope="session")
def dense_matchers():
    """Register the dense test matcher ``test_shift`` for the session."""
    register_matcher(ShiftMatcher.name, ShiftMatcher, overwrite=True)
    yield
    unregister_matcher(ShiftMatcher.name)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread for these small inputs: on the shared 2-core machine, OpenMP threads spinning against
    other processes made random ALIKED+LightGlue on 96×128 images ~10× slower (measured 0.3 s vs 2.9 s per match)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
