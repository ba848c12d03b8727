"""GIM's semantic masks: the CSAIL ADE20K segmenter that removes people, sky and cars from video labels.

GIM's video preprocessor segments every frame with CSAIL's ADE20K scene parser (ResNet50-dilated encoder +
PPM-deepsup decoder, 150 classes; :mod:`gim_plugins.models._arch.semseg`) and excludes three classes from matching:
``person``, ``sky`` and ``car`` — ADE20K's 0-based indices 12, 2 and 20 (:data:`EXCLUDED_CLASSES`). What happens to
a frame, as there:

1. RGB, scaled with area interpolation so that the long side is at most 720 px (:data:`MAX_SIDE`; smaller frames
   are kept as they are);
2. divided by 255 and normalised with ImageNet's mean and standard deviation (the only GIM network that is);
3. class probabilities at that size, arg-max → a ``uint8`` class map (GIM caches exactly this map per frame);
4. the map is resized to the frame with nearest-neighbour interpolation, and a pixel is usable unless its class is
   excluded.

Weights: ``encoder_epoch_20.pth`` (committed in GIM's repository) and ``decoder_epoch_20.pth`` (on GIM's Google
Drive), the catalogue entries ``semseg_ade20k_encoder`` and ``semseg_ade20k_decoder``. GIM loads them with
``strict=False``; here they load strictly after :func:`remap_semseg` has dropped the three bookkeeping buffers of
CSAIL's synchronised batch norm (which the released files may or may not carry). Nothing else may differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from gim_plugins.models.state_dicts import fit_state_dict, unprefixed_state_dict

__all__ = [
    "DECODER_WEIGHTS",
    "ENCODER_WEIGHTS",
    "EXCLUDED_CLASSES",
    "MAX_SIDE",
    "SemanticSegmenter",
    "remap_semseg",
    "segmenter_available",
    "usable_mask",
]

ENCODER_WEIGHTS = "semseg_ade20k_encoder"
DECODER_WEIGHTS = "semseg_ade20k_decoder"
EXCLUDED_CLASSES = {"person": 12, "sky": 2, "car": 20}
"""ADE20K classes GIM removes from video labels: name → 0-based class index (``Idx - 1`` of ADE20K's class table)."""
MAX_SIDE = 720
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SYNC_BN_BUFFERS = ("._tmp_running_mean", "._tmp_running_var", "._running_iter")
"""Buffers of CSAIL's synchronised batch norm that plain batch norm does not have (dropped by :func:`remap_semseg`)."""


def remap_semseg(checkpoint: Mapping[str, Any], owner: str = "semseg") -> dict[str, torch.Tensor]:
    """A CSAIL encoder or decoder file → our module's keys (pure).

    Unwraps ``{"state_dict": …}``, strips one leading ``module.`` (files saved from ``DataParallel``) and drops the
    synchronised-batch-norm bookkeeping buffers :data:`SYNC_BN_BUFFERS`; everything else is kept for the strict load.
    """
    state = unprefixed_state_dict(checkpoint, owner, prefixes=("module.",))
    return {k: v for k, v in state.items() if not k.endswith(SYNC_BN_BUFFERS)}


def segmenter_available() -> bool:
    """Whether both ADE20K files are installed (``gim weights fetch semseg_ade20k_encoder`` or ``import``)."""
    from gim_plugins.weights import resolve_weights

    try:
        resolve_weights(ENCODER_WEIGHTS)
        resolve_weights(DECODER_WEIGHTS)
    except FileNotFoundError:
        return False
    return True


def _load(source: Any, name: str) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    from gim_plugins.weights import load_state_dict_file, resolve_weights

    return load_state_dict_file(resolve_weights(name, source))


class SemanticSegmenter(nn.Module):
    """The ADE20K scene parser (150 classes).

    Args:
        encoder: the encoder weights: ``None`` (the catalogue's installed file), a path or a state dict.
        decoder: the decoder weights, likewise.
        device: where to run.
        pretrained: ``False`` builds random weights (tests); otherwise both files are loaded strictly.

    Raises:
        FileNotFoundError: a weight file is not installed (the message says how to get it).
        CheckpointMismatchError: a file does not fit the network (every wrong key is named).
    """

    def __init__(self, encoder: Any = None, decoder: Any = None, *, device: str | torch.device = "cpu",
                 pretrained: bool = True) -> None:
        super().__init__()
        from gim_plugins.models._arch.semseg import PPMDeepsupDecoder, ResNet50DilatedEncoder

        self.encoder = ResNet50DilatedEncoder()
        self.decoder = PPMDeepsupDecoder()
        if pretrained:
            enc = fit_state_dict(self.encoder, remap_semseg(_load(encoder, ENCODER_WEIGHTS), ENCODER_WEIGHTS),
                                 "ADE20K encoder (encoder_epoch_20.pth)")
            dec = fit_state_dict(self.decoder, remap_semseg(_load(decoder, DECODER_WEIGHTS), DECODER_WEIGHTS),
                                 "ADE20K decoder (decoder_epoch_20.pth)")
            self.encoder.load_state_dict(enc, strict=True)
            self.decoder.load_state_dict(dec, strict=True)
        elif encoder is not None or decoder is not None:
            raise ValueError("pass weights or pretrained=False, not both")
        self.to(device)
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @staticmethod
    def preprocess(rgb: np.ndarray) -> torch.Tensor:
        """``H×W×3`` uint8 RGB → ``(1, 3, h, w)`` normalised float32, long side at most :data:`MAX_SIDE` (area)."""
        import cv2

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an H×W×3 uint8 RGB frame, got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        if max(height, width) > MAX_SIDE:  # GIM's rule, including its int() truncation of the short side
            size = (MAX_SIDE, int(MAX_SIDE * height / width)) if width > height else (int(MAX_SIDE * width / height),
                                                                                     MAX_SIDE)
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        tensor = torch.from_numpy(np.ascontiguousarray(rgb)).float().div(255).permute(2, 0, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return ((tensor - mean) / std)[None]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` normalised images → class probabilities ``(B, 150, h, w)``."""
        return self.decoder(self.encoder(image), tuple(image.shape[-2:]))

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        """The ``uint8`` class map of one ``H×W×3`` uint8 RGB frame, at the preprocessed size (long side ≤ 720)."""
        image = self.preprocess(rgb).to(self.device)
        with torch.inference_mode():
            scores = self(image)
        return scores.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def usable_mask(class_map: np.ndarray, frame_size: tuple[int, int],
                excluded: Sequence[int] = tuple(EXCLUDED_CLASSES.values())) -> np.ndarray:
    """``(H, W)`` bool mask of a frame: True where the (nearest-resized) class map is not an excluded class.

    Args:
        class_map: a ``uint8`` class map from :meth:`SemanticSegmenter.segment` (any size).
        frame_size: ``(H, W)`` of the frame.
        excluded: class indices to remove (GIM: person 12, sky 2, car 20).
    """
    import cv2

    height, width = frame_size
    if class_map.shape[:2] != (height, width):
        class_map = cv2.resize(class_map, (width, height), interpolation=cv2.INTER_NEAREST)
    return ~np.isin(class_map, np.asarray(list(excluded), dtype=class_map.dtype))
