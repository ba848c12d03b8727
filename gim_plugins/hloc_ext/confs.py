"""hloc-style confs of the GIM matchers, registered into hloc's ``confs`` dicts through entry points.

Plain data (standard library only): the bootstrap loads these while hloc's own modules are being executed, so this
module must not import hloc, torch or the adapters. Model options left out of a conf take the ``gim_plugins``
matcher's ``default_conf`` (GIM's settings); any option of that matcher may be added to ``conf["model"]``.

Dense confs use the settings of GIM's ``reconstruction.py``: RGB input, ``max_error`` 2 px, ``cell_size`` 8 px.
``gim_dkm`` gets full-resolution images (DKM resizes internally, ``dfactor`` 1). ``gim_loftr`` needs sides that are
multiples of 8 (``dfactor`` 8, as GIM's demo and ZEB floor them) and at most 2048 px (its position encoding covers 256
coarse cells), so images are downscaled to a long side of 1600 px, the size ZEB uses for its largest images.

Sparse confs: ``gim_superpoint`` follows GIM's ``extract_features`` conf (gray, long side ≤ 1920 px); ``aliked_n16``
follows hloc's ``aliked-n16`` conf (RGB, ≤ 1024 px) with the offline ``aliked_lightglue`` weights.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALIKED_LIGHTGLUE", "ALIKED_N16", "GIM_DKM", "GIM_LIGHTGLUE", "GIM_LOFTR", "GIM_ROMA", "GIM_SUPERPOINT",
           "gim_roma"]

GIM_DKM: dict[str, Any] = {
    "output": "matches-gim_dkm",
    "model": {"name": "gim_dkm"},
    "preprocessing": {"grayscale": False, "resize_max": None, "dfactor": 1},
    "max_error": 2,
    "cell_size": 8,
}

GIM_LOFTR: dict[str, Any] = {
    "output": "matches-gim_loftr",
    "model": {"name": "gim_loftr"},
    "preprocessing": {"grayscale": False, "resize_max": 1600, "dfactor": 8},
    "max_error": 2,
    "cell_size": 8,
}

GIM_ROMA: dict[str, Any] = {
    "output": "matches-gim_roma",
    "model": {"name": "gim_roma"},
    "preprocessing": {"grayscale": False, "resize_max": None, "dfactor": 1},
    "max_error": 2,
    "cell_size": 8,
}

GIM_SUPERPOINT: dict[str, Any] = {
    "output": "feats-gim_superpoint-r1920",
    "model": {"name": "gim_superpoint"},
    "preprocessing": {"grayscale": True, "resize_max": 1920},
}

ALIKED_N16: dict[str, Any] = {
    "output": "feats-aliked_n16-r1024",
    "model": {"name": "aliked_n16"},
    "preprocessing": {"grayscale": False, "resize_max": 1024},
}

GIM_LIGHTGLUE: dict[str, Any] = {
    "output": "matches-gim_lightglue",
    "model": {"name": "gim_lightglue"},
}

ALIKED_LIGHTGLUE: dict[str, Any] = {
    "output": "matches-aliked_lightglue",
    "model": {"name": "aliked_lightglue"},
}


def gim_roma() -> dict[str, Any] | None:
    """The ``gim_roma`` conf when a ``gim_roma`` matcher is registered, else ``None`` (no conf is offered)."""
    from gim_plugins.registry import list_matchers

    return GIM_ROMA if "gim_roma" in list_matchers() else None
