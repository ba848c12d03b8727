"""Trainers: one per matcher, each the package's network with GIM's losses (see :mod:`.base`).

``TRAINERS`` maps a matcher name to its trainer class as ``"module:Class"``; :func:`trainer_class` imports it on
first use, so listing presets costs no torch import.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["TRAINERS", "trainer_class"]

TRAINERS: dict[str, str] = {
    "gim_loftr": "loftr:LoFTRTrainer",
    "gim_dkm": "dense:DKMTrainer",
    "gim_roma": "dense:RoMaTrainer",
    "gim_lightglue": "lightglue:LightGlueTrainer",
    "aliked_lightglue": "lightglue:ALIKEDLightGlueTrainer",
}
"""Matcher name → ``"<module in this package>:<class>"``."""


def trainer_class(matcher: str) -> Any:
    """The trainer class of ``matcher``.

    Raises:
        KeyError: no trainer for that matcher (the message lists the known ones).
    """
    try:
        module, name = TRAINERS[matcher].split(":")
    except KeyError:
        raise KeyError(f"no trainer for matcher {matcher!r}; known: {', '.join(TRAINERS)}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
