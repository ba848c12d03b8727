"""DKMv3 (Edstedt et al., "DKM: Dense Kernelized Feature Matching", CVPR 2023) as GIM uses it, written for gim-plugins.

Module and parameter names follow the original so that GIM's ``gim_dkm_100h`` checkpoint loads strictly
(``encoder.net.*``, ``decoder.{embedding_decoder,gps,proj,conv_refiner}.*``); the constants are upstream DKMv3's. The
computation is the original's (what the weights were trained with), including two behaviours a port could be tempted
to "fix":

* no ImageNet normalisation of the RGB input (GIM removed it);
* the GP's ``sigma_noise`` slice behaviour for N > 2000 conditioning cells (GIM's 672×896 and 660×880 coarse passes
  have 2352 and 2310 at stride 16): the second symmetric direction at stride 16 reuses the first direction's inverse.
  ``faithful_gp=False`` computes each direction's own inverse instead.

What differs is *how* it is computed, never *what*:

* the batched ``torch.linalg.inv`` that crashes on some oneMKL CPUs (batch ≥ 2, n ≥ 513, 2 threads) is replaced by a
  per-matrix loop (same LU per matrix);
* the upsampling pass runs the encoder only up to stride 8 (the original also computes strides 16 and 32 there and
  never reads them);
* the local correlation is computed one window offset at a time instead of materialising a
  ``(B, C, H, W, (2r+1)²)`` tensor (5.5 GB at stride 8 of the 1152×1536 pass), and the refiners run one batch item at
  a time, so intermediates are bounded by one image's feature map;
* intermediates are released as soon as they are used.

This module holds the DKM-only parts (encoder, DFN coarse decoder, decoder loop, network); the parts RoMa shares
live in :mod:`~gim_plugins.models._arch.gp` (the GP embedding), :mod:`~gim_plugins.models._arch.refiners` (conv
refiners, local correlation) and :mod:`~gim_plugins.models._arch.grids` (coordinate grids, resizing, black mask). See
``UPSTREAM.md`` for the upstream files this follows.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from gim_plugins.models._arch.gp import GP, GP_DIM
from gim_plugins.models._arch.grids import BLACK_THRESHOLD, black_mask, normalized_grid, resize
from gim_plugins.models._arch.refiners import ConvRefiner
from gim_plugins.models._arch.resnet import ResNet50Trunk

__all__ = ["BLACK_THRESHOLD", "CAB", "DFN", "RRB", "DKMDecoder", "DKMEncoder", "DKMv3", "canvases", "symmetric_warp"]

DFN_DIM, FEAT_DIM = 384, 256

# (stride, input channels, hidden channels, displacement-embedding dim, local correlation radius or 0)
REFINERS: tuple[tuple[int, int, int, int, int], ...] = (
    (16, 2 * 512 + 128 + 15**2, 2 * 512 + 128 + 15**2, 128, 7),
    (8, 2 * 512 + 64 + 7**2, 2 * 512 + 64 + 7**2, 64, 3),
    (4, 2 * 256 + 32 + 5**2, 2 * 256 + 32 + 5**2, 32, 2),
    (2, 2 * 64 + 16, 128 + 16, 16, 0),
    (1, 2 * 3 + 6, 24, 6, 0),
)
COARSE_SCALES = (32, 16)
"""Strides decoded by the GP + DFN; finer ones only by the refiners."""


# ------------------------------------------------------------------------------------------------------- encoder


class DKMEncoder(nn.Module):
    """ResNet-50 features at strides 1 (the image itself), 2, 4, 8, 16, 32 under ``encoder.net.*``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = ResNet50Trunk()

    def forward(self, x: torch.Tensor, coarsest: int = 32) -> dict[int, torch.Tensor]:
        """Features by stride, computed only down to stride ``coarsest`` (the upsampling pass needs 8)."""
        net = self.net
        feats = {1: x}
        x = net.relu(net.bn1(net.conv1(x)))
        feats[2] = x
        x = net.maxpool(x)
        for stride, layer in zip((4, 8, 16, 32), (net.layer1, net.layer2, net.layer3, net.layer4)):
            if stride > coarsest:
                break
            x = layer(x)
            feats[stride] = x
        return feats


# --------------------------------------------------------------------------------------------- coarse decoder (DFN)


