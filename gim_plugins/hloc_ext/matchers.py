"""hloc matcher models that run ``gim_plugins`` matchers: dense (``match_dense``) and sparse (``match_features``).

Each class subclasses hloc's ``BaseModel`` and builds the ``gim_plugins`` matcher named by its class (or by
``conf["matcher"]``) with :func:`gim_plugins.load_matcher`. hloc finds the classes through the entry-point group
``hloc.matchers`` (served by :mod:`gim_plugins._bootstrap` as ``hloc.matchers.<name>``).

hloc model conf (``conf["model"]``; hloc adds its ``name``):

``matcher``
    the ``gim_plugins`` matcher to run (default: the class's own, e.g. ``gim_dkm``); ``gim_plugins_dense`` and
    ``gim_plugins_sparse`` run any registered matcher this way.
``weights``
    ``None`` for the matcher's default weights, or a checkpoint path / weight name (``gim weights list``).
``pretrained``
    ``False`` builds random weights (tests only).
``swap`` (dense only, default ``True``)
    hloc refines keypoints of its image0 (the query): grid-like points belong in image1 for ``match_dense``'s
    quantisation. LoFTR refines its image1 and DKM/RoMa sample their warp on image0's grid, so the adapter feeds hloc's
    image1 as the network's image0 and swaps the outputs back (as hloc's LoFTR and GIM's DKM wrappers do).
``max_num_matches`` (dense only)
    keep the highest-scoring matches only.
``batch_size`` (``match_dense`` only)
    pairs per forward pass for the matchers that batch (gim_dkm, gim_roma); ``None`` is automatic on CUDA and one
    pair on the CPU (:mod:`gim_plugins.hloc_ext.batched`).
any other key
    an option of the ``gim_plugins`` matcher (its ``default_conf``); an unknown option is an error listing the known.

Pixel convention: hloc's internal convention is the package's (centre of the top-left pixel at (0, 0)); ``match_dense``
maps keypoints from the resized to the original image with ``(k + 0.5)·s − 0.5``, which is exact in that convention.
``gim_plugins`` matchers already return keypoints in the pixels of the image they were given, centre convention
(GIM's corner-convention networks are shifted by −0.5 in their own wrappers), so the adapters pass them through
unchanged and hloc's COLMAP import adds the single +0.5. GIM's own hloc fork skipped the −0.5 and ends 0.5 px off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from hloc.utils.base_model import BaseModel

from gim_plugins.conf import ConfError
from gim_plugins.models.base import BaseMatcher, SparseMatcher
from gim_plugins.types import Features, MatchResult

__all__ = [
    "ALIKEDLightGlueMatcher",
    "DenseMatcher",
    "FeatureMatcher",
    "GIMDKMDense",
    "GIMLightGlueMatcher",
    "GIMLoFTRDense",
    "GIMRoMaDense",
    "build_matcher",
]

ADAPTER_KEYS = frozenset({"name", "matcher", "weights", "pretrained"})
RANGE_TOLERANCE = 1e-3
"""hloc resizes float32 images in [0, 255] with OpenCV and divides by 255: a saturated pixel may come out as
1.0000001. Excursions up to this tolerance are clipped; larger ones are a real error and reach the matcher's check."""


def unit_range(image: torch.Tensor) -> torch.Tensor:
    """Clip floating-point noise of hloc's preprocessing back into [0, 1] (see :data:`RANGE_TOLERANCE`)."""
    low, high = float(image.min()), float(image.max())
    if -RANGE_TOLERANCE <= low and high <= 1 + RANGE_TOLERANCE and (low < 0 or high > 1):
        return image.clamp(0.0, 1.0)
    return image


def build_matcher(conf: Mapping[str, Any], default_name: str | None, extra_keys: frozenset[str] = frozenset(),
                  *, sparse: bool = False) -> BaseMatcher:
    """Build the ``gim_plugins`` matcher described by an hloc model conf.

    Raises:
        ValueError: no matcher name, or a dense-only matcher where a sparse one is needed.
        gim_plugins.conf.ConfError: an option the matcher does not know (the message lists adapter and matcher keys).
    """
    from gim_plugins.matching import load_matcher

    name = conf.get("matcher") or default_name or conf.get("name")
    if not name:
        raise ValueError("hloc model conf needs 'matcher': the name of a gim_plugins matcher (`gim list`)")
    options = {k: v for k, v in conf.items() if k not in ADAPTER_KEYS | extra_keys}
    try:
        matcher = load_matcher(name, weights=conf.get("weights"), pretrained=conf.get("pretrained", True), **options)
    except ConfError as exc:
        adapter = ", ".join(sorted(ADAPTER_KEYS | extra_keys))
        raise ConfError(f"{exc} (hloc adapter options: {adapter})") from exc
    if sparse and not isinstance(matcher, SparseMatcher):
        raise ValueError(f"gim_plugins matcher {name!r} is dense: use it through hloc.match_dense "
                         f"(model 'gim_plugins_dense' or its own dense conf), not through extract/match_features")
    return matcher


