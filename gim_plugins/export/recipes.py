"""What each matcher exports: its graphs, their example inputs and dynamic axes, and what happens around them.

A recipe is data plus two small functions: ``graphs(matcher, size, dynamic)`` returns the :class:`GraphSpec` list to
trace, and the pre-/post-processing text that goes into ``manifest.json``. Matchers whose networks use an operator
that no standard ONNX opset has are listed in :data:`BLOCKED` with that operator, so ``gim export onnx`` refuses them
in one line instead of failing deep inside the exporter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gim_plugins.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from gim_plugins.models.base import BaseMatcher

__all__ = ["BLOCKED", "RECIPES", "ExportRefused", "GraphSpec", "Recipe", "get_recipe"]


class ExportRefused(ValueError, UserError):
    """A matcher (or an option) that cannot be exported; the message names the operator or the reason."""


@dataclass
class GraphSpec:
    """One graph to trace: the module, example inputs, names and dynamic axes (``{input: {axis: name}}``)."""

    role: str  # "extractor", "matcher" or "network": the key in the manifest and the file's stem
    module: nn.Module
    inputs: tuple[torch.Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    exporter: str = "torchscript"  # or "dynamo" (torch.export): LightGlue's graph needs it, see docs/onnx.md


@dataclass(frozen=True)
class Recipe:
    """How one matcher is exported."""

    name: str
    graphs: Callable[[BaseMatcher, tuple[int, int], bool], list[GraphSpec]]
    processing: Callable[[BaseMatcher, tuple[int, int] | None], dict[str, Any]]
    fixed_conf: dict[str, Any] = field(default_factory=dict)
    """Options the graphs bake in whatever the user asked (LightGlue: every layer, no pruning)."""
    dynamic_refusal: str | None = None
    """Why ``--dynamic`` is refused for this matcher (``None``: image height and width can be dynamic)."""


ALL_LAYERS = {"depth_confidence": -1.0, "width_confidence": -1.0}
"""LightGlue's adaptive depth (early exit) and width (point pruning) are data-dependent control flow that a traced
graph cannot hold: the exported LightGlue runs all layers on all points."""

BLOCKED = {
    "gim_dkm": "torch.linalg.inv (DKM's Gaussian-process regression inverts a kernel matrix; no standard ONNX opset "
               "has a matrix inverse or linear solve)",
    "gim_roma": "torch.linalg.inv (RoMa's Gaussian-process regression inverts a kernel matrix; no standard ONNX "
                "opset has a matrix inverse or linear solve)",
}
"""Matchers that cannot be exported, with the operator that stops them (``tests/export`` checks the claim by
exporting the GP module alone)."""


def _example_image(size: tuple[int, int], channels: int) -> torch.Tensor:
    """A textured ``(1, C, h, w)`` example (the motorcycle pair's left image, squashed): real structure keeps every
    data-dependent path of the trace populated (keypoints above threshold, coarse matches)."""
    import torch.nn.functional as F

    from gim_plugins.datasets.motorcycle import paths
    from gim_plugins.io import to_image_tensor

    image = to_image_tensor(paths()["left"])[None]
    image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    if channels == 1:
        from gim_plugins.io import rgb_to_gray

        image = rgb_to_gray(image)
    return image.contiguous()


def _lightglue_spec(lightglue: nn.Module, dim: int) -> GraphSpec:
    import torch

    from gim_plugins.export.graphs import LightGlueGraph

    generator = torch.Generator().manual_seed(0)
    n0, n1 = 64, 48

    def side(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        keypoints = torch.rand(1, n, 2, generator=generator) * torch.tensor([639.0, 479.0])
        descriptors = torch.nn.functional.normalize(torch.randn(1, n, dim, generator=generator), dim=-1)
        return keypoints, descriptors

    (k0, d0), (k1, d1) = side(n0), side(n1)
    size = torch.tensor([[640, 480]])
    return GraphSpec(
        "matcher", LightGlueGraph(lightglue), (k0, k1, d0, d1, size, size.clone()),
        ("keypoints0", "keypoints1", "descriptors0", "descriptors1", "image_size0", "image_size1"),
        ("matches", "scores"),
        {"keypoints0": {1: "num_keypoints0"}, "descriptors0": {1: "num_keypoints0"},
         "keypoints1": {1: "num_keypoints1"}, "descriptors1": {1: "num_keypoints1"},
         "matches": {0: "num_matches"}, "scores": {0: "num_matches"}},
        exporter="dynamo")


# ------------------------------------------------------------------------------------------------ gim_lightglue


def _gim_lightglue_graphs(matcher: Any, size: tuple[int, int], dynamic: bool) -> list[GraphSpec]:
    from gim_plugins.export.graphs import SuperPointGraph

    axes = {"image": {2: "height", 3: "width"}, "dense_descriptors": {2: "height_8", 3: "width_8"}} if dynamic else {}
    keypoint_axes = {name: {0: "num_keypoints"} for name in ("keypoints", "scores", "descriptors")}
    extractor = GraphSpec("extractor", SuperPointGraph(matcher.superpoint), (_example_image(size, 1),), ("image",),
                          ("keypoints", "scores", "descriptors", "dense_descriptors"), {**axes, **keypoint_axes})
    return [extractor, _lightglue_spec(matcher.lightglue, 256)]


def _gim_lightglue_processing(matcher: Any, size: tuple[int, int] | None) -> dict[str, Any]:
    conf = matcher.conf
    frame = "the graph's fixed input size" if size else "(H//8·8, W//8·8)"
    return {
        "preprocessing": [
            "RGB in [0, 1] → gray with ITU-R 601 weights (0.299, 0.587, 0.114)",
            f"squash to {frame} with bilinear interpolation (antialiased), no normalisation",
        ],
        "extractor": {
            "nms_radius": conf.nms_radius, "detection_threshold": conf.detection_threshold,
            "remove_borders": conf.remove_borders, "max_keypoints": conf.max_keypoints,
            "keypoints": "pixel centres of the squashed image, integer-valued (x, y)",
            "padding": ("if force_num_keypoints and fewer than max_keypoints are detected: add uniform random points "
                        "in the keypoints' bounding box (score 0) and describe them by sampling dense_descriptors "
                        "at (p − 3.5) / (8·size − 4.5) · 2 − 1, bilinear, align_corners=True, then L2-normalise"
                        if conf.force_num_keypoints else "none"),
            "force_num_keypoints": conf.force_num_keypoints, "padding_seed": conf.padding_seed,
        },
        "matcher_inputs": ("keypoints in the squashed image's corner convention (centre + 0.5), image_size = "
                           "(w, h) of the squashed image (sets LightGlue's normalisation)"),
        "postprocessing": [
            "keypoints → pixels of the image as given: (k + 0.5) · (W/w, H/h) − 0.5 per axis",
            f"matches: mutual best with assignment score > filter_threshold ({conf.filter_threshold}), all layers",
        ],
    }


# --------------------------------------------------------------------------------------------- aliked_lightglue


def _aliked_graphs(matcher: Any, size: tuple[int, int], dynamic: bool) -> list[GraphSpec]:
    from gim_plugins.export.graphs import ALIKEDGraph

    keypoint_axes = {name: {0: "num_keypoints"} for name in ("keypoints", "descriptors", "scores")}
    extractor = GraphSpec("extractor", ALIKEDGraph(matcher.extractor), (_example_image(size, 3),), ("image",),
                          ("keypoints", "descriptors", "scores"), keypoint_axes)
    return [extractor, _lightglue_spec(matcher.lightglue, 128)]


def _aliked_processing(matcher: Any, size: tuple[int, int] | None) -> dict[str, Any]:
    conf = matcher.conf
    return {
        "preprocessing": [
            "RGB in [0, 1], no normalisation",
            "an image of another size than the graph's is resized to it (bilinear, antialiased) and keypoints are "
            "mapped back with (k + 0.5) · (W/w, H/h) − 0.5",
        ],
        "extractor": {"max_keypoints": conf.max_keypoints, "detection_threshold": conf.detection_threshold,
                      "nms_radius": conf.nms_radius,
                      "keypoints": "pixel centres at integers (x, y), sub-pixel (soft-argmax refinement)"},
        "matcher_inputs": "keypoints in pixels of the extractor's input, image_size = its (w, h)",
        "postprocessing": [f"matches: mutual best with assignment score > filter_threshold "
                           f"({conf.filter_threshold}), all layers"],
    }


# ------------------------------------------------------------------------------------------------------ gim_loftr


def _loftr_graphs(matcher: Any, size: tuple[int, int], dynamic: bool) -> list[GraphSpec]:
    import torch

    from gim_plugins.export.graphs import LoFTRGraph

    h, w = size
    if h % 8 or w % 8:
        raise ExportRefused(f"gim_loftr: --size must be multiples of 8 (got {w}x{h}); e.g. --size {w // 8 * 8}x"
                            f"{h // 8 * 8}")
    image0 = _example_image(size, 3)
    image1 = torch.flip(image0, dims=[3]).contiguous()  # a different view: keeps the trace's coarse matches varied
    mask = torch.ones(1, h // 8, w // 8, dtype=torch.bool)
    return [GraphSpec("network", LoFTRGraph(matcher.net), (image0, image1, mask, mask.clone()),
                      ("image0", "image1", "mask0", "mask1"), ("keypoints0", "keypoints1", "confidence"),
                      {name: {0: "num_matches"} for name in ("keypoints0", "keypoints1", "confidence")})]


def _loftr_processing(matcher: Any, size: tuple[int, int] | None) -> dict[str, Any]:
    conf = matcher.conf
    return {
        "preprocessing": [
            "RGB in [0, 1], no normalisation",
            "squash each image to the graph's fixed input size with bilinear interpolation (antialiased)",
            "masks (True = usable cell, 1/8 resolution): all True without user masks; a user mask is resized to the "
            "input size (nearest) and its top-left pixel of each 8×8 cell is taken",
        ],
        "network": {"coarse_threshold": conf.coarse_threshold, "temp_bug_fix": conf.temp_bug_fix,
                    "border_removal_cells": 2},
        "postprocessing": [
            "keypoints are corner-convention pixels of the network input: multiply by (W/w, H/h) per axis, then "
            "subtract 0.5 for pixel centres at integers",
        ],
    }


RECIPES = {
    "gim_lightglue": Recipe("gim_lightglue", _gim_lightglue_graphs, _gim_lightglue_processing, ALL_LAYERS),
    "aliked_lightglue": Recipe(
        "aliked_lightglue", _aliked_graphs, _aliked_processing, ALL_LAYERS,
        dynamic_refusal="kornia's ALIKED computes its padding to multiples of 32 and its top-k size from the traced "
                        "image size in Python; export at the size you need with --size WxH instead"),
    "gim_loftr": Recipe(
        "gim_loftr", _loftr_graphs, _loftr_processing, {"precision": "float32"},
        dynamic_refusal="GIM-LoFTR's graph is fixed-size (the position encoding and the coarse grid are sliced to the "
                        "traced size); export each input size you need with --size WxH"),
}


def get_recipe(name: str) -> Recipe:
    """The recipe of ``name``.

    Raises:
        ExportRefused: a matcher whose operators do not export (the message names the operator), or one without a
            recipe.
    """
    if name in BLOCKED:
        raise ExportRefused(f"{name} cannot be exported to ONNX: it needs {BLOCKED[name]}; use the PyTorch backend")
    if name not in RECIPES:
        raise ExportRefused(f"{name!r} has no ONNX export; exportable matchers: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]