class RRB(nn.Module):
    """Residual refinement block: 1×1 conv, then ``x + conv3(relu(bn(conv2(x))))`` and a ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = nn.BatchNorm2d(out_channels)
        self.conv3 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        res = self.conv3(F.relu(self.bn(self.conv2(x))))
        return F.relu(x + res)


class CAB(nn.Module):
    """Channel attention: a global-pooled gate on the new features, added to the old ones."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        gate = F.adaptive_avg_pool2d(torch.cat([old, new], dim=1), 1)
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(gate))))
        return gate * new + old


class DFN(nn.Module):
    """Discriminative-feature-network style coordinate decoder for the coarse strides (32, 16).

    Regresses the normalised target coordinates (2 channels) and one certainty logit directly from the GP embedding,
    the projected features and the context carried over from the coarser stride.
    """

    def __init__(self) -> None:
        super().__init__()
        keys = [str(s) for s in COARSE_SCALES]
        self.internal_dim = DFN_DIM
        self.feat_input_modules = nn.ModuleDict({k: nn.Conv2d(512, FEAT_DIM, 1) for k in keys})
        self.rrb_d = nn.ModuleDict({k: RRB(GP_DIM + FEAT_DIM, DFN_DIM) for k in keys})
        self.cab = nn.ModuleDict({k: CAB(2 * DFN_DIM, DFN_DIM) for k in keys})
        self.rrb_u = nn.ModuleDict({k: RRB(DFN_DIM, DFN_DIM) for k in keys})
        self.terminal_module = nn.ModuleDict({k: nn.Conv2d(DFN_DIM, 3, 1) for k in keys})

    def forward(self, embeddings: torch.Tensor, feats: torch.Tensor, context: torch.Tensor,
                scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(flow (B,2,h,w), certainty logits (B,1,h,w), new context)``."""
        key = str(scale)
        feats = self.feat_input_modules[key](feats)
        embeddings = self.rrb_d[key](torch.cat([feats, embeddings], dim=1))
        context = self.rrb_u[key](self.cab[key](context, embeddings))
        preds = self.terminal_module[key](context)
        return preds[:, -2:], preds[:, :-2], context


# ------------------------------------------------------------------------------------------------------ decoder


class DKMDecoder(nn.Module):
    """Coarse-to-fine decoder: GP + DFN at strides 32 and 16, conv refiners at 16, 8, 4, 2, 1."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding_decoder = DFN()
        self.gps = nn.ModuleDict({str(s): GP() for s in COARSE_SCALES})
        self.proj = nn.ModuleDict({"16": nn.Conv2d(1024, 512, 1), "32": nn.Conv2d(2048, 512, 1)})
        self.conv_refiner = nn.ModuleDict({str(s): ConvRefiner(i, hd, e, r) for s, i, hd, e, r in REFINERS})

    def forward(self, feats: dict[int, torch.Tensor], *, flow: torch.Tensor | None = None,
                certainty: torch.Tensor | None = None, faithful_gp: bool = True,
                keep: tuple[int, ...] = (1,), queries: int | None = None,
                detach: bool = False) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Decode a symmetric feature pyramid into flow and certainty logits.

        ``feats`` holds the pyramid of the batch ``[A; B]``; item k is matched against item ``(k + B/2) mod B``
        (GIM's symmetric mode: query ``[A; B]`` against support ``[B; A]``), without building the swapped copy.
        Without ``flow`` this is the full pass (strides 32 → 1). With ``flow``/``certainty`` (the finest result of a
        previous pass at lower resolution) only the refiners at strides 8 → 1 run (GIM's "upsample" pass).
        Entries of ``feats`` are consumed (deleted) as soon as they have been used.

        Training (GIM's training branch, ``RegressionMatcher.forward``): ``queries = B/2`` decodes only ``A → B``
        (items ``0 … B/2 − 1``), and ``detach`` cuts the gradient between strides (the original's
        ``Decoder(detach=True)``); inference leaves both at their defaults.

        Returns:
            ``{stride: (flow (Q,2,h,w), certainty logits (Q,1,h,w))}`` for the strides in ``keep`` (float32), Q the
            number of queries (B by default).
        """
        upsample = flow is not None
        scales = [8, 4, 2, 1] if upsample else [32, 16, 8, 4, 2, 1]
        sizes = {s: f.shape[-2:] for s, f in feats.items()}
        h, w = sizes[1]
        b = feats[1].shape[0]
        q = b if queries is None else queries
        support = tuple((k + b // 2) % b for k in range(q))
        device = feats[1].device
        context = None
        if upsample:
            if certainty is None:
                raise ValueError("the upsampling pass needs both flow and certainty")
            flow, certainty = resize(flow, sizes[8]), resize(certainty, sizes[8])
        else:
            context = torch.zeros(q, self.embedding_decoder.internal_dim, *sizes[32], device=device)
            flow = normalized_grid(*sizes[32], device)[None].expand(q, 2, *sizes[32])
            certainty = torch.zeros((), device=device)
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for scale in scales:
            key = str(scale)
            f = feats.pop(scale)
            if key in self.proj:
                f = self.proj[key](f)
            if scale in COARSE_SCALES:
                assert context is not None
                context = resize(context, sizes[scale])
                embedding = self.gps[key](f[:q], f[list(support)], faithful=faithful_gp, pairs=b // 2)
                flow, certainty, context = self.embedding_decoder(embedding, f[:q], context, scale)
                flow, certainty = flow.float(), certainty.float()
                del embedding
            if key in self.conv_refiner:
                assert certainty is not None
                delta_certainty, displacement = self.conv_refiner[key](f, flow, support)
                flow = torch.stack((flow[:, 0] + scale * displacement[:, 0] / (4 * w),
                                    flow[:, 1] + scale * displacement[:, 1] / (4 * h)), dim=1)
                certainty = certainty + delta_certainty
                del delta_certainty, displacement
            del f
            if scale in keep:
                out[scale] = (flow, certainty)
            if scale != 1:
                flow, certainty = resize(flow, sizes[scale // 2]), resize(certainty, sizes[scale // 2])
                if detach:
                    flow, certainty = flow.detach(), certainty.detach()
        return out


# -------------------------------------------------------------------------------------------------------- network


class DKMv3(nn.Module):
    """GIM's DKMv3 network: ``encoder`` (ResNet-50) + ``decoder``; :meth:`dense_match` is GIM's ``match()``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = DKMEncoder()
        self.decoder = DKMDecoder()

    def _pyramid(self, batch: torch.Tensor, coarsest: int) -> dict[int, torch.Tensor]:
        """Encoder features of the resized batch ``[A…; B…]`` (stride 1: the resized images themselves, float32)."""
        feats = self.encoder(batch.contiguous(memory_format=torch.channels_last), coarsest=coarsest)
        feats[1] = batch
        return feats

    def dense_match(self, image_a: torch.Tensor, image_b: torch.Tensor, *, size: tuple[int, int],
                    upsample_res: tuple[int, int] | None = (1152, 1536), faithful_gp: bool = True,
                    black_threshold: float | None = BLACK_THRESHOLD,
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense symmetric warp between two images (GIM's ``RegressionMatcher.match`` with ``symmetric=True``).

        Args:
            image_a: ``(1, 3, H, W)`` float32 RGB in [0, 1], not normalised.
            image_b: ``(1, 3, H', W')``.
            size: ``(h, w)`` the images are resized to for the coarse pass (``h_resized``, ``w_resized``).
            upsample_res: ``(h, w)`` of the refinement-only second pass, or ``None`` to skip it.
            faithful_gp: keep the original GP slice behaviour (see :class:`GP`).
            black_threshold: certainty is zeroed where all channels of the input are below it (None: off).
            dtype: compute dtype of the encoder and refiners (``torch.bfloat16`` runs them in bf16 autocast).

        Returns:
            ``warp`` ``(H_o, 2·W_o, 4)`` with rows ``(x_A, y_A, x_B, y_B)`` in normalised [-1, 1] coordinates (left
            half: A grid → B, right half: B grid → A) and ``certainty`` ``(H_o, 2·W_o)`` in [0, 1], where
            ``(H_o, W_o)`` is ``upsample_res`` or ``size``.
        """
        coarse, fine, black = canvases(image_a, image_b, size, upsample_res, black_threshold)
        warp, certainty = self.dense_match_canvases(coarse, fine, black, faithful_gp=faithful_gp, dtype=dtype)
        return warp[0], certainty[0]

    def dense_match_canvases(self, coarse: torch.Tensor, fine: torch.Tensor | None, black: torch.Tensor | None, *,
                             faithful_gp: bool = True,
                             dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`dense_match` of P pairs at once, from their canvases (see :func:`canvases`).

        Args:
            coarse: ``(2P, 3, h, w)`` the images resized for the coarse pass, ``[A_1 … A_P; B_1 … B_P]``.
            fine: ``(2P, 3, H_o, W_o)`` the same resized for the refinement pass, or ``None`` to skip it.
            black: ``(2P, H_o, W_o)`` bool, the near-black pixels whose certainty is zeroed, or ``None``.
            faithful_gp: the original GP slice behaviour, per pair (see :class:`GP`).
            dtype: compute dtype of the encoder and refiners.

        Returns:
            ``warp`` ``(P, H_o, 2·W_o, 4)`` and ``certainty`` ``(P, H_o, 2·W_o)`` (as :meth:`dense_match`, per pair).
        """
        autocast = (torch.autocast(coarse.device.type, dtype=dtype) if dtype != torch.float32
                    else contextlib.nullcontext())
        with autocast:
            out = self.decoder(self._pyramid(coarse, 32), faithful_gp=faithful_gp, keep=(16, 1))
            out_size = tuple(fine.shape[-2:]) if fine is not None else tuple(coarse.shape[-2:])
            attenuation = resize(out[16][1], out_size)
            attenuation = 0.5 * attenuation * (attenuation < 0)
            flow, certainty = out[1]
            del out
            if fine is not None:
                feats = self._pyramid(fine, 8)
                flow, certainty = self.decoder(feats, flow=flow, certainty=certainty, faithful_gp=faithful_gp)[1]
        certainty = (certainty - attenuation).sigmoid()
        del attenuation
        return symmetric_warp(flow, certainty, black)


def canvases(image_a: torch.Tensor, image_b: torch.Tensor, size: tuple[int, int],
             upsample_res: tuple[int, int] | None, black_threshold: float | None
             ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """What the networks read of a pair: ``[A; B]`` resized to ``size`` and to ``upsample_res`` (or ``None``), and
    the near-black mask at the output resolution (or ``None`` without ``black_threshold``).

    Args:
        image_a: ``(1, 3, H, W)`` float32 RGB in [0, 1] (already padded).
        image_b: ``(1, 3, H', W')``.

    Returns:
        ``(coarse (2, 3, h, w), fine (2, 3, H_o, W_o) | None, black (2, H_o, W_o) | None)``. Canvases of P pairs
        are concatenated as ``[A_1 … A_P; B_1 … B_P]`` for :meth:`DKMv3.dense_match_canvases` (also RoMa's).
    """
    coarse = torch.cat((resize(image_a, size), resize(image_b, size)))
    fine = None if upsample_res is None else torch.cat((resize(image_a, upsample_res), resize(image_b, upsample_res)))
    out_size = tuple(upsample_res) if upsample_res is not None else tuple(size)
    black = None if black_threshold is None else torch.stack(
        (black_mask(image_a, out_size, black_threshold), black_mask(image_b, out_size, black_threshold)))
    return coarse, fine, black


def symmetric_warp(flow: torch.Tensor, certainty: torch.Tensor, black: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair warps from the decoder's ``[A…; B…]`` output (flow ``(2P, 2, H, W)``, certainty ``(2P, 1, H, W)``).

    Certainty is zeroed where the flow leaves [-1, 1] and on near-black pixels; the flow is clamped to [-1, 1].

    Returns:
        ``warp`` ``(P, H, 2W, 4)`` (left half: A grid → B, right half: B grid → A) and ``certainty`` ``(P, H, 2W)``.
    """
    pairs = flow.shape[0] // 2
    flow = flow.permute(0, 2, 3, 1)
    certainty[(flow.abs() > 1).any(dim=-1)[:, None]] = 0
    if black is not None:
        certainty[:, 0][black] = 0
    flow = flow.clamp(-1, 1)
    grid = normalized_grid(*flow.shape[1:3], flow.device).permute(1, 2, 0)[None].expand(pairs, -1, -1, -1)
    warp = torch.cat((torch.cat((grid, flow[:pairs]), dim=-1), torch.cat((flow[pairs:], grid), dim=-1)), dim=2)
    return warp, torch.cat((certainty[:pairs, 0], certainty[pairs:, 0]), dim=2)
