"""Validation during training: the current weights as a matcher, on ZEB-format pairs, scored with ZEB's AUC.

GIM validates on 1000 MegaDepth pairs with its own pose AUC; here any ZEB-format folder serves (ZEB-mini by default,
``python -m gim_plugins.zeb mini``; the real ZEB; or a MegaDepth split written in ZEB's layout), and everything that
defines the score is ZEB's code: the protocol object (:mod:`gim_plugins.zeb.protocols`, GIM's by default: pair
selection, image preparation, the keypoint treatment of the matcher), the matcher's ``-zeb`` preset, pose estimation,
errors and AUC@5/10/20 (:mod:`gim_plugins.zeb.metrics`). The number is the mean of the subsets' AUCs (as ZEB's
tables).

The matcher is the package's own (``load_matcher``) loaded with :meth:`Trainer.validation_weights`, i.e. exactly what
``RUN/best.ckpt`` will load, so validation also proves the checkpoint layout.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Validator"]


class Validator:
    """Scores a trainer's current weights on a ZEB-format folder.

    Args:
        data_dir: the ZEB-format folder (subset folders of pair ``.txt`` files and images).
        matcher: the trainer's matcher name.
        matcher_conf: options on top of the matcher's ``-zeb`` preset (the trainer's, then the preset's
            ``validation.conf``).
        device: where the matcher runs.
        max_pairs: the first N pairs of each subset (None: all).
        subsets: subset names (None: every subset folder present).
        protocol: the ZEB protocol (``gim``, GIM's; or ``gluefactory``).

    Raises:
        FileNotFoundError: no ZEB subset in ``data_dir``.
    """

    def __init__(self, data_dir: str | os.PathLike[str], matcher: str, matcher_conf: Mapping[str, Any], *,
                 device: str = "cpu", max_pairs: int | None = None, subsets: Sequence[str] | None = None,
                 protocol: str = "gim") -> None:
        from gim_plugins.zeb.dataset import find_subsets, load_pairs
        from gim_plugins.zeb.protocols import get_protocol

        self.data_dir = Path(data_dir)
        self.protocol = get_protocol(protocol)
        self.subsets = find_subsets(self.data_dir, subsets)
        if not self.subsets:
            raise FileNotFoundError(f"no ZEB subset folder in {self.data_dir} (write ZEB-mini with `python -m "
                                    "gim_plugins.zeb mini --out DIR` or give --val DIR)")
        self.pairs = {s.key: self.protocol.select_pairs(load_pairs(self.data_dir, s), self.data_dir, s, max_pairs)
                      for s in self.subsets}
        self.matcher_name = matcher
        self.matcher_conf = dict(matcher_conf)
        self.device = device
        self._matcher: Any = None

    def _load(self, weights: Any) -> Any:
        from gim_plugins.matching import load_matcher
        from gim_plugins.zeb.method import resolve_preset

        if self._matcher is None:
            name, _, preset = resolve_preset(self.matcher_name, None)
            self._matcher = load_matcher(name, weights=weights, device=self.device,
                                         **{**preset, **self.matcher_conf})
        else:
            self._matcher.load_weights(weights)
        return self._matcher

    def __call__(self, weights: Any) -> dict[str, float]:
        """AUC@5/10/20 (fractions; mean over subsets) of the matcher with ``weights``, plus ``pairs``,
        ``seconds`` and each subset's own ``auc5/<subset>``, ``auc10/<subset>``, ``auc20/<subset>`` (a mean can
        hide a subset that got worse, e.g. one that shares its scene with the training videos)."""
        from gim_plugins.zeb.dataset import image_index, resolve_image, subset_dir
        from gim_plugins.zeb.metrics import evaluate_pair, pose_auc, pose_errors

        start = time.perf_counter()
        matcher = self._load(weights)
        protocol = self.protocol
        treatment = protocol.treatment(type(matcher), None)
        per_subset, names, count = [], [], 0
        for subset in self.subsets:
            directory = subset_dir(self.data_dir, subset)
            index = image_index(directory)
            r_errs, t_errs = [], []
            for pair in self.pairs[subset.key]:
                images = [protocol.load_image(resolve_image(index, directory, pair.image_stem(i)), subset)
                          for i in (0, 1)]
                masks = {}
                if treatment.padding_mask and (images[0].padded or images[1].padded):
                    masks = {"mask0": images[0].validity_mask(), "mask1": images[1].validity_mask()}
                result = matcher.match(images[0].image, images[1].image, **masks)
                k0 = protocol.keypoints(result.keypoints0.numpy(), images[0], treatment)
                k1 = protocol.keypoints(result.keypoints1.numpy(), images[1], treatment)
                metrics = evaluate_pair(k0, k1, protocol.camera(pair.K0, images[0]),
                                        protocol.camera(pair.K1, images[1]), pair.T_0to1,
                                        threshold=protocol.ransac_threshold, focal_rule=protocol.focal_rule)
                r_errs.append(metrics.R_err)
                t_errs.append(metrics.t_err)
            if r_errs:
                per_subset.append(pose_auc(pose_errors(r_errs, t_errs), decimals=protocol.auc_decimals))
                names.append(subset.key)
                count += len(r_errs)
        aucs = np.mean(np.asarray(per_subset), axis=0) if per_subset else np.zeros(3)
        result = {"auc5": float(aucs[0]), "auc10": float(aucs[1]), "auc20": float(aucs[2]), "pairs": float(count),
                  "seconds": time.perf_counter() - start}
        for name, subset_aucs in zip(names, per_subset):
            result.update({f"auc{t}/{name}": float(v) for t, v in zip((5, 10, 20), subset_aucs)})
        return result
