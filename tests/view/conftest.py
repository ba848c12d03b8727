"""Fixtures of the view's tests (defined in ``view_fixtures.py``, which the tests also import helpers from)."""

from __future__ import annotations

from view_fixtures import recon_dir

__all__ = ["recon_dir"]
