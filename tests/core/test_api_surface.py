"""The public API is frozen by ``api_surface.json``: removing or adding a name must edit that file too."""

from __future__ import annotations

import json
from pathlib import Path

import gim_plugins

SURFACE = Path(__file__).with_name("api_surface.json")


def test_feature_public_names_are_frozen():
    expected = json.loads(SURFACE.read_text())
    assert sorted(gim_plugins.__all__) == expected["gim_plugins"]


def test_feature_registered_core_matchers():
    expected = json.loads(SURFACE.read_text())
    assert set(expected["matchers"]) <= set(gim_plugins.list_matchers())
