"""Training data: GIM's video-label pairs and posed pairs in one batch format, mixed by GIM's sampler.

Modules: :mod:`~gim_plugins.training.data.batch` (the batch format, ``collate``, checks). Public names are loaded on
first access, so importing this package costs nothing until a dataset is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DARK_PARAMS": "batch",
    "TENSOR_SPEC": "batch",
    "check_batch": "batch",
    "check_sample": "batch",
    "collate": "batch",
    "to_device": "batch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
