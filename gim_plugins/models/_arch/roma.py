"""RoMa (Edstedt et al., "RoMa: Robust Dense Feature Matching", CVPR 2024) as GIM uses it, written for gim-plugins.

GIM ships an older Parskatt/RoMa (``networks/roma``). Module and parameter names follow it so that ``gim_roma_100h``
loads strictly (``encoder.cnn.layers.*``, ``decoder.{embedding_decoder,gps,proj,conv_refiner}.*``); the frozen DINOv2
ViT-L/14 is held *outside* the state dict, as in the original, and loads from its own file
(:meth:`RoMa.load_dinov2`).

Computation is the original's: RGB in [0, 1] without ImageNet normalisation, VGG19-BN fine features (strides 1–8),
DINOv2 patch tokens as the stride-"16" features (really stride 14), a GP embedding plus a 5-block transformer that
classifies each coarse cell into one of 64×64 anchors (turned into coordinates by a 5-neighbour soft-argmax), then
DKM-style refiners at 16, 8, 4, 2, 1 with the displacement embedding scaled by ``40/32 · scale_factor``.

Shared with DKM (:mod:`~gim_plugins.models._arch.gp`, :mod:`~gim_plugins.models._arch.refiners`,
:mod:`~gim_plugins.models._arch.grids`; same code, same numbers): the GP (RoMa's has no N > 2000 slice
branch: every batch item uses its own inverse, i.e. ``faithful=False`` there), the cosine kernel, the conv refiners and
their local correlation, the coordinate grid and the black-pixel mask. As for DKM, the batched ``linalg.inv`` (which
crashes on some oneMKL CPUs) is a per-matrix loop, refiners run one batch item at a time, and the upsampling pass
skips what it never reads (DINOv2, the last VGG pooling). The GP's kernel matrix at 48² cells is ill-conditioned
(cond ≈ N / σ² on padded, uniform regions), so it turns float32 rounding of its inputs into ~1e3× larger differences;
the coarse path therefore keeps the original's operations *and* tensor layouts. See ``UPSTREAM.md``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping

import torch
from torch import nn

from gim_plugins.models._arch.dinov2 import Block, DinoV2ViTL14
from gim_plugins.models._arch.dkm import canvases, symmetric_warp
from gim_plugins.models._arch.gp import GP
from gim_plugins.models._arch.grids import BLACK_THRESHOLD, normalized_grid, resize
from gim_plugins.models._arch.refiners import ConvRefiner
from gim_plugins.models.state_dicts import fit_state_dict

__all__ = ["ANCHOR_RES", "VGG19", "RoMa", "RoMaDecoder", "RoMaEncoder", "TransformerDecoder", "cls_to_flow"]

GP_DIM = 512
DECODER_DIM = 1024
"""GP embedding (512) + projected DINOv2 features (512)."""
ANCHOR_RES = 64
"""The coarse decoder classifies each cell into one of 64×64 anchor positions of the other image."""
EMB_SCALE = 40 / 32
"""Displacement-embedding factor of RoMa's refiners (times the pass's ``scale_factor``)."""
VGG_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M")
"""VGG19 up to the fourth pooling (torchvision's ``vgg19_bn().features[:40]``)."""

# (stride, input channels, hidden channels, displacement-embedding dim, local correlation radius or 0)
REFINERS: tuple[tuple[int, int, int, int, int], ...] = (
    (16, 2 * 512 + 128 + 15**2, 2 * 512 + 128 + 15**2, 128, 7),
    (8, 2 * 512 + 64 + 7**2, 2 * 512 + 64 + 7**2, 64, 3),
    (4, 2 * 256 + 32 + 5**2, 2 * 256 + 32 + 5**2, 32, 2),
    (2, 2 * 64 + 16, 128 + 16, 16, 0),
    (1, 2 * 9 + 6, 24, 6, 0),
)
PROJ: tuple[tuple[int, int, int], ...] = ((16, 1024, 512), (8, 512, 512), (4, 256, 256), (2, 128, 64), (1, 64, 9))
"""(stride, in, out) of the 1×1 conv + batch-norm projection applied to the features before decoding."""


class VGG19(nn.Module):
    """VGG19-BN convolutions; features before each pooling: strides 1 (64 ch), 2 (128), 4 (256), 8 (512)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG_CONFIG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.BatchNorm2d(int(item)), nn.ReLU(True)]
                channels = int(item)
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        feats, scale = {}, 1
        for index, layer in enumerate(self.layers):
            if isinstance(layer, nn.MaxPool2d):
                feats[scale] = x
                if index == len(self.layers) - 1:
                    break  # the original pools once more and never reads the result
                scale *= 2
            x = layer(x)
        return feats


class RoMaEncoder(nn.Module):
    """VGG19-BN (``cnn``, in the state dict) and DINOv2 ViT-L/14 (frozen, deliberately *not* in the state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.cnn = VGG19()
        self._dinov2 = (DinoV2ViTL14().eval(),)  # a tuple hides it from state_dict(), parameters() and children()

    @property
    def dinov2(self) -> DinoV2ViTL14:
        return self._dinov2[0]

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> RoMaEncoder:
        """Device and dtype moves (``.to``, ``.cuda``, ``.half``) also reach the hidden DINOv2."""
        super()._apply(fn, recurse)
        self.dinov2._apply(fn, recurse)
        return self

    def forward(self, x: torch.Tensor, coarse: bool = True) -> dict[int, torch.Tensor]:
        """Features by stride of ``(B, 3, H, W)``; ``coarse`` adds DINOv2's at key 16 (``(B, 1024, H/14, W/14)``)."""
        feats = self.cnn(x)
        if coarse:
            with torch.no_grad():
                # the whole batch at once, as the original: the result's memory layout (a channels-last-like view)
                # selects the projection's convolution kernel, and the GP amplifies even 1e-6 differences
                feats[16] = self.dinov2.patch_features(x)
        return feats


class TransformerDecoder(nn.Module):
    """Coarse decoder: 5 transformer blocks over the ``[GP embedding, features]`` tokens of each cell, then a linear
    layer to 64² anchor logits + 1 certainty logit. No positional encoding (the GP embedding carries position)."""

    def __init__(self, num_blocks: int = 5) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Block(DECODER_DIM, 8, qkv_bias=False, layer_scale=False, eps=1e-5)
                                      for _ in range(num_blocks)])
        self.to_out = nn.Linear(DECODER_DIM, ANCHOR_RES**2 + 1)

    def forward(self, embedding: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(anchor logits (B, 4096, h, w), certainty logits (B, 1, h, w))``."""
        x = torch.cat((embedding, feats), dim=1)
        b, c, h, w = x.shape
        out = self.to_out(self.blocks(x.reshape(b, c, h * w).permute(0, 2, 1)))
        out = out.permute(0, 2, 1).reshape(b, -1, h, w)
        return out[:, :-1], out[:, -1:]


def cls_to_flow(logits: torch.Tensor) -> torch.Tensor:
    """Anchor logits ``(B, R², h, w)`` → normalised coordinates ``(B, 2, h, w)`` (RoMa's ``cls_to_flow_refine``).

    The probability-weighted mean of the arg-max anchor and its four neighbours ``mode ± 1``, ``mode ± R`` in flat
    index order (clamped to [0, R²−1]; like the original, ``mode ± 1`` wraps across row ends).
    """
    c = logits.shape[1]
    res = round(math.sqrt(c))
    anchors = normalized_grid(res, res, logits.device).reshape(2, c).T  # (R², 2): x, y
    probs = logits.softmax(dim=1)
    mode = probs.max(dim=1).indices
    index = torch.stack((mode - 1, mode, mode + 1, mode - res, mode + res), dim=1).clamp(0, c - 1)
    neighbours = torch.gather(probs, 1, index)[..., None]  # (B, 5, h, w, 1)
    flow = neighbours[:, 0] * anchors[index[:, 0]]
    for k in range(1, 5):
        flow = flow + neighbours[:, k] * anchors[index[:, k]]
    flow = flow / neighbours.sum(dim=1)
    return flow.permute(0, 3, 1, 2)


class RoMaDecoder(nn.Module):
    """GP + transformer classifier at stride 16, conv refiners at 16, 8, 4, 2, 1."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding_decoder = TransformerDecoder()
        self.gps = nn.ModuleDict({"16": GP(GP_DIM)})
        self.proj = nn.ModuleDict({str(s): nn.Sequential(nn.Conv2d(i, o, 1), nn.BatchNorm2d(o)) for s, i, o in PROJ})
        self.conv_refiner = nn.ModuleDict({str(s): ConvRefiner(i, hd, e, r, certainty_last=True)
                                           for s, i, hd, e, r in REFINERS})

    def forward(self, feats: dict[int, torch.Tensor], *, flow: torch.Tensor | None = None,
                certainty: torch.Tensor | None = None, scale_factor: float = 1.0,
                keep: tuple[int, ...] = (1,), queries: int | None = None, detach: bool = False,
                coarse: dict[str, torch.Tensor] | None = None) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Decode the pyramid of the batch ``[A; B]`` (item k matched against item ``(k + B/2) mod B``).

        Without ``flow`` this is the full pass (16 → 1); with ``flow``/``certainty`` from a lower-resolution pass only
        the refiners at 8 → 1 run (the original's ``upsample=True``). ``scale_factor`` is that pass's resolution
        ratio (it scales the refiners' displacement embedding). Entries of ``feats`` are consumed.

        Training (GIM's training branch): ``queries = B/2`` decodes only ``A → B``, ``detach`` cuts the gradient
        between strides (``Decoder(detach=True)``), and a ``coarse`` dict receives the coarse decoder's outputs the
        losses need: ``gm_cls`` (anchor logits, (Q, 4096, h, w)) and ``gm_certainty`` ((Q, 1, h, w)).

        Returns:
            ``{stride: (flow (Q,2,h,w), certainty logits (Q,1,h,w))}`` for the strides in ``keep`` (float32), Q the
            number of queries (B by default).
        """
        upsample = flow is not None
        scales = [8, 4, 2, 1] if upsample else [16, 8, 4, 2, 1]
        sizes = {s: f.shape[-2:] for s, f in feats.items()}
        h, w = sizes[1]
        b = feats[1].shape[0]
        support = tuple((k + b // 2) % b for k in range(b if queries is None else queries))
        if upsample:
            if certainty is None:
                raise ValueError("the upsampling pass needs both flow and certainty")
            flow, certainty = resize(flow, sizes[8]), resize(certainty, sizes[8])
        emb_scale = EMB_SCALE * scale_factor
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for scale in scales:
            key = str(scale)
            f = self.proj[key](feats.pop(scale))
            if scale == 16:
                q = len(support)
                embedding = self.gps[key](f[:q], f[list(support)], faithful=False)
                logits, certainty = self.embedding_decoder(embedding, f[:q])
                logits, certainty = logits.float(), certainty.float()
                flow = cls_to_flow(logits)
                if coarse is not None:
                    coarse.update(gm_cls=logits, gm_certainty=certainty)
                del embedding, logits
            assert flow is not None and certainty is not None
            delta_certainty, displacement = self.conv_refiner[key](f, flow, support, emb_scale)
            flow = torch.stack((flow[:, 0] + scale * (displacement[:, 0] / (4 * w)),
                                flow[:, 1] + scale * (displacement[:, 1] / (4 * h))), dim=1)
            certainty = certainty + delta_certainty
            del f, delta_certainty, displacement
            if scale in keep:
                out[scale] = (flow, certainty)
            if scale != 1:
                flow, certainty = resize(flow, sizes[scale // 2]), resize(certainty, sizes[scale // 2])
                if detach:
                    flow, certainty = flow.detach(), certainty.detach()
        return out


class RoMa(nn.Module):
    """GIM's RoMa network: ``encoder`` + ``decoder``; :meth:`dense_match` is the original's ``match()``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = RoMaEncoder()
        self.decoder = RoMaDecoder()

    def load_dinov2(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Strictly load DINOv2 ViT-L/14 weights (Meta's ``dinov2_vitl14_pretrain.pth`` layout).

        Raises:
            CheckpointMismatchError: keys or shapes differ (the message names them).
        """
        self.encoder.dinov2.load_state_dict(self.fit_dinov2(state_dict), strict=True)

    def fit_dinov2(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Check a DINOv2 state dict without loading it (:func:`~gim_plugins.models.state_dicts.fit_state_dict`)."""
        return fit_state_dict(self.encoder.dinov2, state_dict, "DINOv2 ViT-L/14 (dinov2_vitl14_pretrain.pth)")

    def _pyramid(self, batch: torch.Tensor, coarse: bool) -> dict[int, torch.Tensor]:
        return self.encoder(batch, coarse=coarse)

    @torch.inference_mode()
    def dense_match(self, image_a: torch.Tensor, image_b: torch.Tensor, *, size: tuple[int, int] = (672, 672),
                    upsample_res: tuple[int, int] | None = (1344, 1344),
                    black_threshold: float | None = BLACK_THRESHOLD,
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense symmetric warp between two images (GIM's ``RegressionMatcher.match``, symmetric).

        Args:
            image_a: ``(1, 3, H, W)`` float32 RGB in [0, 1], not normalised.
            image_b: ``(1, 3, H', W')``.
            size: ``(h, w)`` of the coarse pass (multiples of 14: DINOv2's patch).
            upsample_res: ``(h, w)`` of the refinement-only second pass, or ``None`` to skip it.
            black_threshold: certainty is zeroed where all channels of the input are below it (None: off).
            dtype: compute dtype of DINOv2, VGG, the transformer decoder and the refiners (bfloat16 autocast; the
                GP, the anchor soft-argmax and the flow updates stay float32).

        Returns:
            ``warp`` ``(H_o, 2·W_o, 4)`` of ``(x_A, y_A, x_B, y_B)`` in normalised coordinates (left half: A grid →
            B, right half: B grid → A) and ``certainty`` ``(H_o, 2·W_o)`` in [0, 1]; ``(H_o, W_o)`` is
            ``upsample_res`` or ``size``.
        """
        coarse, fine, black = canvases(image_a, image_b, size, upsample_res, black_threshold)
        warp, certainty = self.dense_match_canvases(coarse, fine, black, dtype=dtype)
        return warp[0], certainty[0]

    @torch.inference_mode()
    def dense_match_canvases(self, coarse: torch.Tensor, fine: torch.Tensor | None, black: torch.Tensor | None, *,
                             dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`dense_match` of P pairs at once from their canvases (:func:`~gim_plugins.models._arch.dkm.canvases`:
        ``coarse`` ``(2P, 3, h, w)`` as ``[A_1 … A_P; B_1 … B_P]``, ``fine`` ``(2P, 3, H_o, W_o)`` or ``None``,
        ``black`` ``(2P, H_o, W_o)`` or ``None``); returns ``(P, H_o, 2·W_o, 4)`` warps and ``(P, H_o, 2·W_o)``
        certainties."""
        size = tuple(coarse.shape[-2:])
        autocast = (torch.autocast(coarse.device.type, dtype=dtype) if dtype != torch.float32
                    else contextlib.nullcontext())
        with autocast:
            out = self.decoder(self._pyramid(coarse, True), keep=(16, 1))
            out_size = tuple(fine.shape[-2:]) if fine is not None else size
            attenuation = resize(out[16][1], out_size)
            attenuation = 0.5 * attenuation * (attenuation < 0)
            flow, certainty = out[1]
            del out
            if fine is not None:
                scale_factor = math.sqrt(out_size[0] * out_size[1] / (size[0] * size[1]))
                feats = self._pyramid(fine, False)
                flow, certainty = self.decoder(feats, flow=flow, certainty=certainty, scale_factor=scale_factor)[1]
        certainty = (certainty - attenuation).sigmoid()
        del attenuation
        return symmetric_warp(flow, certainty, black)
