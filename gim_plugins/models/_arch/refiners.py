"""DKM's convolutional refiners (used by DKM and RoMa) and the local correlation they read.

The computation is the original's; only its memory changes: the local correlation is computed from the
``(2r+2)²`` integer neighbourhood of each flow target instead of materialising a ``(B, C, H, W, (2r+1)²)`` tensor,
and the refiners run one batch item at a time in channels-last layout with batch norm folded into the depthwise
convolutions, so intermediates are bounded by one image's feature map.

Training (any batch norm of the refiner in training mode) takes another path with the original's gradients: the whole
batch at once through real batch norms (batch statistics), the support features warped by the flow without gradient
(the original samples them under ``no_grad``), and the local correlation differentiable in the query features only
(the original builds its sampling window under ``no_grad``), through :class:`LocalCorrelation`, whose backward
re-samples one window offset at a time instead of keeping the ``(B, C, H, W, (2r+1)²)`` tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gim_plugins.models._arch.grids import no_autocast, normalized_grid

__all__ = ["ConvRefiner", "LocalCorrelation", "local_correlation"]


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


class LocalCorrelation(torch.autograd.Function):
    """:func:`local_correlation` with the original's gradient: to ``feature0`` only.

    The window positions and the sampled support features carry no gradient (GIM's DKM/RoMa sample them under
    ``no_grad``), so ``d corr_k / d feature0 = window_feature_k / sqrt(C)``; the backward pass samples each window
    offset again (bilinear, zero padding, ``align_corners=False``, as the forward) and accumulates.
    """

    @staticmethod
    def forward(ctx, feature0: torch.Tensor, feature1: torch.Tensor, radius: int,  # type: ignore[override]
                flow: torch.Tensor) -> torch.Tensor:
        ctx.radius = radius
        ctx.save_for_backward(feature1, flow)
        with torch.no_grad():
            return local_correlation(feature0.float(), feature1.float(), radius, flow.float())

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:  # type: ignore[override]
        feature1, flow = ctx.saved_tensors
        radius = ctx.radius
        side = 2 * radius + 1
        c = feature1.shape[1]
        h1, w1 = feature1.shape[-2:]
        coords = flow.float().permute(0, 2, 3, 1)
        grad0 = None
        with torch.no_grad():
            for index in range(side * side):
                row, col = divmod(index, side)
                shift = coords.new_tensor([2 * (col - radius) / w1, 2 * (row - radius) / h1])
                window = F.grid_sample(feature1.float(), coords + shift, mode="bilinear", padding_mode="zeros",
                                       align_corners=False)
                term = grad[:, index : index + 1].float() * window
                grad0 = term if grad0 is None else grad0 + term
        assert grad0 is not None
        return grad0 / c**0.5, None, None, None


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
        with no_autocast():
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
        if self.block1[1].training:
            return self._forward_train(feats, flow, support, emb_scale)
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

    def _forward_train(self, feats: torch.Tensor, flow: torch.Tensor, support: tuple[int, ...],
                       emb_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The training path: queries ``0 … len(support) − 1`` at once, batch statistics, the original's gradients."""
        queries = len(support)
        x, y = feats[:queries], feats[list(support)]
        h, w = x.shape[-2:]
        with torch.no_grad():
            warped = F.grid_sample(y, flow.permute(0, 2, 3, 1).to(y.dtype), align_corners=False)
        displacement = flow - normalized_grid(h, w, x.device)[None]
        parts = [x, warped, self.disp_emb(displacement if emb_scale == 1.0 else emb_scale * displacement)]
        if self.local_corr_radius:
            parts.append(LocalCorrelation.apply(x, y, self.local_corr_radius, flow).to(x.dtype))
        d = self.hidden_blocks(self.block1(torch.cat(parts, dim=1)))
        out = self.out_conv(d).float()
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
