"""gim_lightglue: GIM's SuperPoint + LightGlue, weights ``gim_lightglue_100h`` (one file, two networks).

Extraction (once per image; :class:`~gim_plugins.features.FeatureCache` keeps the result):

1. RGB → gray with ITU-R 601 weights (GIM reads the file as gray with OpenCV: the same weights, rounded to 8 bit);
2. squash to ``(H//8·8, W//8·8)`` with bilinear interpolation, as GIM's ``preprocess`` (no-op for multiples of 8);
3. our SuperPoint (:mod:`gim_plugins.models._arch.superpoint`) with GIM's settings: NMS radius 3, threshold 0,
   exactly 2048 keypoints (random padding from a generator seeded with ``padding_seed`` for every image);
4. keypoints ``k`` (centres of the detected pixels of the squashed image) are mapped to the image as given with
   ``(k + 0.5) · (W/w, H/h) − 0.5`` per axis. GIM reports ``k + 0.5`` and multiplies by the same factors, so our
   keypoints are GIM's minus 0.5 (``gim_keypoint_offset``), exactly, at any size.

Matching: kornia's LightGlue (``features=None, input_dim=256``: 9 layers, 4 heads; adaptive depth and width off
(−1), filter threshold 0.1, GIM's settings) loads the ``model.*`` half strictly; the only key GIM's file lacks is
kornia's derived ``confidence_thresholds`` buffer, kept from the freshly built module. To stay faithful, LightGlue
sees what GIM's LightGlue sees: the keypoints are mapped back into the squashed frame in GIM's corner convention
(``(k + 0.5) / factors``) with that frame's size ``(w, h)``, which sets the keypoint normalisation (centre
``(w/2, h/2)``, scale ``max(w, h)/2``), as GIM's ZEB/hloc path does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F

from gim_plugins.conf import Bool, Conf, ConfError, Float, Int
from gim_plugins.models.base import SparseMatcher
from gim_plugins.models.state_dicts import LIGHTGLUE_DERIVED, CheckpointMismatchError, fit_state_dict
from gim_plugins.types import Features

if TYPE_CHECKING:
    from gim_plugins.models._arch.superpoint import SuperPointOutput

__all__ = ["GIMLightGlue", "remap_gim_lightglue"]

_SUPERPOINT = "superpoint."
_LIGHTGLUE = "model."


def remap_gim_lightglue(state_dict: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a raw ``gim_lightglue_100h`` state dict into ``(superpoint, lightglue)`` state dicts.

    The file holds 24 ``superpoint.*`` and 251 ``model.*`` tensors (GIM loads them in two strict passes, stripping
    each prefix). A whole checkpoint ``{"state_dict": …}`` is unwrapped.

    Raises:
        ValueError: keys with neither prefix (the message names them), or a file without one of the two halves.
    """
    inner = state_dict.get("state_dict")
    if isinstance(inner, Mapping):
        state_dict = inner
    superpoint: dict[str, torch.Tensor] = {}
    lightglue: dict[str, torch.Tensor] = {}
    stray = []
    for key, value in state_dict.items():
        if key.startswith(_SUPERPOINT):
            superpoint[key[len(_SUPERPOINT):]] = value
        elif key.startswith(_LIGHTGLUE):
            lightglue[key[len(_LIGHTGLUE):]] = value
        else:
            stray.append(key)
    if stray:
        raise CheckpointMismatchError(f"gim_lightglue_100h: keys without a 'superpoint.' or 'model.' prefix: "
                                      f"{sorted(stray)[:10]}{'…' if len(stray) > 10 else ''}")
    for prefix, half in ((_SUPERPOINT, superpoint), (_LIGHTGLUE, lightglue)):
        if not half:
            raise CheckpointMismatchError(f"gim_lightglue_100h: the checkpoint has no '{prefix}*' keys (is it GIM's "
                             "SuperPoint+LightGlue file?)")
    return superpoint, lightglue


