"""DINOv2 ViT-L/14 (Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", 2023), inference only.

RoMa's frozen coarse encoder. Parameter names follow Meta's ``dinov2_vitl14_pretrain.pth`` (``cls_token``,
``pos_embed``, ``mask_token``, ``patch_embed.proj.*``, ``blocks.<i>.{norm1,attn.qkv,attn.proj,ls1,norm2,mlp.fc1,
mlp.fc2,ls2}.*``, ``norm.*``) so that file loads strictly. The configuration is GIM's (``vit_large(img_size=518,
patch_size=14, init_values=1.0, ffn_layer="mlp", block_chunks=0)``): 24 blocks of width 1024, 16 heads, LayerScale,
GELU MLP, LayerNorm eps 1e-6.

Differences from the original code, none of which changes what is computed:

* no xformers: attention is the original's non-xformers softmax attention (``Attention.fused = True`` switches to
  ``torch.nn.functional.scaled_dot_product_attention``);
* no training paths (stochastic depth, masks, chunked blocks), no ``mask_token`` use (the parameter is kept only so
  the released file loads strictly).

:class:`Block` (with ``qkv_bias=False``, no LayerScale, eps 1e-5) is also RoMa's coarse transformer decoder block.
See ``UPSTREAM.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PATCH_SIZE", "Attention", "Block", "DinoV2ViTL14", "Mlp"]

PATCH_SIZE = 14
EMBED_DIM = 1024
DEPTH = 24
NUM_HEADS = 16
PRETRAIN_SIZE = 518
"""The position embedding covers 518 / 14 = 37 × 37 patches (plus the class token)."""


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head softmax self-attention over ``(B, N, C)`` tokens.

    By default computed as the original does without xformers (``softmax((q·scale) kᵀ) v``, the ``(N, N)`` weights
    materialised): RoMa's coarse decoder takes an arg-max over 4096 anchor logits, so rounding differences of
    ~1e-5 (e.g. from a fused kernel) can flip near-tied cells. ``fused = True`` uses
    ``scaled_dot_product_attention`` instead (less memory and faster on GPUs; same function up to rounding).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.fused = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """Per-channel scale ``gamma`` of a residual branch."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool, layer_scale: bool, eps: float,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """14×14 non-overlapping patches → tokens (``proj`` is a stride-14 convolution)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, EMBED_DIM, PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2ViTL14(nn.Module):
    """DINOv2 ViT-L/14; :meth:`patch_features` is what RoMa reads (``x_norm_patchtokens`` as a feature map)."""

    def __init__(self) -> None:
        super().__init__()
        grid = PRETRAIN_SIZE // PATCH_SIZE
        self.patch_embed = PatchEmbed()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, EMBED_DIM))
        self.mask_token = nn.Parameter(torch.zeros(1, EMBED_DIM))
        self.blocks = nn.ModuleList([Block(EMBED_DIM, NUM_HEADS, qkv_bias=True, layer_scale=True, eps=1e-6)
                                     for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(EMBED_DIM, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.requires_grad_(False)

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """``(1, 1 + h·w, C)`` position embedding for an ``height × width`` px input (h, w in patches).

        The original resizes the 37×37 table bicubically with ``scale_factor = (h + 0.1) / 37`` (not ``size=``), and
        the scale factor enters the interpolation weights, so it is reproduced as is. A 518×518 input uses the table
        unchanged.
        """
        grid = PRETRAIN_SIZE // PATCH_SIZE
        h, w = height // PATCH_SIZE, width // PATCH_SIZE
        if h == w == grid:
            return self.pos_embed
        table = self.pos_embed.float()
        patches = table[:, 1:].reshape(1, grid, grid, EMBED_DIM).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, scale_factor=((h + 0.1) / math.sqrt(grid * grid),
                                                       (w + 0.1) / math.sqrt(grid * grid)), mode="bicubic")
        if patches.shape[-2:] != (h, w):
            raise RuntimeError(f"position embedding resized to {tuple(patches.shape[-2:])}, expected {(h, w)}")
        patches = patches.permute(0, 2, 3, 1).reshape(1, h * w, EMBED_DIM)
        return torch.cat((table[:, :1], patches), dim=1).to(self.pos_embed.dtype)

    def patch_features(self, x: torch.Tensor) -> torch.Tensor:
        """Final-norm patch tokens of ``(B, 3, H, W)`` images (H, W multiples of 14) as ``(B, 1024, H/14, W/14)``."""
        b, _, height, width = x.shape
        if height % PATCH_SIZE or width % PATCH_SIZE:
            raise ValueError(f"DINOv2 needs sides that are multiples of {PATCH_SIZE}, got {height}×{width}")
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(b, -1, -1), tokens), dim=1)
        tokens = tokens + self.position_embedding(height, width)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)[:, 1:]
        return tokens.transpose(1, 2).reshape(b, EMBED_DIM, height // PATCH_SIZE, width // PATCH_SIZE)
