"""Posed pairs from any COLMAP model: depth-free ground truth from the 3D points' tracks.

Data users bring: a sparse model folder (``cameras``, ``images``, ``points3D`` as ``.bin`` or ``.txt``: the output of
``gim reconstruct``, of hloc's ``reconstruction.main`` or of ``colmap mapper``) and the image folder it was made from
(image names in the model are paths relative to it). The model is read by :mod:`gim_plugins.colmap_ext.observations`.

Pairs: registered images sharing at least ``min_shared`` 3D points (at most ``max_pairs``, a seeded draw). An item's
labels are the two images' observations of their shared points — exact correspondences in the sense of the model,
needing no depth — sent through the same augmentation as video labels (label box kept, ≥ ``min_labels`` or retries).
``K``/``T`` come from the model (world-to-camera poses); ``gt`` is True when both cameras are exact pinholes (a
distortion model with non-zero distortion gives labels only: ``gt`` False, because its ``K`` does not describe the
distorted pixels). The model's scale is arbitrary; ``T_0to1``'s translation is in model units.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.colmap_ext.observations import calibration, read_observed_model
from gim_plugins.training.data.base import PairDataset, read_rgb

__all__ = ["ColmapDataset"]


class ColmapDataset(PairDataset):
    """The pairs of one COLMAP model (one "scene" for the sampler).

    Args:
        model_dir: the sparse model folder.
        image_dir: the folder the model's image names are relative to.
        conf: ``min_shared`` (3D points two images must share), ``max_pairs``, ``name`` (the scene name; default the
            model folder's last three path parts), plus the shared options of :class:`~.base.PairDataset`.

    Raises:
        FileNotFoundError: no model or image folder.
    """

    kind = "colmap"
    default_conf: Mapping[str, Any] = {"min_shared": 64, "max_pairs": 10000, "name": None}
    augment_defaults: Mapping[str, Any] = {"keep_box": True, "min_labels": 64}

    def __init__(self, model_dir: str | os.PathLike[str], image_dir: str | os.PathLike[str],
                 conf: Mapping[str, Any] | None = None) -> None:
        model_dir, image_dir = Path(model_dir), Path(image_dir)
        # default scene name: the model folder's last three path parts ("recon/sparse/0"), distinct per model
        default_name = "/".join(model_dir.resolve().parts[-3:])
        super().__init__(conf, self.default_conf, (conf or {}).get("name") or default_name)
        if not image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {image_dir}")
        self.model = read_observed_model(model_dir)
        self.image_dir = image_dir
        shared = self.model.shared_points()
        pairs = sorted(pair for pair, count in shared.items() if count >= int(self.conf.min_shared))
        if len(pairs) > int(self.conf.max_pairs):
            pairs = sorted(random.Random(int(self.conf.seed)).sample(pairs, int(self.conf.max_pairs)))
        self.pairs = pairs

    def camera(self, image_id: int) -> tuple[np.ndarray, np.ndarray, bool, tuple[int, int]]:
        """``(K in package convention, world-to-camera 4×4, exact pinhole, (h, w))`` of a registered image."""
        image = self.model.images[image_id]
        model, width, height, params = self.model.cameras[image.camera_id]
        K, pinhole = calibration(model, params)
        K[:2, 2] -= 0.5  # COLMAP's pixel centres are at +0.5
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = image.R, image.t
        return K, pose, pinhole, (height, width)

    def load(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        id0, id1 = self.pairs[index]
        names = self.model.images[id0].name, self.model.images[id1].name
        images = [read_rgb(self.image_dir / name) for name in names]
        cams = [self.camera(i) for i in (id0, id1)]
        for name, image, cam in zip(names, images, cams):
            if image.shape[:2] != cam[3]:
                raise ValueError(f"{self.image_dir / name}: image is {image.shape[1]}×{image.shape[0]} but the model's "
                                 f"camera is {cam[3][1]}×{cam[3][0]}; pass the image folder the model was made from")
        labels = self.model.correspondences(id0, id1)
        plan = self.augmenter.plan(rng, images[0].shape[:2], images[1].shape[:2], labels)
        if plan is None:
            return None
        gt = cams[0][2] and cams[1][2]
        return self.sample(plan, images[0], images[1], rng, pair=names, zs=False, gt=gt,
                           K0=cams[0][0], K1=cams[1][0], T_0to1=cams[1][1] @ np.linalg.inv(cams[0][1]))