class DenseMatcher(BaseModel):
    """hloc ``match_dense`` model: ``{"image0", "image1"}`` → ``keypoints0``, ``keypoints1`` (M, 2), ``scores`` (M,)."""

    matcher_name: ClassVar[str | None] = None
    default_conf: ClassVar[dict[str, Any]] = {  # type: ignore[misc]  # hloc declares a plain dict
        "name": None, "matcher": None, "weights": None, "pretrained": True, "swap": True, "max_num_matches": None,
        "batch_size": None,
    }
    required_inputs: ClassVar[list[str]] = ["image0", "image1"]  # type: ignore[misc]

    def _init(self, conf: dict[str, Any]) -> None:
        from gim_plugins.models.batching import check_batch_size

        try:
            check_batch_size(conf.get("batch_size"))
        except ValueError as exc:
            raise ConfError(f"hloc model option {exc}") from None
        self.net = build_matcher(conf, self.matcher_name, frozenset({"swap", "max_num_matches", "batch_size"}))

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image0, image1 = data["image0"], data["image1"]
        for label, image in (("image0", image0), ("image1", image1)):
            if image.ndim != 4 or image.shape[0] != 1:
                raise ValueError(f"{label}: hloc passes one (1, C, H, W) image per pair, got {tuple(image.shape)}")
        result = self.net.match(*self.inputs(image0, image1))
        return {k: v.to(image0.device) for k, v in self.outputs(result).items()}

    def inputs(self, image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's two ``(C, H, W)`` images of hloc's ``(1, C, H, W)`` pair: sides swapped when ``swap``,
        preprocessing noise clipped (:func:`unit_range`)."""
        first, second = (image1, image0) if self.conf["swap"] else (image0, image1)
        return unit_range(first[0]), unit_range(second[0])

    def outputs(self, result: MatchResult) -> dict[str, torch.Tensor]:
        """hloc's outputs of the pair :meth:`inputs` made: sides swapped back, ``max_num_matches`` applied."""
        swap = bool(self.conf["swap"])
        k0, k1 = (result.keypoints1, result.keypoints0) if swap else (result.keypoints0, result.keypoints1)
        scores = result.confidence
        top_k = self.conf["max_num_matches"]
        if top_k is not None and len(scores) > top_k:
            keep = torch.argsort(scores, descending=True)[:top_k]
            k0, k1, scores = k0[keep], k1[keep], scores[keep]
        return {"keypoints0": k0, "keypoints1": k1, "scores": scores}


class FeatureMatcher(BaseModel):
    """hloc ``match_features`` model: two feature sets → ``matches0`` (1, N0) and ``matching_scores0`` (1, N0)."""

    matcher_name: ClassVar[str | None] = None
    default_conf: ClassVar[dict[str, Any]] = {  # type: ignore[misc]
        "name": None, "matcher": None, "weights": None, "pretrained": True,
    }
    required_inputs: ClassVar[list[str]] = [  # type: ignore[misc]
        "keypoints0", "descriptors0", "keypoints1", "descriptors1",
    ]

    def _init(self, conf: dict[str, Any]) -> None:
        self.net = build_matcher(conf, self.matcher_name, sparse=True)

    def _features(self, data: dict[str, torch.Tensor], side: str) -> Features:
        keypoints = data[f"keypoints{side}"]
        if keypoints.ndim != 3 or keypoints.shape[0] != 1:
            raise ValueError(f"keypoints{side}: expected (1, N, 2), got {tuple(keypoints.shape)}")
        descriptors = data[f"descriptors{side}"][0].transpose(0, 1)  # hloc stores (D, N)
        scores = data.get(f"scores{side}")
        scores = scores[0] if scores is not None else torch.ones(keypoints.shape[1])
        if f"image_size{side}" in data:
            width, height = (int(v) for v in data[f"image_size{side}"].reshape(-1)[:2])
        else:
            height, width = data[f"image{side}"].shape[-2:]
        return Features(keypoints[0], descriptors, scores, (height, width), self.net.name)

    def _forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        f0, f1 = self._features(data, "0"), self._features(data, "1")
        device = data["keypoints0"].device
        matches0 = torch.full((len(f0),), -1, dtype=torch.long)
        scores0 = torch.zeros(len(f0))
        if len(f0) and len(f1):
            # hloc needs indices, which the public match_features() resolves into keypoints: call the step below it.
            with torch.inference_mode():
                idx0, idx1, scores = self.net._match_features(f0, f1)
            matches0[idx0.cpu().long()] = idx1.cpu().long()
            scores0[idx0.cpu().long()] = scores.cpu().float()
        return {"matches0": matches0[None].to(device), "matching_scores0": scores0[None].to(device)}


class GIMDKMDense(DenseMatcher):
    """``gim_dkm`` in ``hloc.match_dense``."""

    matcher_name = "gim_dkm"


class GIMLoFTRDense(DenseMatcher):
    """``gim_loftr`` in ``hloc.match_dense``."""

    matcher_name = "gim_loftr"


class GIMRoMaDense(DenseMatcher):
    """``gim_roma`` in ``hloc.match_dense``."""

    matcher_name = "gim_roma"


class GIMLightGlueMatcher(FeatureMatcher):
    """``gim_lightglue`` in ``hloc.match_features`` (features from the ``gim_superpoint`` extractor)."""

    matcher_name = "gim_lightglue"


class ALIKEDLightGlueMatcher(FeatureMatcher):
    """``aliked_lightglue`` in ``hloc.match_features`` (features from the ``aliked_n16`` extractor)."""

    matcher_name = "aliked_lightglue"
