"""DKM's Gaussian-process embedding (used by DKM and RoMa): the cosine kernel and the GP posterior mean.

What the original computes is kept, including the slice behaviour above :data:`GP_LOOP_THRESHOLD` conditioning cells
(``faithful=True``: every batch item uses the inverse built from batch item 0). How differs: the original's batched
``torch.linalg.inv``, which crashes on some oneMKL CPUs (batch ≥ 2, n ≥ 513, 2 threads), is a per-matrix loop (the same
LU per matrix), and the kernel inverse always runs in float32, outside any autocast region.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from gim_plugins.models._arch.grids import no_autocast, normalized_grid

__all__ = ["GP", "GP_DIM", "GP_LOOP_THRESHOLD", "KERNEL_TEMPERATURE", "SIGMA_NOISE", "cos_kernel"]

GP_DIM = 256
KERNEL_TEMPERATURE = 0.2
SIGMA_NOISE = 0.1
GP_LOOP_THRESHOLD = 2000
"""The original GP inverts per batch item (with the slice behaviour) above this many conditioning cells."""


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

    def forward(self, x: torch.Tensor, y: torch.Tensor, *, faithful: bool = True, pairs: int = 1) -> torch.Tensor:
        """Embed ``x`` (B, C, h1, w1) conditioned on ``y`` (B, C, h2, w2); returns ``(B, gp_dim, h1, w1)``.

        ``faithful`` keeps the original's behaviour for N = h2·w2 > 2000: every batch item uses the inverse built
        from batch item 0's conditioning features (the original adds a batch-1 noise tensor sliced per batch item, so
        for items ≥ 1 the slice is empty and the one inverse is broadcast). Inverses are taken one matrix at a time.

        ``pairs``: the batch holds ``pairs`` image pairs laid out ``[A_1 … A_P; B_1 … B_P]`` (batched matching); the
        faithful behaviour then applies per pair, as if each pair ran alone: item k uses the inverse of item
        ``k mod P``.
        """
        with no_autocast():
            x, y = x.float(), y.float()
            b, _, h1, w1 = x.shape
            _, _, h2, w2 = y.shape
            n = h2 * w2
            f = self.basis(h2, w2, y.device, b).flatten(2).transpose(1, 2)  # (B, N, D)
            x, y = x.flatten(2).transpose(1, 2), y.flatten(2).transpose(1, 2)
            noise = SIGMA_NOISE * torch.eye(n, device=y.device)[None]
            items = pairs if faithful and n > GP_LOOP_THRESHOLD else b
            if b % items:
                raise ValueError(f"a batch of {b} items cannot hold {pairs} symmetric pairs")
            inverse = torch.cat([torch.linalg.inv(cos_kernel(y[k : k + 1], y[k : k + 1]) + noise)
                                 for k in range(items)])
            del noise
            weights = inverse.matmul(f[:items] if 1 < items < b else f)  # (items, N, D)
            del inverse
            if 1 < items < b:  # item k uses pair (k mod P)'s inverse; a single inverse broadcasts by itself
                weights = weights.repeat(b // items, 1, 1)
            mu = cos_kernel(x, y).matmul(weights)
            return mu.transpose(1, 2).reshape(b, self.dim, h1, w1)
