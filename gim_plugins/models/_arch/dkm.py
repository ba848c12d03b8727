"""DKMv3 (Edstedt et al., "DKM: Dense Kernelized Feature Matching", CVPR 2023) as GIM uses it, written for gim-plugins.

Module and parameter names follow the original so that GIM's ``gim_dkm_100h`` checkpoint loads strictly
(``encoder.net.*``, ``decoder.{embedding_decoder,gps,proj,conv_refiner}.*``; gim-spec.md §3.1). The computation is the
original's (what the weights were trained with), including two behaviours a port could be tempted to "fix":

* no ImageNet normalisation of the RGB input (GIM removed it);
* the GP's ``sigma_noise`` slice behaviour for N > 2000 (gim-spec.md §3.8): the second symmetric direction at stride 16
  reuses the first direction's inverse. ``faithful_gp=False`` computes each direction's own inverse instead.

What differs is *how* it is computed, never *what*:

* the batched ``torch.linalg.inv`` that crashes on some oneMKL CPUs (batch ≥ 2, n ≥ 513, 2 threads) is replaced by a
  per-matrix loop (same LU per matrix);
* the upsampling pass runs the encoder only up to stride 8 (the original also computes strides 16 and 32 there and
  never reads them);
* the local correlation is computed one window offset at a time instead of materialising a
  ``(B, C, H, W, (2r+1)²)`` tensor (5.5 GB at stride 8 of the 1152×1536 pass), and the refiners run one batch item at
  a time, so intermediates are bounded by one image's feature map;
* intermediates are released as soon as they are used.

See ``UPSTREAM.md`` for the upstream files this follows.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from gim_plugins.models._arch.resnet import ResNet50Trunk

__all__ = [
    "BLACK_THRESHOLD",
    "CAB",
    "DFN",
    "GP",
    "RRB",
    "ConvRefiner",
    "DKMDecoder",
    "DKMEncoder",
    "DKMv3",
    "cos_kernel",
    "local_correlation",
    "normalized_grid",
]

BLACK_THRESHOLD = 1.0 / 32.0
"""Pixels below this in all three channels get zero certainty (GIM's padding / semantic-mask exclusion, §2.5)."""

GP_DIM, DFN_DIM, FEAT_DIM = 256, 384, 256
KERNEL_TEMPERATURE = 0.2
SIGMA_NOISE = 0.1
GP_LOOP_THRESHOLD = 2000
"""The original GP inverts per batch item (with the slice behaviour) above this many conditioning cells."""

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


def normalized_grid(h: int, w: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(2, h, w)`` pixel-centre coordinates in [-1, 1] (``align_corners=False``), channel 0 = x, 1 = y."""
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=device)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=device)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y))


def _interpolate(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@contextlib.contextmanager
def _fp32() -> Iterator[None]:
    """Leave any surrounding autocast region (the GP's kernel inverse must stay in float32)."""
    if torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda"):
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            yield
    else:
        yield


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


# ---------------------------------------------------------------------------------------------------------- GP


def cos_kernel(x: torch.Tensor, y: torch.Tensor, temperature: float = KERNEL_TEMPERATURE,
               eps: float = 1e-6) -> torch.Tensor:
    """``exp((cos(x, y) − 1) / T)`` for ``(B, N, D)`` × ``(B, M, D)`` → ``(B, N, M)`` (DKM's ``CosKernel``)."""
    c = torch.einsum("bnd,bmd->bnm", x, y) / (x.norm(dim=-1)[..., None] * y.norm(dim=-1)[:, None] + eps)
    return ((c - 1.0) / torch.tensor(temperature, device=c.device)).exp()


class GP(nn.Module):
    """Gaussian-process embedding: the posterior mean of a Fourier coordinate basis of the other image.

    ``mu = K(x, y) · (K(y, y) + σ² I)⁻¹ · φ(grid_y)`` with the cosine kernel, σ² = 0.1 and
    ``φ(p) = cos(8π · pos_conv(p))`` (``no_cov=True``: no covariance features).
    """

    def __init__(self, gp_dim: int = GP_DIM) -> None:
        super().__init__()
        self.pos_conv = nn.Conv2d(2, gp_dim, 1)
        self.dim = gp_dim

    def basis(self, h: int, w: int, device: torch.device, batch: int = 1) -> torch.Tensor:
        """``(batch, gp_dim, h, w)`` Fourier embedding of the pixel-centre grid.

        The grid is laid out as the original builds it (``(b, h, w, 2)`` expanded over the batch, viewed as
        ``(b, 2, h, w)``): that channels-last view selects a different convolution kernel than a contiguous grid,
        and the GP's ill-conditioned kernel inverse turns the ~1e-6 difference into ~1e-3 (RoMa's anchor arg-max then
        flips near-tied cells).
        """
        coords = normalized_grid(h, w, device).permute(1, 2, 0).contiguous()[None].expand(batch, h, w, 2)
        return torch.cos(8 * math.pi * self.pos_conv(coords.permute(0, 3, 1, 2)))

    def forward(self, x: torch.Tensor, y: torch.Tensor, *, faithful: bool = True) -> torch.Tensor:
        """Embed ``x`` (B, C, h1, w1) conditioned on ``y`` (B, C, h2, w2); returns ``(B, gp_dim, h1, w1)``.

        ``faithful`` keeps the original's behaviour for N = h2·w2 > 2000: every batch item uses the inverse built
        from batch item 0's conditioning features (gim-spec.md §3.8). Inverses are taken one matrix at a time.
        """
        with _fp32():
            x, y = x.float(), y.float()
            b, _, h1, w1 = x.shape
            _, _, h2, w2 = y.shape
            n = h2 * w2
            f = self.basis(h2, w2, y.device, b).flatten(2).transpose(1, 2)  # (B, N, D)
            x, y = x.flatten(2).transpose(1, 2), y.flatten(2).transpose(1, 2)
            noise = SIGMA_NOISE * torch.eye(n, device=y.device)[None]
            items = 1 if faithful and n > GP_LOOP_THRESHOLD else b
            inverse = torch.cat([torch.linalg.inv(cos_kernel(y[k : k + 1], y[k : k + 1]) + noise)
                                 for k in range(items)])
            del noise
            weights = inverse.matmul(f)  # (items, N, D); broadcasts over the batch when items == 1
            del inverse
            mu = cos_kernel(x, y).matmul(weights)
            return mu.transpose(1, 2).reshape(b, self.dim, h1, w1)


# ----------------------------------------------------------------------------------------------------- refiners


def local_correlation(feature0: torch.Tensor, feature1: torch.Tensor, radius: int, flow: torch.Tensor,
                      out: torch.Tensor | None = None, budget: int = 1 << 24) -> torch.Tensor:
    """Correlation of ``feature0`` with ``feature1`` sampled in a (2r+1)² window around ``flow``.

    Equals DKM's ``local_correlation(..., flow=flow)``: for every query pixel p and window offset (i, j) the dot
    product of ``feature0[p]`` with ``feature1`` bilinearly sampled (zero padding, ``align_corners=False``) at
    ``flow[p]`` shifted by (j − r, i − r) pixels, divided by sqrt(C).

    The window offsets are whole pixels, so all (2r+1)² samples of one query pixel share the same bilinear weights
    and read from the same (2r+2)² integer neighbourhood. This computes the (2r+2)² plain dot products once and
    blends them with the bilinear weights, instead of interpolating (2r+1)² full feature vectors — about 4× less
    memory traffic — and it never holds more than ``budget`` gathered floats (the original holds a
    ``(B, C, H, W, (2r+1)²)`` tensor: 5.5 GB at stride 8 of GIM's 1152×1536 pass).

    Args:
        feature0: ``(B, C, H, W)`` query features.
        feature1: ``(B, C, H', W')`` support features.
        radius: window radius r.
        flow: ``(B, 2, H, W)`` normalised target coordinates of each query pixel.
        out: optional ``(B, (2r+1)², H, W)`` tensor to write into.
        budget: the most gathered feature values held at once.

    Returns:
        ``(B, (2r+1)², H, W)``, offset index ``k = i·(2r+1) + j`` for row offset i and column offset j.
    """
    b, c, h, w = feature0.shape
    h1, w1 = feature1.shape[-2:]
    side, nbr = 2 * radius + 1, 2 * radius + 2
    if out is None:
        out = feature0.new_empty(b, side * side, h, w)
    shifts = torch.arange(-radius, radius + 2, device=feature0.device)
    for k in range(b):
        # grid_sample's unnormalisation (align_corners=False), its floor and its bilinear weights.
        ix = ((flow[k, 0].reshape(-1) + 1) * w1 - 1) / 2
        iy = ((flow[k, 1].reshape(-1) + 1) * h1 - 1) / 2
        x0, y0 = ix.floor(), iy.floor()
        fx, fy = ix - x0, iy - y0
        cols = x0.long()[:, None] + shifts  # (HW, 2r+2)
        rows = y0.long()[:, None] + shifts
        inside = ((rows >= 0) & (rows < h1))[:, :, None] & ((cols >= 0) & (cols < w1))[:, None, :]
        index = torch.where(inside, rows[:, :, None] * w1 + cols[:, None, :], h1 * w1).reshape(h * w, -1)
        del cols, rows, inside
        support = torch.cat((feature1[k].permute(1, 2, 0).reshape(-1, c), feature1.new_zeros(1, c)))  # (H'W'+1, C)
        query = feature0[k].permute(1, 2, 0).reshape(-1, c)  # (HW, C); a view for channels-last features
        dots = feature0.new_empty(h * w, nbr * nbr)
        step = max(1, budget // (nbr * nbr * c))
        for start in range(0, h * w, step):
            stop = start + step
            rows = index[start:stop]
            gathered = torch.index_select(support, 0, rows.reshape(-1)).view(*rows.shape, c)  # (P, (2r+2)², C)
            torch.bmm(gathered, query[start:stop, :, None], out=dots[start:stop, :, None])
            del gathered
        del index, support
        dots = dots.view(h * w, nbr, nbr)
        wx, wy = fx[:, None, None], fy[:, None, None]
        corr = ((1 - wy) * ((1 - wx) * dots[:, :-1, :-1] + wx * dots[:, :-1, 1:])
                + wy * ((1 - wx) * dots[:, 1:, :-1] + wx * dots[:, 1:, 1:]))
        corr /= c**0.5
        out[k].permute(1, 2, 0).copy_(corr.view(h, w, side * side))
    return out


class ConvRefiner(nn.Module):
    """Depthwise-separable conv stack predicting a displacement (2) and a certainty delta (1) at one stride.

    Input: the query features, the support features warped by the current flow, a linear embedding of the flow's
    displacement from the identity grid and (strides 16, 8, 4) the local correlation around the flow target.
    """

    def __init__(self, in_dim: int, hidden_dim: int, emb_dim: int, corr_radius: int = 0, hidden_blocks: int = 8,
                 kernel_size: int = 5, certainty_last: bool = False) -> None:
        super().__init__()
        self.certainty_last = certainty_last
        """Output channel order: DKM's ``[certainty, dx, dy]`` (False) or RoMa's ``[dx, dy, certainty]`` (True)."""
        self.block1 = self._block(in_dim, hidden_dim, kernel_size)
        self.hidden_blocks = nn.Sequential(*[self._block(hidden_dim, hidden_dim, kernel_size)
                                             for _ in range(hidden_blocks)])
        self.out_conv = nn.Conv2d(hidden_dim, 3, 1)
        self.disp_emb = nn.Conv2d(2, emb_dim, 1)
        self.local_corr_radius = corr_radius

    @staticmethod
    def _block(in_dim: int, out_dim: int, kernel_size: int) -> nn.Sequential:
        if out_dim % in_dim:
            raise ValueError(f"depthwise block needs out_dim divisible by in_dim, got {out_dim}, {in_dim}")
        return nn.Sequential(
            nn.Conv2d(in_dim, out_dim, kernel_size, padding=kernel_size // 2, groups=in_dim),
            nn.BatchNorm2d(out_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_dim, out_dim, 1),
        )

    def inputs(self, x: torch.Tensor, y: torch.Tensor, flow: torch.Tensor, emb_scale: float = 1.0) -> torch.Tensor:
        """The refiner input ``[x, y warped by flow, displacement embedding, local correlation]``.

        Computed in float32 and written into one channels-last tensor of the compute dtype (bfloat16 inside a bf16
        autocast region), so no concatenated copy or layout conversion is needed.

        Args:
            x: ``(1, C, h, w)`` query features.
            y: ``(1, C, h, w)`` support features.
            flow: ``(1, 2, h, w)`` normalised coordinates in the support image.
            emb_scale: factor on the displacement before its embedding (DKM: 1; RoMa: ``40/32 · scale_factor``).
        """
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        with _fp32():
            x, y, flow = x.float(), y.float(), flow.float()
            _, c, h, w = x.shape
            emb = self.disp_emb.out_channels
            corr = (2 * self.local_corr_radius + 1) ** 2 if self.local_corr_radius else 0
            d = torch.empty((1, 2 * c + emb + corr, h, w), dtype=dtype, device=x.device,
                            memory_format=torch.channels_last)
            d[:, :c] = x
            d[:, c : 2 * c] = F.grid_sample(y, flow.permute(0, 2, 3, 1), align_corners=False)
            displacement = flow - normalized_grid(h, w, x.device)[None]
            d[:, 2 * c : 2 * c + emb] = self.disp_emb(displacement if emb_scale == 1.0 else emb_scale * displacement)
            if corr:
                local_correlation(x, y, self.local_corr_radius, flow, out=d[:, 2 * c + emb :])
        return d

    def forward(self, feats: torch.Tensor, flow: torch.Tensor, support: tuple[int, ...],
                emb_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine every batch item of ``feats`` against batch item ``support[k]`` (symmetric matching: [1, 0]).

        Items run one at a time, in channels-last layout (faster depthwise and 1×1 convolutions on CPU), with each
        block's batch norm folded into its depthwise convolution (eval mode), so intermediates are bounded by two
        copies of one image's refiner input.

        Returns:
            ``(certainty delta (B,1,h,w), displacement in pixels/4 (B,2,h,w))``, float32.
        """
        blocks = [self._folded(block) for block in (self.block1, *self.hidden_blocks)]
        outputs = []
        for k, other in enumerate(support):
            d = self.inputs(feats[k : k + 1], feats[other : other + 1], flow[k : k + 1], emb_scale)
            for (weight, bias, groups, padding), pointwise in zip(blocks, (self.block1, *self.hidden_blocks)):
                d = F.relu_(F.conv2d(d, weight, bias, padding=padding, groups=groups))
                d = pointwise[3](d)
            outputs.append(self.out_conv(d).float())
            del d
        out = torch.cat(outputs)
        if self.certainty_last:
            return out[:, -1:], out[:, :-1]
        return out[:, :-2], out[:, -2:]

    def _folded(self, block: nn.Sequential) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """The block's depthwise conv with its eval-mode batch norm folded in: ``(weight, bias, groups, padding)``."""
        conv, bn = block[0], block[1]
        if bn.training:
            raise RuntimeError("ConvRefiner folds batch norm for inference; call .eval() first")
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale[:, None, None, None]
        bias = (conv.bias - bn.running_mean) * scale + bn.bias
        return weight, bias, conv.groups, conv.padding[0]


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
                keep: tuple[int, ...] = (1,)) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Decode a symmetric feature pyramid into flow and certainty logits.

        ``feats`` holds the pyramid of the batch ``[A; B]``; item k is matched against item ``(k + B/2) mod B``
        (GIM's symmetric mode: query ``[A; B]`` against support ``[B; A]``), without building the swapped copy.
        Without ``flow`` this is the full pass (strides 32 → 1). With ``flow``/``certainty`` (the finest result of a
        previous pass at lower resolution) only the refiners at strides 8 → 1 run (GIM's "upsample" pass).
        Entries of ``feats`` are consumed (deleted) as soon as they have been used.

        Returns:
            ``{stride: (flow (B,2,h,w), certainty logits (B,1,h,w))}`` for the strides in ``keep`` (float32).
        """
        upsample = flow is not None
        scales = [8, 4, 2, 1] if upsample else [32, 16, 8, 4, 2, 1]
        sizes = {s: f.shape[-2:] for s, f in feats.items()}
        h, w = sizes[1]
        b = feats[1].shape[0]
        support = tuple((k + b // 2) % b for k in range(b))
        device = feats[1].device
        context = None
        if upsample:
            if certainty is None:
                raise ValueError("the upsampling pass needs both flow and certainty")
            flow, certainty = _interpolate(flow, sizes[8]), _interpolate(certainty, sizes[8])
        else:
            context = torch.zeros(b, self.embedding_decoder.internal_dim, *sizes[32], device=device)
            flow = normalized_grid(*sizes[32], device)[None].expand(b, 2, *sizes[32])
            certainty = torch.zeros((), device=device)
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for scale in scales:
            key = str(scale)
            f = feats.pop(scale)
            if key in self.proj:
                f = self.proj[key](f)
            if scale in COARSE_SCALES:
                assert context is not None
                context = _interpolate(context, sizes[scale])
                embedding = self.gps[key](f, f[list(support)], faithful=faithful_gp)
                flow, certainty, context = self.embedding_decoder(embedding, f, context, scale)
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
                flow, certainty = _interpolate(flow, sizes[scale // 2]), _interpolate(certainty, sizes[scale // 2])
        return out


# -------------------------------------------------------------------------------------------------------- network


class DKMv3(nn.Module):
    """GIM's DKMv3 network: ``encoder`` (ResNet-50) + ``decoder``; :meth:`dense_match` is GIM's ``match()``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = DKMEncoder()
        self.decoder = DKMDecoder()

    def _pyramid(self, image_a: torch.Tensor, image_b: torch.Tensor, size: tuple[int, int],
                 coarsest: int) -> dict[int, torch.Tensor]:
        """Encoder features of the batch ``[A; B]`` resized to ``size`` (stride 1: the resized images, float32)."""
        batch = torch.cat((_interpolate(image_a, size), _interpolate(image_b, size)))
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
        autocast = (torch.autocast(image_a.device.type, dtype=dtype) if dtype != torch.float32
                    else contextlib.nullcontext())
        with autocast:
            coarse = self.decoder(self._pyramid(image_a, image_b, size, 32), faithful_gp=faithful_gp, keep=(16, 1))
            out_size = tuple(upsample_res) if upsample_res is not None else tuple(size)
            attenuation = _interpolate(coarse[16][1], out_size)
            attenuation = 0.5 * attenuation * (attenuation < 0)
            flow, certainty = coarse[1]
            del coarse
            if upsample_res is not None:
                feats = self._pyramid(image_a, image_b, out_size, 8)
                flow, certainty = self.decoder(feats, flow=flow, certainty=certainty, faithful_gp=faithful_gp)[1]
        certainty = (certainty - attenuation).sigmoid()
        del attenuation
        flow = flow.permute(0, 2, 3, 1)
        certainty[(flow.abs() > 1).any(dim=-1)[:, None]] = 0
        if black_threshold is not None:
            certainty[0, 0][black_mask(image_a, out_size, black_threshold)] = 0
            certainty[1, 0][black_mask(image_b, out_size, black_threshold)] = 0
        flow = flow.clamp(-1, 1)
        grid = normalized_grid(*out_size, flow.device).permute(1, 2, 0)
        warp = torch.cat((torch.cat((grid, flow[0]), dim=-1), torch.cat((flow[1], grid), dim=-1)), dim=1)
        return warp, torch.cat((certainty[0, 0], certainty[1, 0]), dim=1)


def black_mask(image: torch.Tensor, size: tuple[int, int], threshold: float) -> torch.Tensor:
    """``(h, w)`` mask of near-black pixels of a ``(1, 3, H, W)`` image, nearest-resized to ``size``.

    Equal to thresholding at full resolution and resizing the mask with ``F.interpolate(mode="nearest")`` (as GIM
    does), but only the pixels nearest-neighbour resizing selects are read, so a large image costs no full-size mask.
    """
    _, _, height, width = image.shape
    rows = _nearest_indices(height, size[0], image.device)
    cols = _nearest_indices(width, size[1], image.device)
    pixels = image[0][:, rows][:, :, cols]
    return (pixels < threshold).all(dim=0)


def _nearest_indices(length: int, out_length: int, device: torch.device) -> torch.Tensor:
    """Source indices that 2-D ``F.interpolate(mode="nearest")`` reads along one axis, computed by that same kernel
    (on a float32 ``(length, 1)`` index image, exact below 2²⁴ px; the 1-D kernel rounds differently)."""
    source = torch.arange(length, dtype=torch.float32, device=device)[None, None, :, None]
    return F.interpolate(source, size=(out_length, 1), mode="nearest")[0, 0, :, 0].long()
