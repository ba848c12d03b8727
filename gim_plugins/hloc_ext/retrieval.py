"""hloc's global-descriptor networks as the similarity of ``gim reconstruct --pairs retrieval:K``.

Used when ``retrieval.backend`` names one of :data:`BACKENDS` (NetVLAD, MegaLoc — DINOv2-based —, OpenIBL, DIR).
hloc downloads their weights on first use; here nothing is downloaded: the weights must already be in torch hub's
cache (where hloc puts them), else a :class:`~gim_plugins.errors.UserError` says where they are expected and that
``retrieval.backend=asmk`` needs none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gim_plugins.errors import UserError

__all__ = ["BACKENDS", "global_descriptors", "weights_path"]

BACKENDS = ("netvlad", "megaloc", "openibl", "dir")

_WEIGHTS = {
    "netvlad": ("netvlad", "VGG16-NetVLAD-Pitts30K.mat"),
    "dir": ("dirtorch", "Resnet-101-AP-GeM.pt"),
    "megaloc": ("gmberton_MegaLoc_main",),
    "openibl": ("yxgeee_OpenIBL_master",),
}


def weights_path(backend: str) -> Path:
    """Where hloc keeps ``backend``'s weights (or torch hub repository) in torch hub's cache.

    Raises:
        UserError: an unknown backend.
    """
    if backend not in _WEIGHTS:
        raise UserError(f"unknown retrieval backend {backend!r}; use asmk, vlad or one of hloc's: "
                        f"{', '.join(BACKENDS)}")
    import torch

    return Path(torch.hub.get_dir(), *_WEIGHTS[backend])


def global_descriptors(backend: str, image_dir: str | os.PathLike[str], names: Sequence[str], path: Path
                       ) -> np.ndarray:
    """``(N, D)`` L2-normalised global descriptors of ``names`` by hloc's ``backend`` (cached in ``path``).

    Raises:
        UserError: hloc is not installed, or the network's weights are not in torch hub's cache.
    """
    weights = weights_path(backend)
    try:
        import h5py
        from hloc import extract_features
    except ImportError:
        raise UserError(f"retrieval backend {backend!r} needs hloc: pip install 'gim-plugins[hloc]', or use "
                        "retrieval.backend=asmk (no network)") from None
    if not weights.exists():
        raise UserError(f"retrieval backend {backend!r}: weights not found at {weights}; fetch them once with hloc "
                        "on a machine with network, or use retrieval.backend=asmk (no network)")
    conf = extract_features.confs[backend]
    extract_features.main(conf, Path(image_dir), feature_path=path, image_list=list(names))
    with h5py.File(path, "r") as handle:
        descriptors = np.stack([handle[name]["global_descriptor"][()] for name in names]).astype(np.float32)
    return descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
