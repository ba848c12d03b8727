"""Training data: GIM's video-label pairs and posed pairs in one batch format, mixed by GIM's sampler.

Modules: :mod:`.batch` (the batch format, ``collate``, checks), :mod:`.augment` (GIM's pair augmentation and
:func:`finish`, the device-side pixel work), :mod:`.darkaug` (GIM's Dark augmentation with kornia), :mod:`.walk`
(video labels), :mod:`.megadepth`, :mod:`.colmap`, :mod:`.zeb` (posed pairs), :mod:`.sampler` (GIM's
``BalanceSampler``), :mod:`.loader` (the DataLoader). Public names are loaded on first access, so importing this
package costs nothing until a dataset is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BalanceSampler": "sampler",
    "ColmapDataset": "colmap",
    "DarkAug": "darkaug",
    "MegaDepthDataset": "megadepth",
    "MixedDataset": "loader",
    "PairAugmenter": "augment",
    "PairDataset": "base",
    "WalkDataset": "walk",
    "ZebDataset": "zeb",
    "build_loader": "loader",
    "finish": "augment",
    "megadepth_datasets": "megadepth",
    "set_epoch": "loader",
    "walk_datasets": "walk",
    "zeb_datasets": "zeb",
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
