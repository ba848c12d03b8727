"""Posed pairs from ZEB-format folders: intrinsics and relative pose only (no depth, no correspondences).

Data users bring: a folder in ZEB's layout (``<subset>/{scene}{sep}{img0}{sep}{img1}.txt`` pair files with
``K0``, ``K1`` and ``T_0to1``, images beside them; see docs/zeb.md), read with :mod:`gim_plugins.zeb.dataset` —
GIM's benchmark, ZEB-mini (``python -m gim_plugins.zeb mini``) or one's own pairs written in that format.

Decision: ZEB has no depth, so an item carries pose supervision only — ``gt`` True, ``has_depth`` False and no labels
(``num_labels`` 0). A trainer uses such rows with an epipolar loss (``K0``, ``K1``, ``T_0to1`` and the image-1
homography ``H1`` give the fundamental matrix between the two network inputs) or skips them; labels are never
invented. Intrinsics are taken as given (pixels of the original images, centre of the top-left pixel at (0, 0) as
the package's ZEB evaluation reads them). Augmentation: GIM's posed-pair recipe (rescale 0.6–1.4, no label box,
the image-1 perspective).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gim_plugins.training.data.base import PairDataset, read_rgb
from gim_plugins.zeb import dataset as zeb

__all__ = ["ZebDataset", "zeb_datasets"]


class ZebDataset(PairDataset):
    """The pairs of one ZEB subset folder (one "scene" for the sampler).

    Args:
        root: the ZEB folder (holding ``gl3d/``, ``kitti/``, … or ZEB-mini's subsets).
        subset: a subset name as :func:`gim_plugins.zeb.dataset.get_subset` accepts it.
        conf: the shared options of :class:`~.base.PairDataset`.
    """

    kind = "zeb"
    default_conf: Mapping[str, Any] = {}
    augment_defaults: Mapping[str, Any] = {"keep_box": False, "min_labels": 0}

    def __init__(self, root: str | os.PathLike[str], subset: str, conf: Mapping[str, Any] | None = None) -> None:
        self.subset = zeb.get_subset(subset)
        super().__init__(conf, self.default_conf, self.subset.folder)
        self.directory = zeb.subset_dir(root, self.subset)
        self.pairs = zeb.load_pairs(root, self.subset)
        self.images = zeb.image_index(self.directory)

    def load(self, index: int, rng: np.random.Generator) -> dict[str, Any] | None:
        pair = self.pairs[index]
        paths = [zeb.resolve_image(self.images, self.directory, pair.image_stem(k)) for k in (0, 1)]
        image0, image1 = (read_rgb(p) for p in paths)
        plan = self.augmenter.plan(rng, image0.shape[:2], image1.shape[:2], None)
        if plan is None:
            return None
        return self.sample(plan, image0, image1, rng, pair=(Path(paths[0]).name, Path(paths[1]).name), zs=False,
                           gt=True, K0=pair.K0.astype(np.float64), K1=pair.K1.astype(np.float64),
                           T_0to1=pair.T_0to1.astype(np.float64))


def zeb_datasets(root: str | os.PathLike[str], subsets: Sequence[str] | None = None,
                 conf: Mapping[str, Any] | None = None) -> list[ZebDataset]:
    """One :class:`ZebDataset` per subset folder present (``subsets``: these only)."""
    return [ZebDataset(root, s.key, conf) for s in zeb.find_subsets(root, subsets)]