class GIMLightGlue(SparseMatcher):
    """GIM SuperPoint (2048 keypoints) + LightGlue, split into per-image extraction and pairwise matching."""

    name: ClassVar[str] = "gim_lightglue"
    default_conf: ClassVar[dict[str, Any]] = {
        "max_keypoints": 2048,
        "detection_threshold": 0.0,
        "nms_radius": 3,
        "remove_borders": 4,
        "force_num_keypoints": True,  # pad to exactly max_keypoints, as GIM's LightGlue was trained
        "padding_seed": 0,  # seed of the padding points' generator (reset for every image)
        "filter_threshold": 0.1,  # match score LightGlue's matches must exceed
        "depth_confidence": -1.0,  # adaptive depth (early exit); GIM: off
        "width_confidence": -1.0,  # point pruning; GIM: off
        "flash": False,  # CUDA only: half-precision flash attention in LightGlue (GIM: fp32 softmax attention)
        "max_image_pixels": 24_000_000,  # larger images are refused (SuperPoint runs at full resolution)
    }
    conf_schema: ClassVar[dict[str, Any]] = {
        "max_keypoints": Int(min=-1),  # -1: every detection (not with force_num_keypoints)
        "detection_threshold": Float(min=0, max=1),
        "nms_radius": Int(min=0, max=64),
        "remove_borders": Int(min=0),
        "force_num_keypoints": Bool(),
        "padding_seed": Int(min=0),
        "filter_threshold": Float(min=0, max=1),
        "depth_confidence": Float(min=-1, max=1),
        "width_confidence": Float(min=-1, max=1),
        "flash": Bool(),
        "max_image_pixels": Int(min=1) | None,
    }
    weight_names: ClassVar[tuple[str, ...]] = ("gim_lightglue_100h",)
    extract_conf_keys: ClassVar[tuple[str, ...]] = ("max_keypoints", "detection_threshold", "nms_radius",
                                                    "remove_borders", "force_num_keypoints", "padding_seed")
    min_image_size: ClassVar[int] = 32
    gim_keypoint_offset: ClassVar[float] = 0.5

    def _init(self, conf: Conf) -> None:
        import kornia.feature as KF

        from gim_plugins.models._arch.superpoint import SuperPoint

        if conf.max_keypoints == 0 or (conf.force_num_keypoints and conf.max_keypoints <= 0):
            raise ConfError("option 'max_keypoints' of matcher 'gim_lightglue' must be > 0: force_num_keypoints needs "
                            "max_keypoints > 0 (-1, every detection, needs force_num_keypoints=false), got "
                            f"{conf.max_keypoints}")
        self.superpoint = SuperPoint(max_keypoints=conf.max_keypoints, detection_threshold=conf.detection_threshold,
                                     nms_radius=conf.nms_radius, remove_borders=conf.remove_borders,
                                     force_num_keypoints=conf.force_num_keypoints)
        flash_sdp = torch.backends.cuda.flash_sdp_enabled()
        self.lightglue = KF.LightGlue(features=None, input_dim=256, descriptor_dim=256, n_layers=9, num_heads=4,
                                      flash=conf.flash, mp=False, depth_confidence=conf.depth_confidence,
                                      width_confidence=conf.width_confidence, filter_threshold=conf.filter_threshold)
        torch.backends.cuda.enable_flash_sdp(flash_sdp)  # kornia toggles this process-wide flag; keep the user's

    def _load_state_dicts(self, state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        superpoint, lightglue = remap_gim_lightglue(state_dicts["gim_lightglue_100h"])
        superpoint = fit_state_dict(self.superpoint, superpoint, "gim_lightglue_100h (superpoint.*)")
        lightglue = fit_state_dict(self.lightglue, lightglue, "gim_lightglue_100h (model.*)",
                                   derived=LIGHTGLUE_DERIVED)
        self.superpoint.load_state_dict(superpoint, strict=True)  # both checked before either is loaded
        self.lightglue.load_state_dict(lightglue, strict=True)

    @staticmethod
    def processed_size(image_size: tuple[int, int]) -> tuple[int, int]:
        """``(h, w)`` SuperPoint runs at for an image of ``(H, W)``: GIM's squash to multiples of 8."""
        height, width = image_size
        return height // 8 * 8, width // 8 * 8

    def _factors(self, image_size: tuple[int, int]) -> torch.Tensor:
        h, w = self.processed_size(image_size)
        return torch.tensor([image_size[1] / w, image_size[0] / h], dtype=torch.float32)

    def _extract(self, image: torch.Tensor) -> Features:
        size = (int(image.shape[-2]), int(image.shape[-1]))
        from gim_plugins.models._arch.superpoint import SuperPoint

        gray = SuperPoint.to_gray(image[None].to(self.device))
        h, w = self.processed_size(size)
        if (h, w) != size:
            gray = F.interpolate(gray, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        generator = torch.Generator().manual_seed(int(self.conf.padding_seed))
        out = self._detect(gray, generator)
        keypoints = (out.keypoints.float().cpu() + 0.5) * self._factors(size) - 0.5
        return self._features(keypoints, out.descriptors, out.scores, image)

    def _match_features(self, features0: Features, features1: Features) -> tuple[torch.Tensor, torch.Tensor,
                                                                                    torch.Tensor]:
        device = self.device

        def side(f: Features) -> dict[str, torch.Tensor]:
            h, w = self.processed_size(f.image_size)
            corner = (f.keypoints + 0.5) / self._factors(f.image_size)  # GIM's SuperPoint frame
            return {"keypoints": corner[None].to(device), "descriptors": f.descriptors[None].to(device),
                    "image_size": torch.tensor([[w, h]], device=device)}

        matches, scores = self._lightglue(side(features0), side(features1))
        return matches[:, 0], matches[:, 1], scores

    # The two network calls, kept apart from the pre- and post-processing around them so that another backend (the
    # ONNX Runtime matcher of gim_plugins.export) replaces only these and shares everything else.

    def _detect(self, gray: torch.Tensor, generator: torch.Generator) -> SuperPointOutput:
        """SuperPoint on one ``(1, 1, h, w)`` gray image (multiples of 8), padding points from ``generator``."""
        return self.superpoint(gray, generator=generator)[0]

    def _lightglue(self, side0: dict[str, torch.Tensor], side1: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
        """LightGlue on two sides (``keypoints`` (1, N, 2), ``descriptors`` (1, N, 256), ``image_size`` (1, 2) as
        ``(w, h)``): matches ``(M, 2)`` as index pairs and their scores ``(M,)``."""
        out = self.lightglue({"image0": side0, "image1": side1})
        return out["matches"][0], out["scores"][0]
